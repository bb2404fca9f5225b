"""The loky variant at the top level: loky's own pool, within the budget.

Its workers are at most ``budget`` (see :meth:`.budgeted.BudgetedLokyMixin.effective_n_jobs`),
and each batch holds a token while it runs (:class:`.batches.TokenHeld`). The
first batches, one per worker, get their token handed off by this process:
no CPU looks free to the rest of the tree while the workers start. Workers
with nothing to do stand by to help nested calls elsewhere (:mod:`.standby`).
Without a budget (``NEST_JOBLIB_CPUS=off``) it is plain loky.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any, Callable

from . import budget as budget_mod
from . import contract, wakeup
from .batches import TokenHeld
from .budget import BudgetRef
from .standby import Spares
from .state import ablated


class TopLevelPool:
    """One top-level call of the loky variant (or any call, without a budget).

    ``plain`` is the backend as its base class sees it (its ``terminate``,
    ``abort_everything``...).
    """

    def __init__(self, backend: Any, plain: Any, ref: BudgetRef | None, workers: int) -> None:
        self._backend = backend
        self._plain = plain
        self._ref = ref
        #: Batches still to send with a token handed off: one per worker.
        self._ramp = workers
        self._spares = (
            None
            if ref is None
            else Spares(ref, workers, functools.partial(contract.loky_submit, backend))
        )

    def submit(self, func: Callable[[], Any], callback: Callable[..., Any] | None) -> Any:
        if self._ref is None:
            return contract.loky_submit(self._backend, func, callback)
        # The first batches, one per worker, hold their token from now on, so
        # that nested calls elsewhere do not take these CPUs for free while
        # the workers start. (Only those: they are at the head of loky's
        # queue, so each is taken at once by a worker; a token held for a
        # batch further back would starve the workers.)
        budget = budget_mod.budget_for(self._ref)
        token = budget.try_acquire() if self._ramp > 0 and not ablated("handoffs") else None
        self._ramp = max(0, self._ramp - 1)
        job = budget.send_handed_off(
            token, functools.partial(self._send, self._ref, func, callback)
        )
        if self._spares is not None:
            self._spares.batch_sent(job, with_token=token is not None)
        return job

    def _send(
        self,
        ref: BudgetRef,
        func: Callable[[], Any],
        callback: Callable[..., Any] | None,
        slot: int | None,
    ) -> Any:
        return contract.loky_submit(self._backend, TokenHeld(func, ref, slot, keep=True), callback)

    @contextlib.contextmanager
    def retrieval_context(self) -> Iterator[None]:
        token = budget_mod.held()
        if self._ref is None:
            yield
        elif token is None:  # the root: its spare workers stand by meanwhile
            assert self._spares is not None
            with self._spares.standing_by(self._backend.parallel):
                yield
        else:  # a top-level call inside a task: it lends its token while it waits
            budget_mod.set_held(None)
            token.release()
            try:
                with wakeup.waking(None):
                    yield
            finally:
                budget_mod.set_held(budget_mod.budget_for(self._ref).acquire())

    def terminate(self) -> None:
        self._plain.terminate()

    def abort_everything(self, ensure_ready: bool) -> None:
        self._plain.abort_everything(ensure_ready=ensure_ready)
