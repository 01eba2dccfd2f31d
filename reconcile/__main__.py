"""``python -m reconcile``: the same command line as ``reconcile``."""

import sys

from reconcile.cli import main

sys.exit(main())
