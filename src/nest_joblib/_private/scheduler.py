"""Running the tasks of one nested ``Parallel`` call within the CPU budget.

The caller of a nested call is itself a task holding a token. While it waits
it lends that token to its own call. Tasks run in one of three places:

- **in lanes**: worker processes of this process, started one at a time and
  only when a token is free. Each lane task takes a token of its own in the
  lane, so that it can lend it out again one level further down;
- **inline**: in threads of the calling process, with the caller's token, as
  plain joblib would run a nested call: one computing at a time, and beside
  a task that waits, a *stand-in* for the next one (see :mod:`.waits`), up to
  ``n_jobs`` in flight;
- **in helpers**: idle top-level workers elsewhere in the tree, which take
  the queued tasks of an inline call on offer (see :mod:`.sharing`).

A call runs inline first, on the token its caller lends it, and hands
queued tasks to lanes whenever a CPU is free anywhere in the tree (at once,
if one is free when it starts), so an idle CPU is picked up by whichever call
has work waiting. A call whose caller holds no token (a stand-in, a thread of
the user's) runs its tasks inline too, without a token, in the process that
already runs its caller: it never waits for a CPU to free up elsewhere.

Tasks that leave the process are pickled once, large arrays by reference
(:mod:`.arrays`). The first task that fails stops the call: nothing more is
started, as joblib aborts the call on its first error.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import threading
import time
import weakref
from concurrent.futures import CancelledError, Future
from typing import Any, Callable

from nest_joblib._warnings import warn

from . import budget as budget_mod
from . import contract, waits
from .arrays import Pickled, TaskPickler
from .batches import Paid
from .budget import Budget, BudgetRef, Token, backoff
from .lanes import lanes
from .sharing import Offer
from .state import ablated

logger = logging.getLogger("nest_joblib")

_POLL_MIN = 0.002
_POLL_MAX = 0.05


class _Item:
    __slots__ = ("func", "future", "local", "payload")

    def __init__(self, func: Callable[[], Any]) -> None:
        self.func = func
        self.future: Future[Any] = Future()
        #: Cannot be pickled: only this process may run it.
        self.local = False
        #: The task pickled for a lane or a helper, once.
        self.payload: bytes | None = None


#: Offers could not be made here (no Unix sockets): said once per process.
_offers_failed = False

#: Nesting level -> running mean of a task's duration there, in this process.
_task_seconds: dict[int, float] = {}
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_task_seconds.clear)


#: The nested calls of this process that are not over (for ``info()``).
_calls: weakref.WeakSet[Scheduler] = weakref.WeakSet()


def placed_elsewhere() -> int:
    """Tasks that nested calls of this process have placed in other processes right now."""
    return sum(call.remote_running for call in list(_calls))


def _settle(future: Future[Any], ok: bool, value: Any) -> None:
    """Give ``future`` the outcome of its task: a result, or an exception."""
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class Scheduler:
    """The tasks of one nested call: a queue, inline runners, a feeder, an offer."""

    def __init__(
        self,
        n_jobs: int,
        budget: Budget,
        ref: BudgetRef,
        env: dict[str, str],
        level: int = 1,
        pickler: TaskPickler | None = None,
    ) -> None:
        self._budget = budget
        self._ref = ref
        self._env = env
        self._pickler = pickler or TaskPickler()
        #: The caller's token, which it lends to this call while it waits: the
        #: inline tasks run on it. A caller without one (a stand-in, a thread
        #: of the user's) has its inline tasks run without one, in its own
        #: process, as plain joblib's threads would: a call never depends on a
        #: CPU freeing up elsewhere to make progress.
        self._token = budget_mod.held()
        #: Tasks in flight at most (inline, in lanes, in helpers): joblib's n_jobs.
        self._n_jobs = n_jobs
        self._queue: collections.deque[_Item] = collections.deque()
        self._cond = threading.Condition()
        #: Set when a task completes, ending the caller's poll (see .wakeup);
        #: set after the future is, so joblib's callback has counted the result.
        self.news = threading.Event()
        self._closed = False
        #: A task failed: joblib aborts the call, so nothing more is started.
        self._failed = False
        self._remote_running = 0
        self._starting = 0
        #: Inline tasks running: thread ident -> its CPU clock (None without one).
        self._inline: dict[int, waits.Clock | None] = {}
        #: Running mean of a task's duration at this nesting level, in this
        #: process: a call's tasks tend to be like those of its siblings.
        self._level = level
        self._mean: float | None = _task_seconds.get(level)
        self._remote_lanes: dict[_Item, Any] = {}
        self._offer: Offer | None = None
        #: The call's own inline runner is running a task (when not, the next is its own).
        self._inline_busy = False
        #: Inline tasks that wait get stand-ins (where threads have CPU clocks).
        self._stand_ins = n_jobs > 1 and not ablated("stand-ins")
        #: Where threads have no CPU clock nothing tells a task that waits from
        #: one that computes: each task that starts starts a stand-in for the
        #: next, up to n_jobs in flight, as plain joblib's threads would.
        self._eager = not waits.supported()
        #: Benchmarks only: the inline runner sends its tasks to a lane, which
        #: runs them on the caller's CPU (what running them here is worth).
        self._no_inline = ablated("inline")
        self._stand_ins = self._stand_ins and not self._no_inline
        self._watched = False  # by the watcher, now
        _calls.add(self)
        if not budget.static and n_jobs > 1 and not ablated("helpers"):
            self._open_offer()
        self._thread(self._run_inline, "inline")
        if not budget.static and not ablated("lanes"):
            self._thread(self._feed_lanes, "feeder")

    def _thread(self, target: Callable[..., None], name: str, *args: Any) -> None:
        """Start a thread of this call that never dies silently.

        An unexpected error in it fails the call's queued tasks with that
        error, which the nested ``Parallel`` then raises.
        """

        def guarded() -> None:
            try:
                target(*args)
            except BaseException as exc:
                logger.debug("nest-joblib-%s failed: %r", name, exc)
                self._abandon(exc)

        threading.Thread(target=guarded, name=f"nest-joblib-{name}", daemon=True).start()

    def _abandon(self, exc: BaseException) -> None:
        with self._cond:
            self._failed = True
            items, self._queue = list(self._queue), collections.deque()
            self._cond.notify_all()
        for item in items:
            if item.future.set_running_or_notify_cancel():
                item.future.set_exception(exc)
        self.news.set()

    # -- the calling Parallel ------------------------------------------------

    def submit(self, func: Callable[[], Any]) -> Future[Any]:
        item = _Item(func)
        with self._cond:
            if self._closed:
                raise RuntimeError("this nested Parallel call has been terminated")
            self._queue.append(item)
            watch = self._stand_ins and not self._eager and not self._watched
            self._watched = self._watched or watch
            self._cond.notify_all()
        if watch:
            waits.watcher.watch(self)
        return item.future

    def stop(self) -> None:
        """Start nothing more (joblib raised in the caller: an error, a timeout)."""
        with self._cond:
            self._failed = True
            self._cond.notify_all()

    def close(self, cancel: bool = False) -> None:
        with self._cond:
            self._closed = True
            cancelled = list(self._queue) if cancel else []
            if cancel:
                self._queue.clear()
            running = list(self._remote_lanes.values()) if cancel else []
            offer, self._offer = self._offer, None
            self._cond.notify_all()
        # Futures are foreign code: cancelling one runs joblib's callback, which
        # takes the Parallel's lock, which a thread in submit() may hold.
        for item in cancelled:
            item.future.cancel()
        if offer is not None:
            offer.close()
        for lane in running:
            lanes.kill(lane)
        waits.watcher.unwatch(self)
        self._pickler.close()

    @property
    def remote_running(self) -> int:
        """Tasks of this call running in lanes or helpers now."""
        return self._remote_running

    # -- inside ---------------------------------------------------------------

    def _startable(self) -> bool:
        """Whether a task may start now (under the condition)."""
        return not self._closed and not self._failed

    def _next(self) -> _Item | None:
        with self._cond:
            while not (self._queue and self._startable()) and not self._closed:
                self._cond.wait()
            self._inline_busy = bool(self._queue) and not self._closed
            return self._queue.popleft() if self._inline_busy else None

    def _run(self, item: _Item, token: Token | None) -> None:
        """Run ``item`` in this thread, holding ``token``."""
        try:
            self._run_here(item, token)
        except BaseException as exc:  # ours, not the task's: fail it, then the call
            if not item.future.done():
                item.future.set_exception(exc)
            raise

    def _run_here(self, item: _Item, token: Token | None) -> None:
        me = threading.get_ident()
        clock = waits.Clock() if self._stand_ins and waits.supported() else None
        with self._cond:
            self._inline[me] = clock
        if clock is not None:
            waits.running(clock)
        elif self._stand_ins and self._eager:
            self.stand_in()
        began = time.perf_counter()
        with budget_mod.Holding(token):
            try:
                ok, value = True, self._in_lane(item) if self._no_inline else item.func()
            except BaseException as exc:  # handed to the caller as joblib expects
                contract.keep_traceback(exc)
                ok, value = False, exc
        self._observe(time.perf_counter() - began)
        if clock is not None:
            waits.done()
        with self._cond:
            del self._inline[me]
            self._failed = self._failed or not ok
            self._cond.notify_all()
        _settle(item.future, ok, value)
        self.news.set()

    def _in_lane(self, item: _Item) -> Any:
        """Benchmarks only (inline ablated): run ``item`` in a lane, on this CPU, and wait."""
        payload = self._payload(item)
        if payload is None:  # it cannot leave this process
            return item.func()
        lane = lanes.take_idle() or lanes.start(self._env)
        return lanes.submit(lane, Paid(Pickled(payload), self._ref)).result()  # gives it back

    def _run_inline(self) -> None:
        """The call's own runner: its tasks, one at a time, on the caller's token."""
        while True:
            item = self._next()
            if item is None:
                return
            if item.future.set_running_or_notify_cancel():
                self._run(item, self._token)
            with self._cond:
                self._inline_busy = False

    # -- stand-ins: the next task beside one that waits (see .waits) ---------------

    def wants_stand_in(self) -> bool | None:
        with self._cond:
            if self._closed or not self._queue:
                return None
            return self._all_wait() and self._stand_in_room()

    def unwatched(self) -> None:
        """The watcher let go of this call: ask again if a task came meanwhile."""
        with self._cond:
            again = bool(self._queue) and not self._closed
            self._watched = again
        if again:
            waits.watcher.watch(self)

    def _all_wait(self) -> bool:
        """Whether every running inline task waits (under the condition)."""
        clocks = list(self._inline.values())
        return bool(clocks) and all(clock is not None and clock.waiting for clock in clocks)

    def _stand_in_room(self) -> bool:
        """Whether a queued task may start beside the running ones (under the condition)."""
        in_flight = len(self._inline) + self._remote_running
        return bool(self._queue) and self._startable() and in_flight < self._n_jobs

    def stand_in(self) -> bool:
        with self._cond:
            if not self._stand_in_room():
                return False
        self._thread(self._stand_in, "stand-in")
        return True

    def _stand_in(self) -> None:
        """Run queued tasks without a token while the call's other tasks wait."""
        first = True
        while True:
            with self._cond:
                # After its first task, a stand-in goes on only while all the
                # others still wait; otherwise the watcher judges afresh.
                go = self._stand_in_room() and (first or self._all_wait())
                item = self._queue.popleft() if go else None
            if item is None:
                return
            first = False
            if item.future.set_running_or_notify_cancel():
                self._run(item, None)

    # -- lanes ------------------------------------------------------------------

    def _observe(self, seconds: float) -> None:
        mean = self._mean
        self._mean = seconds if mean is None else 0.7 * mean + 0.3 * seconds
        _task_seconds[self._level] = self._mean

    def _worth_a_new_lane(self) -> bool:
        """Whether the work queued here outlasts starting a process for it."""
        if self._mean is None:
            return True
        with self._cond:
            queued = len(self._queue)
        return queued * self._mean >= lanes.start_seconds

    def _remote_room(self) -> bool:
        """Whether a lane or a helper may take a task now (under the condition).

        An inline call keeps one place for its own runner.
        """
        inline = max(len(self._inline), 1)
        return self._remote_running + self._starting + inline < self._n_jobs

    def _payload(self, item: _Item) -> bytes | None:
        """``item`` pickled for another process, once; None if it cannot travel."""
        if item.payload is None and not item.local:
            try:
                item.payload = self._pickler.dumps(item.func)
            except Exception as exc:
                logger.debug("a task stays in its caller: it cannot be pickled (%r)", exc)
                item.local = True
        return item.payload

    def _lane_work(self) -> bool:
        """Whether a queued task waits for a lane (under the condition).

        One lane per queued task at most, starting ones included.
        """
        queued = sum(not item.local for item in self._queue)
        return queued > self._starting and self._remote_room() and self._startable()

    def _feed_lanes(self) -> None:
        delays = backoff(_POLL_MIN, _POLL_MAX)
        while True:
            with self._cond:
                while not self._closed and not self._lane_work():
                    self._cond.wait()
                if self._closed:
                    return
            pause = lanes.retry_in()  # a lane start failed a moment ago
            token = None if pause > 0 else self._budget.try_acquire()
            if token is None:  # every CPU is held: another process frees one
                with self._cond:
                    self._cond.wait(pause or next(delays))
                continue
            delays = backoff(_POLL_MIN, _POLL_MAX)
            lane = lanes.take_idle()
            if lane is None and not self._worth_a_new_lane():
                token.release()
                with self._cond:
                    self._cond.wait(_POLL_MAX)
            elif lane is None:
                # The token pays for the start; tasks stay queued meanwhile,
                # for the inline runner or for lanes that are already up.
                with self._cond:
                    self._starting += 1
                self._thread(self._start_lane, "lane-start", token)
            else:
                self._send_to_lane(lane, token)

    def _send_to_lane(self, lane: Any, token: Token) -> None:
        """Run the next task that may leave this process in ``lane``, on ``token``.

        This process holds the token for as long as the task runs there.
        """
        item = self._take_remote()
        payload = None if item is None else self._payload(item)
        if item is not None and payload is None:  # it stays in this process
            self._put_back(item)
            item = None
        if item is None or payload is None:
            token.release()
            lanes.give_back(lane)
            return
        try:
            remote = lanes.submit(lane, Paid(Pickled(payload), self._ref))
        except BaseException as exc:  # the lane died while idle: the task never ran
            logger.debug("a lane was gone (%r): its task goes back to the queue", exc)
            token.release()
            lanes.discard(lane)
            self._put_back(item)
            return
        # False when cancelled meanwhile: the call is aborted, and its lanes killed.
        item.future.set_running_or_notify_cancel()
        with self._cond:
            if not remote.done():
                self._remote_lanes[item] = lane
        remote.add_done_callback(functools.partial(self._remote_done, item, token))

    def _take_remote(self) -> _Item | None:
        """The first queued task that may leave this process (counted as remote)."""
        with self._cond:
            if not self._startable():
                return None
            for item in self._queue:
                if not item.local:
                    self._queue.remove(item)
                    self._remote_running += 1
                    return item
            return None

    def _put_back(self, item: _Item) -> None:
        """A task that did not leave: back to the head of the queue."""
        with self._cond:
            self._remote_running -= 1
            self._queue.appendleft(item)
            self._cond.notify_all()

    def _start_lane(self, token: Token) -> None:
        try:
            lane = lanes.start(self._env)
        except BaseException as exc:  # cannot start processes now: back off, stay inline
            logger.debug("could not start a lane: %r", exc)
            lane = None
        token.release()
        if lane is not None:
            lanes.give_back(lane)
        with self._cond:
            self._starting -= 1
            self._cond.notify_all()

    # -- helpers: idle top-level workers elsewhere in the tree (see .sharing) --

    def _open_offer(self) -> None:
        try:
            self._offer = Offer(
                self._ref.path,
                self._ref.key,
                self._level,
                self._offer_take,
                self._offer_done,
                self._offer_lost,
            )
        except OSError as exc:  # no Unix sockets here: lanes only
            global _offers_failed
            if not _offers_failed:  # once per process
                _offers_failed = True
                warn(
                    f"cannot offer tasks to idle workers ({type(exc).__name__}: {exc}); "
                    "nested calls of this process share no work, and start lanes instead"
                )

    def _offer_take(self) -> tuple[_Item, bytes] | None:
        with self._cond:
            if self._closed or not self._startable() or not self._remote_room():
                return None
            # An idle inline runner is about to take the head: a helper taking
            # it would leave the caller's CPU idle for as long as the task runs.
            mine = not self._inline_busy
            chosen = None
            for item in list(self._queue):
                if item.future.cancelled():
                    self._queue.remove(item)
                elif mine:
                    mine = False
                elif not item.local:
                    self._queue.remove(item)
                    self._remote_running += 1
                    chosen = item
                    break
        if chosen is None:
            return None
        payload = self._payload(chosen)
        if payload is None:
            self._put_back(chosen)
            return None
        return chosen, payload

    def _offer_done(self, item: _Item, ok: bool, value: Any) -> None:
        if item.future.set_running_or_notify_cancel():
            _settle(item.future, ok, value)
        with self._cond:
            self._failed = self._failed or not ok
        self._remote_done_count()
        self.news.set()

    def _offer_lost(self, item: _Item) -> None:
        """Back to the head of the queue, for the inline runner or a lane."""
        self._put_back(item)

    def _remote_done_count(self) -> None:
        with self._cond:
            self._remote_running -= 1
            self._cond.notify_all()

    def _remote_done(self, item: _Item, token: Token, done: Future[Any]) -> None:
        token.release()
        exc = CancelledError() if done.cancelled() else done.exception()
        with self._cond:
            self._remote_lanes.pop(item, None)
            self._failed = self._failed or exc is not None
        self._remote_done_count()
        if not item.future.done():
            _settle(item.future, exc is None, done.result() if exc is None else exc)
        self.news.set()
