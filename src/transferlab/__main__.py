"""``python -m transferlab``: the same as the ``transferlab`` command."""

import sys

from .cli import main

sys.exit(main())
