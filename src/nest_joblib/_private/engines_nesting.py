"""What the Dask and Ray backends need beyond the generic nested variant.

- Dask: joblib's Dask backend does not ship ``BatchedCalls`` to the workers
  but its own ``Batch``, which runs every task under a hard-coded plain
  ``"dask"`` backend, so the variant must ship its own batch. It must not
  carry a backend instance: the worker unpickles tasks outside any task,
  where the backend's ``get_client()`` fails; it builds it inside the task.
  Dask's scheduler is the budget: ``retrieval_context`` secedes the waiting
  task from its worker thread, so nested levels cannot deadlock.
- Ray: each ``Parallel`` call starts a pool of actors that reserve no CPU
  (``num_cpus=0``), so nothing stops ``n_jobs=-1`` at every level from
  starting (cluster CPUs)^depth actors. Each nested call gets a share of the
  cluster's CPUs instead: the share of its parent divided by the parent's
  ``n_jobs``, at least one (then it runs in its caller, as joblib would).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from .contract import engine_of

logger = logging.getLogger("nest_joblib")


def mixins_for(base: type) -> tuple[type, ...]:
    """Engine mixins that the nested variant of ``base`` needs."""
    engine = engine_of(base)
    if engine == "dask":
        return (DaskNestingMixin,)
    if engine == "ray":
        return (RayNestingMixin,)
    return ()


class _NestedDaskBatch:
    """Runs a batch on a Dask worker under the nested variant, one level down."""

    def __init__(
        self, batch: Any, make: Callable[[type], type], base: type, level: int, threads: int | None
    ) -> None:
        self.batch = batch
        self.spec = (make, base, level, threads)

    def __call__(self, tasks: Any = None) -> list[Any]:
        from joblib.parallel import parallel_config

        make, base, level, threads = self.spec
        backend = make(base)()  # get_client() works inside a task
        backend.nesting_level = level
        backend.inner_max_num_threads = threads
        with parallel_config(backend=backend):
            return [func(*args, **kwargs) for func, args, kwargs in tasks]

    def __repr__(self) -> str:  # what the Dask dashboard shows
        return repr(self.batch)


class DaskNestingMixin:
    nest_base: type
    nest_make: Callable[[type], type]
    nesting_level: int | None
    inner_max_num_threads: int | None

    async def _to_func_args(self, func: Any) -> tuple[Any, Any]:
        batch, tasks = await super()._to_func_args(func)  # type: ignore[misc]
        level = (self.nesting_level or 0) + 1
        nested = _NestedDaskBatch(
            batch, self.nest_make, self.nest_base, level, self.inner_max_num_threads
        )
        return nested, tasks


def _ray_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


class RayNestingMixin:
    _nest_share: int | None = None
    _nest_n: int = 1
    nesting_level: int | None

    def _capped(self, n_jobs: int) -> int:
        n = n_jobs or 1 if n_jobs is None or n_jobs >= 0 else max(_ray_cpus() + 1 + n_jobs, 1)
        if self._nest_share is not None:
            n = max(1, min(n, self._nest_share))
        return n

    def effective_n_jobs(self, n_jobs: int) -> int:
        n: int = super().effective_n_jobs(n_jobs)  # type: ignore[misc]
        return n if self._nest_share is None else max(1, min(n, self._nest_share))

    def configure(self, n_jobs: int = 1, parallel: Any = None, **kwargs: Any) -> int:
        n = self._capped(n_jobs)
        self._nest_n = n
        logger.debug(
            "ray at nesting level %d: %d pool actors (share %s)",
            self.nesting_level or 0,
            n,
            self._nest_share,
        )
        return super().configure(n, parallel, **kwargs)  # type: ignore[misc, no-any-return]

    def _copy_nest_state(self, nested: Any) -> None:
        share = self._nest_share if self._nest_share is not None else _ray_cpus()
        nested._nest_share = max(1, share // max(1, self._nest_n))
        super()._copy_nest_state(nested)  # type: ignore[misc]
