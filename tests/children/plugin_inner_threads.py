"""``parallel_config(inner_max_num_threads=3)``: what each nested level gets."""

from __future__ import annotations

import os

from joblib import Parallel, delayed, parallel_config
from joblib.parallel import get_active_backend

from children.common import emit


def seen() -> list[object]:
    backend, _ = get_active_backend()
    return [
        backend.nesting_level,
        backend.inner_max_num_threads,
        os.environ.get("OMP_NUM_THREADS"),
    ]


def outer(i: int) -> dict[str, object]:
    nested = Parallel(n_jobs=2)
    leaves = nested(delayed(seen)() for _ in range(2))
    backend = nested._backend
    return {
        "task": seen(),
        "nested_call": [backend.nesting_level, backend.inner_max_num_threads],
        "leaves": leaves,
    }


def main() -> None:
    with parallel_config(backend="nested-loky", inner_max_num_threads=3):
        emit(Parallel(n_jobs=2)(delayed(outer)(i) for i in range(2))[0])


if __name__ == "__main__":
    main()
