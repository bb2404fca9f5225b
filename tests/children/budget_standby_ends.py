"""A call whose spare worker has nothing to help, then a call that needs both workers."""

from __future__ import annotations

import os
import tempfile

from joblib import Parallel, delayed

from children.common import busy, emit, meet
from nest_joblib._private import budget


def alone(i: int) -> int:
    busy(0.3)  # no nested call: the spare worker has nothing to help with
    return os.getpid()


def pair(barrier: str) -> tuple[int, bool]:
    return os.getpid(), meet(barrier)


def main() -> None:
    Parallel(n_jobs=2)(delayed(alone)(i) for i in range(1))
    with tempfile.TemporaryDirectory() as barrier:
        second = Parallel(n_jobs=2)(delayed(pair)(barrier) for _ in range(2))
    ref = budget.own_ref()
    assert ref is not None
    left = [n for n in os.listdir(ref.path) if n.startswith("standby-")]
    emit({"second": second, "left": left})


if __name__ == "__main__":
    main()
