"""One nested call's scheduler: its queue, and the placements that pull from it.

It makes the call's :class:`.queue.CallQueue` and starts its placements
(each with its admission rule in its own module): the inline runner and the
stand-ins (:mod:`.local`), the lane feeder (:mod:`.lanes`) and the offer to
helpers (:mod:`.offers`). It pickles a task for another process once, and
keeps every thread of the call from dying silently.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from typing import Any, Callable

from nest_joblib._private import budget as budget_mod
from nest_joblib._private import process
from nest_joblib._private.arrays import Pickled, TaskPickler
from nest_joblib._private.batches import Paid
from nest_joblib._private.budget import Budget, BudgetRef
from nest_joblib._private.state import ablated

from .lanes import LaneFeeder, lanes
from .local import LocalRunners
from .offers import Offered
from .queue import HELPER, LANE, CallQueue, Task

logger = logging.getLogger("nest_joblib")


class Scheduler:
    """The tasks of one nested call of ``n_jobs``, made in the caller's thread."""

    def __init__(
        self,
        n_jobs: int,
        budget: Budget,
        ref: BudgetRef,
        env: dict[str, str],
        level: int = 1,
        pickler: TaskPickler | None = None,
    ) -> None:
        self._ref = ref
        self._env = env
        self.level = level
        self._pickler = pickler or TaskPickler()
        self.queue = CallQueue(n_jobs)
        # The caller's token (held in this thread): the inline tasks run on it.
        self._local = LocalRunners(
            self.queue, budget_mod.held(), level, self._thread, self._in_lane
        )
        shares = not budget.static and n_jobs > 1
        self._feeder = (
            LaneFeeder(self.queue, budget, ref, env, level, self._payload, self._thread)
            if shares and not ablated("lanes")
            else None
        )
        self._offer = (
            Offered.open(self.queue, ref, level, self._payload)
            if shares and not ablated("helpers")
            else None
        )
        _calls().add(self)
        try:
            self._thread(self._local.run_inline, "inline")
            if self._feeder is not None:
                self._thread(self._feeder.run, "feeder")
        except BaseException:  # no thread can start: the call fails, its offer goes
            self.close(cancel=True)
            raise

    @property
    def placed_elsewhere(self) -> int:
        """Tasks of this call running in lanes or helpers now."""
        return self.queue.running[LANE] + self.queue.running[HELPER]

    def submit(self, func: Callable[[], Any]) -> Future[Any]:
        if process.tracing is not None:
            process.tracing.submitted(func, self, self.level)
        future = self.queue.put(func)
        self._local.submitted()
        return future

    def stop(self) -> None:
        """Start nothing more (joblib raised in the caller: an error, a timeout)."""
        self.queue.stop()

    def close(self, cancel: bool = False) -> None:
        self.queue.close(cancel)
        if self._offer is not None:
            self._offer.close()
        if self._feeder is not None:
            self._feeder.close(cancel)
        self._local.close()
        self._pickler.close()

    def _thread(self, target: Callable[..., None], name: str, *args: Any) -> None:
        """Start a thread of this call that never dies silently.

        An unexpected error in it fails the call's queued tasks with that
        error, which the nested ``Parallel`` then raises. A thread that cannot
        start (``RuntimeError: can't start new thread``) raises here: what the
        caller meant to hand it (a token) is still the caller's to give back.
        """

        def guarded() -> None:
            try:
                target(*args)
            except BaseException as exc:
                logger.debug("nest-joblib-%s failed: %r", name, exc)
                self.queue.fail_queued(exc)

        threading.Thread(target=guarded, name=f"nest-joblib-{name}", daemon=True).start()

    def _payload(self, task: Task) -> bytes | None:
        """``task`` pickled for another process, once; ``None`` if it cannot travel."""
        if task.payload is None and not task.local:
            try:
                task.payload = self._pickler.dumps(task.func)
            except Exception as exc:
                logger.debug("a task stays in its caller: it cannot be pickled (%r)", exc)
                task.local = True
        return task.payload

    def _in_lane(self, task: Task) -> Any:
        """Benchmarks only (the inline runner ablated): run ``task`` in a lane on this CPU."""
        payload = self._payload(task)
        if payload is None:  # it cannot leave this process
            return task.func()
        lane = lanes().take_idle() or lanes().start(self._env)
        paid = Paid(Pickled(payload), self._ref, "lane")
        return lanes().submit(lane, paid).result()  # gives it back


def _calls() -> process.Live[Scheduler]:
    """The nested calls of this process that are not over (for ``info()``)."""
    return process.entry("nested calls", process.Live)


def placed_elsewhere() -> int:
    """Tasks that nested calls of this process have placed in other processes right now."""
    return sum(call.placed_elsewhere for call in _calls().now())
