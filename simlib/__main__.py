"""``python -m simlib`` is the ``simlib`` command."""

import sys

from .cli import main

sys.exit(main())
