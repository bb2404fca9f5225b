"""An outer loop shorter than the pool: its spare worker helps the nested call.

Three top-level calls in a row: the first on a pool that starts, the others
on a warm pool.
"""

from __future__ import annotations

import os
import tempfile
import time

import psutil
from joblib import Parallel, delayed

from children.common import busy, emit, meet, peak


def timed_leaf(i: int, barrier: str) -> dict[str, object]:
    # The first two leaves must compute at once: the inline caller runs one task at a time.
    together = meet(barrier) if i < 2 else True
    start = time.time()
    busy(0.2)
    return {"pid": os.getpid(), "span": [start, time.time()], "together": together}


def only_task() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as barrier:
        leaves = Parallel(n_jobs=-1)(delayed(timed_leaf)(i, barrier) for i in range(8))
    return {
        "pid": os.getpid(),
        "leaves": leaves,
        "children": len(psutil.Process().children(recursive=True)),
    }


def main() -> None:
    calls = []
    for _ in range(3):
        [task] = Parallel(n_jobs=2)([delayed(only_task)()])
        pids = {leaf["pid"] for leaf in task["leaves"]}
        calls.append(
            {
                **task,
                "parents": sorted({psutil.Process(p).ppid() for p in pids}),
                "peak": peak([leaf["span"] for leaf in task["leaves"]]),
            }
        )
    emit({"root": os.getpid(), "calls": calls})


if __name__ == "__main__":
    main()
