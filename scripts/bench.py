"""Thin entry point: same as `worldmodels bench ...` (see `worldmodels bench --help`)."""
import sys

from worldmodels.cli import main

sys.exit(main(["bench", *sys.argv[1:]]))
