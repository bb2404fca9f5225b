# Start-up hook of nest-joblib: the NEST_JOBLIB switch and the finder that waits for joblib.
#
# nest_joblib.pth (and nest_joblib.start on Python 3.15+) call install() in
# every interpreter of the environment, most of which never import joblib. So
# this module reads one variable and puts one small finder in sys.meta_path;
# the machinery that wraps joblib's loader lives in nest_joblib._hook and is
# imported only when joblib is. It is a top-level module so that the .pth
# line does not pay for the nest_joblib package, and it is written with
# comments rather than docstrings and with a single class: its byte code is
# read and executed at every start, and `python -c pass` shows every
# kilobyte and every class.

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - typing is too expensive at start-up
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

# The module whose import triggers the patch, and its package: watched too,
# to catch a joblib.parallel that another finder supplied before ours.
TARGET = "joblib.parallel"
PACKAGE = "joblib"
# Accepted values of NEST_JOBLIB, case and surrounding blanks ignored: a copy
# of nest_joblib._switch's (a test keeps them equal), so that a good value
# costs no import here. That module words the warning about a bad one.
ON = ("1", "true", "on", "yes")
OFF = ("0", "false", "off", "no")


class JoblibFinder:
    # Answers None to every name but the two it watches after one comparison.
    # For those it asks the finders behind it, then has nest_joblib._hook wrap
    # the loader. It stays in sys.meta_path so that
    # importlib.reload(joblib.parallel) is patched again.

    def find_spec(
        self,
        fullname: str,
        path: "Sequence[str] | None" = None,
        target: "ModuleType | None" = None,
    ) -> "ModuleSpec | None":
        if fullname != TARGET and fullname != PACKAGE:
            return None
        if fullname in _searching:  # a finder behind us asked back
            return None
        _searching.add(fullname)
        try:
            finders = sys.meta_path
            behind = finders[finders.index(self) + 1 :] if self in finders else finders[:]
            for finder in behind:
                find_spec = getattr(finder, "find_spec", None)
                spec = None if find_spec is None else find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:  # no joblib: Python's own error, nothing of ours imported
                return None
        finally:
            _searching.discard(fullname)
        try:
            from nest_joblib import _hook
        except Exception as exc:  # a broken installation must not break joblib
            if fullname == PACKAGE:  # say it once, not again for joblib.parallel
                _say(
                    f"could not load nest_joblib ({exc!r}); joblib runs unpatched. "
                    "Set NEST_JOBLIB=0 to turn the plugin off."
                )
            return spec  # type: ignore[no-any-return]
        return _hook.wrap(spec, fullname == PACKAGE)


# Names being looked up behind our finder.
_searching = set()  # type: set[str]


def installed_finder() -> "JoblibFinder | None":
    # The finder in sys.meta_path, or None.
    for finder in sys.meta_path:
        if type(finder).__name__ == "JoblibFinder" and type(finder).__module__ == __name__:
            return finder  # type: ignore[return-value]
    return None


def _say(message: str) -> None:
    # Only when nest_joblib itself is broken: its warning category is not available.
    try:
        sys.stderr.write(f"nest-joblib: {message}\n")
    except Exception:
        pass


_installed = False


def install() -> None:
    # Install the finder unless NEST_JOBLIB says no; never raises. Runs once:
    # a .pth file may be processed twice (virtual environments), and a .start
    # file may name this function as well.
    global _installed
    if _installed:
        return
    _installed = True
    try:
        raw = os.environ.get("NEST_JOBLIB")
        switch = "1" if raw is None else raw.strip().lower()
        if switch in OFF:
            return
        if switch not in ON:
            from nest_joblib._switch import parse_switch
            from nest_joblib._warnings import warn

            problem = parse_switch("NEST_JOBLIB", raw, True)[1]
            warn(f"{problem}; nest-joblib stays off")
            return
        if installed_finder() is None:
            sys.meta_path.insert(0, JoblibFinder())
        parallel = sys.modules.get(TARGET)
        if parallel is not None:  # joblib came first: patch at once
            from nest_joblib._hook import patch_module

            patch_module(parallel)
    except Exception as exc:  # start-up must never fail because of us
        _say(f"start-up hook failed ({exc!r}); joblib runs unpatched")
