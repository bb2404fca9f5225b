"""A tree killed whole while a nested call's memory maps exist (the ``victim``).

``JOBLIB_TEMP_FOLDER`` points joblib's memory-map folders somewhere the test
looks. One outer task's nested call gives a fresh 1.6 MB array to leaves that
meet (the pool's other worker takes one, so the array is dumped), then spin
for ever. The root prints its budget directory once a memory-map folder
exists.
"""

from __future__ import annotations

import os
import tempfile
import threading

import numpy as np
from joblib import Parallel, delayed

from children.common import emit, meet, poll_until, spin


def leaf(barrier: str, array: np.ndarray) -> float:
    meet(barrier, 2)
    while True:
        spin()


def outer(barrier: str) -> list[float]:
    fresh = np.ones(200_000)
    results: list[float] = Parallel(n_jobs=2)(delayed(leaf)(barrier, fresh) for _ in range(2))
    return results


def main() -> None:
    from nest_joblib._private import budget

    maps = os.environ["JOBLIB_TEMP_FOLDER"]

    def report() -> None:
        poll_until(lambda: budget.own_ref() is not None and bool(os.listdir(maps)), 60.0)
        ref = budget.own_ref()
        assert ref is not None
        emit({"directory": ref.path, "maps": sorted(os.listdir(maps))})

    threading.Thread(target=report, daemon=True).start()
    with tempfile.TemporaryDirectory() as barrier:
        Parallel(n_jobs=2)(delayed(outer)(barrier) for _ in range(1))


if __name__ == "__main__":
    main()
