"""The upstream package's custom-backend example: ``nested-custom`` for a LokyBackend subclass."""

from __future__ import annotations

import os
import time

from joblib import Parallel, delayed
from joblib.parallel import (
    LokyBackend,
    get_active_backend,
    parallel_backend,
    register_parallel_backend,
)

from children.common import emit
from nest_joblib import apply, is_active, nested_backends


class MyBackend(LokyBackend):  # type: ignore[misc]
    pass


def leaf(i: int) -> tuple[int, str, int]:
    time.sleep(0.3)
    backend = get_active_backend()[0]
    return os.getpid(), type(backend).__name__, backend.nesting_level


def task(i: int) -> tuple[int, list[tuple[int, str, int]]]:
    return os.getpid(), Parallel(n_jobs=2)(delayed(leaf)(j) for j in range(2))


def main() -> None:
    apply()
    register_parallel_backend("custom", MyBackend)
    with parallel_backend("nested-custom"):
        runs = Parallel(n_jobs=2)(delayed(task)(i) for i in range(1))
    emit({"runs": runs, "active": is_active(), "nested": nested_backends()})


if __name__ == "__main__":
    main()
