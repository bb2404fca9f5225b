"""Two top-level calls from two threads of the root: the second's batches start uncovered.

Budget 2, loky's one executor of 2 workers. Call A's two tasks compute and
hold both tokens; call B (two outer tasks, each with a nested call of four
leaves) is submitted meanwhile, and its batches wait in loky's queue: no token
is free for them. Then a hook (a file) ends A. A's workers move on to B's
batches: the tokens A held must cover them at once, or the nested calls in
those workers find them free and start lanes beside the two workers that
compute. Every computing task logs ``[pid, start, end]``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time

from joblib import Parallel, delayed
from joblib.externals.loky import reusable_executor

from children.common import busy, emit, peak_processes, poll_until, spin_until


def hold(i: int, folder: str) -> list[list[float]]:
    start = time.time()
    open(os.path.join(folder, f"a{i}"), "w").close()
    spin_until(lambda: os.path.exists(os.path.join(folder, "end-a")), 60.0)
    return [[os.getpid(), start, time.time()]]


def leaf(seconds: float) -> list[list[float]]:
    start = time.time()
    busy(seconds)
    return [[os.getpid(), start, time.time()]]


def outer(i: int) -> list[list[float]]:
    spans = Parallel(n_jobs=2)(delayed(leaf)(0.3) for _ in range(4))
    return [span for leaf_spans in spans for span in leaf_spans]


def pending() -> int:
    executor = reusable_executor._executor
    return 0 if executor is None else len(executor._pending_work_items)


def main() -> None:
    folder = tempfile.mkdtemp()
    spans: dict[str, list[list[float]]] = {}

    def call_a() -> None:
        out = Parallel(n_jobs=2)(delayed(hold)(i, folder) for i in range(2))
        spans["a"] = [span for task in out for span in task]

    def call_b() -> None:
        out = Parallel(n_jobs=2)(delayed(outer)(i) for i in range(2))
        spans["b"] = [span for task in out for span in task]

    a = threading.Thread(target=call_a)
    a.start()
    poll_until(lambda: all(os.path.exists(os.path.join(folder, f"a{i}")) for i in range(2)), 60)
    b = threading.Thread(target=call_b)
    b.start()
    poll_until(lambda: pending() == 4, 60)  # B's two batches wait behind A's two
    open(os.path.join(folder, "end-a"), "w").close()  # the hook: A ends
    a.join()
    b.join()
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))
    os.rmdir(folder)
    every = spans["a"] + spans["b"]
    emit({"leaves": len(spans["b"]), "peak": peak_processes(every)})
    sys.stdout.flush()


if __name__ == "__main__":
    main()
