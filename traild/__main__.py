"""``python -m traild``."""

import sys

from traild.cli import main

sys.exit(main())
