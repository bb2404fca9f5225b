"""Trusted at every start-up (promises P3 and P7): fault injection, concurrency, shutdown.

Every case runs in a fresh interpreter of this environment, so start-up is
the user's own: ``nest_joblib.pth`` installs the finder before the code runs.
Everything that could hang has a timeout, both on the test and on the
subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import clean_env, run_python

psutil = pytest.importorskip("psutil")

#: Prepended to the code of a case: counts how often the finder's hook ran
#: and how often joblib.parallel actually went from plain to patched.
COUNTING = """
import json, sys, warnings
import _nest_joblib_startup as _s
import nest_joblib._hook as _h

COUNTS = {"hook": 0, "patched": 0}
_real_hook = _h.patch_module


def _counting_hook(module):
    COUNTS["hook"] += 1
    from nest_joblib._private import patch as _p

    if not getattr(_p.patch, "_counting", False):
        real_patch = _p.patch

        def counted(module, *args, **kwargs):
            before = _p.is_patched(module)
            try:
                return real_patch(module, *args, **kwargs)
            finally:
                if not before and _p.is_patched(module):
                    COUNTS["patched"] += 1

        counted._counting = True
        _p.patch = counted
    _real_hook(module)


_h.patch_module = _counting_hook


def report(**extra):
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
    print(json.dumps(out))
"""

#: Where a case's JSON report is checked: patched once, fully, and consistently.
PATCHED_ONCE = {
    "patched": True,
    "default": "nested-loky",
    "double_wrapped": False,
    "rebound": True,
    "variants": ["nested-loky", "nested-threading"],
    "state": [True, None],
    "finders": 1,
}


def case(code: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[Any, str]:
    """Run COUNTING + ``code`` (which calls ``report()``); (report, stderr)."""
    proc = run_python(COUNTING + textwrap.dedent(code), env=env, timeout=timeout)
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "NestJoblibWarning" in line]


def assert_patched_once(report: Any) -> None:
    for key, value in PATCHED_ONCE.items():
        assert report[key] == value, (key, report)
    assert report["counts"]["patched"] == 1, report


# -- concurrency ----------------------------------------------------------------


@pytest.mark.timeout(90)
def test_import_from_eight_threads_patches_once() -> None:
    report, stderr = case(
        """
        import threading

        barrier = threading.Barrier(8)
        seen, errors = [], []

        def work():
            try:
                barrier.wait(timeout=30)
                import joblib
                import joblib.parallel
                from nest_joblib._private.patch import is_patched

                seen.append([
                    joblib.parallel.DEFAULT_BACKEND,
                    is_patched(joblib.parallel),
                    joblib.register_parallel_backend is joblib.parallel.register_parallel_backend,
                ])
            except BaseException as exc:
                errors.append(repr(exc))

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        report(seen=seen, errors=errors)
        """,
        timeout=80,
    )
    assert report["errors"] == []
    assert report["seen"] == [["nested-loky", True, True]] * 8
    assert_patched_once(report)
    assert warning_lines(stderr) == []


# -- reload -----------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_reload_is_patched_again_and_still_nests() -> None:
    """Defined behaviour: a reload runs joblib.parallel's body again, plain, and
    the finder (still in sys.meta_path) patches the new objects right after.

    After a reload, ``joblib.Parallel`` is the class of before the reload
    (plain joblib's own reload behaviour; its default arguments no longer
    match the reloaded module), so the nested run uses ``joblib.parallel``'s.
    """
    report, stderr = case(
        """
        import importlib, os
        import joblib
        import joblib.parallel as jp

        first = jp.register_parallel_backend
        module = importlib.reload(jp)
        assert module is jp

        from joblib.parallel import Parallel, delayed

        def leaf(j):
            return os.getpid()

        def mid(i):
            import joblib.parallel
            inner = Parallel(n_jobs=2)(delayed(leaf)(j) for j in range(2))
            return [os.getpid(), joblib.parallel.DEFAULT_BACKEND, inner]

        out = Parallel(n_jobs=2)(delayed(mid)(i) for i in range(2))
        report(
            parent=os.getpid(),
            out=out,
            replaced=jp.register_parallel_backend is not first,
            loader=type(jp.__loader__).__name__,
            spec_loader=type(jp.__spec__.loader).__name__,
        )
        """,
        timeout=110,
    )
    assert report["replaced"]  # the reload made new objects, and they are patched
    assert report["counts"]["patched"] == 2  # once at import, once at reload
    assert report["counts"]["hook"] >= 2
    for key in ("patched", "default", "double_wrapped", "variants", "state", "finders"):
        assert report[key] == PATCHED_ONCE[key], (key, report)
    # The loader put back after the body ran, on the module and its spec.
    assert report["loader"] == report["spec_loader"] == "SourceFileLoader"
    for mid_pid, default, leaves in report["out"]:
        assert mid_pid != report["parent"]
        assert default == "nested-loky"
        assert len(leaves) == 2
    assert warning_lines(stderr) == []


# -- other finders in sys.meta_path --------------------------------------------------

_CLAIMING_FINDER = """
import importlib.machinery

