"""Spare workers of the top-level pool stand by to help nested calls elsewhere in the tree.

The root sends a worker of its pool that has nothing to do a *stand-by*
batch: running on a token the root holds for it, the worker runs the tasks
that nested calls elsewhere offer (see :mod:`.sharing`) until the top-level
call is over. A warm process so takes a free CPU at once, where a lane would
first have to start. A worker is spare

- from the start, when the outer loop has fewer batches than the pool has
  workers (five folds on a 32-core box);
- once its batch is done and the call has nothing more to dispatch.

A stand-by batch is sent only when a token is free for it, and never makes a
batch of the call wait: joblib dispatches one batch per batch done, to the
worker that just freed up. A top-level call from another thread shares the
pool, though: its first batch recalls them.
"""

from __future__ import annotations

import concurrent.futures
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
from . import contract, process
from .budget import BudgetRef
from .sharing import help_once
from .state import ablated

logger = logging.getLogger("nest_joblib")

_PREFIX = "standby-"
#: How often a standing-by worker looks for offers: short next to a task.
_POLL = 0.005
#: How long the end of a call waits for its stand-by batches to see their mark
#: gone and return, so that their tokens are free when the call returns.
_END_WAIT = 0.1
_ids = itertools.count()


class _Calls(dict[str, "Spares"]):
    """Marks of this process's calls with stand-by batches out -> their spares.

    An entry of :mod:`.process`: a forked child has no such call to recall.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()


def _calls() -> _Calls:
    return process.entry("stand-by calls", _Calls)


class Spares:
    """The root's side of one top-level call's stand-by batches.

    ``send(func)`` sends a stand-by batch to the call's pool if a token can be
    held for it, and returns its future (``None``: not sent).
    """

    def __init__(
        self,
        ref: BudgetRef,
        workers: int,
        send: Callable[..., Any],
    ) -> None:
        self._ref = ref
        self._workers = workers
        self._send_batch = send
        self._lock = threading.Lock()
        self._mark: str | None = None
        self._parallel: Any = None
        #: Futures of the stand-by batches sent (and maybe not done).
        self._out: list[Any] = []

    def batch_sent(self) -> None:
        """A batch of the call was sent: it recalls other calls' stand-by batches."""
        _recall_others(self)

    def wants_worker(self) -> bool:
        """Whether a worker whose batch is done should stand by (joblib's callback ran first)."""
        parallel = self._parallel
        return (
            self._mark is not None
            and parallel is not None
            and not contract.dispatching(parallel)
            and not contract.aborting(parallel)
        )

    def send_kept(self, send: Callable[..., Any]) -> bool:
        """Send one stand-by batch with ``send``, on a token kept for it; whether it went."""
        mark = self._mark
        if mark is None:
            return False
        self._track(send(functools.partial(stand_by, mark)))
        return True

    def send_idle(self) -> None:
        """A stand-by batch for each other worker with nothing to do, while tokens are free."""
        if self.wants_worker():
            self._send()

    @contextlib.contextmanager
    def standing_by(self, parallel: Any) -> Iterator[None]:
        """While the call waits for its results."""
        budget = budget_mod.budget_for(self._ref)
        if budget.static or ablated("helpers"):
            yield
            return
        try:
            mark = _make_mark(self._ref.path)
        except OSError:  # the budget's directory is gone: shutting down
            yield
            return
        calls = _calls()
        with calls.lock:
            calls[mark] = self
        self._mark, self._parallel = mark, parallel
        try:
            self._send()
            yield
        finally:
            self._parallel = None
            self.recall()
            # They return within a poll; a call that follows then finds
            # their tokens free, not held a moment longer for nothing.
            concurrent.futures.wait(self._out, timeout=_END_WAIT)

    def recall(self) -> None:
        """End the stand-by batches: they see their mark gone and return."""
        with self._lock:
            mark, self._mark = self._mark, None
        if mark is None:
            return
        # First: an interrupt (Ctrl-C) after this leaves no batch standing by for ever.
        with contextlib.suppress(OSError):
            os.unlink(mark)
        calls = _calls()
        with calls.lock:
            calls.pop(mark, None)

    def _send(self) -> None:
        """A stand-by batch for each worker with nothing to do, while tokens are free."""
        for _ in range(self._workers):
            mark = self._mark
            job = None if mark is None else self._send_batch(functools.partial(stand_by, mark))
            if job is None:
                return
            self._track(job)

    def _track(self, job: Any) -> None:
        with self._lock:
            self._out = [out for out in self._out if not out.done()] + [job]


def _recall_others(spares: Spares) -> None:
    calls = _calls()
    if calls:
        with calls.lock:
            others = [s for s in calls.values() if s is not spares]
        for other in others:
            other.recall()


def _make_mark(directory: str) -> str:
    """The file whose presence keeps a call's stand-by batches going."""
    path = os.path.join(directory, f"{_PREFIX}{os.getpid()}-{next(_ids)}")
    with open(path, "x"):
        pass
    return path


def stand_by(mark: str) -> int:
    """A stand-by batch, in the worker: help with offered tasks until ``mark`` is gone.

    It runs in the worker's main thread, as any batch, on the token its root
    holds for it, and returns how many offered tasks it ran. The root removes
    ``mark`` when its call is over; should the root die first, the parent's
    pid changes.
    """
    ref = budget_mod.given_ref()
    if ref is None:  # pragma: no cover - a stand-by batch comes with its tree
        return 0
    budget = budget_mod.budget_for(ref)
    parent = os.getppid()

    def over() -> bool:
        return not os.path.exists(mark) or os.getppid() != parent

    ran = 0
    while not over():
        done = help_once(budget, over)
        ran += done
        if not done:
            time.sleep(_POLL)
    if ran:
        logger.debug("stood by: helped with %d offered tasks", ran)
    return ran
