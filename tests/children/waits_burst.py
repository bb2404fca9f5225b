"""A nested call of tasks that wait reaches its width at once, and what computes beside them.

    waits_burst.py barrier | mixed-numpy | mixed-python | nested

"barrier": one outer task whose nested ``Parallel(n_jobs=32)`` runs 32
leaves that wait on a ``threading.Barrier(32)`` given to them as an argument
(it cannot be pickled: every leaf stays in the outer task's process). A hook
counts the wait watcher's ticks: the report has the ticks from the first
stand-in (the first time the watcher saw the leaves wait) to the last arrival.

"mixed-numpy" / "mixed-python": one outer task whose nested
``Parallel(n_jobs=16)`` alternates leaves that sleep 0.5 s and leaves that
compute about 0.15 s (numpy sorts that release the GIL, or pure Python); the
report has the spans of the computing leaves (pid, start, end), and the
peaks of leaves and of processes computing at once.

"nested": one outer task whose nested ``Parallel(n_jobs=4)`` runs 4 tasks that
each run a nested call of 2 leaves that sleep 0.3 s; the report has the
stand-ins started at once for the call of 4 (its tasks wait for their own
calls: that is no wait of theirs, and they start no burst).
"""

from __future__ import annotations

import os
import sys
import threading
import time

from children.common import busy, emit, peak, peak_processes

#: In the outer task's process: the watcher's ticks so far, the tick of the first stand-in.
_ticks = [0]
_first_stand_in: list[int] = []


def _count_ticks() -> None:
    """Hooks: count the watcher's ticks, note the tick of its first stand-in."""
    from nest_joblib._private import waits
    from nest_joblib._private.scheduling import local

    looks, stand_in = waits.Watcher._idle_tokens, local.LocalRunners.stand_in

    def counted(self: waits.Watcher) -> int:
        _ticks[0] += 1
        return looks(self)

    def noted(self: local.LocalRunners, *count: int) -> int:
        started = stand_in(self, *count)
        if started and not _first_stand_in:
            _first_stand_in.append(_ticks[0])
        return started

    waits.Watcher._idle_tokens = counted  # type: ignore[method-assign]
    local.LocalRunners.stand_in = noted  # type: ignore[method-assign,assignment]


def arrive(barrier: threading.Barrier) -> int:
    """Wait at the barrier; the watcher's tick at arrival (-1: the barrier broke)."""
    tick = _ticks[0]
    try:
        barrier.wait(30)
    except threading.BrokenBarrierError:
        return -1
    return tick


def barrier_call() -> dict[str, object]:
    from joblib import Parallel, delayed

    _count_ticks()
    barrier = threading.Barrier(32)
    arrivals = Parallel(n_jobs=32)(delayed(arrive)(barrier) for _ in range(32))
    first = _first_stand_in[0] if _first_stand_in else None
    return {"arrivals": arrivals, "first_stand_in": first}


def computes(numpy: bool) -> list[float]:
    start = time.time()
    if numpy:
        import numpy as np

        rng = np.random.default_rng(0)
        end = start + 0.15
        while time.time() < end:
            np.sort(rng.random(200_000))  # releases the GIL
    else:
        busy(0.15)
    return [os.getpid(), start, time.time()]


def sleeps() -> None:
    time.sleep(0.5)


def mixed_call(numpy: bool) -> list[list[float]]:
    from joblib import Parallel, delayed

    tasks = [delayed(sleeps)() if i % 2 == 0 else delayed(computes)(numpy) for i in range(16)]
    return [span for span in Parallel(n_jobs=16)(tasks) if span is not None]


def short_sleep() -> None:
    time.sleep(0.3)


def runs_a_nested_call() -> None:
    from joblib import Parallel, delayed

    Parallel(n_jobs=2)(delayed(short_sleep)() for _ in range(2))


def nested_calls() -> list[int]:
    """A call of 4 tasks that each run a nested call of 2 sleeping leaves: its bursts."""
    from joblib import Parallel, delayed

    from nest_joblib._private.scheduling import local

    stand_in, bursts = local.LocalRunners.stand_in, []

    def noted(self: local.LocalRunners, *count: int) -> int:
        started = stand_in(self, *count)
        if self._queue.n_jobs == 4:
            bursts.append(started)
        return started

    local.LocalRunners.stand_in = noted  # type: ignore[method-assign,assignment]
    Parallel(n_jobs=4)(delayed(runs_a_nested_call)() for _ in range(4))
    return bursts


def main() -> None:
    from joblib import Parallel, delayed

    mode = sys.argv[1]
    if mode == "nested":
        [bursts] = Parallel(n_jobs=2)(delayed(nested_calls)() for _ in range(1))
        emit({"bursts": bursts})
        return
    if mode == "barrier":
        [report] = Parallel(n_jobs=2)(delayed(barrier_call)() for _ in range(1))
        emit(report)
        return
    [spans] = Parallel(n_jobs=2)(delayed(mixed_call)(mode == "mixed-numpy") for _ in range(1))
    emit(
        {
            "computed": len(spans),
            "leaves": peak([start, end] for _, start, end in spans),
            "processes": peak_processes(spans),
        }
    )


if __name__ == "__main__":
    main()