class ClaimsParallel:
    '''Supplies joblib.parallel itself, with a plain SourceFileLoader spec.'''
    claimed = 0

    def find_spec(self, name, path=None, target=None):
        if name != "joblib.parallel":
            return None
        ClaimsParallel.claimed += 1
        return importlib.machinery.PathFinder.find_spec(name, path)
"""


@pytest.mark.timeout(60)
def test_finder_ahead_of_ours_supplies_parallel() -> None:
    """Our finder also watches ``joblib`` and patches after its ``__init__``."""
    report, stderr = case(
        _CLAIMING_FINDER
        + """
sys.meta_path.insert(0, ClaimsParallel())
import joblib
report(claimed=ClaimsParallel.claimed)
"""
    )
    assert report["claimed"] == 1
    assert_patched_once(report)
    assert warning_lines(stderr) == []


@pytest.mark.timeout(60)
def test_finder_behind_ours_supplies_parallel() -> None:
    """A finder behind ours supplies a spec that ours wraps as usual."""
    report, stderr = case(
        _CLAIMING_FINDER
        + """
sys.meta_path.insert(sys.meta_path.index(_s.installed_finder()) + 1, ClaimsParallel())
import joblib
report(claimed=ClaimsParallel.claimed)
"""
    )
    assert report["claimed"] == 1
    assert_patched_once(report)
    assert warning_lines(stderr) == []


_LEGACY_FINDER = """
import importlib.machinery

class LegacyLoader:
    '''A loader of the old protocol: load_module, no exec_module.'''

    def __init__(self, spec):
        self.spec = spec

    def load_module(self, fullname):
        import importlib.util
        module = importlib.util.module_from_spec(self.spec)
        sys.modules[fullname] = module
        try:
            self.spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[fullname]
            raise
        return sys.modules[fullname]


class LegacyFinder:
    def find_spec(self, name, path=None, target=None):
        if name != "joblib.parallel":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        return importlib.machinery.ModuleSpec(name, LegacyLoader(spec), origin=spec.origin)


def place(finder, where):
    if where == "ahead":
        sys.meta_path.insert(0, finder)
    else:
        sys.meta_path.insert(sys.meta_path.index(_s.installed_finder()) + 1, finder)
"""

_RUN_PLAIN_CALL = """
from joblib import Parallel, delayed
squares = Parallel(n_jobs=2)(delayed(pow)(i, 2) for i in range(4))
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("where", ["ahead", "behind"])
def test_legacy_loader_never_breaks_joblib(where: str) -> None:
    report, stderr = case(
        _LEGACY_FINDER
        + f"""
place(LegacyFinder(), {where!r})
import joblib
{_RUN_PLAIN_CALL}
report(squares=squares)
""",
        timeout=80,
    )
    assert report["squares"] == [0, 1, 4, 9]
    assert report["finders"] == 1
    assert report["counts"]["patched"] <= 1
    assert not report["double_wrapped"]
    assert len(warning_lines(stderr)) <= 1, stderr
    assert "Traceback" not in stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "where",
    [
        "ahead",
        "behind",
    ],
)
def test_legacy_loader_warning_matches_state(where: str) -> None:
    report, stderr = case(
        _LEGACY_FINDER
        + f"""
place(LegacyFinder(), {where!r})
import joblib
report()
"""
    )
    lines = warning_lines(stderr)
    if report["patched"]:
        assert lines == [], lines  # patched: nothing to warn about
        assert_patched_once(report)
    else:
        assert len(lines) == 1  # stepped aside: one line that says so
        assert report["default"] == "loky"
        assert report["variants"] == []


