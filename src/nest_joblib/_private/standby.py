"""Spare workers of the top-level pool stand by to help nested calls elsewhere in the tree.

The root sends a worker of its pool that has nothing to do a *stand-by*
batch: holding a token, the worker runs the tasks that nested calls elsewhere
offer (see :mod:`.sharing`) until the top-level call is over. While it holds
the token no CPU looks free, so those calls run inline and offer their tasks,
which a warm worker takes at once, where a lane would first have to start.
A worker is spare

- from the start, when the outer loop has fewer batches than the pool has
  workers (five folds on a 32-core box): its stand-by batch gets a token
  handed off to it, as a first batch does, so that no nested call mistakes
  the CPU for free meanwhile (on a warm pool, whose workers still keep their
  tokens from the last call, it takes its worker's kept token, or the one
  that the worker of the first batch gives back);
- once its batch is done and the call has nothing more to dispatch: its
  stand-by batch takes the token the worker kept for a next batch, without
  waiting for the keep to run out.

Stand-by batches never make a batch of the call wait (joblib dispatches one
batch per batch done, to the worker that just freed up), but a top-level call
from another thread shares the pool: its first batch recalls them. A stand-by
batch ends keeping its token for its worker's next batch, as any batch of the
pool does (see :mod:`.keep`), so that a call that follows finds it there.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from . import budget as budget_mod
from . import contract
from .batches import TokenHeld
from .budget import BudgetRef
from .sharing import help_once
from .state import ablated

logger = logging.getLogger("nest_joblib")

_PREFIX = "standby-"
#: How often a standing-by worker looks for offers: short next to a task.
_POLL = 0.005
#: How long a stand-by batch sent without a token waits for a free one: the
#: kept token that a worker gives back for a handed-off batch is free within
#: milliseconds, and no kept token outlives the keep (50 ms) anyway.
_WAIT = 0.05
_ids = itertools.count()

#: Marks of the calls with stand-by batches out, in this process -> their spares.
_calls: dict[str, Spares] = {}
_calls_lock = threading.Lock()


class Spares:
    """The root's side of one top-level call: its batches, and its stand-by batches.

    ``submit`` sends a callable to the call's pool and returns its future.
    """

    def __init__(self, ref: BudgetRef, workers: int, submit: Callable[..., Any]) -> None:
        self._ref = ref
        self._budget = budget_mod.budget_for(ref)
        self._workers = workers
        self._submit = submit
        self._lock = threading.Lock()
        self._batches = 0  # sent and not done
        self._tokenless = 0  # of those, sent without a token handed off
        self._standing = 0  # stand-by batches sent and not done
        self._slots: set[int] = set()  # handed off to stand-by batches
        self._mark: str | None = None
        self._parallel: Any = None

    def batch_sent(self, job: Any, with_token: bool) -> None:
        _recall_others(self)
        with self._lock:
            self._batches += 1
            self._tokenless += not with_token
        job.add_done_callback(functools.partial(self._batch_done, with_token))

    def _batch_done(self, with_token: bool, _: Any) -> None:
        # joblib's own callback ran first: it dispatched the next batch, if any.
        with self._lock:
            self._batches -= 1
            self._tokenless -= not with_token
        parallel = self._parallel
        if parallel is None or contract.dispatching(parallel) or contract.aborting(parallel):
            return
        self._send(handoff=False)

    @contextlib.contextmanager
    def standing_by(self, parallel: Any) -> Iterator[None]:
        """While the call waits for its results."""
        if self._budget.static or ablated("standby") or ablated("helpers"):
            yield
            return
        try:
            mark = _make_mark(self._ref.path)
        except OSError:  # the budget's directory is gone: shutting down
            yield
            return
        with _calls_lock:
            _calls[mark] = self
        self._mark, self._parallel = mark, parallel
        try:
            self._send(handoff=True)
            yield
        finally:
            self._parallel = None
            self.recall()

    def recall(self) -> None:
        """End the stand-by batches: running ones stop, queued ones give their token back."""
        with self._lock:
            mark, self._mark = self._mark, None
            slots, self._slots = self._slots, set()
        if mark is None:
            return
        with _calls_lock:
            _calls.pop(mark, None)
        with contextlib.suppress(OSError):
            os.unlink(mark)
        for slot in slots:  # no effect on a token its batch has taken
            self._budget.cancel_handoff(slot)

    def _send(self, handoff: bool) -> None:
        """A stand-by batch for each worker with nothing to do.

        With ``handoff`` (the call's start), each takes a free token, handed
        off to it; only when every batch of the call has a token: a batch
        that waits for one in its worker must not find it taken by a stand-by
        batch, which would keep it until the call is over. When no token is
        free, the workers still keep theirs from a call that just ended (see
        :mod:`.keep`), and the worker that gets this call's first batch gives
        its kept token back as it takes the one handed off to it: the
        stand-by batch takes its own worker's kept token, or waits a moment
        (:data:`_WAIT`) for a free one. Otherwise a nested call would find
        that CPU free and start a lane for it beside an idle worker. Without
        ``handoff`` (a batch done), a stand-by batch takes nothing but the
        token its worker kept.
        """
        while True:
            with self._lock:
                mark = self._mark
                if mark is None or self._batches + self._standing >= self._workers:
                    return
                if handoff and self._tokenless:
                    return
                self._standing += 1
            token = self._budget.try_acquire() if handoff else None
            if token is None and handoff and ablated("kept-tokens"):
                with self._lock:  # benchmarks only: no token free, no stand-by batch
                    self._standing -= 1
                return
            if token is not None and ablated("handoffs"):  # benchmarks only
                token.release()
                token = None
            slot = None if token is None else token.slot
            wait = _WAIT if handoff and slot is None else 0.0
            try:
                job = self._budget.send_handed_off(
                    token, functools.partial(self._send_one, mark, wait)
                )
            except BaseException:
                self._stand_down(slot)
                return
            job.add_done_callback(functools.partial(self._stand_down, slot))

    def _send_one(self, mark: str, wait: float, slot: int | None) -> Any:
        if slot is not None:  # handed off: a recall gives it back
            with self._lock:
                self._slots.add(slot)
        batch = functools.partial(stand_by, self._ref, mark)
        return self._submit(TokenHeld(batch, self._ref, slot, keep=True, wait=wait))

    def _stand_down(self, slot: int | None = None, _: Any = None) -> None:
        with self._lock:
            self._standing -= 1
            self._slots.discard(slot)


def _recall_others(spares: Spares) -> None:
    if _calls:
        with _calls_lock:
            others = [s for s in _calls.values() if s is not spares]
        for other in others:
            other.recall()


def _make_mark(directory: str) -> str:
    """The file whose presence keeps a call's stand-by batches going."""
    path = os.path.join(directory, f"{_PREFIX}{os.getpid()}-{next(_ids)}")
    with open(path, "x"):
        pass
    return path


def stand_by(ref: BudgetRef, mark: str) -> int:
    """A stand-by batch, in the worker: help with offered tasks until ``mark`` is gone.

    It runs in the worker's main thread, as any batch, with the token its
    batch holds, and returns how many offered tasks it ran. The root removes
    ``mark`` when its call is over; should the root die first, the parent's
    pid changes.
    """
    token = budget_mod.held()
    if token is None:  # no token was handed off, none was kept, none is free
        return 0
    budget = budget_mod.budget_for(ref)
    parent = os.getppid()

    def over() -> bool:
        return not os.path.exists(mark) or os.getppid() != parent

    ran = 0
    while not over():
        token, done = help_once(budget, token, over)
        ran += done
        if not done:
            time.sleep(_POLL)
    budget_mod.set_held(token)  # for the batch to release
    if ran:
        logger.debug("stood by: helped with %d offered tasks", ran)
    return ran


def _after_fork_in_child() -> None:
    # The parent's top-level calls are not the child's to recall.
    global _calls_lock
    _calls.clear()
    _calls_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
