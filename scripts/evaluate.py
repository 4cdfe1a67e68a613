"""Thin entry point: same as `worldmodels evaluate ...` (see `worldmodels evaluate --help`)."""
import sys

from worldmodels.cli import main

sys.exit(main(["evaluate", *sys.argv[1:]]))
