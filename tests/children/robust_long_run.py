"""A long three-level run, to be interrupted: ``robust_long_run.py MARKS``.

Each leaf leaves the file ``leaf-<pid>-<j>`` in the directory MARKS when it starts.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from joblib import Parallel, delayed

MARKS = sys.argv[1]


def leaf(j: int) -> int:
    open(os.path.join(MARKS, f"leaf-{os.getpid()}-{j}"), "w").close()
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < 1.5:  # pure-Python work
        n += 1
    return n


def mid(i: int) -> int:
    return sum(Parallel(n_jobs=2)(delayed(leaf)(j) for j in range(4)))


def top(i: int) -> int:
    return sum(Parallel(n_jobs=2)(delayed(mid)(j) for j in range(2)))


def main() -> None:
    # Ctrl-C as in a terminal, even when the test runs from a background job
    # (which starts with SIGINT ignored, and Python keeps it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    print(Parallel(n_jobs=2)(delayed(top)(i) for i in range(2)))


if __name__ == "__main__":
    main()
