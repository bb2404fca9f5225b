"""The loky variant's side of the CPU budget.

- at the top level (nesting level 0) it is loky, with at most ``budget``
  workers, each batch holding a token while it runs;
- at nested levels it runs its tasks through a :class:`.scheduler.Scheduler`
  (inline in the caller, or in lanes when a CPU is free);
- while any of its calls waits for results, the waiting task lends its token;
- the workers of a top-level call with nothing to do stand by to help nested
  calls elsewhere (see :mod:`.standby`).

With ``NEST_JOBLIB_CPUS=off`` it is plain loky at every level (naive nesting).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any, Callable

from joblib._parallel_backends import FallbackToBackend, LokyBackend, SequentialBackend
from joblib.parallel import cpu_count

from . import budget as budget_mod
from . import wakeup
from .budget import BudgetRef, TokenHeld
from .scheduler import Scheduler
from .standby import Spares
from .state import settings

logger = logging.getLogger("nest_joblib")

# joblib 1.5 renamed apply_async to submit.
_loky_submit = LokyBackend.__dict__.get("submit") or LokyBackend.__dict__["apply_async"]


def budget_size() -> int | None:
    """The budget in force in this process: ``None`` when it is off."""
    cpus = settings().cpus
    if cpus == 0:
        return None
    return cpus if cpus is not None else cpu_count()


class _NoTempFolders:
    """Stands in for loky's executor where joblib reaches for its temp folders.

    joblib's ``Parallel`` tells a loky backend's executor which call is
    pickling (to share large arrays by memory map). Lanes pickle arrays by
    value, so there is nothing to tell.
    """

    class _TempFolderManager:
        def set_current_context(self, context_id: str) -> None:
            pass

    _temp_folder_manager = _TempFolderManager()


_NO_MEMMAPPING = _NoTempFolders()


class BudgetedLokyMixin:
    nesting_level: int | None
    parallel: Any
    _nest_ref: BudgetRef | None

    def _budget_ref(self) -> BudgetRef | None:
        try:
            return self.__dict__["_nest_ref"]  # type: ignore[no-any-return]
        except KeyError:
            pass
        size = budget_size()
        ref = None if size is None else budget_mod.root_budget(size)
        self._nest_ref = ref
        return ref

    def _copy_nest_state(self, nested: Any) -> None:
        nested._nest_ref = self._budget_ref()

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        ref = self._budget_ref()
        level = self.nesting_level or 0
        if ref is None or level == 0:
            n: int = super().effective_n_jobs(n_jobs)  # type: ignore[misc]
            return n if ref is None else max(1, min(n, ref.size))
        # Nested levels run in the threads of a scheduler: loky's "cannot be
        # nested below threads" does not apply, its lanes are made safely.
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None or multiprocessing.current_process().daemon:
            return 1
        if n_jobs < 0:
            n_jobs = max(ref.size + 1 + n_jobs, 1)
        return max(1, min(n_jobs, ref.size))

    def configure(self, n_jobs: int = 1, parallel: Any = None, **kwargs: Any) -> int:
        ref = self._budget_ref()
        level = self.nesting_level or 0
        if ref is None or level == 0:
            n: int = super().configure(n_jobs=n_jobs, parallel=parallel, **kwargs)  # type: ignore[misc]
            self._nest_ramp = n
            if ref is not None:
                self._nest_spares = Spares(ref, n, functools.partial(_loky_submit, self))
            return n
        self._check_thread_hints(kwargs)  # type: ignore[attr-defined]
        n = self.effective_n_jobs(n_jobs)
        if n == 1:
            raise FallbackToBackend(SequentialBackend(nesting_level=level))
        budget = budget_mod.budget_for(ref)
        self.parallel = parallel
        self._workers: Any = _NO_MEMMAPPING
        # Decided while the caller still holds its own token: a free token
        # now is a CPU that nobody in the tree is using.
        inline = not budget.has_free()
        env = self._prepare_worker_env(n)  # type: ignore[attr-defined]
        self._scheduler = Scheduler(n, budget, ref, env, inline, level)
        logger.debug(
            "nesting level %d: up to %d tasks at once, %s",
            level,
            n,
            "inline first (no free CPU), lanes as CPUs free up"
            if inline
            else "in lane processes (a CPU is free)",
        )
        return n

    def _submit(self, func: Callable[[], Any], callback: Callable[..., Any] | None) -> Any:
        scheduler: Scheduler | None = self.__dict__.get("_scheduler")
        if scheduler is None:
            ref = self._budget_ref()
            if ref is None:
                return _loky_submit(self, func, callback)
            # The first batches, one per worker, hold their token from now
            # on, so that nested calls elsewhere do not take these CPUs for
            # free while the workers start. (Only those: they are at the head
            # of loky's queue, so each is taken at once by a worker; a token
            # held for a batch further back would starve the workers.)
            budget = budget_mod.budget_for(ref)
            ramp = self.__dict__.get("_nest_ramp", 0)
            self._nest_ramp = max(0, ramp - 1)
            token = budget.try_acquire() if ramp > 0 else None
            slot = None if token is None else budget.hand_off(token)
            job = _loky_submit(self, TokenHeld(func, ref, slot, keep=True), callback)
            if slot is not None:
                budget.cancel_handoff_when_done(slot, job)
            spares: Spares | None = self.__dict__.get("_nest_spares")
            if spares is not None:
                spares.batch_sent(job, with_token=slot is not None)
            return job
        future: Future[Any] = scheduler.submit(func)
        future.get = future.result  # type: ignore[attr-defined]  # joblib < 1.5
        if callback is not None:
            future.add_done_callback(callback)
        return future

    def submit(self, func: Callable[[], Any], callback: Callable[..., Any] | None = None) -> Any:
        return self._submit(func, callback)

    def apply_async(
        self, func: Callable[[], Any], callback: Callable[..., Any] | None = None
    ) -> Any:
        return self._submit(func, callback)

    @contextlib.contextmanager
    def retrieval_context(self) -> Iterator[None]:
        token = budget_mod.held()
        ref = self._budget_ref()
        if ref is None:
            yield
            return
        if token is None:
            spares: Spares | None = self.__dict__.get("_nest_spares")
            if spares is None or self.nesting_level:
                yield
                return
            with spares.standing_by(self.parallel):
                yield
            return
        scheduler: Scheduler | None = self.__dict__.get("_scheduler")
        budget_mod.set_held(None)
        if scheduler is not None:
            scheduler.lend(token)
        else:
            token.release()
        try:
            with wakeup.waking(scheduler.news if scheduler is not None else None):
                yield
        finally:
            if scheduler is not None:
                back = scheduler.take_back()
            else:
                back = budget_mod.budget_for(ref).acquire()
            budget_mod.set_held(back)

    def _close_scheduler(self, cancel: bool) -> bool:
        """Close this call's scheduler; False if this call runs as plain loky."""
        scheduler: Scheduler | None = self.__dict__.pop("_scheduler", None)
        if scheduler is None and self.__dict__.get("_workers") is not _NO_MEMMAPPING:
            return False
        self._workers = None
        if scheduler is not None:
            scheduler.close(cancel=cancel)
        return True

    def terminate(self) -> None:
        if not self._close_scheduler(cancel=False):
            super().terminate()  # type: ignore[misc]
            return
        self.reset_batch_stats()  # type: ignore[attr-defined]

    def abort_everything(self, ensure_ready: bool = True) -> None:
        if not self._close_scheduler(cancel=True):
            super().abort_everything(ensure_ready=ensure_ready)  # type: ignore[misc]
            return
        if ensure_ready:
            self.configure(n_jobs=self.parallel.n_jobs, parallel=self.parallel)
