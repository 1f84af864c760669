#!/usr/bin/env python3
"""Launcher for the jfr command line, usable from a source checkout."""
import sys

from jfr_lib.cli import main

if __name__ == "__main__":
    sys.exit(main())
