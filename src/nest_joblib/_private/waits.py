"""Telling a task that waits from a task that computes, so that waits overlap.

Tokens limit the tasks that *compute*; a nested call's ``n_jobs`` limits the
tasks *in flight*, as joblib's threads do. A nested call that runs its tasks
in its caller's process (inline) starts the next queued task beside one that
waits (I/O, ``time.sleep``, a lock, a subprocess), in a *stand-in* thread, as
Go's scheduler hands a blocked system call's processor to other work.

How a wait is seen: while a call here has queued tasks that a stand-in could
run, a watcher thread reads, every 10 ms, the CPU clock
(``time.pthread_getcpuclockid``) of every thread of this process that holds a
token and of every thread that runs an inline task. A thread that used less
than a tenth of a CPU over the last 20 ms (four of Python's GIL switch
intervals, so a thread that merely shares the GIL does not count) *waits*.

- A thread that got no CPU because the machine is busy is not waiting: on
  Linux the scheduler counts the time it spent ready to run
  (``/proc/self/task/<tid>/schedstat``), and its state says it is runnable.
  Nor is one whose process's other threads ran for half the window or more:
  it may have waited for the GIL they held (a thread that truly waits beside
  them is missed then, which costs overlap, never a CPU).
- A token is *idle* when the thread that holds it waits. A thread that waits
  for its own nested call holds no token meanwhile (it lent it to the call),
  so the work of nested calls is never mistaken for a wait. Its CPU clock is
  made by the holding thread itself (:mod:`.budget`): made here from its
  ident, it could name a thread that has just exited.
- Each inline task that runs without a token (a stand-in, or a task of a call
  whose caller had none) and computes uses up one idle token.
- When every running inline task of a call waits and the process has an idle
  token left, stand-ins start for that call at once, in one burst: one for
  each queued task whose function was last seen waiting here (tasks of one
  function tend to do alike: a call over downloads waits in each), up to the
  call's ``n_jobs`` in flight, and one more for the next task of any other
  function. A call of waiting tasks so reaches its width one window after
  its first task is seen waiting, whatever its ``n_jobs``; a task that
  computes is found out one at a time, and the others stay queued for
  processes that compute on other CPUs. A stand-in runs queued tasks one at a
  time while the call's other tasks still wait.

A Python thread cannot be paused. A task that resumes from its wait while its
stand-in computes makes two tasks on one token until one of them ends: one
task more per token that was idle. And a burst's tasks whose function waited
before but computes now compute beside each other until they end; once the
watcher sees them compute, they use up the idle tokens and nothing more
starts. That is the bound of the overshoot: the tasks of one call in flight,
at most its ``n_jobs``, in one process (which computes on one CPU where the
tasks hold the GIL, and as plain joblib's ``n_jobs`` threads of a first
nested level do where they release it), for as long as those tasks run.

Where threads have no CPU clock (macOS, Windows), nothing tells a task that
waits from one that computes, and nothing is watched: each task of a nested
call gets a thread of its own, as at plain joblib's first nested level (see
:mod:`.scheduling.local`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from . import budget as budget_mod
from . import process

logger = logging.getLogger("nest_joblib")

#: How often the watcher looks, and how many looks a judgement covers.
_TICK = 0.01
_WINDOW_TICKS = 2
#: A thread that used less CPU than this share of the window waits...
_WAITING = 0.1
#: ... unless the other threads of its process used this share of it or more.
_OTHERS = 0.5


def supported() -> bool:
    return hasattr(time, "pthread_getcpuclockid")


def _runnable(native_id: int) -> bool:
    """Whether a thread is running or ready to run (Linux; elsewhere: unknown, no).

    A thread that gets no CPU because the machine is busy is runnable; one
    that sleeps, waits for I/O or a lock is not.
    """
    try:
        with open(f"/proc/self/task/{native_id}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"R"
    except (OSError, IndexError):
        return False


def _ready_time(native_id: int | None) -> float:
    """Seconds a thread spent ready to run but not running (Linux; elsewhere 0).

    The second field of ``schedstat``: it grows while the machine is too
    busy to run the thread, and not while the thread sleeps or waits.
    """
    if native_id is None:
        return 0.0
    try:
        with open(f"/proc/self/task/{native_id}/schedstat", "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


class Clock:
    """The CPU clock of one thread, sampled by the watcher."""

    __slots__ = ("_id", "_native", "_samples", "computed", "lending", "waiting")

    def __init__(self, clock_id: int | None = None, native_id: int | None = None) -> None:
        """The calling thread's clock, or the clock ``clock_id`` that a thread made itself.

        Never from another thread's ident: that thread may have exited meanwhile, and
        ``pthread_getcpuclockid`` on it is undefined behaviour. A clock whose thread
        has exited reads as an error, which a sample survives.
        """
        if clock_id is None:
            clock_id = time.pthread_getcpuclockid(threading.get_ident())
            native_id = threading.get_native_id()
        self._id = clock_id
        self._native = native_id
        self._samples = [self._sample()]
        #: The last judgement: the thread waited over the last window...
        self.waiting = False
        #: ... or it ran for a tenth of it or more (neither: starved, or not judged).
        self.computed = False
        #: The thread waits for a nested call of its own: its wait says nothing of its task.
        self.lending = False

    def _sample(self) -> tuple[float, float, float, float]:
        """(wall time, CPU time, time ready to run, this process's CPU time)."""
        try:
            cpu = time.clock_gettime(self._id)
        except OSError:  # the thread is gone
            cpu = 0.0
        return time.monotonic(), cpu, _ready_time(self._native), time.process_time()

    def sample(self) -> bool:
        """Take a sample and judge the last window (not full yet: not waiting).

        A thread waits when it neither ran nor was ready to run for most of
        the window (a busy machine delays a thread that computes, it does not
        make it wait), while the other threads of its process ran for less than
        half of it (else they may have held the GIL that it waited for).
        """
        self._samples = [*self._samples[-_WINDOW_TICKS:], self._sample()]
        wall0, cpu0, ready0, all0 = self._samples[0]
        wall1, cpu1, ready1, all1 = self._samples[-1]
        window = wall1 - wall0
        idle = _WAITING * window
        judged = window >= _TICK * _WINDOW_TICKS * 0.9  # else not a whole window yet
        self.computed = judged and cpu1 - cpu0 >= idle
        stalled = (
            judged
            and cpu1 - cpu0 < idle
            and ready1 - ready0 < idle
            and (all1 - all0) - (cpu1 - cpu0) < _OTHERS * window
        )
        self.waiting = stalled and (self._native is None or not _runnable(self._native))
        return self.waiting


def running(clock: Clock) -> None:
    """The calling thread runs a task of a nested call here (``clock`` is its clock)."""
    watcher().runners[threading.get_ident()] = clock


def done() -> None:
    watcher().runners.pop(threading.get_ident(), None)


def lending(on: bool) -> None:
    """The calling thread starts (or stops) waiting for a nested call of its own.

    Its task is then neither a task that waits nor one that computes: its
    function is not learnt from (:mod:`.scheduling.local`), so tasks that run
    nested calls start no burst of stand-ins.
    """
    clock = watcher().runners.get(threading.get_ident())
    if clock is not None:
        clock.lending = on


class Watched(Protocol):
    def wants_stand_ins(self) -> int | None:
        """How many stand-ins may start now, every running inline task waiting
        (0: not now; None: stop watching me)."""

    def unwatched(self) -> None:
        """The watcher stopped watching (after ``None``); the call may ask again."""

    def stand_in(self, count: int = 1) -> int:
        """Start up to ``count`` stand-ins for the next queued tasks; how many started."""


class Watcher:
    """The watcher thread of this process: it runs while a call is watched.

    An entry of :mod:`.process`: a forked child has no such thread, and
    makes its own watcher when it needs one.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._calls: list[Watched] = []
        self._running = False
        self._holder_clocks: dict[int, Clock] = {}
        #: Threads running a task of a nested call here: ident -> its clock.
        self.runners: dict[int, Clock] = {}

    def watch(self, call: Watched) -> None:
        with self._cond:
            if call not in self._calls:
                self._calls.append(call)
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="nest-joblib-waits", daemon=True).start()

    def unwatch(self, call: Watched) -> None:
        with self._cond:
            if call in self._calls:
                self._calls.remove(call)
            self._cond.notify_all()

    def _idle_tokens(self) -> int:
        """Tokens whose holder waits, less the inline tasks that compute without one."""
        holders = budget_mod.holders()
        clocks = self._holder_clocks
        for ident in [i for i in clocks if i not in holders]:
            del clocks[ident]
        idle = 0
        for ident, (native_id, clock_id) in holders.items():
            clock = self.runners.get(ident) or clocks.get(ident)
            if clock is None or (ident in clocks and clock._id != clock_id):
                if clock_id is None:  # no CPU clock there
                    continue
                # (A new thread may reuse the ident of one that has ended: its own clock.)
                clock = clocks[ident] = Clock(clock_id, native_id)
            idle += clock.sample()
        for ident, clock in list(self.runners.items()):
            if ident not in holders:
                idle -= not clock.sample()
        return idle

    def _run(self) -> None:
        try:
            self._watch()
        except Exception as exc:  # no stand-ins then: tasks run one at a time, as before
            logger.debug("the wait watcher failed: %r", exc)
            with self._cond:
                self._calls.clear()
                self._running = False

    def _watch(self) -> None:
        while True:
            with self._cond:
                if not self._calls:
                    self._running = False
                    self._holder_clocks.clear()
                    return
                self._cond.wait(_TICK)
                calls = list(self._calls)
            idle = self._idle_tokens()
            for call in calls:
                wanted = call.wants_stand_ins()
                if wanted is None:
                    self.unwatch(call)
                    call.unwatched()
                elif wanted and idle > 0:
                    started = call.stand_in(wanted)
                    if started:
                        logger.debug("%d stand-ins beside waiting tasks (%d idle)", started, idle)
                        idle -= 1  # the burst's stand-ins that compute use up tokens next time


def watcher() -> Watcher:
    """This process's watcher."""
    return process.entry("wait watcher", Watcher)
