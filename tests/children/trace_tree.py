"""A known nested program, traced: two outer tasks, each a nested call of six leaves, one
of which nests once more. Every task returns (function, level, pid) for the test to compare
with the trace. Run with ``NEST_JOBLIB_TRACE`` and ``NEST_JOBLIB_CPUS=3``.
"""

from __future__ import annotations

import os
import sys

from joblib import Parallel, delayed

from children.common import busy, emit

#: A task: its function, level and process, and whether that process imported the trace module.
Ran = tuple[str, int, int, bool]
TRACE_MODULE = "nest_joblib._private.trace"


def _ran(name: str, level: int) -> Ran:
    return name, level, os.getpid(), TRACE_MODULE in sys.modules


def leaf(seconds: float) -> list[Ran]:
    busy(seconds)
    return [_ran("leaf", 2)]


def middle(deeper: bool) -> list[Ran]:
    busy(0.05)
    ran: list[Ran] = [_ran("middle", 1)]
    if deeper:
        for below in Parallel(n_jobs=2)(delayed(leaf)(0.05) for _ in range(2)):
            ran += below
    return ran


def outer(i: int) -> list[Ran]:
    ran: list[Ran] = [_ran("outer", 0)]
    for below in Parallel(n_jobs=3)(delayed(middle)(j == 0) for j in range(6)):
        ran += below
    return ran


def main() -> None:
    if sys.argv[1:] == ["context"]:
        import nest_joblib

        for _ in range(2):  # the second block's trace replaces the first's
            with nest_joblib.trace(os.environ["TRACE_TO"]) as path:
                results = Parallel(n_jobs=2)(delayed(outer)(i) for i in range(2))
        emit({"ran": [r for rs in results for r in rs], "path": path})
        return
    results = Parallel(n_jobs=2)(delayed(outer)(i) for i in range(2))
    ran = [r for rs in results for r in rs]
    emit({"ran": ran, "root": os.getpid(), "root_traced": TRACE_MODULE in sys.modules})


if __name__ == "__main__":
    main()
