"""Thin entry point: same as `worldmodels encode ...` (see `worldmodels encode --help`)."""
import sys

from worldmodels.cli import main

sys.exit(main(["encode", *sys.argv[1:]]))
