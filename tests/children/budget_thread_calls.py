"""A task runs two nested calls from two threads of its own, beside two tasks that compute.

Budget 2, a top-level pool of 2. Every leaf logs its process and its span, so
the report tells how many processes computed at once (threads of one process
share its GIL: they count once).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

from joblib import Parallel, delayed

from children.common import busy, emit, peak_processes


def leaf(seconds: float) -> list[list[float]]:
    start = time.time()
    busy(seconds)
    return [[os.getpid(), start, time.time()]]


def nested() -> list[list[float]]:
    spans = Parallel(n_jobs=2)(delayed(leaf)(0.08) for _ in range(4))
    return [span for spans_of_leaf in spans for span in spans_of_leaf]


def threads() -> list[list[float]]:
    with ThreadPoolExecutor(2) as pool:
        calls = [pool.submit(nested) for _ in range(2)]
        return [span for call in calls for span in call.result()]


def main() -> None:
    tasks = [delayed(threads)(), delayed(leaf)(0.3), delayed(leaf)(0.3)]
    spans = [span for result in Parallel(n_jobs=2)(tasks) for span in result]
    emit({"leaves": len(spans), "peak": peak_processes(spans)})


if __name__ == "__main__":
    main()
