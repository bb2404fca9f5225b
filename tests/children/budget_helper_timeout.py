"""Offered tasks whose own nested call times out while its leaf is stuck.

Budget 2, a pool of 2: task ``b`` ends at once, so its worker stands by and
helps task ``a``'s nested call of 6 leaves. Each leaf makes a nested call
with ``timeout=0.3`` whose first leaf is stuck for 1.5 s, catches the
timeout and computes on, past the end of the stuck leaf, looking meanwhile
for a free token (as any process of the tree looking for a CPU would): with
both workers computing there must be none. Before, a helper went on with a
token that its stuck leaf gave back when it ended: from then on the CPU the
helper computed on looked free.
"""

from __future__ import annotations

import multiprocessing
import os
import time

from joblib import Parallel, delayed

from children.common import busy, count_free_tokens, emit
from nest_joblib._private import budget


def stuck(i: int) -> int:
    if i == 0:
        time.sleep(1.5)
    return i


def leaf(i: int) -> dict[str, object]:
    try:
        Parallel(n_jobs=2, timeout=0.3)(delayed(stuck)(j) for j in range(2))
        timed_out = False
    except multiprocessing.TimeoutError:
        timed_out = True
    ref = budget.given_ref()
    assert ref is not None
    free = 0
    for _ in range(16):  # past the end of the stuck leaf
        busy(0.1)
        free = max(free, count_free_tokens(ref))
    return {"pid": os.getpid(), "timed_out": timed_out, "free": free}


def a() -> list[dict[str, object]]:
    return list(Parallel(n_jobs=2)(delayed(leaf)(i) for i in range(6)))


def b() -> list[dict[str, object]]:
    return []


def main() -> None:
    leaves = [leaf for part in Parallel(n_jobs=2)([delayed(a)(), delayed(b)()]) for leaf in part]
    emit(
        {
            "pids": len({leaf["pid"] for leaf in leaves}),
            "timed_out": sum(1 for leaf in leaves if leaf["timed_out"]),
            "free": max(int(str(leaf["free"])) for leaf in leaves),
        }
    )


if __name__ == "__main__":
    main()
