"""Fail with a clear message when the interpreter is too old (must run on any Python 3)."""

import sys

REQUIRED = (3, 11)

if sys.version_info < REQUIRED:
    found = sys.version.split()[0]
    sys.exit(
        "error: StorePulse needs Python 3.11 or newer; "
        + sys.executable
        + " is "
        + found
        + ". Install a newer Python, or run make with PYTHON=/path/to/python3.11"
    )
