"""``Parallel()`` (``n_jobs=None``) at the top and nested: where the tasks ran."""

from __future__ import annotations

import os

from joblib import Parallel, delayed

from children.common import emit


def leaf(i: int) -> int:
    return os.getpid()


def task(i: int) -> tuple[int, list[int]]:
    return os.getpid(), Parallel()(delayed(leaf)(j) for j in range(3))


def main() -> None:
    top = Parallel()(delayed(leaf)(i) for i in range(2))
    nested = Parallel(n_jobs=2)(delayed(task)(i) for i in range(2))
    emit({"main": os.getpid(), "top": top, "nested": nested})


if __name__ == "__main__":
    main()
