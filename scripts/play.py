"""Thin entry point: same as `worldmodels play ...` (see `worldmodels play --help`)."""
import sys

from worldmodels.cli import main

sys.exit(main(["play", *sys.argv[1:]]))
