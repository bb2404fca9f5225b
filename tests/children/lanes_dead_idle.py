"""A lane whose process died while idle (the OOM killer, say), then a call that needs it.

Budget 3, a pool of 2: the outer task's first nested call starts a lane on
the free CPU; the lane's process is then killed while it idles, and a second
nested call follows. Its tasks must all run (before, the one handed to the
dead lane failed without having run).
"""

from __future__ import annotations

import os
import signal
import time

import psutil
from joblib import Parallel, delayed

from children.common import beside_a_holder, busy, meet


def leaf(i: int) -> list[int]:
    busy(0.3)
    return [i, os.getpid()]


def outer(barrier: str, done: str) -> dict[str, object]:
    assert meet(barrier, 2)  # both outer tasks hold a worker: the third CPU is free
    first = Parallel(n_jobs=2)(delayed(leaf)(i) for i in range(4))
    lanes = psutil.Process().children()
    for lane in lanes:  # not reaped here: the lane's executor sees its process die
        lane.send_signal(signal.SIGKILL)
    time.sleep(0.5)
    try:
        second = Parallel(n_jobs=2)(delayed(leaf)(i) for i in range(4))
        error = None
    except Exception as exc:
        second, error = [], f"{type(exc).__name__}: {exc}"
    open(os.path.join(done, "done"), "x").close()
    return {
        "killed": len(lanes),
        "first": [i for i, _ in first],
        "second": [i for i, _ in second],
        "error": error,
    }


if __name__ == "__main__":
    beside_a_holder(outer)
