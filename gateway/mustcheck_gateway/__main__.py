"""``python -m mustcheck_gateway`` runs the ``mustcheck`` command line."""

import sys

from .cli import main

if __name__ == "__main__":  # not when a worker process imports it
    sys.exit(main())
