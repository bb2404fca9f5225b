"""Lanes that start just as their process exits.

Each of argv[2] outer tasks starts a lane, as a nested call's feeder does,
in a thread that waits for the root to exit: the root touches argv[1] once
it has their results, and its pool's workers then exit while their lanes
start. A lane's process reads its semaphores by name from the process it
serves: were they gone, it would print loky's traceback to the stdout it
inherited, after the root's report.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from joblib import Parallel, delayed

from children.common import emit, spin_until


def start_a_lane_at_exit(marker: str) -> None:
    from nest_joblib._private.scheduling.lanes import lanes

    spin_until(Path(marker).exists, 30)
    try:
        lanes().start(dict(os.environ))
    except Exception:  # refused at exit: as a feeder does, it would stay inline
        pass


def outer(marker: str) -> int:
    threading.Thread(target=start_a_lane_at_exit, args=(marker,), daemon=True).start()
    return os.getpid()


def main() -> None:
    marker, tasks = sys.argv[1], int(sys.argv[2])
    pids = Parallel(n_jobs=tasks)(delayed(outer)(marker) for _ in range(tasks))
    emit(len(pids))
    Path(marker).touch()


if __name__ == "__main__":
    main()
