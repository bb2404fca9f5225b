"""``nest-joblib status``: what the plugin is doing in this interpreter.

:func:`gather` returns a plain, JSON-ready dict; printing is the CLI's job.
It looks at the start-up hook *before* importing joblib (did the ``.pth`` run
its line?), then imports joblib, which applies the patch when the hook is in
place, and reports what the patch did.
"""

from __future__ import annotations

import os
import platform
import site
import sys
import sysconfig
from collections.abc import Iterable, Mapping
from typing import Any

from _nest_joblib_startup import installed_finder
from nest_joblib._version import __version__

from .settings import Settings

#: Every environment variable of ours, in the order they are documented.
VARIABLES = (
    "NEST_JOBLIB",
    "NEST_JOBLIB_BACKENDS",
    "NEST_JOBLIB_CPUS",
    "NEST_JOBLIB_DEBUG",
    "NEST_JOBLIB_TRACE",
)
#: The start-up files ``pip install`` puts into site-packages.
STARTUP_FILES = ("nest_joblib.pth", "nest_joblib.start")


def _site_dirs() -> list[str]:
    """The directories whose ``.pth`` files start-up reads (a checkout on
    ``sys.path`` is not one of them)."""
    dirs: list[str] = []
    try:
        dirs.extend(site.getsitepackages())
    except AttributeError:  # some virtualenv versions' site.py lacks it
        pass
    try:
        dirs.append(site.getusersitepackages())
    except AttributeError:
        pass
    paths = sysconfig.get_paths()
    dirs.extend(paths[key] for key in ("purelib", "platlib") if key in paths)
    seen: set[str] = set()
    unique: list[str] = []
    for d in dirs:
        key = os.path.normcase(os.path.realpath(d))
        if key not in seen:
            seen.add(key)
            unique.append(d)
    return unique


def find_startup_files(dirs: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Where ``nest_joblib.pth`` and ``nest_joblib.start`` are, by file name."""
    found: dict[str, list[str]] = {name: [] for name in STARTUP_FILES}
    for d in _site_dirs() if dirs is None else dirs:
        for name in STARTUP_FILES:
            path = os.path.join(d, name)
            if os.path.isfile(path):
                found[name].append(os.path.abspath(path))
    return found


def _enabled_reason(environ: Mapping[str, str], settings: Settings) -> str:
    raw = environ.get("NEST_JOBLIB")
    if raw is None:
        return "NEST_JOBLIB is not set: on by default"
    if settings.enabled:
        return f"NEST_JOBLIB={raw!r} turns it on"
    if any(p.startswith("NEST_JOBLIB=") for p in settings.problems):
        return f"NEST_JOBLIB={raw!r} is not recognised, so it stays off"
    return f"NEST_JOBLIB={raw!r} turns it off"


def _budget(settings: Settings, cpu_count: int | None) -> tuple[int | None, str]:
    """(budget or None when off, where it comes from)."""
    if settings.cpus == 0:
        return None, "off (NEST_JOBLIB_CPUS=off: no budget, naive nesting)"
    if settings.cpus is not None:
        return settings.cpus, "NEST_JOBLIB_CPUS"
    return cpu_count, "joblib.cpu_count()"


def _hints(report: Mapping[str, Any]) -> list[str]:
    """What to try when the plugin is not active."""
    hints: list[str] = []
    if report["active"]:
        return hints
    if not report["enabled"]:
        hints.append(report["enabled_reason"] + "; unset it or set NEST_JOBLIB=1")
        return hints
    if report["joblib_version"] is None:
        hints.append(f"joblib cannot be imported ({report['joblib_error']}); pip install joblib")
    if not report["installed"]:
        hints.append(
            "nest_joblib.pth is in no site-packages directory: reinstall with pip "
            "(a PYTHONPATH checkout does not run .pth files)"
        )
    elif not report["hook_fired"]:
        if sys.flags.no_site:
            hints.append("python -S skips site-packages start-up files; run without -S")
        else:
            hints.append(
                "the start-up file exists but its line did not run: it is only read from "
                "site-packages directories (not from PYTHONPATH), and skipped when hidden "
                "(macOS); `python -v` lists the .pth files processed"
            )
    if report["failure"]:
        hints.append(f"the patch failed: {report['failure']}")
    return hints


def _joblib() -> tuple[str | None, str | None, int | None, str | None, bool]:
    """Import joblib (the patch applies then): its version, or why it failed; its
    CPU count, its default backend, and whether it is patched."""
    try:
        import joblib
        import joblib.parallel

        from .patch import is_patched

        return (
            str(joblib.__version__),
            None,
            int(joblib.cpu_count()),
            str(joblib.parallel.DEFAULT_BACKEND),
            is_patched(joblib.parallel),
        )
    except Exception as exc:  # report, never crash
        return None, f"{type(exc).__name__}: {exc}", None, None, False


def _trees() -> list[dict[str, Any]]:
    from .live import trees

    return trees()


def gather(
    environ: Mapping[str, str] | None = None, *, joblib_was_imported: bool = True
) -> dict[str, Any]:
    """Everything ``status`` reports, as a JSON-ready dict.

    Imports joblib (which applies the patch, if the start-up hook is in
    place). ``environ`` defaults to ``os.environ``. ``joblib_was_imported``:
    whether joblib was imported before the caller started looking (this
    module's package imports joblib, so only the caller can tell).
    """
    env = os.environ if environ is None else environ
    # Did the start-up hook run in this interpreter?
    hook_fired = installed_finder() is not None
    files = find_startup_files()
    settings = Settings.from_env(env)
    joblib_version, joblib_error, cpu_count, default_backend, patched = _joblib()

    import nest_joblib

    from .state import state

    budget, budget_source = _budget(settings, cpu_count)
    report: dict[str, Any] = {
        "active": patched,
        "installed": bool(files["nest_joblib.pth"] or files["nest_joblib.start"]),
        "pth_files": files["nest_joblib.pth"],
        "start_files": files["nest_joblib.start"],
        "enabled": settings.enabled,
        "enabled_reason": _enabled_reason(env, settings),
        "environment": {name: env.get(name) for name in VARIABLES},
        "settings": {
            "enabled": settings.enabled,
            "backends": list(settings.backends),
            "cpus": "off" if settings.cpus == 0 else settings.cpus,
            "debug": settings.debug,
        },
        "problems": list(settings.problems),
        "hook_fired": hook_fired,
        "joblib_imported_before_status": joblib_was_imported,
        "patched": patched,
        "patch_source": state.source if patched else None,
        "failure": state.failure,
        "default_backend": default_backend,
        "nested_backends": nest_joblib.nested_backends(),
        "cpu_budget": budget,
        "cpu_budget_source": budget_source,
        "cpu_budget_in_force": patched and budget is not None,
        "joblib_cpu_count": cpu_count,
        "joblib_version": joblib_version,
        "joblib_error": joblib_error,
        "nest_joblib_version": __version__,
        "python_version": platform.python_version(),
        "python_executable": sys.executable,
        "site_disabled": bool(sys.flags.no_site),
        "trees": _trees(),
    }
    report["hints"] = _hints(report)
    return report
