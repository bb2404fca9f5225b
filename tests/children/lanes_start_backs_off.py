"""Lanes that cannot start: the next start waits, doubling from 50 ms to 2 s.

Budget 3, a pool of 2: the outer task's nested call of 1.5 s finds a CPU
free, but every lane start in its process fails. Before, it was retried at
once, over and over, for as long as the call had tasks queued.
"""

from __future__ import annotations

import os
from typing import Any

from joblib import Parallel, delayed

from children.common import beside_a_holder, busy, meet


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


if __name__ == "__main__":
    beside_a_holder(outer)
