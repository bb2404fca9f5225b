"""The import hook's machinery: wrap joblib's loader, patch after its body ran.

``_nest_joblib_startup.JoblibFinder`` imports this module once it has found
``joblib`` or ``joblib.parallel``, so that start-up pays for none of it.
Standard library only, and it must not import joblib: it runs in the middle of
joblib's import. It sits outside ``nest_joblib._private``, whose ``__init__``
imports joblib.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from _nest_joblib_startup import OFF, ON, PACKAGE, TARGET, installed_finder

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

__all__ = [
    "NestJoblibWarning",
    "accepted",
    "install_late",
    "parse_switch",
    "patch_module",
    "warn",
    "wrap",
]


class NestJoblibWarning(RuntimeWarning):
    """Category of every warning nest-joblib emits (bad settings, failed patch)."""


def warn(message: str) -> None:
    """Emit one warning line that names nest-joblib and can be filtered.

    ``warn_explicit`` with a file name that does not exist prints exactly one
    line (no source line is looked up), at any call depth.
    """
    import warnings

    try:
        warnings.warn_explicit(message, NestJoblibWarning, "nest-joblib", 0, module="nest_joblib")
    except Exception:  # -W error: a warning must not break start-up or import joblib
        try:
            sys.stderr.write(f"nest-joblib: {message}\n")
        except Exception:
            pass


def accepted(values: Sequence[str]) -> str:
    return ", ".join(values)


def parse_switch(name: str, raw: str | None, default: bool) -> tuple[bool, str | None]:
    """Parse an on/off variable; return (value, problem or None)."""
    if raw is None:
        return default, None
    value = raw.strip().lower()
    if value in ON:
        return True, None
    if value in OFF:
        return False, None
    return False, (
        f"{name}={raw!r} is not recognised; accepted values are "
        f"{accepted(ON)} (on) or {accepted(OFF)} (off)"
    )


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


def wrap(fullname: str, spec: ModuleSpec) -> ModuleSpec:
    """Wrap the loader of ``joblib``/``joblib.parallel`` to patch once its body ran."""
    if spec.loader is None or not hasattr(spec.loader, "exec_module"):
        # joblib.parallel is then patched after joblib/__init__ has run
        # (by the hook on joblib), unless joblib itself cannot be wrapped.
        if fullname == PACKAGE:
            warn(f"cannot wrap the loader of {PACKAGE} ({spec.loader!r}); joblib runs unpatched")
        return spec
    hook = patch_module if fullname == TARGET else _check_package
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
    parallel = sys.modules.get(TARGET)
    if parallel is not None and _TRIED not in parallel.__dict__:
        patch_module(parallel)


def install_late(raw: str | None, finder_class: Callable[[], object]) -> None:
    """``install()`` when ``NEST_JOBLIB`` needs a warning or joblib came first."""
    enabled, problem = parse_switch("NEST_JOBLIB", raw, True)
    if problem:
        warn(problem + "; nest-joblib stays off")
    if not enabled:
        return
    if installed_finder() is None:
        sys.meta_path.insert(0, finder_class())  # type: ignore[arg-type]
    parallel = sys.modules.get(TARGET)
    if parallel is not None:  # joblib came first: patch at once
        patch_module(parallel)
