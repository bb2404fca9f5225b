"""Helpers of the child programs: standard library only, and nothing heavy at import.

Worker processes import this module to unpickle the functions defined here
(by reference), so it must import nothing that a case inspects: no joblib,
no ``nest_joblib``, no ``threading`` or ``typing``.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from _typeshed.importlib import MetaPathFinderProtocol

    from nest_joblib._private.budget import BudgetRef, Token

#: Variables of ours that must not leak from the developer's shell into tests.
OUR_VARIABLES = (
    "NEST_JOBLIB",
    "NEST_JOBLIB_BACKENDS",
    "NEST_JOBLIB_CPUS",
    "NEST_JOBLIB_DEBUG",
    "NEST_JOBLIB_ABLATE",  # benchmarks only (benchmarks/README.md)
    "NEST_JOBLIB_TRACE",
    "_NEST_JOBLIB_PARENT",  # set where joblib is patched, for the workers started there
)
#: Numbers this process's arrivals at barriers (threads of one process may arrive at once).
_arrivals = itertools.count()


def spin() -> int:
    """A moment of pure-Python work: holds the CPU (and the GIL), never sleeps."""
    return sum(range(1000))


def busy(seconds: float) -> None:
    """Compute for ``seconds`` of wall time."""
    end = time.time() + seconds
    while time.time() < end:
        spin()


def spin_until(done: Callable[[], bool], timeout: float) -> bool:
    """Compute (never sleep) until ``done()``; whether it was, ``timeout`` seconds at most.

    A waiting task so keeps its CPU busy, as a task that computes would: a
    task that sleeps might not hold its CPU, and then proves nothing about
    how many tasks compute at once.
    """
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() >= deadline:
            return done()
        spin()
    return True


def meet(barrier: str, count: int = 2, timeout: float = 30.0) -> bool:
    """The barrier: arrive at ``barrier``, then compute until ``count`` arrived; whether they did.

    ``barrier`` is a directory shared by the processes (a fresh one per
    barrier): each arrival leaves a file there. Those that wait keep
    computing (:func:`spin_until`), so when ``count`` callers return ``True``
    they computed at the same time, each on its own CPU, in ``count``
    processes (threads of one process would take turns on the GIL, but still
    meet). Later arrivals pass at once. ``False`` after ``timeout`` seconds.
    """
    name = f"{os.getpid()}-{next(_arrivals)}-{time.monotonic_ns()}"
    with open(os.path.join(barrier, name), "x"):
        pass
    return spin_until(lambda: len(os.listdir(barrier)) >= count, timeout)


def hold(barrier: str, done: str) -> None:
    """A top-level task that meets the case's other one at ``barrier``, then holds its CPU
    (computing) until the case is over: until ``done``, a directory, is not empty."""
    assert meet(barrier, 2)
    spin_until(lambda: bool(os.listdir(done)), 60)


def beside_a_holder(outer: Callable[[str, str], object]) -> None:
    """Run ``outer(barrier, done)`` beside :func:`hold` in a pool of 2, and emit its result."""
    import tempfile

    from joblib import Parallel, delayed

    with tempfile.TemporaryDirectory() as barrier, tempfile.TemporaryDirectory() as done:
        out, _ = Parallel(n_jobs=2)([delayed(outer)(barrier, done), delayed(hold)(barrier, done)])
    emit(out)


def poll_until(done: Callable[[], bool], timeout: float, interval: float = 0.005) -> bool:
    """Look at ``done()`` every ``interval`` seconds, sleeping in between; whether it came true.

    For the driver of a case (the main thread of its root process), which
    holds no CPU of the budget: never for a task, which must use :func:`spin_until`.
    """
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() >= deadline:
            return done()
        time.sleep(interval)
    return True


def take_free_tokens(ref: BudgetRef) -> list[Token]:
    """Every token of ``ref``'s budget that is free now, taken here (release them after)."""
    from nest_joblib._private import budget

    return list(iter(budget.budget_for(ref).try_acquire, None))


def count_free_tokens(ref: BudgetRef) -> int:
    """How many tokens of ``ref``'s budget are free now (each taken for an instant)."""
    tokens = take_free_tokens(ref)
    for token in tokens:
        token.release()
    return len(tokens)


def locked_elsewhere(path: str) -> bool:
    """Whether an open file other than ours holds an ``flock`` on ``path`` (a budget's slot file).

    Probing takes the lock for an instant when it is free, as a process of
    the tree looking for a free token would.
    """
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # drops our lock, if we took it
    return False


def timed(seconds: float) -> list[list[float]]:
    """A leaf: compute for ``seconds``; its span ``[[start, end]]`` (``time.time()``)."""
    start = time.time()
    busy(seconds)
    return [[start, time.time()]]


def peak(spans: Iterable[Iterable[float]]) -> int:
    """The most spans ``[start, end]`` open at once."""
    events: list[tuple[float, int]] = []
    for start, end in spans:
        events += [(start, 1), (end, -1)]
    now = top = 0
    for _, step in sorted(events):
        now += step
        top = max(top, now)
    return top


def peak_processes(spans: Iterable[Sequence[float]]) -> int:
    """The most processes with a span ``[pid, start, end]`` open at once.

    Threads of one process count once, as P5 counts them: they share a GIL.
    An end sorts before a start at the same moment.
    """
    events = sorted(
        event for pid, start, end in spans for event in ((start, 1, pid), (end, -1, pid))
    )
    open_by_pid: dict[float, int] = {}
    top = 0
    for _, step, pid in events:
        open_by_pid[pid] = open_by_pid.get(pid, 0) + step
        top = max(top, sum(1 for n in open_by_pid.values() if n > 0))
    return top


def insert_behind_ours(finder: MetaPathFinderProtocol) -> None:
    """Put ``finder`` in ``sys.meta_path`` right behind the plugin's finder."""
    import _nest_joblib_startup

    ours = _nest_joblib_startup.installed_finder()
    assert ours is not None, "the plugin's finder is not installed"
    sys.meta_path.insert(sys.meta_path.index(ours) + 1, finder)


def emit(report: object) -> None:
    """Print the report of a case: one JSON line, the last of stdout."""
    print(json.dumps(report), flush=True)
