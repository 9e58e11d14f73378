#!/usr/bin/env python3
"""Command-line entry; the work is done by pixda_core.data.prep.main_check (see --help)."""

import sys

from pixda_core.data.prep import main_check

if __name__ == "__main__":
    sys.exit(main_check())
