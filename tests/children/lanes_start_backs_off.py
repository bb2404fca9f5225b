"""Lanes that cannot start: the next start waits, doubling from 50 ms to 2 s.

Budget 3, a pool of 2: the outer task's nested call of 1.5 s finds a CPU
free, but every lane start in its process fails. Before, it was retried at
once, over and over, for as long as the call had tasks queued.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from joblib import Parallel, delayed

from children.common import busy, emit, meet, spin_until


def leaf(i: int) -> int:
    busy(0.25)
    return i


def outer(barrier: str, done: str) -> dict[str, Any]:
    from nest_joblib._private import contract

    attempts = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(1)
        raise OSError("no more processes here")

    contract.new_lane = refuse
    assert meet(barrier, 2)
    results = Parallel(n_jobs=2)(delayed(leaf)(i) for i in range(6))
    open(os.path.join(done, "done"), "x").close()
    return {"results": results, "attempts": len(attempts)}


def hold(barrier: str, done: str) -> None:
    assert meet(barrier, 2)
    spin_until(lambda: bool(os.listdir(done)), 60)


def main() -> None:
    with tempfile.TemporaryDirectory() as barrier, tempfile.TemporaryDirectory() as done:
        out, _ = Parallel(n_jobs=2)([delayed(outer)(barrier, done), delayed(hold)(barrier, done)])
    emit(out)


if __name__ == "__main__":
    main()
