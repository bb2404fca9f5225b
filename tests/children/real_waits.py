"""Leaves that wait overlap, as joblib's threads do, whatever the CPU budget.

argv[1]: "busy" (two outer tasks hold both CPUs, each with a nested
``n_jobs=4`` call of 4 leaves) or "one" (one outer task, a nested
``n_jobs=8`` call of 8 leaves; on a budget larger than the outer pool, its
call finds free CPUs). The leaves of a nested call wait on one barrier that
sleeps: they all reach it only if they are in flight at once.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from joblib import Parallel, delayed

from children.common import emit, meet, poll_until


def waits(barrier: str, count: int) -> bool:
    """Arrive, then sleep until ``count`` leaves arrived (30 s at most)."""
    with open(os.path.join(barrier, f"{os.getpid()}-{time.monotonic_ns()}"), "x"):
        pass
    return poll_until(lambda: len(os.listdir(barrier)) >= count, 30.0)


def outer(n_jobs: int, together: str | None) -> object:
    held = meet(together, 2) if together else True  # both outer tasks hold their CPU
    with tempfile.TemporaryDirectory() as barrier:
        met = Parallel(n_jobs=n_jobs)(delayed(waits)(barrier, n_jobs) for _ in range(n_jobs))
    return {"held": held, "met": met}


def main() -> None:
    if sys.argv[1] == "busy":
        with tempfile.TemporaryDirectory() as together:
            emit(Parallel(n_jobs=2)(delayed(outer)(4, together) for _ in range(2)))
    else:
        emit(Parallel(n_jobs=2)(delayed(outer)(8, None) for _ in range(1)))


if __name__ == "__main__":
    main()
