"""A running tree for ``nest_joblib.info()`` and ``nest-joblib status``.

    python live_tree.py SIGNALS

Budget 3, a top-level pool of 2: task ``a`` makes a nested call of 2 leaves,
one of which goes to another process (a CPU is free); task ``b`` only waits.
Every task and leaf leaves a ``ready-*`` file in SIGNALS once it runs, then
computes until the file ``go`` appears there (the test looks at the tree
meanwhile). The report has ``info()`` as the root saw it before the call and
once its tokens were free after it, as each task saw it, and the most tasks
that ``a``'s process had placed elsewhere.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from joblib import Parallel, delayed

import nest_joblib
from children.common import emit, poll_until, spin_until


def wait_for_go(signals: str, name: str) -> int:
    with open(os.path.join(signals, f"ready-{name}-{os.getpid()}"), "x"):
        pass
    assert spin_until(lambda: os.path.exists(os.path.join(signals, "go")), 60)
    return os.getpid()


def task(signals: str, name: str) -> dict[str, object]:
    seen = nest_joblib.info()
    placed = [0]
    done = threading.Event()

    def watch() -> None:  # this process's view while its nested call runs
        while not done.wait(0.01):
            placed[0] = max(placed[0], nest_joblib.info()["placed_elsewhere"])

    if name == "a":
        watcher = threading.Thread(target=watch)
        watcher.start()
        leaves = Parallel(n_jobs=2)(delayed(wait_for_go)(signals, f"leaf{i}") for i in range(2))
        done.set()
        watcher.join()
    else:
        leaves = [wait_for_go(signals, "b")]
    return {"name": name, "info": seen, "placed": placed[0], "leaves": leaves}


def main() -> None:
    signals = sys.argv[1]
    before = nest_joblib.info()
    tasks = Parallel(n_jobs=2)(delayed(task)(signals, name) for name in "ab")
    returned = time.monotonic()
    assert poll_until(lambda: nest_joblib.info()["free"] == 3, 5)
    emit(
        {
            "pid": os.getpid(),
            "before": before,
            "after": nest_joblib.info(),
            "free_after": time.monotonic() - returned,
            "tasks": tasks,
        }
    )


if __name__ == "__main__":
    main()