@pytest.mark.timeout(60)
def test_assertion_rewriter_style_finder_is_harmless() -> None:
    """pytest's rewriter sits at sys.meta_path[0] and answers None to modules it skips."""
    report, stderr = case(
        """
class Rewriter:
    asked = []

    def find_spec(self, name, path=None, target=None):
        Rewriter.asked.append(name)
        return None

sys.meta_path.insert(0, Rewriter())
import joblib
report(asked=[n for n in Rewriter.asked if n in ("joblib", "joblib.parallel")])
"""
    )
    assert report["asked"] == ["joblib", "joblib.parallel"]
    assert_patched_once(report)
    assert warning_lines(stderr) == []


@pytest.mark.timeout(60)
def test_editable_style_finder_is_wrapped() -> None:
    """Like setuptools' editable finder: a spec built by spec_from_file_location."""
    report, stderr = case(
        """
import importlib.util, os, importlib.machinery
root = os.path.dirname(importlib.machinery.PathFinder.find_spec("joblib").origin)

class EditableFinder:
    supplied = []

    def find_spec(self, name, path=None, target=None):
        if name == "joblib":
            where = os.path.join(root, "__init__.py")
            kwargs = {"submodule_search_locations": [root]}
        elif name == "joblib.parallel":
            where, kwargs = os.path.join(root, "parallel.py"), {}
        else:
            return None
        EditableFinder.supplied.append(name)
        return importlib.util.spec_from_file_location(name, where, **kwargs)

sys.meta_path.insert(sys.meta_path.index(_s.installed_finder()) + 1, EditableFinder())
import joblib
report(supplied=EditableFinder.supplied)
"""
    )
    assert report["supplied"] == ["joblib", "joblib.parallel"]
    assert_patched_once(report)
    assert warning_lines(stderr) == []


# -- the .pth processed more than once ----------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("joblib_first", [False, True])
def test_pth_and_start_processed_again(joblib_first: bool) -> None:
    report, stderr = case(
        f"""
import os, pkgutil, site, sysconfig
if {joblib_first!r}:
    import joblib

calls = []
_real_install = _s.install
def counted_install():
    calls.append(1)
    _real_install()
_s.install = counted_install

_s.install()
_s.install()
purelib = sysconfig.get_paths()["purelib"]
pth = os.path.join(purelib, "nest_joblib.pth")
start = os.path.join(purelib, "nest_joblib.start")
site.addsitedir(purelib)  # runs every .pth there again, ours included
entry = "_nest_joblib_startup:install"
if os.path.exists(start):
    lines = [ln.strip() for ln in open(start) if ln.strip() and not ln.startswith("#")]
    entry = lines[0]
pkgutil.resolve_name(entry)()
import joblib
report(calls=len(calls), has_pth=os.path.exists(pth), entry=entry)
"""
    )
    assert report["has_pth"]
    assert report["entry"] == "_nest_joblib_startup:install"
    assert report["calls"] >= 3  # twice by hand, at least once by addsitedir
    assert_patched_once(report)
    assert warning_lines(stderr) == []


# -- joblib not installed ---------------------------------------------------------------


def _installed_files() -> tuple[Path, Path, Path]:
    """The installed start-up module, package, and .pth of this environment."""
    proc = run_python(
        "import _nest_joblib_startup, nest_joblib, sysconfig\n"
        "print(_nest_joblib_startup.__file__)\n"
        "print(nest_joblib.__file__)\n"
        "print(sysconfig.get_paths()['purelib'])",
        env={"NEST_JOBLIB": "0"},
    )
    startup, package, purelib = proc.stdout.split("\n")[:3]
    return Path(startup), Path(package).parent, Path(purelib) / "nest_joblib.pth"


