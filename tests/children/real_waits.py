"""Leaves that wait overlap, as joblib's threads do, whatever the CPU budget.

    real_waits.py MODE [pin]

MODE "busy": two outer tasks hold both CPUs, each with a nested ``n_jobs=4``
call of 4 leaves; "one": one outer task, a nested ``n_jobs=8`` call of 8
leaves (on a budget larger than the outer pool, its call finds free CPUs);
"noclock": as "busy", with the threads' CPU clocks made unavailable in the
workers (as on macOS and Windows); "top": no nesting, a top-level
``n_jobs=8`` call of 8 leaves that wait 5 s at most, reporting the most in
flight at once (joblib 1.3 and 1.4 start 5 of them first on 2 CPUs, 1.5 on
all 8). The leaves of a call wait on one barrier that
sleeps: they all reach it only if they are in flight at once. With "pin",
this process (and so every process of the tree) first pins itself to one CPU.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from children.common import emit, meet, peak, poll_until


def waits(barrier: str, count: int) -> bool:
    """Arrive, then sleep until ``count`` leaves arrived (30 s at most)."""
    with open(os.path.join(barrier, f"{os.getpid()}-{time.monotonic_ns()}"), "x"):
        pass
    return poll_until(lambda: len(os.listdir(barrier)) >= count, 30.0)


def spans_waiting(barrier: str, count: int) -> list[float]:
    """Arrive, wait until ``count`` leaves are here (5 s at most), leave: the span."""
    start, here = time.time(), os.path.join(barrier, f"{os.getpid()}-{time.monotonic_ns()}")
    with open(here, "x"):
        pass
    poll_until(lambda: len(os.listdir(barrier)) >= count, 5.0)
    os.remove(here)
    return [start, time.time()]


def outer(n_jobs: int, together: str | None, clock: bool = True) -> object:
    from joblib import Parallel, delayed

    if not clock and hasattr(time, "pthread_getcpuclockid"):
        del time.pthread_getcpuclockid  # this worker's threads have no CPU clock now
    held = meet(together, 2) if together else True  # both outer tasks hold their CPU
    with tempfile.TemporaryDirectory() as barrier:
        met = Parallel(n_jobs=n_jobs)(delayed(waits)(barrier, n_jobs) for _ in range(n_jobs))
    return {"held": held, "met": met}


def main() -> None:
    mode, pin = sys.argv[1], sys.argv[2:] == ["pin"]
    if pin:  # before joblib is imported: it sees one CPU, and so does the budget
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from joblib import Parallel, delayed

    if mode in ("busy", "noclock"):
        with tempfile.TemporaryDirectory() as together:
            tasks = (delayed(outer)(4, together, mode == "busy") for _ in range(2))
            emit(Parallel(n_jobs=2)(tasks))
    elif mode == "top":
        with tempfile.TemporaryDirectory() as barrier:
            emit(peak(Parallel(n_jobs=8)(delayed(spans_waiting)(barrier, 8) for _ in range(8))))
    else:
        emit(Parallel(n_jobs=2)(delayed(outer)(8, None) for _ in range(1)))


if __name__ == "__main__":
    main()
