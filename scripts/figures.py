"""Thin entry point: same as `worldmodels figures ...` (see `worldmodels figures --help`)."""
import sys

from worldmodels.cli import main

sys.exit(main(["figures", *sys.argv[1:]]))
