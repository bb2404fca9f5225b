"""Everything nest-joblib takes from joblib and loky beyond their public API.

joblib documents ``Parallel``, ``parallel_config`` and
``register_parallel_backend``; a nested backend also needs some of joblib's and
loky's private names. They all live here, with their version gates, so that a
joblib release that changes one of them is caught in one place: :func:`check`
runs before the patch commits, and a joblib that fails it stays plain, with one
warning naming the missing piece. An engine's part (Dask, Ray) is checked when
its ``nested-<engine>`` variant is first made (:func:`check_engine`), so that
nothing heavy is imported at ``import joblib``.
"""

from __future__ import annotations

import inspect
import re
import sys
import threading
from types import ModuleType
from typing import Any, Callable

from joblib import _memmapping_reducer as _memmapping
from joblib import _parallel_backends as _backends
from joblib import parallel as _parallel
from joblib.externals.loky import ProcessPoolExecutor
from joblib.externals.loky import process_executor as _executor
from joblib.externals.loky.backend import reduction as _reduction

__all__ = [
    "DASK_BACKEND",
    "RAY_BACKEND",
    "ContractError",
    "FallbackToBackend",
    "LokyBackend",
    "MultiprocessingBackend",
    "NoTempFolders",
    "ParallelBackendBase",
    "PoolManagerMixin",
    "SequentialBackend",
    "ThreadingBackend",
    "TerminatedWorkerError",
    "aborting",
    "batch_function",
    "check",
    "check_engine",
    "clean_temp_folder",
    "dispatching",
    "dumps",
    "executor_broken",
    "is_loky_worker",
    "keep_traceback",
    "lane_alive",
    "loky_submit",
    "memmapping_reducers",
    "new_lane",
    "on_loky_thread",
    "parallel_id",
    "pool_folders",
    "picklable_exception",
    "prepare_worker_env",
    "reset_batch_stats",
    "terminate_pool",
    "temp_folder",
    "temp_folder_manager",
]


class ContractError(RuntimeError):
    """joblib or loky lacks a piece that nest-joblib relies on."""


# -- joblib.parallel ------------------------------------------------------------

#: Module globals of ``joblib.parallel`` that the patch reads or replaces.
PARALLEL_GLOBALS = ("BACKENDS", "DEFAULT_BACKEND", "EXTERNAL_BACKENDS", "register_parallel_backend")
#: ``Parallel`` attributes read while a top-level call runs (see .standby).
PARALLEL_ATTRIBUTES = ("_iterating", "_aborting")


def dispatching(parallel: Any) -> bool:
    """Whether ``parallel`` still has batches to dispatch (yes, before it says)."""
    return bool(getattr(parallel, "_iterating", True))


def aborting(parallel: Any) -> bool:
    """Whether ``parallel`` is aborting after an error (yes, before it says)."""
    return bool(getattr(parallel, "_aborting", True))


#: ``BatchedCalls`` attribute: its calls, ``(function, args, kwargs)`` each (see .scheduling.local).
BATCH_ATTRIBUTES = ("items",)


def batch_function(batch: object) -> object:
    """The function of a joblib batch's first call; anything else is its own function."""
    items = getattr(batch, "items", None)
    try:
        return items[0][0] if isinstance(items, list) else batch
    except (IndexError, KeyError, TypeError):  # an empty batch, or not joblib's
        return batch


# -- joblib._parallel_backends --------------------------------------------------

ParallelBackendBase = _backends.ParallelBackendBase
SequentialBackend = _backends.SequentialBackend
ThreadingBackend = _backends.ThreadingBackend
MultiprocessingBackend = _backends.MultiprocessingBackend
LokyBackend = _backends.LokyBackend
FallbackToBackend = _backends.FallbackToBackend
#: What joblib's pool backends (threading, multiprocessing) end their pool with.
PoolManagerMixin: type | None = getattr(_backends, "PoolManagerMixin", None)


