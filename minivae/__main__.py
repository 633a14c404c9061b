"""``python -m minivae``: the same as the ``minivae`` command (and ``python -m minivae.cli``)."""

import sys

from minivae.cli import main

sys.exit(main())
