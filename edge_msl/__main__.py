"""Allows ``python -m edge_msl``."""

import sys

from .cli import main

sys.exit(main())
