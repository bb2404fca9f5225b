"""Lanes: worker processes that a nested call starts below its caller.

A lane is a loky executor of one worker process, started when a CPU is free
and reused by the nested calls of this process for the rest of its life.
"""

from __future__ import annotations

import logging
import multiprocessing.util
import os
import select
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

from . import contract

logger = logging.getLogger("nest_joblib")

#: Where the process has no pidfd (not Linux): how often a lane looks for its parent.
_PARENT_POLL = 0.2
#: A failed lane start is retried after this long, doubling up to the most.
_RETRY_FIRST = 0.05
_RETRY_MOST = 2.0


def _exit_with_parent(parent: int) -> None:
    """Lane initializer: end this lane as soon as the process it serves is gone.

    When joblib aborts a call it kills that call's workers, and the lanes
    they had started would otherwise live on as orphans, unlike loky's own
    workers; worse, a lane whose task still runs would compute on a token
    that its dead parent no longer holds. On Linux the lane waits on a pidfd
    of its parent, which the kernel makes readable when the parent exits;
    elsewhere it looks every 0.2 s. (``PR_SET_PDEATHSIG`` would follow the
    thread that started the lane, not the process, so it cannot serve here.)
    """
    try:
        pidfd = os.pidfd_open(parent)  # type: ignore[attr-defined,unused-ignore]
    except (AttributeError, OSError):
        pidfd = None
    if os.getppid() != parent:  # gone before we could watch it
        os._exit(1)

    def watch() -> None:
        if pidfd is not None:
            select.select([pidfd], [], [])
        else:
            while os.getppid() == parent:
                time.sleep(_PARENT_POLL)
        os._exit(1)

    threading.Thread(target=watch, name="nest-joblib-parent-watch", daemon=True).start()


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

        A start that fails (no more processes, a process that exits) makes
        the next one wait, from 50 ms doubling up to 2 s (:meth:`retry_in`).
        """
        began = time.perf_counter()
        try:
            lane = self._start(env)
        except BaseException:
            with self._lock:
                self._retry_at = time.monotonic() + self._retry_wait
                self._retry_wait = min(2 * self._retry_wait, _RETRY_MOST)
            raise
        with self._lock:
            self._retry_wait = _RETRY_FIRST
            self.start_seconds = time.perf_counter() - began
            self.started += 1
            logger.debug("lane %d of this process is up", self.started)
        return lane

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
            lane = contract.new_lane(env, _exit_with_parent, (os.getpid(),))
            self._starting.add(lane)
        try:
            lane.submit(_warm_up).result()
        except BaseException:
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

    def submit(self, lane: Any, func: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = lane.submit(func)
        future.add_done_callback(lambda _: self.give_back(lane))
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
        if getattr(lane, "_nest_joblib_killed", False) or contract.executor_broken(lane):
            lane.shutdown(wait=False)  # make a new lane next time
            return
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


lanes = Lanes()


def _after_fork_in_child() -> None:
    # The parent's lanes are the parent's children: a forked child starts its own.
    lanes.__init__()  # type: ignore[misc]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
