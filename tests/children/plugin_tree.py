"""A tree of nested calls: ``plugin_tree.py FANS`` (comma-separated, e.g. ``1,2``).

A node at depth k calls ``Parallel(n_jobs=2)`` over ``FANS[k]`` children. The
leaves of one call meet at a barrier (30 s at most): they get through
together only if they compute at the same time, so in more than one process
(threads share one GIL, and a call that runs inline runs one task at a time).
Each node and leaf says where it ran: its process, nesting level and backend.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import joblib.parallel
from joblib import Parallel, delayed
from joblib.parallel import get_active_backend

from children.common import emit, meet


def where() -> dict[str, object]:
    backend, _ = get_active_backend()
    return {
        "pid": os.getpid(),
        "level": backend.nesting_level,
        "backend": type(backend).__name__,
    }


def leaf(barrier: str, count: int) -> dict[str, object]:
    return {**where(), "together": meet(barrier, count)}


def level(fans: list[int]) -> dict[str, object]:
    here = where()
    if len(fans) == 1:
        with tempfile.TemporaryDirectory() as barrier:
            below = Parallel(n_jobs=2)(delayed(leaf)(barrier, fans[0]) for _ in range(fans[0]))
    else:
        below = Parallel(n_jobs=2)(delayed(level)(fans[1:]) for _ in range(fans[0]))
    return {"here": here, "below": below}


def main() -> None:
    fans = [int(fan) for fan in sys.argv[1].split(",")]
    root = {"here": where(), "below": Parallel(n_jobs=2)(delayed(level)(fans) for _ in range(1))}
    emit(
        {
            "tree": root,
            "finders": [type(f).__name__ for f in sys.meta_path],
            "nested": [n for n in joblib.parallel.BACKENDS if n.startswith("nested-")],
            "default": joblib.parallel.DEFAULT_BACKEND,
            "clock": joblib.parallel.time is time,
        }
    )


if __name__ == "__main__":
    main()
