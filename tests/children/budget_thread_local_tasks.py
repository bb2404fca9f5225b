"""A nested call whose tasks cannot leave their process, from a thread of a task or the task itself.

Each task gets a ``threading.Lock``, which cannot be pickled: as under plain
joblib's threads, the tasks must run in the caller's process. The budget has a
CPU free (3 tokens, 2 outer tasks), so a call whose caller holds no token (a
thread of the task) used to send its tasks to lanes only, and waited for ever
for one it could place there.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

from joblib import Parallel, delayed

from children.common import emit, meet


def leaf(lock: threading.Lock) -> int:
    with lock:
        return os.getpid()


def nested() -> list[int]:
    pids: list[int] = Parallel(n_jobs=2)(delayed(leaf)(threading.Lock()) for _ in range(4))
    return pids


def task(barrier: str, where: str) -> dict[str, object]:
    together = meet(barrier)  # both outer tasks hold their token: one CPU stays free
    if where == "thread":
        with ThreadPoolExecutor(1) as pool:
            pids = pool.submit(nested).result()
    else:
        pids = nested()
    return {"pid": os.getpid(), "leaf_pids": pids, "together": together}


def main() -> None:
    where = sys.argv[1]
    with tempfile.TemporaryDirectory() as barrier:
        emit(Parallel(n_jobs=2)(delayed(task)(barrier, where) for _ in range(2)))


if __name__ == "__main__":
    main()
