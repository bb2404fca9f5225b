"""A lane-start thread that cannot start gives its token back; the call completes.

Budget 3, a pool of 2: the outer task's nested call finds a CPU free, takes
its token and starts a thread to start a lane there, but no thread can start
(``RuntimeError: can't start new thread``, patched in for that thread).
Before, the token passed to the thread was never released (and the call
counted a lane starting for ever); the feeder died, failing the call.
"""

from __future__ import annotations

import os
import threading
from typing import Any

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
    from nest_joblib._private import budget

    refused: list[str] = []
    start = threading.Thread.start

    def refusing(thread: threading.Thread) -> None:
        if thread.name == "nest-joblib-lane-start":
            refused.append(thread.name)
            raise RuntimeError("can't start new thread")
        start(thread)

    threading.Thread.start = refusing  # type: ignore[method-assign,assignment]
    assert meet(barrier, 2)
    try:
        results, error = Parallel(n_jobs=2)(delayed(leaf)(i) for i in range(6)), None
    except Exception as exc:
        results, error = [], f"{type(exc).__name__}: {exc}"
    threading.Thread.start = start  # type: ignore[method-assign]
    ref = budget.given_ref()
    assert ref is not None
    freed = poll_until(lambda: count_free_tokens(ref) == 1, 5)
    open(os.path.join(done, "done"), "x").close()
    return {"results": results, "error": error, "freed": freed, "refused": len(refused)}


if __name__ == "__main__":
    beside_a_holder(outer)
