"""A small nested program whose nested calls make memory maps (large array arguments).

Run beside joblib memory-map folders that are not this tree's (made by the
test, named with a pid that no process here has): they must survive it. It
prints how many memory-map folders its nested calls made (seen in
``JOBLIB_TEMP_FOLDER`` while they ran).
"""

from __future__ import annotations

import os

import numpy as np
from joblib import Parallel, delayed

from children.common import busy, emit


def leaf(array: np.ndarray) -> list[str]:
    busy(0.1)
    return os.listdir(os.environ["JOBLIB_TEMP_FOLDER"])


def outer(i: int) -> list[str]:
    fresh = np.full(200_000, float(i))  # 1.6 MB: above max_nbytes, dumped to a folder
    seen = Parallel(n_jobs=2)(delayed(leaf)(fresh) for _ in range(6))
    return [name for names in seen for name in names]


def main() -> None:
    seen = Parallel(n_jobs=2)(delayed(outer)(i) for i in range(4))
    emit(sorted({name for names in seen for name in names}))


if __name__ == "__main__":
    main()
