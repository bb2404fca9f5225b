"""The patch applied to ``joblib.parallel``.

Everything is checked and built first, then assigned in one go, so a failure
leaves joblib exactly as it was (see :func:`patch_safely`).
"""

from __future__ import annotations

import functools
import logging
import sys
from types import ModuleType
from typing import Any, Callable

from nest_joblib._warnings import warn

from . import contract, engines, process, variants
from .state import settings, state
from .variants import add_variant

logger = logging.getLogger("nest_joblib")
#: Marks our ``register_parallel_backend`` (a reload of joblib.parallel
#: replaces it, which is how a reload is recognised and patched again).
_MARK = "__nest_joblib_original__"
DEFAULT = variants.PREFIX + "loky"


class PatchError(RuntimeError):
    """joblib does not look the way the patch expects."""


def is_patched(module: ModuleType) -> bool:
    return hasattr(getattr(module, "register_parallel_backend", None), _MARK)


def patch_safely(module: ModuleType, *, source: str = "plugin") -> bool:
    """Patch, or leave joblib plain with one warning line; never raises."""
    try:
        patch(module, source=source)
        return True
    except Exception as exc:
        version = getattr(sys.modules.get("joblib"), "__version__", "unknown")
        state.failure = f"{type(exc).__name__}: {exc}"
        warn(
            f"could not patch joblib {version} ({state.failure}); joblib runs "
            "unpatched. Set NEST_JOBLIB=0 to turn the plugin off."
        )
        return False


def patch(
    module: Any,
    *,
    set_default: bool = True,
    auto_register: bool = True,
    source: str = "plugin",
) -> None:
    """Apply the patch to ``module`` (``joblib.parallel``); idempotent."""
    if is_patched(module):
        if set_default and not state.set_default:
            _set_default(module)
            state.set_default = True
        state.auto_register = state.auto_register or auto_register
        return
    current = settings()
    _configure_logging(current.debug)
    try:
        contract.check(module)
    except contract.ContractError as exc:
        raise PatchError(str(exc)) from None
    backends: dict[str, Any] = module.BACKENDS
    joblib = sys.modules.get("joblib")
    _commit(module, joblib, set_default, _build(module, current.backends))
    state.set_default = set_default
    state.auto_register = auto_register
    state.patched = True
    state.failure = None
    state.source = source
    state.variants = sorted(name for name in backends if name.startswith(variants.PREFIX))
    process.patched(loky_worker=contract.is_loky_worker())
    logger.debug(
        "patched joblib %s: default backend %s, nested variants %s",
        getattr(joblib, "__version__", "?"),
        module.DEFAULT_BACKEND,
        ", ".join(state.variants),
    )
    for problem in current.problems:
        if not problem.startswith("NEST_JOBLIB="):
            warn(problem)


def _build(module: Any, engines_named: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Everything the patch adds, built before anything is assigned: the variants,
    and the lazy registrars of joblib's external backends' variants."""
    new_backends: dict[str, Any] = {
        variants.PREFIX + name: variants.nested_variant(factory)
        for name, factory in module.BACKENDS.items()
        if variants.can_nest(factory)
    }
    new_backends.update(engines.lazy_backends(engines_named))
    new_external = {
        variants.PREFIX + name: _lazy_external(module, name)
        for name in module.EXTERNAL_BACKENDS
        if not name.startswith(variants.PREFIX)
    }
    return new_backends, new_external


def _commit(
    module: Any, joblib: Any, set_default: bool, built: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    """Assign what :func:`_build` made in one go, undone whole if any step fails."""
    new_backends, new_external = built
    original = module.register_parallel_backend
    register = _make_register(module, original)
    rebind = joblib is not None and getattr(joblib, "register_parallel_backend", None) is original
    saved = (dict(module.BACKENDS), dict(module.EXTERNAL_BACKENDS), _defaults(module))
    mixin = contract.PoolManagerMixin
    assert mixin is not None  # see contract.check()
    terminate = vars(mixin)["terminate"]
    try:
        mixin.terminate = contract.terminate_pool  # type: ignore[attr-defined]
        module.BACKENDS.update(new_backends)
        module.EXTERNAL_BACKENDS.update(new_external)
        if set_default:
            _set_default(module)
        module.register_parallel_backend = register
        if rebind:
            joblib.register_parallel_backend = register
    except BaseException:
        mixin.terminate = terminate  # type: ignore[attr-defined]
        _restore(module, joblib if rebind else None, original, *saved)
        raise


_DEFAULT_NAMES = ("DEFAULT_BACKEND", "DEFAULT_PROCESS_BACKEND")


def _defaults(module: Any) -> dict[str, Any]:
    return {name: module.__dict__[name] for name in _DEFAULT_NAMES if name in module.__dict__}


def _restore(
    module: Any,
    joblib: Any,
    register: Any,
    backends: dict[str, Any],
    external: dict[str, Any],
    defaults: dict[str, Any],
) -> None:
    """Put joblib back as it was before a commit that failed half-way."""
    dict.clear(module.BACKENDS)
    dict.update(module.BACKENDS, backends)
    dict.clear(module.EXTERNAL_BACKENDS)
    dict.update(module.EXTERNAL_BACKENDS, external)
    module.__dict__.update(defaults)
    module.register_parallel_backend = register
    if joblib is not None:
        joblib.register_parallel_backend = register


def _set_default(module: Any) -> None:
    if DEFAULT not in module.BACKENDS:
        return  # no loky here (multiprocessing disabled): joblib's default stays
    if module.DEFAULT_BACKEND == "loky":
        module.DEFAULT_BACKEND = DEFAULT
    if getattr(module, "DEFAULT_PROCESS_BACKEND", None) == "loky":
        module.DEFAULT_PROCESS_BACKEND = DEFAULT


def _make_register(module: Any, original: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(original)
    def register_parallel_backend(name: str, factory: Any, make_default: bool = False) -> None:
        original(name, factory, make_default=make_default)
        if state.auto_register:
            add_variant(module, name, factory)

    setattr(register_parallel_backend, _MARK, original)
    return register_parallel_backend


def _lazy_external(module: Any, name: str) -> Callable[[], None]:
    """Registrar for ``nested-<name>`` beside joblib's own lazy ``<name>``."""

    def register() -> None:
        if name not in module.BACKENDS:
            module.EXTERNAL_BACKENDS[name]()
        if variants.PREFIX + name not in module.BACKENDS:
            add_variant(module, name, module.BACKENDS[name])

    return register


def _configure_logging(debug: bool) -> None:
    if not debug:
        return
    log = logging.getLogger("nest_joblib")
    if not any(getattr(h, "_nest_joblib", False) for h in log.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("nest-joblib[%(process)d] %(message)s"))
        handler._nest_joblib = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    log.setLevel(logging.DEBUG)
