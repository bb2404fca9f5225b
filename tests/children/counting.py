"""Counts how often the finder's hook ran, and how often ``joblib.parallel`` went from
plain to patched; :func:`report` prints what a robustness case checks.

Import it before anything imports joblib: the child programs ``robust_*``
import joblib only in their ``main()``.
"""

from __future__ import annotations

import json
import sys
from types import ModuleType
from typing import Any

import nest_joblib._hook as _h

COUNTS = {"hook": 0, "patched": 0}
_real_hook = _h.patch_module


def _counting_hook(module: ModuleType) -> None:
    COUNTS["hook"] += 1
    from nest_joblib._private import patch as _p

    if not getattr(_p.patch, "_counting", False):
        real_patch = _p.patch

        def counted(module: ModuleType, *args: Any, **kwargs: Any) -> None:
            before = _p.is_patched(module)
            try:
                return real_patch(module, *args, **kwargs)
            finally:
                if not before and _p.is_patched(module):
                    COUNTS["patched"] += 1

        counted._counting = True  # type: ignore[attr-defined]
        _p.patch = counted
    _real_hook(module)


_h.patch_module = _counting_hook


def report(**extra: object) -> None:
    """Print the state of joblib and of the plugin, with ``extra``, as the last JSON line."""
    import joblib
    import joblib.parallel as jp

    from nest_joblib._private.patch import _MARK, is_patched
    from nest_joblib._private.state import state

    register = jp.register_parallel_backend
    original = getattr(register, _MARK, None)
    out = {
        "counts": COUNTS,
        "patched": is_patched(jp),
        "default": jp.DEFAULT_BACKEND,
        "double_wrapped": original is not None and hasattr(original, _MARK),
        "rebound": joblib.register_parallel_backend is register,
        "variants": sorted(k for k in jp.BACKENDS if k.startswith("nested-")),
        "state": [state.patched, state.failure],
        "finders": sum(type(f).__name__ == "JoblibFinder" for f in sys.meta_path),
    }
    out.update(extra)
    print(json.dumps(out), flush=True)
