"""An outer task whose nested call runs inline, and one that ends early and helps it.

``budget_sharing.py [fail]``: with ``fail``, a leaf that runs anywhere but in
its caller raises.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback

import psutil
from joblib import Parallel, delayed

from children.common import busy, emit, meet, peak


def timed_leaf(i: int, caller: int, fail_elsewhere: bool) -> tuple[int, list[float]]:
    start = time.time()
    busy(0.3)
    if fail_elsewhere and os.getpid() != caller:
        raise ValueError(f"leaf {i} failed in {os.getpid()}")
    return os.getpid(), [start, time.time()]


def wide(fail_elsewhere: bool, barrier: str) -> dict[str, object]:
    # Start only once the other outer task holds its CPU: no CPU is free, so
    # the nested call runs inline and offers its queued leaves.
    together = meet(barrier)
    me = os.getpid()
    try:
        got = Parallel(n_jobs=-1)(delayed(timed_leaf)(i, me, fail_elsewhere) for i in range(8))
    except ValueError as exc:
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return {"pid": me, "error": str(exc), "trace": trace, "together": together}
    return {
        "pid": me,
        "leaf_pids": [pid for pid, _ in got],
        "spans": [span for _, span in got],
        "children": len(psutil.Process().children(recursive=True)),
        "together": together,
    }


def narrow(barrier: str) -> dict[str, object]:
    together = meet(barrier)
    busy(0.3)
    return {"pid": os.getpid(), "together": together}


def main() -> None:
    fail = sys.argv[1:] == ["fail"]
    with tempfile.TemporaryDirectory() as barrier:
        a, b = Parallel(n_jobs=2)([delayed(wide)(fail, barrier), delayed(narrow)(barrier)])
    emit({"a": a, "b": b, "peak": peak(a.get("spans", []))})


if __name__ == "__main__":
    main()
