"""Nested calls with ``prefer="threads"`` and ``require="sharedmem"``: where their tasks ran."""

from __future__ import annotations

import os
import threading

from joblib import Parallel, delayed

from children.common import emit


def leaf(i: int) -> tuple[int, int]:
    return os.getpid(), threading.get_ident()


def task(kwargs: dict[str, str]) -> tuple[int, int, list[tuple[int, int]]]:
    inner = Parallel(n_jobs=2, **kwargs)(delayed(leaf)(i) for i in range(4))
    return os.getpid(), threading.get_ident(), inner


def main() -> None:
    hints = [{"prefer": "threads"}, {"require": "sharedmem"}]
    emit(Parallel(n_jobs=2)(delayed(task)(h) for h in hints))


if __name__ == "__main__":
    main()
