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
import functools
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import CancelledError, Future
from typing import Any, Callable

from . import budget as budget_mod
from . import contract, process
from .batches import Paid
from .budget import BudgetRef, Token
from .relay import Relay
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
        self._relay = Relay()
        if ref is not None:
            _pools().add(self)
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
        if not contract.on_loky_thread():
            return self._submit(func, callback)
        # joblib's callback dispatches the next batch from loky's manager
        # thread: the batch goes out from the relay (see .relay), and joblib
        # gets a future that the batch's own settles. It counts as sent from
        # now on: the worker that moves on to it keeps its token meanwhile.
        job: Future[Any] = Future()
        if callback is not None:
            job.add_done_callback(callback)
        self._count(1)
        self._relay.run(functools.partial(self._submit_for, func, job))
        return job

    def _submit_for(self, func: Callable[[], Any], job: Future[Any]) -> None:
        if contract.aborting(self._backend.parallel):
            job.cancel()  # as joblib's _dispatch, which sends nothing once aborting
        if not job.set_running_or_notify_cancel():
            self._count(-1)
            return
        try:
            batch = self._submit(func, None, counted=True)
        except BaseException as exc:  # the pool refused it: joblib's callback hears why
            job.set_exception(exc)
            return
        batch.add_done_callback(functools.partial(_settle, job))

    def _submit(
        self, func: Callable[[], Any], callback: Callable[..., Any] | None, counted: bool = False
    ) -> Any:
        if self._ref is None:
            return contract.loky_submit(self._backend, func, callback)
        if process.tracing is not None:
            process.tracing.submitted(func, self, 0)
        if not self._started:
            self._started = True
            self._reserved = self._workers
        job = self._send(func, callback, counted)
        if self._spares is not None:
            self._spares.batch_sent()
        return job

    def _send(
        self,
        func: Callable[[], Any],
        callback: Callable[..., Any] | None = None,
        counted: bool = False,
    ) -> Any:
        """Send a batch to the pool (``counted``: it is in ``_in_flight`` already)."""
        assert self._ref is not None
        if not counted:
            self._count(1)
        paid = Paid(func, self._ref)
        try:
            job = contract.loky_submit(self._backend, paid, callback)
        except BaseException:  # the pool refused it (a worker died a moment before)
            self._unreserve()
            self._count(-1)
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
            sent = len(self._tokens) >= min(self._in_flight, self._workers)
            if not sent:  # no CPU free for it
                self._in_flight -= 1
                surplus = self._cover()
        if not sent:
            _hand_over(surplus, self)
            return None
        return self._send(func, counted=True)

    def _count(self, batches: int) -> None:
        """``batches`` more (or fewer) batches in flight, covered anew."""
        if self._ref is not None:
            with self._lock:
                self._in_flight += batches
                surplus = self._cover()
            _hand_over(surplus, self)

    def _finished(self, _: Any) -> None:
        """A batch is done. joblib's own callback ran first: its next batch, if any, is
        counted already, so a worker that moves on keeps its token. A worker left with
        nothing to do stands by on that token: it stays counted for the stand-by batch
        that the relay sends, never free in between."""
        assert self._spares is not None
        with self._lock:
            covered = len(self._tokens) >= self._in_flight
            stand_by = covered and self._spares.wants_worker()
            if not stand_by:
                self._in_flight -= 1
                surplus = self._cover()
        if stand_by:
            self._relay.run(self._stand_by)
        else:
            _hand_over(surplus, self)

    def _stand_by(self) -> None:
        assert self._spares is not None
        if not self._spares.send_kept(functools.partial(self._send, counted=True)):
            self._count(-1)  # the call is over meanwhile
        self._spares.send_idle()

    def _wanted(self) -> int:
        return min(max(self._in_flight, self._reserved), self._workers)

    def _cover(self) -> list[Token]:
        """Hold one token per batch running in the pool, up to the budget (under the lock).

        The tokens it no longer needs are taken out and returned, still held,
        for :func:`_hand_over` (outside the lock).
        """
        assert self._ref is not None
        want = self._wanted()
        surplus = []
        while len(self._tokens) > want:
            surplus.append(self._tokens.pop())
        budget = budget_mod.budget_for(self._ref)
        while len(self._tokens) < want:
            token = budget.try_acquire()
            if token is None:  # held elsewhere: this batch runs as in plain joblib
                break
            self._tokens.append(token)
        return surplus

    def _take_over(self, tokens: list[Token]) -> None:
        """Cover batches of this call that run on no token with ``tokens`` (some of them)."""
        with self._lock:
            while tokens and len(self._tokens) < self._wanted():
                self._tokens.append(tokens.pop())

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
            surplus = self._cover()
        _hand_over(surplus, self)

    def terminate(self) -> None:
        if self._ref is not None:
            self._unreserve()
            _pools().discard(self)
        self._plain.terminate()

    def abort_everything(self, ensure_ready: bool) -> None:
        if process.tracing is not None:
            process.tracing.instant("call aborted", level=0)
        if self._ref is not None:
            self._unreserve()
        self._plain.abort_everything(ensure_ready=ensure_ready)


def _pools() -> process.Live[TopLevelPool]:
    """The top-level calls of this process (threads of the root may run several at once)."""
    return process.entry("top-level pools", process.Live)


def _hand_over(tokens: list[Token], giver: TopLevelPool) -> None:
    """Tokens ``giver`` no longer needs: to another top-level call of this process
    whose batches run on no token, else back to the budget.

    They pass from hand to hand, never free: a nested call in a worker of the
    other call, which took over loky's workers from ``giver``, would otherwise
    see them free and start lanes beside those workers.
    """
    if tokens:
        for pool in _pools().now():
            if pool is not giver and pool._ref == giver._ref and tokens:
                pool._take_over(tokens)
    for token in tokens:
        token.release()


def _settle(job: Future[Any], batch: Future[Any]) -> None:
    """Settle ``job`` as ``batch`` was settled."""
    if batch.cancelled():
        job.set_exception(CancelledError())
    elif batch.exception() is not None:
        job.set_exception(batch.exception())
    else:
        job.set_result(batch.result())
