"""Large arrays reach the leaves of a nested call as memory maps, wherever they run.

One outer task (the pool's other worker stands by and helps), whose nested
call's leaves meet at a spinning barrier: two leaves so compute at once, one
of them in another process. argv[1]: the nested call's ``max_nbytes``
("default" or "none"); argv[2]: a folder for its memory maps; argv[3]: "ok",
or "fail" (once they met, the leaves outside the caller raise, naming the
file their fresh array maps).
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np
from joblib import Parallel, delayed

from children.common import emit, meet


def describe(array: np.ndarray) -> list[object]:
    """Its type, and the file it maps (``None``: in memory)."""
    base: object = array
    while base is not None and not isinstance(base, np.memmap):
        base = getattr(base, "base", None)
    return [type(array).__name__, getattr(base, "filename", None)]


def leaf(
    barrier: str, given: np.ndarray, fresh: np.ndarray, small: np.ndarray, fail_from: int
) -> object:
    together = meet(barrier, 2)
    if fail_from and os.getpid() != fail_from:
        raise ValueError(f"mapped {describe(fresh)[1]}")
    return {
        "pid": os.getpid(),
        "together": together,
        "given": describe(given),
        "fresh": describe(fresh),
        "small": describe(small),
    }


def outer(given: np.ndarray, max_nbytes: str, folder: str, fail: bool) -> object:
    fresh = np.arange(400_000, dtype=np.float64)  # 3.2 MB, made in this task
    small = np.arange(10, dtype=np.float64)
    leaves: object = None
    with tempfile.TemporaryDirectory() as barrier:
        call = Parallel(
            n_jobs=2, max_nbytes=None if max_nbytes == "none" else "1M", temp_folder=folder
        )
        try:
            fail_from = os.getpid() if fail else 0
            leaves = call(delayed(leaf)(barrier, given, fresh, small, fail_from) for _ in range(4))
        except ValueError as exc:
            leaves = str(exc)
    left = [name for _, _, names in os.walk(folder) for name in names]
    return {"pid": os.getpid(), "given": describe(given), "leaves": leaves, "left": left}


def main() -> None:
    given = np.ones(500_000)  # 4 MB, made in the root: the outer task gets joblib's memory map
    max_nbytes, folder, fail = sys.argv[1], sys.argv[2], sys.argv[3] == "fail"
    emit(Parallel(n_jobs=2)(delayed(outer)(given, max_nbytes, folder, fail) for _ in range(1))[0])


if __name__ == "__main__":
    main()
