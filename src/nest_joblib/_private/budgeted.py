"""The loky variant's side of the CPU budget: which of its two shapes a call takes.

- at the top level (nesting level 0 in a process that is no worker of a
  tree), or without a budget, a call is loky's own pool, with the workers
  plain joblib would start: :class:`.pool.TopLevelPool`;
- at nested levels its tasks go to a scheduler (inline in the caller, in
  lanes, in helpers): :class:`.nested.NestedCall`.

The shape is chosen once, in ``configure``; every other method hands over to it.
With ``NEST_JOBLIB_CPUS=off`` it is plain loky at every level (naive nesting);
with a budget of 1 there is no CPU to add, and nested calls nest as in plain
joblib (threads at the first level, sequential below), as they do when no
budget can be made.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from contextlib import AbstractContextManager
from typing import Any, Callable, Union

from joblib.parallel import cpu_count

from nest_joblib._warnings import warn

from . import budget as budget_mod
from . import contract, directory, process
from .arrays import TaskPickler
from .budget import BudgetRef
from .nested import NestedCall
from .pool import TopLevelPool
from .scheduling import Scheduler
from .state import settings

logger = logging.getLogger("nest_joblib")

Shape = Union[TopLevelPool, NestedCall]


def budget_size() -> int | None:
    """The budget in force in this process: ``None`` when it is off."""
    cpus = settings().cpus
    if cpus == 0:
        return None
    return cpus if cpus is not None else cpu_count()


def _trace_root(path: str) -> None:
    from . import trace

    try:
        trace.root(path)
    except OSError as exc:
        warn(f"cannot trace to NEST_JOBLIB_TRACE={path!r} ({exc}); nothing is traced")


def _record_call(parallel: Any) -> str | None:
    """Record the memory-map folder of a top-level call, if its tree has a directory yet."""
    ref = budget_mod.tree_ref()
    ident = contract.parallel_id(parallel)
    if ref is None or not ref.path or ident is None:
        return None
    return directory.record_maps(ref.path, ident)


def _record_executor(ref: BudgetRef | None, pool: tuple[str, dict[str, str]] | None) -> str | None:
    """Record the memory-map folders of a loky executor (named with its manager's id), once.

    The records of executors whose folders joblib has all deleted (an
    aborted call's, whose workers were killed) are forgotten meanwhile.
    """
    if ref is None or not ref.path or pool is None:
        return None
    ident, folders = pool
    recorded: dict[str, tuple[str, dict[str, str]]] = process.entry("memory-map records", dict)
    for old, (record, left) in list(recorded.items()):
        if old != ident and not any(os.path.lexists(f) for f in list(left.values())):
            directory.forget_maps(record)
            del recorded[old]
    if ident not in recorded:
        made = directory.record_maps(ref.path, ident)
        if made is None:
            return None
        recorded[ident] = (made, folders)
    return recorded[ident][0]


#: Said once per process (NEST_JOBLIB_DEBUG): a budget of 1 nests as plain joblib.
_said_plain = False


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
        ref = budget_mod.given_ref()
        # A budget of 1 has no CPU to add: plain joblib's own nesting, no directory.
        if ref is None and size is not None and size > 1 and budget_mod.unavailable() is None:
            try:
                ref = budget_mod.root_budget(size)
                trace = settings().trace
                if trace is not None:  # this process roots a traced tree
                    _trace_root(trace)
            except budget_mod.BudgetUnavailable as exc:
                warn(
                    f"cannot make the CPU budget ({exc}); nested calls of this process "
                    "run as in plain joblib (threads, then sequential)"
                )
        self._nest_ref = ref
        return ref

    def get_nested_backend(self) -> Any:
        if self._budget_ref() is None and (
            budget_mod.unavailable() is not None or budget_size() == 1
        ):
            global _said_plain
            if not _said_plain and budget_mod.unavailable() is None:
                _said_plain = True
                logger.debug(
                    "a budget of 1 CPU: nothing to add, nested calls nest as in plain joblib "
                    "(threads at the first level, sequential below)"
                )
            return contract.ParallelBackendBase.get_nested_backend(self)  # joblib's own
        return super().get_nested_backend()  # type: ignore[misc]

    def _copy_nest_state(self, nested: Any) -> None:
        nested._nest_ref = self._budget_ref()
        super()._copy_nest_state(nested)  # type: ignore[misc]

    def _is_pool(self) -> bool:
        # Level 0 first: a call that turns out sequential makes no budget directory.
        # A call from a thread of a task is at level 0 too (joblib's nesting
        # context is per thread), but in a process of a tree: it is nested there.
        top = not self.nesting_level and budget_mod.given_ref() is None
        return top or self._budget_ref() is None

    def _shape(self) -> Shape:
        shape: Shape | None = self.__dict__.get("_nest_shape")
        if shape is None:  # not configured yet: the base backend's own ways
            shape = TopLevelPool(self, super(), None, 0)
        return shape

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        if self._is_pool():  # joblib's meaning of n_jobs: the budget limits what we add
            n: int = super().effective_n_jobs(n_jobs)  # type: ignore[misc]
            return n
        ref = self._budget_ref()
        assert ref is not None
        # Nested levels run in the threads of a scheduler: loky's "cannot be
        # nested below threads" does not apply, its lanes are made safely.
        # n_jobs keeps joblib's meaning: tasks in flight, which tokens do not
        # limit (only the tasks that compute, see .waits).
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None or multiprocessing.current_process().daemon:
            return 1
        if n_jobs < 0:
            n_jobs = max(cpu_count() + 1 + n_jobs, 1)
        return n_jobs

    def configure(self, n_jobs: int = 1, parallel: Any = None, **kwargs: Any) -> int:
        if self._is_pool():
            # joblib may make the call's memory-map folder in configure (/dev/shm).
            early = _record_call(parallel)
            n: int = super().configure(n_jobs=n_jobs, parallel=parallel, **kwargs)  # type: ignore[misc]
            # Past loky's own configure: n > 1, so the call needs tokens now.
            ref = self._budget_ref()
            self._nest_shape: Shape = TopLevelPool(self, super(), ref, n)
            # Every folder of the pool's executor is named with its manager's id.
            if _record_executor(ref, contract.pool_folders(self)) and early:
                directory.forget_maps(early)
            return n
        ref = self._budget_ref()
        assert ref is not None
        level = self.nesting_level or 1
        self._check_thread_hints(kwargs)  # type: ignore[attr-defined]
        n = self.effective_n_jobs(n_jobs)
        if n == 1:
            raise contract.FallbackToBackend(contract.SequentialBackend(nesting_level=level))
        budget = budget_mod.budget_for(ref)
        self.parallel = parallel
        self._workers: Any = contract.NoTempFolders()
        env = contract.prepare_worker_env(self, n)
        pickler = TaskPickler(
            kwargs.get("max_nbytes", 1024**2),
            kwargs.get("mmap_mode", "r"),
            kwargs.get("temp_folder"),
            ref.path or None,
        )
        scheduler = Scheduler(n, budget, ref, env, level, pickler)
        self._nest_shape = NestedCall(self, scheduler)
        logger.debug(
            "nesting level %d: up to %d tasks at once, in its caller first, lanes as CPUs free up",
            level,
            n,
        )
        return n

    def submit(self, func: Callable[[], Any], callback: Callable[..., Any] | None = None) -> Any:
        return self._shape().submit(func, callback)

    def apply_async(
        self, func: Callable[[], Any], callback: Callable[..., Any] | None = None
    ) -> Any:
        return self._shape().submit(func, callback)

    def retrieval_context(self) -> AbstractContextManager[None]:
        return self._shape().retrieval_context()

    def terminate(self) -> None:
        self._shape().terminate()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        self._shape().abort_everything(ensure_ready)