def terminate_pool(backend: Any) -> None:
    """``PoolManagerMixin.terminate`` without its ``close()`` first.

    At interpreter exit, multiprocessing's finalizer of a pool
    (``Pool._terminate_pool``) sets the pool's worker handler to TERMINATE but
    leaves ``Pool._state`` at RUN. A joblib call that aborts in another thread
    at that moment runs ``close()``, which still sees RUN and writes CLOSE back
    onto the handler, then ``terminate()``, a no-op once the finalizer ran: the
    handler then waits for results that never come, and the exit joins it for
    ever. ``terminate()`` alone ends a pool just as well, without that window.
    """
    pool = backend._pool
    if pool is not None:
        pool.terminate()  # joins the pool's threads (or processes)
        backend._pool = None


# joblib 1.5 renamed apply_async to submit.
_LOKY_SUBMIT: Callable[..., Any] | None = LokyBackend.__dict__.get(
    "submit"
) or LokyBackend.__dict__.get("apply_async")


def loky_submit(backend: Any, func: Callable[[], Any], callback: Any = None) -> Any:
    """``LokyBackend``'s own submit, past the variant's override."""
    assert _LOKY_SUBMIT is not None  # see check()
    return _LOKY_SUBMIT(backend, func, callback)


def prepare_worker_env(backend: Any, n_jobs: int) -> dict[str, str]:
    """The environment joblib gives workers (thread limits for the next level)."""
    env: dict[str, str] = backend._prepare_worker_env(n_jobs)
    return env


def reset_batch_stats(backend: Any) -> None:
    backend.reset_batch_stats()


class NoTempFolders:
    """Stands in for loky's executor where joblib reaches for its temp folders.

    joblib's ``Parallel`` tells a loky backend's executor
    (``backend._workers._temp_folder_manager``) which call is pickling, to
    share large arrays by memory map. A nested call's tasks do not go through
    that executor, so there is nothing to tell.
    """

    class _TempFolderManager:
        def set_current_context(self, context_id: str) -> None:
            pass

    _temp_folder_manager = _TempFolderManager()


# -- loky -------------------------------------------------------------------------

#: How loky starts a worker on POSIX: ``python -m <this> --process-name ... --pipe N``.
_LOKY_WORKER_MAIN = "joblib.externals.loky.backend.popen_loky_posix"


