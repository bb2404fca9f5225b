"""The loky variant at a nested level: its tasks go to a :class:`.scheduling.Scheduler`.

While the caller waits for the results, it lends its token to its own call:
the call's inline tasks run on it (as Dask's secede/rejoin gives a waiting
task's thread to others). When joblib raises instead (a task failed, the call
timed out), the caller goes on at once, on its token, beside a task that may
still be stuck in a thread of its process, as beside joblib's threads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any, Callable

from . import budget as budget_mod
from . import contract, process, waits
from .scheduling import Scheduler


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
        # While it waits, the caller holds no token: the call's inline tasks
        # run on it (and a thread that waits for its own call is no wait that
        # a stand-in could fill, see .waits).
        token = budget_mod.held()
        budget_mod.set_held(None)
        waits.lending(True)
        try:
            yield
        except BaseException:
            # joblib raises (a task's error, a timeout) and aborts the call
            # next: start nothing more, and do not wait for a task that may be
            # stuck (it goes on in the background, as joblib's threads do).
            self._scheduler.stop()
            raise
        finally:
            waits.lending(False)
            budget_mod.set_held(token)

    def terminate(self) -> None:
        self._scheduler.close(cancel=False)
        self._backend._workers = None
        contract.reset_batch_stats(self._backend)

    def abort_everything(self, ensure_ready: bool) -> None:
        if process.tracing is not None:
            process.tracing.instant("call aborted", level=self._scheduler.level)
        self._scheduler.close(cancel=True)
        self._backend._workers = None
        if ensure_ready:
            parallel = self._backend.parallel
            self._backend.configure(n_jobs=parallel.n_jobs, parallel=parallel)
