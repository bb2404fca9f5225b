"""``importlib.reload(joblib.parallel)``, then a nested run with the reloaded module."""

from __future__ import annotations

import os

from children.counting import report


def leaf(j: int) -> int:
    return os.getpid()


def mid(i: int) -> list[object]:
    import joblib.parallel
    from joblib.parallel import Parallel, delayed

    inner = Parallel(n_jobs=2)(delayed(leaf)(j) for j in range(2))
    return [os.getpid(), joblib.parallel.DEFAULT_BACKEND, inner]


def main() -> None:
    import importlib

    import joblib  # noqa: F401
    import joblib.parallel as jp

    first = jp.register_parallel_backend
    module = importlib.reload(jp)
    assert module is jp

    from joblib.parallel import Parallel, delayed

    out = Parallel(n_jobs=2)(delayed(mid)(i) for i in range(2))
    assert jp.__spec__ is not None
    report(
        parent=os.getpid(),
        out=out,
        replaced=jp.register_parallel_backend is not first,
        loader=type(jp.__loader__).__name__,
        spec_loader=type(jp.__spec__.loader).__name__,
    )


if __name__ == "__main__":
    main()
