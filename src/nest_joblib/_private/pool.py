"""The loky variant at the top level: loky's own pool, its batches paid for by the root.

The pool has the workers plain joblib would start (``n_jobs`` keeps joblib's
meaning). The root holds one token of the budget for each batch running in
the pool, up to the budget's size (:meth:`TopLevelPool._cover`), and the
batches run on paid tokens (:class:`.batches.Paid`): a worker that starts or
moves on to its next batch never leaves a CPU looking free. Batches beyond
the budget run as in plain joblib, on no token of it: while they do, no token
is free, so nothing the plugin adds (lanes, helpers, stand-by batches) starts
computing. Workers with nothing to do stand by to help nested calls elsewhere
(:mod:`.standby`). Without a budget (``NEST_JOBLIB_CPUS=off``) it is plain
loky.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any, Callable

from . import budget as budget_mod
from . import contract, process
from .batches import Paid
from .budget import BudgetRef, Token
from .standby import Spares

logger = logging.getLogger("nest_joblib")


class TopLevelPool:
    """One top-level call of the loky variant (or any call, without a budget).

    ``plain`` is the backend as its base class sees it (its ``terminate``,
    ``abort_everything``...).
    """

    def __init__(self, backend: Any, plain: Any, ref: BudgetRef | None, workers: int) -> None:
        self._backend = backend
        self._plain = plain
        self._ref = ref
        self._workers = workers
        self._lock = threading.Lock()
        #: Batches sent and not done (stand-by batches included).
        self._in_flight = 0
        #: Tokens held for the batches running in the pool.
        self._tokens: list[Token] = []
        #: From the first batch until the spare workers got their stand-by
        #: batches, a token for every worker: none of them looks free to a
        #: nested call that starts meanwhile.
        self._reserved = 0
        self._started = False
        self._spares = None if ref is None else Spares(ref, workers, self._send_covered)
        if ref is not None and workers > ref.size:
            logger.debug(
                "a top-level pool of %d workers, wider than the budget of %d: as plain "
                "joblib; nothing the plugin adds computes while more than %d batches run",
                workers,
                ref.size,
                ref.size,
            )

    def submit(self, func: Callable[[], Any], callback: Callable[..., Any] | None) -> Any:
        if self._ref is None:
            return contract.loky_submit(self._backend, func, callback)
        if process.tracing is not None:
            process.tracing.submitted(func, self, 0)
        if not self._started:
            self._started = True
            self._reserved = self._workers
        job = self._send(func, callback)
        if self._spares is not None:
            self._spares.batch_sent(job)
        return job

    def _send(
        self,
        func: Callable[[], Any],
        callback: Callable[..., Any] | None = None,
        counted: bool = False,
    ) -> Any:
        assert self._ref is not None
        if not counted:
            with self._lock:
                self._in_flight += 1
                self._cover()
        paid = Paid(func, self._ref)
        try:
            job = contract.loky_submit(self._backend, paid, callback)
        except BaseException:  # the pool refused it (a worker died a moment before)
            self._unreserve()
            self._finished(None)
            raise
        job.add_done_callback(self._finished)
        if process.tracing is not None:
            process.tracing.sent(paid, job)
        return job

    def _send_covered(self, func: Callable[[], Any]) -> Any | None:
        """Send ``func`` (a stand-by batch) only if a token can be held for it; its future."""
        with self._lock:
            if self._in_flight >= self._workers:
                return None
            self._in_flight += 1
            self._cover()
            if len(self._tokens) < min(self._in_flight, self._workers):  # no CPU free for it
                self._in_flight -= 1
                self._cover()
                return None
        return self._send(func, counted=True)

    def _finished(self, _: Any) -> None:
        # joblib's own callback ran first: it sent the next batch, if any, so a
        # worker that moves on keeps its token.
        with self._lock:
            self._in_flight -= 1
            self._cover()

    def _cover(self) -> None:
        """Hold one token per batch running in the pool, up to the budget (under the lock)."""
        assert self._ref is not None
        want = min(max(self._in_flight, self._reserved), self._workers)
        while len(self._tokens) > want:
            self._tokens.pop().release()
        budget = budget_mod.budget_for(self._ref)
        while len(self._tokens) < want:
            token = budget.try_acquire()
            if token is None:  # held elsewhere: this batch runs as in plain joblib
                break
            self._tokens.append(token)

    @contextlib.contextmanager
    def retrieval_context(self) -> Iterator[None]:
        if self._spares is None:
            yield
            return
        with self._spares.standing_by(self._backend.parallel):
            self._unreserve()  # the spare workers stand by now, or cannot
            yield

    def _unreserve(self) -> None:
        with self._lock:
            self._reserved = 0
            self._cover()

    def terminate(self) -> None:
        if self._ref is not None:
            self._unreserve()
        self._plain.terminate()

    def abort_everything(self, ensure_ready: bool) -> None:
        if process.tracing is not None:
            process.tracing.instant("call aborted", level=0)
        if self._ref is not None:
            self._unreserve()
        self._plain.abort_everything(ensure_ready=ensure_ready)
