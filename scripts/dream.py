"""Thin entry point: same as `worldmodels dream ...` (see `worldmodels dream --help`)."""
import sys

from worldmodels.cli import main

sys.exit(main(["dream", *sys.argv[1:]]))
