"""A budget wider than the pool: lanes take the CPUs that no worker of the pool has.

Budget 8, an outer loop of 2 (``Parallel(n_jobs=2)``), each task a nested
``Parallel(n_jobs=8)`` of 8 leaves that compute at one barrier until 8 of
them compute at once: in 8 processes, as 2 workers run the outer tasks and
no worker is spare, so 6 lanes must start. Plain joblib runs them in threads
of the 2 workers (2 processes). Each fold also says how many lanes it started.
"""

from __future__ import annotations

import os
import tempfile

from joblib import Parallel, delayed

from children.common import emit, meet


def leaf(barrier: str) -> list[object]:
    return [os.getpid(), meet(barrier, 8, timeout=60.0)]


def outer(barrier: str) -> tuple[list[list[object]], int]:
    from nest_joblib._private.scheduling.lanes import lanes

    leaves = list(Parallel(n_jobs=8)(delayed(leaf)(barrier) for _ in range(8)))
    return leaves, lanes().started


def main() -> None:
    with tempfile.TemporaryDirectory() as barrier:
        folds = list(Parallel(n_jobs=2)(delayed(outer)(barrier) for _ in range(2)))
    leaves = [leaf for part, _ in folds for leaf in part]
    emit(
        {
            "met": all(met for _, met in leaves),
            "pids": len({pid for pid, _ in leaves}),
            "lanes": sum(started for _, started in folds),
        }
    )


if __name__ == "__main__":
    main()
