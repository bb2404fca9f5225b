"""A nested variant behaves like its base: generators, batching, errors, timeouts."""

from __future__ import annotations

import time

import joblib
from joblib import Parallel, delayed

from children.common import emit


def square(i: int) -> int:
    return i * i


def fail(i: int) -> int:
    if i == 3:
        raise KeyError(f"leaf {i}")
    return i


def slow(i: int) -> None:
    time.sleep(5)  # the call's timeout (0.5 s) ends it


def task(kind: str) -> object:
    if kind == "generator":
        gen = Parallel(n_jobs=2, return_as="generator")(delayed(square)(i) for i in range(6))
        return list(gen)
    if kind == "unordered":
        gen = Parallel(n_jobs=2, return_as="generator_unordered")(
            delayed(square)(i) for i in range(6)
        )
        return sorted(gen)
    if kind == "batched":
        return Parallel(n_jobs=2, batch_size=4)(delayed(square)(i) for i in range(10))
    if kind == "error":
        try:
            Parallel(n_jobs=2)(delayed(fail)(i) for i in range(6))
        except KeyError as exc:
            return ["KeyError", str(exc)]
    if kind == "timeout":
        try:
            Parallel(n_jobs=2, timeout=0.5)(delayed(slow)(i) for i in range(2))
        except Exception as exc:
            return type(exc).__name__
    return "no error"


def main() -> None:
    kinds = ["generator", "batched", "error", "timeout"]
    if tuple(map(int, joblib.__version__.split(".")[:2])) >= (1, 4):
        kinds.append("unordered")  # new in joblib 1.4
    emit(dict(zip(kinds, Parallel(n_jobs=2)(delayed(task)(k) for k in kinds))))


if __name__ == "__main__":
    main()
