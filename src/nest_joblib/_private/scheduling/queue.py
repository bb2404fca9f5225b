"""One nested call's tasks: a queue, where its running tasks run, and how the call ends.

Every placement of the call (see the package) pulls from here, under one
condition, with its own admission rule. The call's state is explicit:
*open*, *stopped* (a task failed, or joblib raised in the caller: nothing
more starts) and *closed* (joblib is done with the call). Futures are
settled outside the condition: their callbacks are joblib's, which take the
``Parallel``'s lock, which a thread that submits to this call may hold.
"""

from __future__ import annotations

import collections
import threading
from concurrent.futures import Future
from typing import Any, Callable

#: The call's states, in the order it goes through them.
OPEN, STOPPED, CLOSED = "open", "stopped", "closed"
#: The placements, by where a task of theirs runs.
INLINE, STAND_IN, LANE, HELPER = "inline", "stand-in", "lane", "helper"


class Task:
    """One task of a nested call, and its future."""

    __slots__ = ("func", "future", "local", "payload")

    def __init__(self, func: Callable[[], Any]) -> None:
        self.func = func
        self.future: Future[Any] = Future()
        #: It cannot be pickled: only the caller's process may run it.
        self.local = False
        #: The task pickled for another process (a lane, a helper), once.
        self.payload: bytes | None = None


#: An admission rule: whether a placement may start a task now (called under the lock).
Rule = Callable[["CallQueue"], bool]


class CallQueue:
    """The tasks of one nested call of ``n_jobs`` (joblib's: tasks in flight at most)."""

    def __init__(self, n_jobs: int) -> None:
        self.n_jobs = n_jobs
        self.cond = threading.Condition()
        self.queued: collections.deque[Task] = collections.deque()
        #: Tasks running now, by placement.
        self.running: collections.Counter[str] = collections.Counter()
        #: Lanes starting for this call (each will take a task).
        self.starting = 0
        self.state = OPEN

    # -- read under the condition, by the admission rules -------------------------

    @property
    def in_flight(self) -> int:
        return sum(self.running.values())

    def room(self) -> bool:
        """Whether one more task may start (here, beside the running ones)."""
        return self.state == OPEN and bool(self.queued) and self.in_flight < self.n_jobs

    def room_elsewhere(self) -> bool:
        """Whether a task may start in another process (a lane, a helper).

        The call's own runner keeps a place: it is the caller's CPU, which no
        other process may use.
        """
        here = max(self.running[INLINE] + self.running[STAND_IN], 1)
        elsewhere = self.running[LANE] + self.running[HELPER] + self.starting
        return self.state == OPEN and bool(self.queued) and here + elsewhere < self.n_jobs

    # -- the calling Parallel ----------------------------------------------------

    def put(self, func: Callable[[], Any]) -> Future[Any]:
        task = Task(func)
        with self.cond:
            if self.state == CLOSED:
                raise RuntimeError("this nested Parallel call has been terminated")
            self.queued.append(task)
            self.cond.notify_all()
        return task.future

    def stop(self) -> None:
        """Start nothing more: a task failed, or joblib raised in the caller."""
        with self.cond:
            if self.state == OPEN:
                self.state = STOPPED
            self.cond.notify_all()

    def close(self, cancel: bool) -> None:
        with self.cond:
            self.state = CLOSED
            cancelled = list(self.queued) if cancel else []
            if cancel:
                self.queued.clear()
            self.cond.notify_all()
        for task in cancelled:  # outside: joblib's callback runs
            task.future.cancel()

    def fail_queued(self, exc: BaseException) -> None:
        """A thread of ours died: the tasks still queued fail with its error."""
        with self.cond:
            self.state = CLOSED if self.state == CLOSED else STOPPED
            tasks, self.queued = list(self.queued), collections.deque()
            self.cond.notify_all()
        for task in tasks:
            if task.future.set_running_or_notify_cancel():
                task.future.set_exception(exc)

    # -- the placements --------------------------------------------------------

    def take(
        self,
        placement: str,
        admits: Rule,
        pick: Callable[[Task], bool] | None = None,
        started: bool = False,
    ) -> Task | None:
        """The first queued task ``pick`` accepts, if ``admits``; counted as running there.

        A cancelled task is dropped on the way (joblib aborted the call).
        ``started``: a lane that was starting for the call takes the task, and
        counts as starting no more, in the same step (no other lane starts for it).
        """
        with self.cond:
            if started:
                self.starting -= 1
                self.cond.notify_all()
            if not admits(self):
                return None
            for task in list(self.queued):
                if task.future.cancelled():
                    self.queued.remove(task)
                elif pick is None or pick(task):
                    self.queued.remove(task)
                    self.running[placement] += 1
                    return task
            return None

    def wait(self, ready: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait until ``ready()`` (under the condition) or the call is closed; whether ready."""
        with self.cond:
            self.cond.wait_for(lambda: ready() or self.state == CLOSED, timeout)
            return ready()

    def finish(self, task: Task, placement: str, ok: bool, value: Any) -> None:
        """``task`` ran: its outcome (a result, or the exception it raised)."""
        with self.cond:
            self.running[placement] -= 1
            if not ok and self.state == OPEN:
                self.state = STOPPED  # joblib aborts the call on its first error
            self.cond.notify_all()
        if not task.future.done():
            if ok:
                task.future.set_result(value)
            else:
                task.future.set_exception(value)

    def put_back(self, task: Task, placement: str) -> None:
        """``task`` did not run there: back to the head of the queue."""
        with self.cond:
            self.running[placement] -= 1
            self.queued.appendleft(task)
            self.cond.notify_all()
