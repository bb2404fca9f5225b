"""Nested calls whose caller polls for results: how many of its sleeps news cut short."""

from __future__ import annotations

import tempfile
import threading
import time

import joblib.parallel
from joblib import Parallel, delayed

from children.common import emit, meet, timed
from nest_joblib._private.wakeup import Clock


def outer(barrier: str) -> dict[str, int]:
    meet(barrier, 2)  # both outer tasks hold their CPU: each nested call runs inline
    counts = {"sleeps": 0, "cut_short": 0}
    caller = threading.get_ident()

    class Counting(Clock):
        def sleep(self, seconds: float) -> None:
            start = time.perf_counter()
            super().sleep(seconds)
            if threading.get_ident() == caller:
                counts["sleeps"] += 1
                # time.sleep never returns early: only news from the call does.
                counts["cut_short"] += time.perf_counter() - start < seconds

    joblib.parallel.time = Counting()
    leaves = Parallel(n_jobs=2)(delayed(timed)(0.1) for i in range(4))
    return {"leaves": len(leaves), **counts}


def main() -> None:
    with tempfile.TemporaryDirectory() as barrier:
        emit(Parallel(n_jobs=2)(delayed(outer)(barrier) for i in range(2)))


if __name__ == "__main__":
    main()
