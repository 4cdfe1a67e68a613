"""``python -m worldmodels``: the same as the ``worldmodels`` command."""

import sys

from .cli import main

sys.exit(main())
