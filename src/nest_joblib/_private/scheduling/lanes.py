"""Lanes: worker processes that a nested call starts below its caller, and its feeder.

A lane is a loky executor of one worker process, started when a CPU is free
and reused by the nested calls of this process for the rest of its life
(:class:`Lanes`, an entry of :mod:`..process`). A nested call's *feeder*
(:class:`LaneFeeder`) hands a queued task to an idle lane whenever a CPU is
free anywhere in the tree, holding that CPU's token for as long as the task
runs there. A task whose lane was found dead before it started goes back to
the head of the queue; one whose lane died under it fails, as with joblib's
own workers.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing.util
import os
import threading
import time
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable

from nest_joblib._private import budget as budget_mod
from nest_joblib._private import contract, process
from nest_joblib._private.arrays import Pickled
from nest_joblib._private.batches import Paid
from nest_joblib._private.budget import Budget, BudgetRef, Token
from nest_joblib._warnings import warn

from .means import means
from .queue import LANE, CallQueue, Task

logger = logging.getLogger("nest_joblib")

#: A failed lane start is retried after this long, doubling up to the most.
_RETRY_FIRST = 0.05
_RETRY_MOST = 2.0
#: A lane whose process has not answered its first task after this long is given
#: up (its process ended, its start token freed) and counts as a failed start. A
#: start takes about 0.5 s: this is for a process that will never answer (stopped,
#: stuck), which would otherwise hold its token for the life of this process and
#: keep it from exiting.
_START_TIMEOUT = 60.0


def _warm_up() -> int:
    """Run in a new lane: import what every batch needs, then answer."""
    import joblib.parallel  # noqa: F401

    return os.getpid()


class Lanes:
    """Single-worker loky executors of this process, made on demand.

    They are not loky's reusable executor: that one is a per-process
    singleton that an outer call may be using, and resizing it would
    restart the workers under its feet. A lane is handed tasks only once its
    process is up; while it starts, the token that paid for its start stays
    held, so starting processes counts against the budget too.
    """

    def __init__(self) -> None:
        # Not re-made at fork: a forked child starts lanes of its own (they
        # are its parent's children), so this entry is not kept (see .process).
        self._lock = threading.Lock()
        self._idle: list[Any] = []
        #: Lanes whose process is not up yet (see :meth:`wait_for_starts`).
        self._starting: set[Any] = set()
        #: This process exits: no lane starts any more.
        self._exiting = False
        self._at_exit: multiprocessing.util.Finalize | None = None
        self.started = 0
        #: Seconds a lane takes to start here: a guess until one has started.
        self.start_seconds = 0.5
        #: After a failed start: no new one before this time, and the next wait.
        self._retry_at = 0.0
        self._retry_wait = _RETRY_FIRST

    def take_idle(self) -> Any | None:
        """An idle lane whose process is alive (one that died idle, say of the OOM killer, goes)."""
        while True:
            with self._lock:
                lane = self._idle.pop() if self._idle else None
            if lane is None or contract.lane_alive(lane):
                return lane
            logger.debug("a lane's process died while idle: it goes")
            self.discard(lane)

    def retry_in(self) -> float:
        """Seconds before a lane may be started again (after a failed start)."""
        return max(0.0, self._retry_at - time.monotonic())

    def start(self, env: dict[str, str]) -> Any:
        """A new lane, once its process answers (blocks while it starts).

        A start that fails (no more processes, a process that exits, one that
        does not answer within ``_START_TIMEOUT``) makes the next one wait, from
        50 ms doubling up to 2 s (:meth:`retry_in`).
        """
        began = time.perf_counter()
        try:
            lane = self._start(env)
        except BaseException:
            self.start_failed()
            raise
        with self._lock:
            self._retry_wait = _RETRY_FIRST
            self.start_seconds = time.perf_counter() - began
            self.started += 1
            logger.debug("lane %d of this process is up", self.started)
        if process.tracing is not None:
            process.tracing.instant("lane started", start_seconds=self.start_seconds)
        return lane

    def start_failed(self) -> None:
        """A lane could not start: the next start waits (:meth:`retry_in`)."""
        with self._lock:
            self._retry_at = time.monotonic() + self._retry_wait
            self._retry_wait = min(2 * self._retry_wait, _RETRY_MOST)

    def _start(self, env: dict[str, str]) -> Any:
        with self._lock:
            if self._exiting:
                raise RuntimeError("this process exits: it starts no lane")
            if self._at_exit is None:
                # Not at import: a loky worker imports this module before it
                # starts, and clears the finalizers then. multiprocessing runs
                # finalizers at exit in its children too, where atexit does
                # not; priority 100 runs before those that unlink semaphores
                # (0) and close loky's queues (10).
                self._at_exit = multiprocessing.util.Finalize(
                    None, self.wait_for_starts, exitpriority=100
                )
            # Made under the lock, so that none is made once this process exits.
            lane = contract.new_lane(env, process.exit_with_parent, (os.getpid(),))
            self._starting.add(lane)
        try:
            lane.submit(_warm_up).result(timeout=_START_TIMEOUT)
        except BaseException as exc:
            if isinstance(exc, FutureTimeout):
                warn(
                    f"a lane's process did not answer within {_START_TIMEOUT:g} s of its start: "
                    "it is ended, and the nested call's tasks run elsewhere"
                )
            # loky may fail a first submit after it spawned the process: at
            # exit on Python 3.13 its atexit hook is refused once threading
            # shuts down, before this process's finalizers run. End that
            # process while the lane still counts as starting, or it would
            # read its semaphores after the finalizers unlinked them.
            lane.shutdown(wait=True, kill_workers=True)
            raise
        finally:
            with self._lock:
                self._starting.discard(lane)
        return lane

    def submit(
        self, lane: Any, func: Callable[[], Any], forget: Callable[[], None] | None = None
    ) -> Future[Any]:
        """Run ``func`` in ``lane``, given back idle once it is done.

        ``forget()`` runs first, in the same callback: whoever would kill
        ``lane`` for this task (a call that is aborted) lets go of it before
        the lane is idle, where another call may take it.
        """
        future: Future[Any] = lane.submit(func)

        def done(_: Future[Any]) -> None:
            if forget is not None:
                forget()
            self.give_back(lane)

        future.add_done_callback(done)
        return future

    def discard(self, lane: Any) -> None:
        """A lane found dead: its executor is shut down, a new lane starts next time."""
        lane._nest_joblib_killed = True
        lane.shutdown(wait=False, kill_workers=True)

    def kill(self, lane: Any) -> None:
        """Stop what ``lane`` runs (joblib aborts a call that failed or timed out)."""
        lane._nest_joblib_killed = True
        lane.shutdown(wait=False, kill_workers=True)

    def give_back(self, lane: Any) -> None:
        # Runs on the lane's manager thread, which must not call into loky (see
        # ..relay). Nothing to shut down here: a killed lane was shut down by
        # whoever killed it, and loky ends a broken executor itself.
        if getattr(lane, "_nest_joblib_killed", False) or contract.executor_broken(lane):
            return  # a new lane starts next time
        with self._lock:
            self._idle.append(lane)

    def wait_for_starts(self) -> None:
        """At exit: shut down the lanes still starting, and wait for their processes.

        A lane's new process reads its semaphores by name from this one once
        it runs; were this process to unlink them first (its exit does), the
        lane's process would print loky's traceback and fail.
        """
        with self._lock:
            self._exiting = True
            starting = list(self._starting)
        for lane in starting:
            lane.shutdown(wait=True)


def lanes() -> Lanes:
    """This process's lanes."""
    return process.entry("lanes", Lanes)


