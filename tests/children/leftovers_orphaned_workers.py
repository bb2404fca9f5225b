"""A process that made a loky pool dies: do its workers outlive it?

    leftovers_orphaned_workers.py MODE

The process running this makes a pool of 2 loky workers, prints their pids,
and kills itself (SIGKILL, as loky kills a worker when joblib aborts). MODE
"idle": the workers first ran a task, and wait for the next; "early": it dies
right after starting them, while they still import joblib (by the time they
could look, ``os.getppid()`` names init, not the dead process). Loky's own
workers live on until their idle timeout (300 s).
"""

from __future__ import annotations

import json
import os
import signal
import sys

from joblib.externals.loky import get_reusable_executor


def main() -> None:
    executor = get_reusable_executor(max_workers=2, timeout=300)
    if sys.argv[1] == "idle":
        list(executor.map(abs, range(4)))
    else:
        executor.submit(abs, 1)
    print(json.dumps(sorted(executor._processes)), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main()