def is_loky_worker() -> bool:
    """Whether this process is a loky worker (of any pool: joblib's, a nested one, a lane).

    Read from the command line, as nothing else is set yet while the worker
    imports joblib (Linux, or Python 3.10 and later; elsewhere: no).
    """
    argv: list[str] | None = getattr(sys, "orig_argv", None)
    if argv is None:
        try:
            with open("/proc/self/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            return False
    return any(a == "-m" and b == _LOKY_WORKER_MAIN for a, b in zip(argv, argv[1:]))


def new_lane(
    env: dict[str, str], initializer: Callable[..., None], initargs: tuple[Any, ...]
) -> Any:
    """A loky executor of one worker process (not the reusable singleton)."""
    return ProcessPoolExecutor(max_workers=1, env=env, initializer=initializer, initargs=initargs)


def on_loky_thread() -> bool:
    """Whether this thread is a loky executor's manager thread (it runs futures' callbacks)."""
    return isinstance(threading.current_thread(), _executor._ExecutorManagerThread)


def lane_alive(executor: Any) -> bool:
    """Whether the one worker process of a lane (a loky executor) is alive and usable."""
    processes = list(getattr(executor, "_processes", {}).values())
    return not executor_broken(executor) and all(p.is_alive() for p in processes)


#: What a task fails with when the worker process running it died (loky's own).
TerminatedWorkerError: type[BaseException] = getattr(
    _executor, "TerminatedWorkerError", RuntimeError
)


def executor_broken(executor: Any) -> bool:
    """Whether a loky executor lost a worker and cannot be used again."""
    flags = getattr(executor, "_flags", None)
    return flags is not None and bool(flags.broken)


def dumps(obj: Any, reducers: dict[type, Any] | None = None) -> bytes:
    """Pickle as loky pickles what it sends to workers (with ``reducers``, if given)."""
    return bytes(_reduction.dumps(obj, reducers=reducers))


# -- memory maps (joblib._memmapping_reducer) -------------------------------------


def memmapping_reducers(
    max_nbytes: int | None, mmap_mode: str, resolve_folder: Callable[[], str]
) -> dict[type, Any]:
    """joblib's own reducers that send large numpy arrays as memory maps.

    The ones joblib's loky pool installs: an array that already is a memory
    map (or a view of one) travels as a reference to its file; a fresh array
    above ``max_nbytes`` is dumped once into ``resolve_folder()`` and travels
    as a reference to that file; ``None`` sends fresh arrays by value. Files
    are not unlinked when a receiver collects its map: the folder goes when
    the call ends (:func:`clean_temp_folder`), as receivers need not be loky
    workers.
    """
    forward, _backward = _memmapping.get_memmapping_reducers(
        temp_folder_resolver=resolve_folder,
        max_nbytes=max_nbytes,
        mmap_mode=mmap_mode,
        verbose=0,
        prewarm=False,
        unlink_on_gc_collect=False,
    )
    return dict(forward)


def temp_folder_manager(root: str | None, context: str) -> Any:
    """joblib's manager of one call's memory-map folder (under ``root``, or joblib's default).

    The folder's name ends with ``context`` (``..._<pid>_<manager>_<context>``):
    an id known before joblib makes the folder, so it can be recorded first.
    """
    return _memmapping.TemporaryResourcesManager(root, context_id=context)


#: What joblib puts in a memory-map folder's name: a random id, 32 hex digits.
_FOLDER_ID = re.compile(r"[0-9a-f]{32}\Z")


def parallel_id(parallel: Any) -> str | None:
    """The id that names the memory-map folder of a top-level call (``Parallel._id``)."""
    ident = getattr(parallel, "_id", None)
    return ident if isinstance(ident, str) and _FOLDER_ID.match(ident) else None


def pool_folders(backend: Any) -> tuple[str, dict[str, str]] | None:
    """The id that names a configured loky backend's memory-map folders, and those folders.

    Its executor's ``TemporaryResourcesManager``: its ``_id`` is in the name
    of the folder of every call that the (reusable) executor runs, and its
    ``_cached_temp_folders`` (context -> folder, a dict that joblib keeps and
    empties in place) loses each folder that joblib deleted.
    """
    manager = getattr(getattr(backend, "_workers", None), "_temp_folder_manager", None)
    ident = getattr(manager, "_id", None)
    folders = getattr(manager, "_cached_temp_folders", None)
    if isinstance(ident, str) and _FOLDER_ID.match(ident) and isinstance(folders, dict):
        return ident, folders
    return None


def temp_folder(manager: Any) -> str:
    """The folder of ``manager``, made on first use."""
    return str(manager.resolve_temp_folder_name())


def clean_temp_folder(manager: Any) -> None:
    """Delete the folder and its files now (maps that are open stay readable)."""
    manager._clean_temporary_resources(force=True, allow_non_empty=True)


def picklable_exception(exc: BaseException) -> object:
    """``exc`` with its formatted traceback, to unpickle as loky's workers' errors do."""
    return _executor._ExceptionWithTraceback(exc)


def keep_traceback(exc: BaseException) -> None:
    """Keep a task's frames: joblib drops ``__traceback__`` when it re-raises.

    Loky attaches the worker's formatted traceback as the cause; the same for
    a task run in the caller's process, so the caller sees the leaf's frames
    either way.
    """
    rebuild, args = _executor._ExceptionWithTraceback(exc).__reduce__()
    rebuild(*args)  # what unpickling a worker's error does: the cause carries the text


# -- engines -------------------------------------------------------------------

#: Engine backends, matched by dotted name anywhere in a backend's MRO (no import).
DASK_BACKEND = "joblib._dask.DaskDistributedBackend"
RAY_BACKEND = "ray.util.joblib.ray_backend.RayBackend"


def engine_of(base: type) -> str | None:
    """``"dask"``, ``"ray"`` or ``None``: the engine ``base`` belongs to."""
    names = {f"{cls.__module__}.{cls.__qualname__}" for cls in base.__mro__}
    if DASK_BACKEND in names:
        return "dask"
    if RAY_BACKEND in names:
        return "ray"
    return None


def check_engine(base: type) -> None:
    """Check the engine's part of the contract; raises :class:`ContractError`."""
    engine = engine_of(base)
    if engine == "dask":
        to_func_args = getattr(base, "_to_func_args", None)
        if to_func_args is None or not inspect.iscoroutinefunction(to_func_args):
            raise ContractError(
                f"{DASK_BACKEND} has no coroutine _to_func_args (the batch it ships)"
            )


# -- the check ------------------------------------------------------------------


def _uses(cls: type, names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` no method of ``cls`` mentions (attributes set at run time)."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        for value in vars(klass).values():
            code = getattr(value, "__code__", None)
            if code is not None:
                seen.update(code.co_names)
    return [name for name in names if name not in seen]


def check(parallel: ModuleType = _parallel) -> None:
    """Raise :class:`ContractError` naming every piece that joblib or loky lacks.

    ``parallel``: the ``joblib.parallel`` module about to be patched.
    """
    missing = _missing_in_joblib(parallel) + _missing_in_loky() + _missing_memory_maps()
    if missing:
        raise ContractError(f"joblib lacks {', '.join(missing)}")


def _missing_in_joblib(parallel: ModuleType) -> list[str]:
    missing = [f"joblib.parallel.{n}" for n in PARALLEL_GLOBALS if not hasattr(parallel, n)]
    for name in ("BACKENDS", "EXTERNAL_BACKENDS"):
        if hasattr(parallel, name) and not isinstance(getattr(parallel, name), dict):
            missing.append(f"joblib.parallel.{name} as a dict")
    cls = getattr(parallel, "Parallel", None)
    if isinstance(cls, type):
        missing += [f"Parallel.{n}" for n in _uses(cls, PARALLEL_ATTRIBUTES)]
    else:
        missing.append("joblib.parallel.Parallel")
    batch = getattr(parallel, "BatchedCalls", None)
    if isinstance(batch, type):
        missing += [f"BatchedCalls.{n}" for n in _uses(batch, BATCH_ATTRIBUTES)]
    else:
        missing.append("joblib.parallel.BatchedCalls")
    if _LOKY_SUBMIT is None:
        missing.append("LokyBackend.submit (or apply_async)")
    if PoolManagerMixin is None or "terminate" not in vars(PoolManagerMixin):
        missing.append("joblib._parallel_backends.PoolManagerMixin.terminate")
    elif _uses(PoolManagerMixin, ("_pool",)):
        missing.append("PoolManagerMixin._pool")
    return missing + [
        f"LokyBackend.{n}"
        for n in ("_prepare_worker_env", "reset_batch_stats", "get_nested_backend")
        if not hasattr(LokyBackend, n)
    ]


def _missing_in_loky() -> list[str]:
    parameters = inspect.signature(ProcessPoolExecutor).parameters
    missing = [
        f"loky ProcessPoolExecutor({n}=)"
        for n in ("env", "initializer", "initargs")
        if n not in parameters
    ]
    missing += [
        f"loky ProcessPoolExecutor.{n}"
        for n in _uses(ProcessPoolExecutor, ("_flags", "_processes"))
    ]
    missing += [
        f"loky process_executor.{n}"
        for n in (
            "_ExecutorManagerThread",
            "_RemoteTraceback",
            "_ExceptionWithTraceback",
            "TerminatedWorkerError",
        )
        if not hasattr(_executor, n)
    ]
    if not hasattr(_reduction, "dumps"):
        missing.append("loky backend.reduction.dumps")
    return missing


def _missing_memory_maps() -> list[str]:
    missing = []
    reducers = getattr(_memmapping, "get_memmapping_reducers", None)
    if reducers is None:
        missing.append("joblib._memmapping_reducer.get_memmapping_reducers")
    else:
        parameters = inspect.signature(reducers).parameters
        missing += [
            f"get_memmapping_reducers({n}=)"
            for n in ("temp_folder_resolver", "max_nbytes", "mmap_mode", "unlink_on_gc_collect")
            if n not in parameters
        ]
    manager = getattr(_memmapping, "TemporaryResourcesManager", None)
    if manager is not None and "context_id" not in inspect.signature(manager).parameters:
        missing.append("TemporaryResourcesManager(context_id=)")
    return missing + [
        f"TemporaryResourcesManager.{n}"
        for n in ("resolve_temp_folder_name", "_clean_temporary_resources")
        if not hasattr(manager, n)
    ]
