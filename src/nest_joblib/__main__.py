"""``python -m nest_joblib``: the same as the ``nest-joblib`` command."""

from __future__ import annotations

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
