#!/usr/bin/env python3
"""The entry point cron runs from a clone: `python3 /path/to/clone/reconcile.py -r ROOT` (see jobroot.cli)."""

import sys

from jobroot.cli import main

if __name__ == "__main__":
    sys.exit(main())
