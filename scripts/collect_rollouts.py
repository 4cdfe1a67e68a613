"""Thin entry point: same as `worldmodels collect ...` (see `worldmodels collect --help`)."""
import sys

from worldmodels.cli import main

sys.exit(main(["collect", *sys.argv[1:]]))
