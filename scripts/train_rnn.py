"""Thin entry point: same as `worldmodels train-rnn ...` (see `worldmodels train-rnn --help`)."""
import sys

from worldmodels.cli import main

sys.exit(main(["train-rnn", *sys.argv[1:]]))