_POLL_MIN = 0.002
_POLL_MAX = 0.05


class LaneFeeder:
    """Hands one nested call's queued tasks to lanes, on free CPUs of the tree.

    ``payload(task)`` pickles a task for another process (``None``: it
    cannot leave); ``start(target, name, *args)`` starts a thread of the call.
    """

    def __init__(
        self,
        queue: CallQueue,
        budget: Budget,
        ref: BudgetRef,
        env: dict[str, str],
        level: int,
        payload: Callable[[Task], bytes | None],
        start: Callable[..., None],
    ) -> None:
        self._queue = queue
        self._budget = budget
        self._ref = ref
        self._env = env
        self._level = level
        self._payload = payload
        self._start = start
        #: Tasks running in lanes -> their lane (killed if the call is aborted).
        self._running: dict[Task, Any] = {}

    def _wanted(self) -> bool:
        """A queued task that may leave waits for a lane (one per task, starting ones count)."""
        queue = self._queue
        waiting = sum(not task.local for task in queue.queued)
        return waiting > queue.starting and queue.room_elsewhere()

    def run(self) -> None:
        """The feeder thread: a free CPU and a waiting task make a lane's work."""
        queue, delays = self._queue, budget_mod.backoff(_POLL_MIN, _POLL_MAX)
        while queue.wait(self._wanted):
            pause = lanes().retry_in()  # a lane start failed a moment ago
            token = None if pause > 0 else self._budget.try_acquire()
            if process.tracing is not None:
                process.tracing.cpu_wait(self, token is not None)
            if token is None:  # every CPU is held: another process frees one
                queue.wait(lambda: False, pause or next(delays))
                continue
            delays = budget_mod.backoff(_POLL_MIN, _POLL_MAX)
            lane = lanes().take_idle()
            if lane is not None:
                self._send(lane, token)
            elif self._worth_a_new_lane():
                with queue.cond:  # the token pays for the start; tasks stay queued meanwhile
                    queue.starting += 1
                try:
                    self._start(self._start_lane, "lane-start", token)
                except Exception as exc:  # no thread can start ("can't start new thread")
                    lanes().start_failed()
                    self._not_started(token, exc)
            else:
                token.release()
                queue.wait(lambda: False, _POLL_MAX)

    def _worth_a_new_lane(self) -> bool:
        """Whether the work queued here outlasts starting a process for it."""
        mean = means().get(self._level)
        return mean is None or len(self._queue.queued) * mean >= lanes().start_seconds

    def _start_lane(self, token: Token) -> None:
        try:
            lane = lanes().start(self._env)
        except BaseException as exc:  # cannot start processes now: back off, stay inline
            self._not_started(token, exc)
            return
        # The token that paid for the start runs the lane's first task: released
        # in between, it would look free, and a sibling call elsewhere in the
        # tree would start a lane of its own on it while this one waits.
        self._send(lane, token, started=True)

    def _not_started(self, token: Token, exc: BaseException) -> None:
        """A lane start for this call failed (it backs off): its token is free, its tasks stay."""
        logger.debug("could not start a lane: %r", exc)
        with self._queue.cond:
            self._queue.starting -= 1
            self._queue.cond.notify_all()
        token.release()

    def _send(self, lane: Any, token: Token, started: bool = False) -> None:
        """Run the next task that may leave this process in ``lane``, on ``token``.

        ``started``: the lane was starting for this call, and takes its place.
        """
        queue = self._queue
        task = queue.take(LANE, CallQueue.room_elsewhere, lambda task: not task.local, started)
        payload = None if task is None else self._payload(task)
        if task is not None and payload is None:  # it stays in this process
            queue.put_back(task, LANE)
        if task is None or payload is None:
            token.release()
            lanes().give_back(lane)
            return
        paid = Paid(Pickled(payload), self._ref, "lane")
        try:
            remote = lanes().submit(lane, paid, functools.partial(self._forget, task))
        except BaseException as exc:  # the lane died while idle: the task never ran
            logger.debug("a lane was gone (%r): its task goes back to the queue", exc)
            token.release()
            lanes().discard(lane)
            queue.put_back(task, LANE)
            return
        with queue.cond:  # not done yet: its _forget comes after this (it waits for the lock)
            if not remote.done():
                self._running[task] = lane
        remote.add_done_callback(functools.partial(self._done, task, token))
        if process.tracing is not None:
            process.tracing.sent(paid, remote)

    def _forget(self, task: Task) -> None:
        """``task``'s lane is done with it: an abort of this call no longer kills that lane."""
        with self._queue.cond:
            self._running.pop(task, None)

    def _done(self, task: Task, token: Token, remote: Future[Any]) -> None:
        # The lane is idle by now (see Lanes.submit), and no longer ours to kill.
        token.release()
        if remote.cancelled():
            self._queue.finish(task, LANE, False, CancelledError())
            return
        exc = remote.exception()  # a lane that died under it: loky's TerminatedWorkerError
        self._queue.finish(task, LANE, exc is None, remote.result() if exc is None else exc)

    def close(self, cancel: bool) -> None:
        """The call is over; if aborted, its tasks still running in lanes are killed."""
        with self._queue.cond:
            running = list(self._running.values()) if cancel else []
        for lane in running:
            lanes().kill(lane)
