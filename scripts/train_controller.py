"""Thin entry point: same as `worldmodels train-controller ...`
(see `worldmodels train-controller --help`)."""
import sys

from worldmodels.cli import main

sys.exit(main(["train-controller", *sys.argv[1:]]))
