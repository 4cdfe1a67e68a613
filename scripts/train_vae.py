"""Thin entry point: same as `worldmodels train-vae ...` (see `worldmodels train-vae --help`)."""
import sys

from worldmodels.cli import main

sys.exit(main(["train-vae", *sys.argv[1:]]))
