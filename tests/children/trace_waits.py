"""Nested tasks that wait (stand-ins start beside them), then one that computes while every
CPU is held (its call's other tasks wait for a free CPU). Run with ``NEST_JOBLIB_CPUS=2``."""

from __future__ import annotations

import tempfile
import time

from joblib import Parallel, delayed

from children.common import busy, emit, meet


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def outer(i: int, barrier: str) -> int:
    meet(barrier)  # both hold their worker's CPU from here
    if i == 0:  # frees its CPU half-way through the other's second nested call
        busy(0.8)
        return 0
    waits = Parallel(n_jobs=4)(delayed(nap)(0.2) for _ in range(4))
    busy_leaves = Parallel(n_jobs=2)(delayed(busy)(0.3) for _ in range(4))
    return len(waits) + len(busy_leaves)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as barrier:
        emit(Parallel(n_jobs=2)(delayed(outer)(i, barrier) for i in range(2)))
