"""Three levels of ``Parallel(n_jobs=2)``; a leaf raises or is killed: what reaches the caller.

``robust_three_levels.py raise|kill``. The two outer tasks meet before their
nested calls, so that both hold their CPU (with a budget of 2, the nested
calls then run inline); every task computes rather than sleeps, so that it
holds its CPU while it runs.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import traceback

from joblib import Parallel, delayed

from children.common import busy, meet

MODE = sys.argv[1]


def leaf(j: int) -> int:
    busy(0.2)
    if j == 1 and MODE == "raise":
        raise KeyError("boom from the leaf")
    if j == 1 and MODE == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    return os.getpid()


def mid(i: int) -> list[int]:
    busy(0.3)
    return list(Parallel(n_jobs=2)(delayed(leaf)(j) for j in range(2)))


def top(i: int, barrier: str) -> list[list[int]]:
    if not meet(barrier):
        raise RuntimeError("the two outer tasks never computed at once")
    return list(Parallel(n_jobs=2)(delayed(mid)(j) for j in range(2)))


def main() -> None:
    try:
        with tempfile.TemporaryDirectory() as barrier:
            Parallel(n_jobs=2)(delayed(top)(i, barrier) for i in range(2))
    except BaseException as exc:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        report = {
            "type": type(exc).__module__ + "." + type(exc).__qualname__,
            "message": str(exc),
            "leaf_in_traceback": "in leaf" in text,
            "boom_in_traceback": "boom from the leaf" in text,
        }
    else:
        report = {"type": None}
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
