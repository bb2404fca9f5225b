"""nest-joblib: nested ``joblib.Parallel`` calls that stay parallel.

Installed, it needs no code at all: ``nest_joblib.pth`` patches joblib as soon
as ``joblib.parallel`` is imported. This module is the explicit API, for code
written against the upstream package and for checking what the plugin did.
Importing it does not import joblib.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from typing import Any

from ._version import __version__
from ._warnings import NestJoblibWarning

__all__ = [
    "NestJoblibWarning",
    "__version__",
    "apply",
    "info",
    "is_active",
    "nested_backends",
    "trace",
]


def apply(set_default: bool = True, auto_register: bool = True) -> None:
    """Patch joblib now; calling it again changes nothing.

    ``set_default``: make ``nested-loky`` joblib's default backend, so that
    library code that never names a backend nests. ``auto_register``: give
    every backend registered later with ``register_parallel_backend`` its
    ``nested-<name>`` variant. Raises if joblib cannot be patched.
    """
    import joblib.parallel

    from ._private.patch import patch

    patch(
        joblib.parallel,
        set_default=set_default,
        auto_register=auto_register,
        source="apply()",
    )


def is_active() -> bool:
    """Whether joblib is patched, or will be as soon as it is imported."""
    import sys

    parallel = sys.modules.get("joblib.parallel")
    if parallel is None:
        # Not imported from here: the start-up module imports this package.
        startup = sys.modules.get("_nest_joblib_startup")
        return startup is not None and startup.installed_finder() is not None
    from ._private.patch import is_patched

    return is_patched(parallel)


def info() -> dict[str, Any]:
    """The CPU budget as this process sees it, as a JSON-serialisable dict.

    ``pid``; ``budget``: its size, or ``None`` when off or unavailable;
    ``source``: where the size comes from, or why there is none; ``role``:
    ``"root"`` (this process made the tree's budget), ``"worker"`` (it was
    given one) or ``None`` (no budget in use yet); ``directory``: the
    budget's directory, ``None`` until a call needs one (``info()`` makes
    none); ``held`` and ``held_slots``: the tokens this process holds;
    ``free``: the tokens no process of the tree holds (``None`` without a
    directory); ``placed_elsewhere``: tasks of this process's nested calls
    running in other processes right now.
    """
    import sys

    if "joblib.parallel" not in sys.modules:
        return {
            "pid": os.getpid(),
            "budget": None,
            "source": "none: joblib is not imported in this process",
            "role": None,
            "directory": None,
            "held": 0,
            "held_slots": [],
            "free": None,
            "placed_elsewhere": 0,
        }
    from ._private.live import info as live_info

    return live_info()


def nested_backends() -> list[str]:
    """Names of the ``nested-<name>`` backends registered with joblib so far."""
    import sys

    parallel = sys.modules.get("joblib.parallel")
    if parallel is None:
        return []
    return sorted(name for name in parallel.BACKENDS if name.startswith("nested-"))


def trace(path: str | os.PathLike[str]) -> AbstractContextManager[str]:
    """Trace the nested calls made inside ``with nest_joblib.trace(path):``.

    Every task of the tree rooted in this process gets a slice in one file
    in the Chrome Trace Event Format, written at ``path`` when the block ends
    (Perfetto, ``chrome://tracing`` and speedscope open it); the block gives
    that path (``path.<pid>`` when another root traces to ``path`` already).
    ``NEST_JOBLIB_TRACE`` does the same for a whole program.
    """
    from ._private.trace import traced

    return traced(path)
