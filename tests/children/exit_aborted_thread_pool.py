"""A program that exits while a joblib thread pool of a thread aborts: it must exit.

The interleaving, forced with two gates (no sleep decides it):

1. A daemon thread runs ``Parallel(n_jobs=2, prefer="threads")``: leaf 0
   blocks for ever (so the pool's cache never drains), leaf 1 waits.
2. The main thread returns; at exit multiprocessing's finalizer of the pool
   (``Pool._terminate_pool``) sets its worker handler to TERMINATE. Gate one
   holds the finalizer right there (``ThreadPool._help_stuff_finish``), gate
   two holds the worker handler before it reads its state again
   (``Pool._wait_for_updates``).
3. Leaf 1 sees TERMINATE and raises; joblib aborts the call in the daemon
   thread (``backend.terminate()``), which catches the error and opens both
   gates.

joblib's own ``terminate`` calls ``close()`` first, which writes CLOSE back
onto the handler: it then waits for a cache that never drains, and the exit
joins it for ever. Prints ``EXIT-REACHED`` as the last finalizer, only if
the exit got past the pool's.
"""

from __future__ import annotations

import multiprocessing.pool
import multiprocessing.util
import sys
import threading
import time
from typing import Any

from joblib import Parallel, delayed

GATE = 10.0
pools: list[Any] = []
aborted = threading.Event()
started = threading.Barrier(3)


def _record(init: Any) -> Any:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        pools.append(self)

    return __init__


def _hold_finalizer(original: Any) -> Any:
    def _help_stuff_finish(*args: Any) -> None:
        original(*args)
        aborted.wait(GATE)  # the handler is TERMINATE now: the abort runs meanwhile

    return staticmethod(_help_stuff_finish)


def _hold_handler(original: Any) -> Any:
    def _wait_for_updates(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        handler: Any = threading.current_thread()
        if pools and handler is pools[0]._worker_handler and handler._state != "RUN":
            aborted.wait(GATE)  # read its state only once the abort is done

    return staticmethod(_wait_for_updates)


def leaf(i: int) -> int:
    started.wait(GATE)
    if i == 0:
        threading.Event().wait()  # stuck: the pool's cache never drains
    handler = pools[0]._worker_handler
    while handler._state == "RUN":  # until the exit's finalizer runs
        time.sleep(0.001)
    raise ValueError("abort")


def run() -> None:
    try:
        Parallel(n_jobs=2, prefer="threads")(delayed(leaf)(i) for i in range(2))
    except ValueError:
        pass
    aborted.set()


def main() -> None:
    ThreadPool = multiprocessing.pool.ThreadPool
    ThreadPool.__init__ = _record(ThreadPool.__init__)  # type: ignore[method-assign]
    ThreadPool._help_stuff_finish = _hold_finalizer(ThreadPool._help_stuff_finish)  # type: ignore[attr-defined]
    Pool = multiprocessing.pool.Pool
    Pool._wait_for_updates = _hold_handler(Pool._wait_for_updates)  # type: ignore[attr-defined]
    threading.Thread(target=run, daemon=True).start()
    started.wait(GATE)
    # Runs after every other finalizer of priority 0 and above: past the pool's.
    multiprocessing.util.Finalize(None, print, ("EXIT-REACHED",), {"flush": True}, exitpriority=0)
    print("MAIN-DONE", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
