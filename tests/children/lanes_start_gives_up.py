"""A lane whose process never answers is given up: its token is freed, the call completes.

Budget 3, a pool of 2: the outer task's nested call finds a CPU free and
starts a lane, whose first task (``_warm_up``) never answers in time (a
hook makes it sleep 20 s; the give-up time is lowered to 1 s). The start
gives up: the lane's process is ended, its token freed, and the next start
backs off as after a failed start; the call's tasks run in its caller.
Before, the start waited for ever, holding its token for the life of the
process and keeping it from exiting.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import psutil
from joblib import Parallel, delayed

from children.common import (
    beside_a_holder,
    busy,
    count_free_tokens,
    meet,
    poll_until,
)


def leaf(i: int) -> int:
    busy(0.25)
    return i


def outer(barrier: str, done: str) -> dict[str, Any]:
    from nest_joblib._private import budget, contract
    from nest_joblib._private.scheduling import lanes

    made: list[Any] = []
    new_lane = contract.new_lane

    def recorded(*args: Any, **kwargs: Any) -> Any:
        made.append(1)
        return new_lane(*args, **kwargs)

    warnings: list[str] = []
    contract.new_lane = recorded
    lanes._START_TIMEOUT = 1.0
    lanes._warm_up = functools.partial(time.sleep, 20)  # type: ignore[assignment]
    lanes.warn = warnings.append  # type: ignore[attr-defined,assignment]
    assert meet(barrier, 2)
    results = Parallel(n_jobs=2)(delayed(leaf)(i) for i in range(6))
    ref = budget.given_ref()
    assert ref is not None
    # A start may still be giving up (one more was tried after the first gave up).
    freed = poll_until(lambda: count_free_tokens(ref) == 1, 8)
    alive = [p for p in psutil.Process().children() if p.status() != psutil.STATUS_ZOMBIE]
    open(os.path.join(done, "done"), "x").close()
    return {
        "results": results,
        "freed": freed,
        "attempts": len(made),
        "warnings": len(warnings),
        "children": len(alive),
    }


if __name__ == "__main__":
    beside_a_holder(outer)
