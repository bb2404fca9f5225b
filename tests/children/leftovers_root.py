"""A root for the leave-nothing-behind cases.

argv[1]: "victim" (prints its budget directory once a nested call runs, then
keeps computing until killed) or "next" (one nested call, then exits).
"""

from __future__ import annotations

import os
import sys
import tempfile

from joblib import Parallel, delayed

from children.common import emit, meet, spin


def leaf(i: int) -> int:
    return sum(spin() for _ in range(20))


def outer(barrier: str | None) -> int:
    if barrier is not None:
        meet(barrier, 2)
    return sum(Parallel(n_jobs=2)(delayed(leaf)(i) for i in range(4)))


def forever(i: int) -> None:
    while True:
        spin()


def main() -> None:
    if sys.argv[1] == "next":
        emit(sum(Parallel(n_jobs=2)(delayed(outer)(None) for _ in range(2))))
        return
    from nest_joblib._private import budget

    with tempfile.TemporaryDirectory() as barrier:
        Parallel(n_jobs=2)(delayed(outer)(barrier) for _ in range(2))
    ref = budget.own_ref()
    assert ref is not None
    emit({"directory": ref.path, "pid": os.getpid()})
    Parallel(n_jobs=2)(delayed(forever)(i) for i in range(2))


if __name__ == "__main__":
    main()