@pytest.mark.timeout(120)
def test_plugin_installed_without_joblib(tmp_path: Path) -> None:
    """A real virtual environment holding the plugin and no joblib at all."""
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60
    )
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    startup, package, pth = _installed_files()
    shutil.copy(startup, purelib)
    shutil.copytree(package, Path(purelib) / "nest_joblib", ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(pth, purelib)
    code = textwrap.dedent(
        """
        import json, sys
        finder = any(type(f).__name__ == "JoblibFinder" for f in sys.meta_path)
        try:
            import joblib
        except ModuleNotFoundError as exc:
            error = [type(exc).__name__, exc.name, str(exc)]
        else:
            error = None
        print(json.dumps({
            "finder": finder,
            "error": error,
            "modules": sorted(m for m in sys.modules if "joblib" in m),
        }))
        """
    )
    for args in (["-c", "pass"], ["-c", code]):
        proc = subprocess.run(
            [str(python), *args],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
    report = json.loads(proc.stdout)
    assert report == {
        "finder": True,
        "error": ["ModuleNotFoundError", "joblib", "No module named 'joblib'"],
        "modules": ["_nest_joblib_startup"],
    }


@pytest.mark.timeout(60)
def test_joblib_hidden_after_start_up() -> None:
    """The same in this environment: a finder behind ours hides joblib."""
    proc = run_python(
        """
        import json, sys
        import _nest_joblib_startup as s

        class Hide:
            def find_spec(self, name, path=None, target=None):
                if name == "joblib" or name.startswith("joblib."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(sys.meta_path.index(s.installed_finder()) + 1, Hide())
        try:
            import joblib
        except ModuleNotFoundError as exc:
            error = [type(exc).__name__, exc.name, str(exc)]
        modules = sorted(m for m in sys.modules if "joblib" in m)
        print(json.dumps({"error": error, "modules": modules}))
        """,
        timeout=50,
    )
    assert proc.stderr == ""
    assert json.loads(proc.stdout) == {
        "error": ["ModuleNotFoundError", "joblib", "No module named 'joblib'"],
        "modules": ["_nest_joblib_startup"],
    }


@pytest.mark.timeout(60)
def test_broken_nest_joblib_package_leaves_joblib_plain() -> None:
    """The start-up module is there but the package cannot be imported."""
    proc = run_python(
        """
        import json, sys
        sys.modules["nest_joblib"] = None  # as if the package were gone or broken
        import joblib.parallel
        from joblib import Parallel, delayed
        squares = Parallel(n_jobs=2)(delayed(pow)(i, 2) for i in range(4))
        print(json.dumps({"default": joblib.parallel.DEFAULT_BACKEND, "squares": squares}))
        """,
        timeout=50,
    )
    assert json.loads(proc.stdout) == {"default": "loky", "squares": [0, 1, 4, 9]}
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("nest-joblib: could not load nest_joblib")
    assert "NEST_JOBLIB=0" in lines[0]


# -- a joblib that looks different ------------------------------------------------------

_MUTATING_FINDER = """
import collections, importlib.machinery

def mutate(module):
    MUTATION

class MutatingLoader:
    '''Runs joblib.parallel's body, then changes it before our hook runs.'''

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        self.loader.exec_module(module)
        mutate(module)


class MutatingFinder:
    def find_spec(self, name, path=None, target=None):
        if name != "joblib.parallel":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        spec.loader = MutatingLoader(spec.loader)
        return spec

sys.meta_path.insert(sys.meta_path.index(_s.installed_finder()) + 1, MutatingFinder())
import joblib
import joblib.parallel as jp
from joblib import Parallel, delayed

original_register = getattr(jp.register_parallel_backend, "__wrapped__", None)
squares = Parallel(n_jobs=2)(delayed(pow)(i, 2) for i in range(4))
report(
    squares=squares,
    version=joblib.__version__,
    backends=sorted(jp.BACKENDS),
    wrapped=original_register is not None,
)
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("mutation", "missing"),
    [
        ("del module.EXTERNAL_BACKENDS", "EXTERNAL_BACKENDS"),
        ("module.BACKENDS = collections.UserDict(module.BACKENDS)", "BACKENDS"),
        (
            "module.BACKENDS_RENAMED = module.EXTERNAL_BACKENDS; del module.EXTERNAL_BACKENDS",
            "EXTERNAL_BACKENDS",
        ),
    ],
)
def test_unexpected_joblib_runs_plain_with_one_warning(mutation: str, missing: str) -> None:
    report, stderr = case(_MUTATING_FINDER.replace("MUTATION", mutation), timeout=80)
    assert report["squares"] == [0, 1, 4, 9]
    assert report["patched"] is False
    assert report["default"] == "loky"
    assert report["variants"] == []
    assert not any(name.startswith("nested-") for name in report["backends"])
    assert report["wrapped"] is False
    assert report["state"][0] is False
    assert missing in report["state"][1]
    lines = warning_lines(stderr)
    assert len(set(lines)) == 1, stderr  # one message
    assert f"joblib {report['version']}" in lines[0]
    assert "NEST_JOBLIB=0" in lines[0]
    assert "Traceback" not in stderr


@pytest.mark.timeout(90)
def test_failed_patch_warns_exactly_one_line() -> None:
    report, stderr = case(
        _MUTATING_FINDER.replace("MUTATION", "del module.EXTERNAL_BACKENDS"), timeout=80
    )
    assert report["patched"] is False
    assert len(warning_lines(stderr)) == 1, stderr


@pytest.mark.timeout(60)
def test_failure_while_committing_leaves_joblib_untouched() -> None:
    report, stderr = case(
        """
import joblib
import joblib.parallel as jp

class NoUpdate(dict):
    def update(self, *args, **kwargs):
        raise RuntimeError("this joblib's EXTERNAL_BACKENDS cannot be updated")

jp.EXTERNAL_BACKENDS = NoUpdate(jp.EXTERNAL_BACKENDS)
_h.patch_module(jp)
report()
""",
        env={"NEST_JOBLIB": "0"},
    )
    assert report["patched"] is False
    assert len(warning_lines(stderr)) == 1
    assert report["default"] == "loky"
    assert report["variants"] == []


# -- errors three levels down -------------------------------------------------------------

_THREE_LEVELS = """
import os, signal, sys, time, traceback
from joblib import Parallel, delayed

MODE = sys.argv[1] if len(sys.argv) > 1 else os.environ["CASE_MODE"]


def leaf(j):
    time.sleep(0.2)
    if j == 1 and MODE == "raise":
        raise KeyError("boom from the leaf")
    if j == 1 and MODE == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    return os.getpid()


def mid(i):
    time.sleep(0.3)
    return Parallel(n_jobs=2)(delayed(leaf)(j) for j in range(2))


def top(i):
    time.sleep(0.3)
    return Parallel(n_jobs=2)(delayed(mid)(j) for j in range(2))


try:
    Parallel(n_jobs=2)(delayed(top)(i) for i in range(2))
except BaseException as exc:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    print(json.dumps({
        "type": type(exc).__module__ + "." + type(exc).__qualname__,
        "message": str(exc),
        "leaf_in_traceback": "in leaf" in text,
        "boom_in_traceback": "boom from the leaf" in text,
    }))
else:
    print(json.dumps({"type": None}))
"""


def _three_levels(
    mode: str, env: dict[str, str] | None = None, timeout: float = 40
) -> dict[str, Any]:
    """Run the three-level case; a hang fails with TimeoutExpired after ``timeout``."""
    proc = run_python(
        "import json\n" + _THREE_LEVELS,
        env={"CASE_MODE": mode, **(env or {})},
        timeout=timeout,
    )
    # The JSON line, not the last line: a worker that was starting when its parent died
    # prints loky's "failed with traceback" banner to the same stdout.
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stdout
    result: dict[str, Any] = json.loads(lines[-1])
    return result


@pytest.mark.timeout(60)
def test_exception_three_levels_down_reaches_the_caller() -> None:
    result = _three_levels("raise")
    assert result["type"] == "builtins.KeyError"
    assert result["message"] == "'boom from the leaf'"
    assert result["boom_in_traceback"]


@pytest.mark.timeout(60)
def test_exception_three_levels_down_keeps_the_leaf_traceback() -> None:
    # A budget of 2 CPUs, both held by the top level: the nested calls run inline.
    result = _three_levels("raise", env={"NEST_JOBLIB_CPUS": "2"})
    assert result["type"] == "builtins.KeyError"
    assert result["leaf_in_traceback"]


@pytest.mark.timeout(120)
def test_plain_joblib_keeps_the_leaf_traceback() -> None:
    """The same check on plain joblib, which shows the leaf's frame too."""
    result = _three_levels("raise", env={"NEST_JOBLIB": "0"})
    assert result["type"] == "builtins.KeyError"
    assert result["leaf_in_traceback"]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("cpus", [None, "2", "8"])
def test_worker_killed_three_levels_down(cpus: str | None) -> None:
    plain = _three_levels("kill", env={"NEST_JOBLIB": "0"})
    env = {} if cpus is None else {"NEST_JOBLIB_CPUS": cpus}
    nested = _three_levels("kill", env=env)
    assert plain["type"] == "joblib.externals.loky.process_executor.TerminatedWorkerError"
    assert nested["type"] == plain["type"]
    assert "SIGKILL" in nested["message"]


# -- SIGINT --------------------------------------------------------------------------------

_LONG_RUN = """
import os, signal, sys, time
from joblib import Parallel, delayed

# Ctrl-C as in a terminal, even when the test runs from a background job
# (which starts with SIGINT ignored, and Python keeps it ignored).
signal.signal(signal.SIGINT, signal.default_int_handler)

MARKS = sys.argv[1]


def leaf(j):
    open(os.path.join(MARKS, f"leaf-{os.getpid()}-{j}"), "w").close()
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < 1.5:  # pure-Python work
        n += 1
    return n


def mid(i):
    return sum(Parallel(n_jobs=2)(delayed(leaf)(j) for j in range(4)))


def top(i):
    return sum(Parallel(n_jobs=2)(delayed(mid)(j) for j in range(2)))


print(Parallel(n_jobs=2)(delayed(top)(i) for i in range(2)))
"""


def _alive(procs: list[Any]) -> list[Any]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.mark.timeout(120)
@pytest.mark.parametrize("cpus", [None, "8"])
def test_sigint_leaves_no_process_and_no_temp_dir(tmp_path: Path, cpus: str | None) -> None:
    """``NEST_JOBLIB_CPUS=8`` on any machine: nested levels start lane processes."""
    temp = tmp_path / "tmp"
    marks = tmp_path / "marks"
    temp.mkdir()
    marks.mkdir()
    env = clean_env({"TMPDIR": str(temp)})
    if cpus is not None:
        env["NEST_JOBLIB_CPUS"] = cpus
    parent = subprocess.Popen(
        [sys.executable, "-c", _LONG_RUN, str(marks)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the signal goes to it alone
    )
    seen: dict[int, Any] = {}
    try:
        root = psutil.Process(parent.pid)
        deadline = time.monotonic() + 60
        while not any(marks.iterdir()):
            assert parent.poll() is None, parent.communicate()
            assert time.monotonic() < deadline, "the leaves never started"
            time.sleep(0.05)
        # Leaves run; let every level settle, remembering every descendant seen.
        settle = time.monotonic() + 0.8
        while time.monotonic() < settle:
            for proc in root.children(recursive=True):
                seen.setdefault(proc.pid, proc)
            time.sleep(0.1)
        assert any(p.name.startswith("nest-joblib-") for p in temp.iterdir())
        assert len(seen) >= 4  # 2 workers + loky's and multiprocessing's trackers at least

        os.kill(parent.pid, signal.SIGINT)
        sent = time.monotonic()
        try:
            parent.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the parent did not exit within 20 s of SIGINT: {_describe(seen)}")
        alive = _alive(list(seen.values()))
        while alive and time.monotonic() - sent < 15:
            time.sleep(0.1)
            alive = _alive(alive)
        assert alive == [], _describe({p.pid: p for p in alive})
        assert parent.returncode != 0
        assert [p.name for p in temp.iterdir()] == []
    finally:
        for proc in [*seen.values()]:
            try:
                proc.kill()
            except psutil.Error:
                pass
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
            parent.communicate()


def _describe(procs: dict[int, Any]) -> str:
    out = []
    for pid, proc in procs.items():
        try:
            out.append(f"{pid} {proc.status()} {' '.join(proc.cmdline())[-60:]}")
        except psutil.Error:
            out.append(f"{pid} gone")
    return "; ".join(out)


# -- start-up cost, as a test ------------------------------------------------------------------


def _importtime(env: dict[str, str] | None = None) -> list[tuple[int, str]]:
    """(depth, module) of every import at start-up, in ``-X importtime`` order."""
    stderr = run_python("pass", args=("-X", "importtime"), env=env, timeout=50).stderr
    out = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "imported package" not in line:
            field = line.split("|")[-1][1:]
            name = field.lstrip(" ")
            out.append(((len(field) - len(name)) // 2, name))
    return out


def _children(imports: list[tuple[int, str]], parent: str) -> list[str]:
    """Modules imported while ``parent`` was importing (they are listed just before it)."""
    index = [name for _, name in imports].index(parent)
    depth = imports[index][0]
    children = []
    for child_depth, name in reversed(imports[:index]):
        if child_depth <= depth:
            break
        children.append(name)
    return children


@pytest.mark.timeout(60)
def test_start_up_imports_only_the_start_up_module() -> None:
    """``-X importtime``: the plugin's own module, and nothing heavy it drags in."""
    on = _importtime()
    off = _importtime({"NEST_JOBLIB": "0"})
    names = [name for _, name in on]
    assert "_nest_joblib_startup" in names
    # NEST_JOBLIB=0 runs the same .pth line: the same modules, no more, no less.
    assert sorted(names) == sorted(name for _, name in off)
    for heavy in ("joblib", "threading", "importlib.util", "typing", "nest_joblib", "logging"):
        # (virtualenv's own start-up file imports typing on Python 3.9)
        assert heavy not in names or heavy in [n for _, n in off], heavy
    assert not set(_children(on, "_nest_joblib_startup")) - {"__future__"}


@pytest.mark.timeout(60)
def test_start_up_module_drags_in_nothing() -> None:
    assert _children(_importtime(), "_nest_joblib_startup") == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "first",
    [
        "nest_joblib._private.patch",
        "nest_joblib._private.variants",
        "nest_joblib._private.budgeted",
        "nest_joblib._private.engines",
    ],
)
def test_our_modules_imported_before_joblib_still_patch(first: str) -> None:
    proc = run_python(
        f"""
import {first}
import joblib.parallel
print(joblib.parallel.DEFAULT_BACKEND)
""",
        timeout=60,
    )
    assert proc.stdout.strip() == "nested-loky"
    assert "Warning" not in proc.stderr


@pytest.mark.timeout(120)
def test_a_nested_backend_unpickles_in_a_fresh_process_before_joblib() -> None:
    """As in a Dask or Ray worker: the pickle arrives before anything imported joblib."""
    blob = run_python(
        """
import pickle, sys, joblib.parallel
backend = joblib.parallel.BACKENDS["nested-loky"](nesting_level=1)
sys.stdout.write(pickle.dumps(backend).hex())
""",
        timeout=60,
    ).stdout
    proc = run_python(
        f"""
import pickle, sys
assert "joblib" not in sys.modules
backend = pickle.loads(bytes.fromhex("{blob}"))
import joblib.parallel
print(type(backend).__name__, backend.nesting_level, joblib.parallel.DEFAULT_BACKEND)
""",
        timeout=60,
    )
    assert proc.stdout.split() == ["NestedLokyBackend", "1", "nested-loky"]
    assert "Warning" not in proc.stderr
