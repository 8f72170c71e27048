"""``python -m lima_align`` runs the command line."""

import sys

from lima_align.cli import main

sys.exit(main())
