"""Two outer tasks that hold both CPUs, each with a nested call of 4 tasks: where they ran."""

from __future__ import annotations

import os
import tempfile

import psutil
from joblib import Parallel, delayed

from children.common import emit, meet


def task(barrier: str) -> dict[str, object]:
    # Wait until both outer tasks hold their CPU, so none is free below.
    together = meet(barrier)
    pids = Parallel(n_jobs=2)(delayed(os.getpid)() for _ in range(4))
    return {
        "pid": os.getpid(),
        "leaf_pids": pids,
        "children": len(psutil.Process().children(recursive=True)),
        "together": together,
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as barrier:
        emit(Parallel(n_jobs=2)(delayed(task)(barrier) for _ in range(2)))


if __name__ == "__main__":
    main()
