"""``robust_import_first.py MODULE``: import MODULE of ours, then joblib; the default backend."""

from __future__ import annotations

import importlib
import sys


def main() -> None:
    importlib.import_module(sys.argv[1])
    import joblib.parallel

    print(joblib.parallel.DEFAULT_BACKEND)


if __name__ == "__main__":
    main()
