"""Nested variants of joblib backends: ``nested-<name>``.

A variant is a subclass of its base backend, made at run time and cached,
that differs in one thing: ``get_nested_backend`` hands nested ``Parallel``
calls another instance of the variant, one nesting level down, built with the
same arguments, instead of joblib's threads-then-sequential. The loky variant
also obeys the CPU budget (see :mod:`.budget` and :mod:`.scheduler`).
"""

from __future__ import annotations

import inspect
import logging
import threading
from typing import Any, Callable, ClassVar

from . import budgeted, engines_nesting
from .contract import (
    FallbackToBackend,
    LokyBackend,
    MultiprocessingBackend,
    ParallelBackendBase,
    SequentialBackend,
    ThreadingBackend,
    check_engine,
)
from .state import state

logger = logging.getLogger("nest_joblib")

PREFIX = "nested-"

#: Backends whose workers cannot start nested workers of their own: joblib's
#: sequential backend has nothing to nest, and multiprocessing pool workers
#: are daemonic processes, which may not have children. (Subclasses of the
#: latter that use other pools, such as Ray's, do nest.)
UNNESTABLE: tuple[type, ...] = (SequentialBackend, MultiprocessingBackend)

_variants: dict[type, type] = {}
_variants_lock = threading.Lock()


class NestedBackendMixin:
    """What every ``nested-<name>`` variant adds to its base backend."""

    #: The backend class this variant was made from.
    nest_base: ClassVar[type]
    #: :func:`nested_variant`, for engine mixins that re-make the variant on
    #: a worker (picklable by reference).
    nest_make: ClassVar[Callable[[type], type]]
    nesting_level: int | None
    inner_max_num_threads: int | None
    uses_threads: bool

    #: Constructor keywords that joblib passes but the base does not take
    #: (the Dask backend would forward them to every ``client.submit``).
    nest_strip: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        level = kwargs.pop("nesting_level", None)
        threads = kwargs.get("inner_max_num_threads")
        for name in self.nest_strip:
            kwargs.pop(name, None)
        # Remembered so that the next nesting level is built the same way
        # (backend kwargs, a Dask client, Ray's remote args...).
        self._nest_args = (args, dict(kwargs))
        if "nesting_level" not in self.nest_strip:
            kwargs["nesting_level"] = level
        super().__init__(*args, **kwargs)
        self.nesting_level = level
        if threads is not None:
            self.inner_max_num_threads = threads

    def get_nested_backend(self) -> tuple[ParallelBackendBase, int | None]:
        level = (self.nesting_level or 0) + 1
        args, kwargs = getattr(self, "_nest_args", ((), {}))
        nested = type(self)(*args, **kwargs)
        nested.nesting_level = level
        self._copy_nest_state(nested)
        logger.debug(
            "nesting level %d gets %s (from %s at level %d)",
            level,
            type(nested).__name__,
            type(self).__name__,
            level - 1,
        )
        return nested, None

    def _copy_nest_state(self, nested: Any) -> None:
        """Hook for mixins that carry more state to the next level."""
        nested.inner_max_num_threads = getattr(self, "inner_max_num_threads", None)

    def _check_thread_hints(self, kwargs: dict[str, Any]) -> None:
        level = self.nesting_level or 0
        wants_threads = kwargs.get("prefer") == "threads" or kwargs.get("require") == "sharedmem"
        if level >= 1 and wants_threads and not getattr(self, "uses_threads", False):
            # Inside a worker joblib treats the backend it received as chosen
            # explicitly and ignores hints; give threads as it would at the top.
            logger.debug(
                "nesting level %d asked for threads (prefer=%r, require=%r): threading",
                level,
                kwargs.get("prefer"),
                kwargs.get("require"),
            )
            raise FallbackToBackend(ThreadingBackend(nesting_level=level))

    def configure(self, n_jobs: int = 1, parallel: Any = None, **kwargs: Any) -> int:
        self._check_thread_hints(kwargs)
        return super().configure(n_jobs=n_jobs, parallel=parallel, **kwargs)  # type: ignore[misc, no-any-return]

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        # The variant class exists only where it was made; pickle the object
        # as its base class (with the base's own rules) and re-make the
        # variant on the other side.
        base_obj: Any = object.__new__(self.nest_base)
        base_obj.__dict__.update(self.__dict__)
        return _rebuild, (base_obj, self.nesting_level, self.inner_max_num_threads)


def _rebuild(
    obj: ParallelBackendBase, nesting_level: int | None, inner_max_num_threads: int | None
) -> ParallelBackendBase:
    """Unpickle a nested backend: make its variant class here, then adopt it."""
    obj.__class__ = nested_variant(type(obj))
    obj.nesting_level = nesting_level
    obj.inner_max_num_threads = inner_max_num_threads
    return obj


def can_nest(factory: object) -> bool:
    """Whether ``factory`` is a backend class that gets a nested variant."""
    return (
        isinstance(factory, type)
        and issubclass(factory, ParallelBackendBase)
        and not issubclass(factory, SequentialBackend)
        and factory not in UNNESTABLE
        and not issubclass(factory, NestedBackendMixin)
    )


def nested_variant(base: type) -> type:
    """The nested variant of backend class ``base``, made once and cached."""
    with _variants_lock:
        variant = _variants.get(base)
        if variant is None:
            if not can_nest(base):
                raise TypeError(f"{base!r} is not a joblib backend class that can nest")
            check_engine(base)
            mixins: tuple[type, ...] = (*engines_nesting.mixins_for(base), NestedBackendMixin)
            if base is LokyBackend:
                mixins = (budgeted.BudgetedLokyMixin, *mixins)
            accepted = inspect.signature(base).parameters
            strip = frozenset(
                name for name in ("nesting_level", "inner_max_num_threads") if name not in accepted
            )
            variant = type(
                f"Nested{base.__name__}",
                (*mixins, base),
                {
                    "nest_base": base,
                    "nest_make": staticmethod(nested_variant),
                    "nest_strip": strip,
                    "__module__": __name__,
                    "__qualname__": f"Nested{base.__name__}",
                },
            )
            _variants[base] = variant
            logger.debug("made nested variant %s of %s", variant.__name__, base.__qualname__)
        return variant


def add_variant(module: Any, name: str, factory: Any) -> str | None:
    """Register ``nested-<name>`` for backend ``factory`` in ``module`` (``joblib.parallel``).

    Returns its name, or ``None`` when ``factory`` cannot nest.
    """
    if name.startswith(PREFIX) or not can_nest(factory):
        logger.debug("no nested variant for backend %r (%r cannot nest)", name, factory)
        return None
    nested = PREFIX + name
    module.BACKENDS[nested] = nested_variant(factory)
    if nested not in state.variants:
        state.variants = sorted([*state.variants, nested])
    logger.debug("registered %s", nested)
    return nested
