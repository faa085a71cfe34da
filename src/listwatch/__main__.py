"""``python -m listwatch``: the ``listwatch`` command without the console script."""

from __future__ import annotations

import sys

from listwatch.cli import main

if __name__ == "__main__":
    sys.exit(main())
