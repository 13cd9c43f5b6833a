"""``python -m mustcheck_gateway`` runs the ``mustcheck`` command line."""

import sys

from .cli import main

sys.exit(main())
