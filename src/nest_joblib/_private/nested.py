"""The loky variant at a nested level: its tasks go to a :class:`.scheduler.Scheduler`.

While the caller waits for the results, it lends its token to its own call,
and takes one back when they are in (as Dask's secede/rejoin does for its
threads). When joblib raises instead (a task failed, the call timed out), the
caller goes on at once, with a token if one is there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any, Callable

from . import budget as budget_mod
from . import contract, wakeup
from .scheduler import Scheduler
from .state import ablated


class NestedCall:
    """One nested call of the loky variant."""

    def __init__(self, backend: Any, scheduler: Scheduler) -> None:
        self._backend = backend
        self._scheduler = scheduler

    def submit(self, func: Callable[[], Any], callback: Callable[..., Any] | None) -> Any:
        future: Future[Any] = self._scheduler.submit(func)
        future.get = future.result  # type: ignore[attr-defined]  # joblib < 1.5
        if callback is not None:
            future.add_done_callback(callback)
        return future

    @contextlib.contextmanager
    def retrieval_context(self) -> Iterator[None]:
        token = budget_mod.held()
        if token is None:
            yield
            return
        if ablated("inline"):  # benchmarks only: no task runs here, the CPU is the tree's
            budget = token.budget
            budget_mod.set_held(None)
            token.release()
            try:
                yield
            finally:
                budget_mod.set_held(None if budget is None else budget.acquire())
            return
        budget_mod.set_held(None)
        self._scheduler.lend(token)
        try:
            with wakeup.waking(self._scheduler.news):
                yield
        except BaseException:
            # joblib raises (a task's error, a timeout) and aborts the call
            # next: start nothing more, and do not wait for a task that may be
            # stuck (it goes on in the background, as joblib's threads do).
            self._scheduler.stop()
            budget_mod.set_held(self._scheduler.take_back(wait=False))
            raise
        budget_mod.set_held(self._scheduler.take_back())

    def terminate(self) -> None:
        self._scheduler.close(cancel=False)
        self._backend._workers = None
        contract.reset_batch_stats(self._backend)

    def abort_everything(self, ensure_ready: bool) -> None:
        self._scheduler.close(cancel=True)
        self._backend._workers = None
        if ensure_ready:
            parallel = self._backend.parallel
            self._backend.configure(n_jobs=parallel.n_jobs, parallel=parallel)
