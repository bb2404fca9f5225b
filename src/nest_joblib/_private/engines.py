"""``NEST_JOBLIB_BACKENDS``: nested Dask and Ray backends usable by name.

Each named engine gets a ``nested-<engine>`` entry in ``joblib.parallel.BACKENDS``
that is only a factory function: the engine is imported, and its backend
registered, the first time the name is used. Nothing heavy is imported at
start-up or at ``import joblib``.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from . import variants


def _register_dask() -> None:
    from joblib.parallel import EXTERNAL_BACKENDS

    EXTERNAL_BACKENDS["dask"]()


def _register_ray() -> None:
    from ray.util.joblib import register_ray

    register_ray()


#: How to register each engine's base backend (the extra that installs the
#: engine is named after it: ``nest-joblib[dask]``, ``nest-joblib[ray]``).
_REGISTER: dict[str, Callable[[], None]] = {"dask": _register_dask, "ray": _register_ray}


class EngineMissing(ImportError):
    """The engine of a ``nested-<engine>`` backend is not installed."""


def lazy_backends(engines: tuple[str, ...]) -> dict[str, Callable[..., Any]]:
    return {variants.PREFIX + engine: _lazy_factory(engine) for engine in engines}


def _lazy_factory(engine: str) -> Callable[..., Any]:
    name = variants.PREFIX + engine

    def factory(*args: Any, **kwargs: Any) -> Any:
        backends = sys.modules["joblib.parallel"].BACKENDS
        if backends.get(name) is factory:
            try:
                _REGISTER[engine]()
            except ImportError as exc:
                raise EngineMissing(
                    f"the {name!r} backend needs {engine}, which is not installed "
                    f"({exc}); install it with: pip install 'nest-joblib[{engine}]'"
                ) from exc
            if backends.get(name) is factory or engine not in backends:
                variants.add_variant(sys.modules["joblib.parallel"], engine, backends[engine])
        return backends[name](*args, **kwargs)

    factory.__name__ = factory.__qualname__ = f"lazy_{engine}"
    factory.__doc__ = f"Imports {engine} and registers {name} on first use."
    return factory
