"""Two top-level calls of two widths from two threads: loky resizes under a dispatching call.

Call A (``n_jobs=2``) runs batches of one slow task each; joblib dispatches
its next batch from loky's manager thread, in the callback of the batch that
ended. Call B (``n_jobs=3``) starts in another thread while A's batches run:
loky resizes its one executor, holding the lock that ``submit`` takes, until
A's running batches end. Plain joblib submits A's next batch from the manager
thread, which then waits for that lock, and no batch of A ends any more: both
calls hang. The plugin submits from a thread of its own.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time

import psutil
from joblib import Parallel, delayed

from children.common import emit, poll_until


def task(i: int, started: str) -> int:
    if i == 0:
        open(started, "w").close()
    time.sleep(0.3)
    return i


def main() -> None:
    started = os.path.join(tempfile.mkdtemp(), "started")
    results: dict[str, int] = {}

    def a() -> None:
        out = Parallel(n_jobs=2, batch_size=1)(delayed(task)(i, started) for i in range(12))
        results["a"] = sum(out)

    def b() -> None:
        poll_until(lambda: os.path.exists(started), 60.0)
        time.sleep(0.05)  # A's first batches run: the resize waits for them
        results["b"] = sum(Parallel(n_jobs=3)(delayed(abs)(-i) for i in range(6)))

    threads = [threading.Thread(target=f, daemon=True) for f in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(float(sys.argv[1]) if len(sys.argv) > 1 else 60.0)
    os.unlink(started)
    os.rmdir(os.path.dirname(started))
    emit({"results": results, "hung": [t.is_alive() for t in threads]})
    if any(t.is_alive() for t in threads):  # loky's exit would wait for the hung calls
        for child in psutil.Process().children(recursive=True):
            child.kill()  # and its workers would hold the caller's pipes
        os._exit(0)


if __name__ == "__main__":
    main()
