"""The import hook's machinery: wrap joblib's loader, patch after its body ran.

``_nest_joblib_startup.JoblibFinder`` imports this module once it has found
``joblib`` or ``joblib.parallel``, so that start-up pays for none of it.
Standard library only, and it must not import joblib: it runs in the middle of
joblib's import. It sits outside ``nest_joblib._private``, whose ``__init__``
imports joblib, and takes nothing from the start-up module: the finder hands
it what it needs.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ._warnings import warn

if TYPE_CHECKING:
    from collections.abc import Callable
    from importlib.machinery import ModuleSpec
    from types import ModuleType

__all__ = ["patch_module", "wrap"]


class _PatchingLoader:
    """Wraps the real loader of joblib(.parallel) to run a hook after its body.

    Everything but ``create_module``/``exec_module`` is delegated, so the
    module behaves as if loaded by its own loader, which is put back on the
    module and its spec as soon as the body has run.
    """

    def __init__(self, loader: object, hook: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._hook = hook

    def __getattr__(self, name: str) -> object:
        return getattr(self._loader, name)

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        create = getattr(self._loader, "create_module", None)
        return None if create is None else create(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)  # type: ignore[attr-defined]
        spec: Any = module.__spec__
        if spec is not None and spec.loader is self:
            spec.loader = self._loader
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self._loader  # type: ignore[assignment,unused-ignore]
        self._hook(module)


def wrap(spec: ModuleSpec, is_package: bool) -> ModuleSpec:
    """Wrap the loader of ``joblib`` (``is_package``) or ``joblib.parallel``.

    The patch then runs once the module's body has run.
    """
    if spec.loader is None or not hasattr(spec.loader, "exec_module"):
        # joblib.parallel is then patched after joblib/__init__ has run
        # (by the hook on joblib), unless joblib itself cannot be wrapped.
        if is_package:
            warn(f"cannot wrap the loader of {spec.name} ({spec.loader!r}); joblib runs unpatched")
        return spec
    hook = _check_package if is_package else patch_module
    spec.loader = _PatchingLoader(spec.loader, hook)  # type: ignore[assignment]
    return spec


#: Marks a ``joblib.parallel`` body that the patch was tried on (once is enough).
_TRIED = "__nest_joblib_tried__"


def patch_module(module: ModuleType) -> None:
    """Hook run right after ``joblib.parallel`` executed: apply the patch."""
    module.__dict__[_TRIED] = True
    try:
        from nest_joblib._private import patch

        patch.patch_safely(module)
    except Exception as exc:  # a broken installation must not break joblib
        warn(
            f"could not load nest_joblib ({exc!r}); joblib runs unpatched. "
            "Set NEST_JOBLIB=0 to turn the plugin off."
        )


def _check_package(module: ModuleType) -> None:
    """Hook run after ``joblib/__init__``: patch now if the finder was bypassed."""
    parallel = sys.modules.get(module.__name__ + ".parallel")
    if parallel is not None and _TRIED not in parallel.__dict__:
        patch_module(parallel)
