"""A top-level call with ``backend="loky"`` named: what its nested calls got."""

from __future__ import annotations

import os

from joblib import Parallel, delayed

from children.common import emit


def leaf(i: int) -> tuple[int, str]:
    from joblib.parallel import get_active_backend

    return os.getpid(), type(get_active_backend()[0]).__name__


def task(i: int) -> tuple[int, list[tuple[int, str]]]:
    return os.getpid(), Parallel(n_jobs=2)(delayed(leaf)(j) for j in range(2))


def main() -> None:
    emit(Parallel(n_jobs=2, backend="loky")(delayed(task)(i) for i in range(2)))


if __name__ == "__main__":
    main()
