"""One outer task whose nested call has two leaves that meet: where they ran.

``nested_pair.py [apply]``: with ``apply``, call ``nest_joblib.apply()``
first, as the upstream package's README does (for a run with the plugin off).
The leaves wait (30 s at most) until both compute: at once, so in two processes.
"""

from __future__ import annotations

import os
import sys
import tempfile

from joblib import Parallel, delayed

from children.common import emit, meet


def leaf(barrier: str) -> int:
    meet(barrier)
    return os.getpid()


def task(i: int) -> tuple[int, list[int]]:
    with tempfile.TemporaryDirectory() as barrier:
        return os.getpid(), Parallel(n_jobs=2)(delayed(leaf)(barrier) for j in range(2))


def main() -> None:
    if sys.argv[1:] == ["apply"]:
        from nest_joblib import apply

        apply()
    emit(Parallel(n_jobs=2)(delayed(task)(i) for i in range(1)))


if __name__ == "__main__":
    main()
