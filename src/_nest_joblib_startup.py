"""Start-up hook of nest-joblib: the NEST_JOBLIB switch, and the finder that waits for joblib.

``nest_joblib.pth`` (and ``nest_joblib.start`` on Python 3.15+) call
:func:`install` in every interpreter of the environment, most of which never
use joblib. This module is therefore standard-library only, imports nothing
beyond what start-up has already loaded (no ``threading``, no
``importlib.util``, no ``typing``), and does no work until ``joblib.parallel``
is imported. It is a top-level module so that the ``.pth`` line does not pay
for importing the ``nest_joblib`` package.
"""

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - typing is too expensive at start-up
    from collections.abc import Callable, Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any

__all__ = ["NestJoblibWarning", "install", "installed_finder", "parse_switch", "warn"]

#: The module whose import triggers the patch.
TARGET = "joblib.parallel"
#: Its package: watched too, to catch a ``joblib.parallel`` that another
#: finder supplied before ours could wrap it.
PACKAGE = "joblib"

_TRUE = ("1", "true", "on", "yes")
_FALSE = ("0", "false", "off", "no")


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


def accepted(values: "Sequence[str]") -> str:
    return ", ".join(values)


def parse_switch(name: str, raw: "str | None", default: bool) -> "tuple[bool, str | None]":
    """Parse an on/off variable; return (value, problem or None)."""
    if raw is None:
        return default, None
    value = raw.strip().lower()
    if value in _TRUE:
        return True, None
    if value in _FALSE:
        return False, None
    return False, (
        f"{name}={raw!r} is not recognised; accepted values are "
        f"{accepted(_TRUE)} (on) or {accepted(_FALSE)} (off)"
    )


class _PatchingLoader:
    """Wraps the real loader of joblib(.parallel) to run a hook after its body.

    Everything but ``create_module``/``exec_module`` is delegated, so the
    module behaves as if loaded by its own loader, which is put back on the
    module and its spec as soon as the body has run.
    """

    def __init__(self, loader: object, hook: "Callable[[ModuleType], None]") -> None:
        self._loader = loader
        self._hook = hook

    def __getattr__(self, name: str) -> object:
        return getattr(self._loader, name)

    def create_module(self, spec: "ModuleSpec") -> "ModuleType | None":
        create = getattr(self._loader, "create_module", None)
        return None if create is None else create(spec)

    def exec_module(self, module: "ModuleType") -> None:
        self._loader.exec_module(module)  # type: ignore[attr-defined]
        spec: Any = module.__spec__
        if spec is not None and spec.loader is self:
            spec.loader = self._loader
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self._loader  # type: ignore[assignment,unused-ignore]
        self._hook(module)


class JoblibFinder:
    """``sys.meta_path`` finder that patches ``joblib.parallel`` once loaded.

    It answers ``None`` to every other name after one comparison. For the
    two names it watches it asks the finders behind it for the real spec and
    wraps that spec's loader. It stays in ``sys.meta_path`` so that
    ``importlib.reload(joblib.parallel)`` is patched again.
    """

    def __init__(self) -> None:
        self._searching: set[str] = set()

    def find_spec(
        self,
        fullname: str,
        path: "Sequence[str] | None" = None,
        target: "ModuleType | None" = None,
    ) -> "ModuleSpec | None":
        if fullname != TARGET and fullname != PACKAGE:
            return None
        if fullname in self._searching:  # a finder behind us asked back
            return None
        self._searching.add(fullname)
        try:
            spec = self._find_behind(fullname, path, target)
        finally:
            self._searching.discard(fullname)
        if spec is None:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            # joblib.parallel is then patched after joblib/__init__ has run
            # (by the hook on joblib), unless joblib itself cannot be wrapped.
            if fullname == PACKAGE:
                warn(
                    f"cannot wrap the loader of {PACKAGE} ({spec.loader!r}); joblib runs unpatched"
                )
            return spec
        hook = _patch_module if fullname == TARGET else _check_package
        spec.loader = _PatchingLoader(spec.loader, hook)  # type: ignore[assignment]
        return spec

    def _find_behind(
        self, fullname: str, path: "Sequence[str] | None", target: "ModuleType | None"
    ) -> "ModuleSpec | None":
        finders = sys.meta_path
        start = finders.index(self) + 1 if self in finders else 0
        for finder in list(finders[start:]):
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                return spec  # type: ignore[no-any-return]
        return None


#: Marks a ``joblib.parallel`` body that the patch was tried on (once is enough).
_TRIED = "__nest_joblib_tried__"


def _patch_module(module: "ModuleType") -> None:
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


def _check_package(module: "ModuleType") -> None:
    """Hook run after ``joblib/__init__``: patch now if the finder was bypassed."""
    parallel = sys.modules.get(TARGET)
    if parallel is not None and _TRIED not in parallel.__dict__:
        _patch_module(parallel)


def installed_finder() -> "JoblibFinder | None":
    """The finder in ``sys.meta_path``, or ``None``."""
    for finder in sys.meta_path:
        if type(finder).__name__ == "JoblibFinder" and type(finder).__module__ == __name__:
            return finder  # type: ignore[return-value]
    return None


_installed = False


def install() -> None:
    """Install the finder unless ``NEST_JOBLIB`` says no; never raises.

    Idempotent: a ``.pth`` file may be processed twice (virtual environments)
    and a ``.start`` file may name this function as well.
    """
    global _installed
    if _installed:
        return
    _installed = True
    try:
        enabled, problem = parse_switch("NEST_JOBLIB", os.environ.get("NEST_JOBLIB"), True)
        if problem:
            warn(problem + "; nest-joblib stays off")
        if not enabled or installed_finder() is not None:
            return
        sys.meta_path.insert(0, JoblibFinder())
        parallel = sys.modules.get(TARGET)
        if parallel is not None:  # joblib came first: patch at once
            _patch_module(parallel)
    except Exception as exc:  # start-up must never fail because of us
        try:
            warn(f"start-up hook failed ({exc!r}); joblib runs unpatched")
        except Exception:
            pass
