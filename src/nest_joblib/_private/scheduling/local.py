"""A nested call's tasks in its caller's process: the inline runner, and stand-ins.

The *inline runner* is one thread that runs the call's tasks one at a time on
its caller's token, as plain joblib's threads would (the caller lends it its
CPU while it waits, see :mod:`..nested`). A *stand-in* is a thread that runs
a queued task beside the call's tasks here when each of them waits (I/O,
``time.sleep``, a lock: see :mod:`..waits`), up to ``n_jobs`` in flight, on
no token: it uses the CPU their waits leave idle. They start in bursts, one
for each queued task whose function was seen waiting here, and one more for
another (:meth:`LocalRunners._burst`). Where threads have no CPU
clock nothing tells a task that waits from one that computes, so each task
that starts here starts a stand-in for the next, as joblib's threads would
run them all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from typing import Any, Callable

from nest_joblib._private import budget as budget_mod
from nest_joblib._private import contract, process, waits
from nest_joblib._private.budget import Token
from nest_joblib._private.state import ablated

from .means import means
from .queue import INLINE, OPEN, STAND_IN, CallQueue, Task


class LocalRunners:
    """The inline runner and the stand-ins of one nested call.

    ``start(target, name)`` starts a thread of the call (one that never dies
    silently); ``in_lane(task)`` runs a task in a lane instead of here, when
    the benchmark switches the inline runner off (``NEST_JOBLIB_ABLATE``).
    """

    def __init__(
        self,
        queue: CallQueue,
        token: Token | None,
        level: int,
        start: Callable[[Callable[[], None], str], None],
        in_lane: Callable[[Task], Any],
    ) -> None:
        self._queue = queue
        #: The caller's token: the inline tasks run on it (None: on no token).
        self._token = token
        self._level = level
        self._start = start
        self._in_lane = in_lane if ablated("inline") else None
        self._stand_ins = queue.n_jobs > 1 and not ablated("stand-ins") and self._in_lane is None
        self._eager = not waits.supported()
        #: Threads running a task here: ident -> its CPU clock (None: none, or not sampled).
        self._clocks: dict[int, waits.Clock | None] = {}
        self._watched = False
        #: What the tasks of each function did when last seen here: True waited, False computed.
        self._waited: dict[Hashable, bool] = {}
        #: Threads running a task here: ident -> the task's function (None: unknown).
        self._kinds: dict[int, Hashable | None] = {}

    # -- admission rules (under the queue's condition) -----------------------------

    def _admits_stand_in(self, queue: CallQueue) -> bool:
        return queue.room() and (self._eager or self._all_wait())

    def _all_wait(self) -> bool:
        """Whether every task running here waits."""
        clocks = list(self._clocks.values())
        return bool(clocks) and all(clock is not None and clock.waiting for clock in clocks)

    def _expected_to_wait(self, task: Task) -> bool:
        return self._waited.get(_kind(task)) is True

    def _learn(self) -> None:
        """Note what each running task's function did over the last window (watcher's tick).

        Only a clear verdict counts: a thread that a busy machine starved, or
        that may have waited for the GIL, tells nothing of its function, nor
        one that waits for a nested call of its own (its work runs elsewhere).
        """
        for ident, clock in self._clocks.items():
            kind = self._kinds.get(ident)
            if clock is None or kind is None or clock.lending:  # waits for its own call
                continue
            if clock.waiting or clock.computed:
                self._waited[kind] = clock.waiting

    def _burst(self, queue: CallQueue) -> int:
        """How many stand-ins may start at once now (the watcher's judgement, under the lock).

        When every task here waits: one for each queued task whose function
        was last seen waiting here (up to the room), so that a call of waiting
        tasks is at its width one window after its first wait, whatever its
        ``n_jobs``; and one more for the next task of another function, on the
        idle token, as before: a task that computes is found out one at a
        time, and the others stay queued for processes that compute on other
        CPUs (lanes, helpers).
        """
        self._learn()
        if not self._all_wait():
            return 0
        room = queue.n_jobs - queue.in_flight
        expected = sum(self._expected_to_wait(task) for task in queue.queued)
        burst = min(room, expected)
        return burst + (burst < room and len(queue.queued) > burst)

    # -- the inline runner ------------------------------------------------------

    def run_inline(self) -> None:
        """The call's own runner: its tasks, one at a time, on the caller's token."""
        queue = self._queue
        while queue.wait(lambda: queue.state == OPEN and bool(queue.queued)):
            task = queue.take(INLINE, lambda q: q.state == OPEN)
            if task is not None:
                self._run(task, INLINE, self._token)

    # -- stand-ins --------------------------------------------------------------

    def submitted(self) -> None:
        """A task was queued: have the watcher look for waits, if it does not already."""
        if not self._stand_ins or self._eager:
            return
        with self._queue.cond:
            watch, self._watched = not self._watched, True
        if watch:
            waits.watcher().watch(self)

    def wants_stand_ins(self) -> int | None:
        """For the watcher: how many stand-ins may start now (``None``: stop watching)."""
        queue = self._queue
        with queue.cond:
            if queue.state != OPEN or not queue.queued:
                return None
            return self._burst(queue) if queue.room() else 0

    def unwatched(self) -> None:
        """The watcher let go of this call: ask again if a task came meanwhile."""
        queue = self._queue
        with queue.cond:
            again = queue.state == OPEN and bool(queue.queued)
            self._watched = again
        if again:
            waits.watcher().watch(self)

    def stand_in(self, count: int = 1) -> int:
        """Start up to ``count`` stand-in threads if they may start now; how many did."""
        queue = self._queue
        with queue.cond:
            if not self._admits_stand_in(queue):
                return 0
            count = min(count, queue.n_jobs - queue.in_flight, len(queue.queued))
        for _ in range(count):
            self._start(self._run_stand_in, "stand-in")
        if count and process.tracing is not None:
            process.tracing.instant("stand-in started", level=self._level, count=count)
        return count

    def _run_stand_in(self) -> None:
        """Run queued tasks on no token while the others here wait.

        After its first task a stand-in goes on only while they all still
        wait; otherwise the watcher judges afresh. A task expected to wait is
        taken first: the stand-ins of a burst take those, and the one more
        takes the first of the others.
        """
        first = True
        while True:
            rule = (lambda q: q.room()) if first else self._admits_stand_in
            task = self._queue.take(STAND_IN, rule, self._expected_to_wait)
            if task is None:
                task = self._queue.take(STAND_IN, rule)
            if task is None:
                return
            first = False
            self._run(task, STAND_IN, None)

    # -- running a task here ------------------------------------------------------

    def _run(self, task: Task, placement: str, token: Token | None) -> None:
        try:
            ok, value = self._run_here(task, placement, token)
        except BaseException as exc:  # ours, not the task's: it fails, then the call
            self._queue.finish(task, placement, False, exc)
            raise
        self._queue.finish(task, placement, ok, value)

    def _run_here(self, task: Task, placement: str, token: Token | None) -> tuple[bool, Any]:
        me = threading.get_ident()
        clock = waits.Clock() if self._stand_ins and not self._eager else None
        kind = _kind(task) if clock is not None else None
        with self._queue.cond:
            self._clocks[me] = clock
            self._kinds[me] = kind
        try:
            if clock is not None:
                waits.running(clock)
            elif self._stand_ins:  # no CPU clock: the next task gets a thread too
                self.stand_in()
            began = time.perf_counter()
            with budget_mod.Holding(token):
                try:
                    ok, value = True, task.func() if self._in_lane is None else self._in_lane(task)
                except BaseException as exc:  # handed to the caller, as joblib expects
                    contract.keep_traceback(exc)
                    ok, value = False, exc
            means().observe(self._level, time.perf_counter() - began)
            return ok, value
        finally:
            if clock is not None:
                waits.done()
            with self._queue.cond:
                del self._clocks[me]
                del self._kinds[me]

    def close(self) -> None:
        waits.watcher().unwatch(self)


def _kind(task: Task) -> Hashable | None:
    """The function a task runs (a joblib batch: its first call's), as a key; None: unknown.

    Tasks of one function tend to do alike, as the tasks of one level tend to
    take alike (see .means): a nested call over downloads waits in each.
    """
    func = contract.batch_function(task.func)
    func = getattr(func, "func", func)  # functools.partial: the function it wraps
    name = getattr(func, "__qualname__", None)
    return None if name is None else (getattr(func, "__module__", None), name)
