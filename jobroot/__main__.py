"""`python3 -m jobroot`: the same command as the installed `reconcile`."""

import sys

from jobroot.cli import main

sys.exit(main())
