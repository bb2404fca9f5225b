"""The start-up module is there, but the ``nest_joblib`` package cannot be imported."""

from __future__ import annotations

import sys

from children.common import emit


def main() -> None:
    sys.modules["nest_joblib"] = None  # type: ignore[assignment]  # as if gone or broken
    import joblib.parallel
    from joblib import Parallel, delayed

    squares = Parallel(n_jobs=2)(delayed(pow)(i, 2) for i in range(4))
    emit({"default": joblib.parallel.DEFAULT_BACKEND, "squares": squares})


if __name__ == "__main__":
    main()
