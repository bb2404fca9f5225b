"""A nested backend pickled in one interpreter, unpickled in a fresh one before joblib.

``robust_pickle_backend.py dump`` prints the pickle of ``nested-loky`` (level
1) in hex; ``robust_pickle_backend.py load HEX`` unpickles it, then imports
joblib: the backend's class, level, and joblib's default backend.
"""

from __future__ import annotations

import pickle
import sys


def dump() -> None:
    import joblib.parallel

    backend = joblib.parallel.BACKENDS["nested-loky"](nesting_level=1)
    sys.stdout.write(pickle.dumps(backend).hex())


def load(blob: str) -> None:
    assert "joblib" not in sys.modules
    backend = pickle.loads(bytes.fromhex(blob))
    import joblib.parallel

    print(type(backend).__name__, backend.nesting_level, joblib.parallel.DEFAULT_BACKEND)


def main() -> None:
    if sys.argv[1] == "dump":
        dump()
    else:
        load(sys.argv[2])


if __name__ == "__main__":
    main()
