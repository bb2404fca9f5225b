"""Trusted at every start-up (promises P3 and P7): fault injection, concurrency, shutdown.

Every case runs in a fresh interpreter of this environment, so start-up is
the user's own: ``nest_joblib.pth`` installs the finder before the code runs.
The programs are ``tests/children/robust_*.py``; most import
``children.counting`` first, which counts the hook's runs and the patches.
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
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import child_command, child_env, last_json, run_child, run_python

psutil = pytest.importorskip("psutil")

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


def case(
    name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> tuple[Any, str]:
    """Run the child program ``name`` (which ends with ``children.counting.report()``).

    Returns (report, stderr).
    """
    proc = run_child(name, *args, env=env, timeout=timeout)
    return last_json(proc.stdout), proc.stderr


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "NestJoblibWarning" in line]


def assert_patched_once(report: Any) -> None:
    for key, value in PATCHED_ONCE.items():
        assert report[key] == value, (key, report)
    assert report["counts"]["patched"] == 1, report


# -- concurrency ----------------------------------------------------------------


@pytest.mark.timeout(90)
def test_import_from_eight_threads_patches_once() -> None:
    report, stderr = case("robust_threads", timeout=80)
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
    report, stderr = case("robust_reload", timeout=110)
    assert report["replaced"]  # the reload made new objects, and they are patched
    assert report["counts"]["patched"] == 2  # once at import, once at reload
    assert report["counts"]["hook"] == 2  # joblib.parallel's loader, wrapped at each import
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


@pytest.mark.timeout(60)
def test_finder_ahead_of_ours_supplies_parallel() -> None:
    """Our finder also watches ``joblib`` and patches after its ``__init__``."""
    report, stderr = case("robust_claiming_finder", "ahead")
    assert report["claimed"] == 1
    assert_patched_once(report)
    assert warning_lines(stderr) == []


@pytest.mark.timeout(60)
def test_finder_behind_ours_supplies_parallel() -> None:
    """A finder behind ours supplies a spec that ours wraps as usual."""
    report, stderr = case("robust_claiming_finder", "behind")
    assert report["claimed"] == 1
    assert_patched_once(report)
    assert warning_lines(stderr) == []


@pytest.mark.timeout(90)
@pytest.mark.parametrize("where", ["ahead", "behind"])
def test_legacy_loader_never_breaks_joblib(where: str) -> None:
    report, stderr = case("robust_legacy_finder", where, "call", timeout=80)
    assert report["squares"] == [0, 1, 4, 9]
    assert report["finders"] == 1
    # Patched once, without a word (see the next test for why).
    assert report["counts"]["patched"] == 1
    assert not report["double_wrapped"]
    assert len(warning_lines(stderr)) == 0, stderr
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
    """A loader without ``exec_module`` cannot be wrapped, and need not be.

    Ahead of our finder, it supplies ``joblib.parallel`` without our finder
    seeing it; behind ours, our finder leaves its spec alone. Either way the
    hook on ``joblib``'s own loader patches ``joblib.parallel`` once
    ``joblib/__init__`` has run: patched, and nothing to warn about.
    """
    report, stderr = case("robust_legacy_finder", where)
    assert warning_lines(stderr) == []
    assert_patched_once(report)


@pytest.mark.timeout(60)
def test_assertion_rewriter_style_finder_is_harmless() -> None:
    """pytest's rewriter sits at sys.meta_path[0] and answers None to modules it skips."""
    report, stderr = case("robust_rewriter_finder")
    assert report["asked"] == ["joblib", "joblib.parallel"]
    assert_patched_once(report)
    assert warning_lines(stderr) == []


@pytest.mark.timeout(60)
def test_editable_style_finder_is_wrapped() -> None:
    """Like setuptools' editable finder: a spec built by spec_from_file_location."""
    report, stderr = case("robust_editable_finder")
    assert report["supplied"] == ["joblib", "joblib.parallel"]
    assert_patched_once(report)
    assert warning_lines(stderr) == []


# -- the .pth processed more than once ----------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("joblib_first", [False, True])
def test_pth_and_start_processed_again(joblib_first: bool) -> None:
    report, stderr = case("robust_pth_again", *(["joblib-first"] if joblib_first else []))
    assert report["has_pth"]
    assert report["entry"] == "_nest_joblib_startup:install"
    # Twice by hand, once through the .start entry, and once by addsitedir: the .pth's
    # import line, or from Python 3.15 the .start entry, which disables it (PEP 829).
    assert report["calls"] == 4
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
    for command in (
        [str(python), "-c", "pass"],
        child_command("robust_no_joblib", python=python),
    ):
        proc = subprocess.run(
            command,
            env=child_env(),
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
    proc = run_child("robust_no_joblib", "hide", timeout=50)
    assert proc.stderr == ""
    assert json.loads(proc.stdout) == {
        "finder": True,
        "error": ["ModuleNotFoundError", "joblib", "No module named 'joblib'"],
        "modules": ["_nest_joblib_startup"],
    }


@pytest.mark.timeout(60)
def test_broken_nest_joblib_package_leaves_joblib_plain() -> None:
    """The start-up module is there but the package cannot be imported."""
    proc = run_child("robust_broken_package", timeout=50)
    assert json.loads(proc.stdout) == {"default": "loky", "squares": [0, 1, 4, 9]}
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("nest-joblib: could not load nest_joblib")
    assert "NEST_JOBLIB=0" in lines[0]


# -- a joblib that looks different ------------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("mutation", "missing"),
    [
        # del module.EXTERNAL_BACKENDS
        ("drop-external", "EXTERNAL_BACKENDS"),
        # module.BACKENDS = collections.UserDict(module.BACKENDS)
        ("wrap-backends", "BACKENDS"),
        # module.BACKENDS_RENAMED = module.EXTERNAL_BACKENDS; del module.EXTERNAL_BACKENDS
        ("rename-external", "EXTERNAL_BACKENDS"),
    ],
)
def test_unexpected_joblib_runs_plain_with_one_warning(mutation: str, missing: str) -> None:
    report, stderr = case("robust_mutating_finder", mutation, timeout=80)
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
    report, stderr = case("robust_mutating_finder", "drop-external", timeout=80)
    assert report["patched"] is False
    assert len(warning_lines(stderr)) == 1, stderr


@pytest.mark.timeout(60)
def test_failure_while_committing_leaves_joblib_untouched() -> None:
    report, stderr = case("robust_commit_failure", env={"NEST_JOBLIB": "0"})
    assert report["patched"] is False
    assert len(warning_lines(stderr)) == 1
    assert report["default"] == "loky"
    assert report["variants"] == []


# -- errors three levels down -------------------------------------------------------------


def _three_levels(
    mode: str, env: dict[str, str] | None = None, timeout: float = 40
) -> dict[str, Any]:
    """Run the three-level case; a hang fails with TimeoutExpired after ``timeout``."""
    proc = run_child("robust_three_levels", mode, env=env, timeout=timeout)
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


def _alive(procs: list[Any]) -> list[Any]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            pass
    return alive


def _leaf_pids(marks: Path) -> set[int]:
    """The processes that started a leaf (``leaf-<pid>-<j>`` marks)."""
    return {int(mark.name.split("-")[1]) for mark in marks.iterdir()}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("cpus", [None, "8"])
def test_sigint_leaves_no_process_and_no_temp_dir(tmp_path: Path, cpus: str | None) -> None:
    """``NEST_JOBLIB_CPUS=8`` on any machine: nested levels start lane processes."""
    temp = tmp_path / "tmp"
    marks = tmp_path / "marks"
    temp.mkdir()
    marks.mkdir()
    env = child_env({"TMPDIR": str(temp)})
    if cpus is not None:
        env["NEST_JOBLIB_CPUS"] = cpus
    parent = subprocess.Popen(
        child_command("robust_long_run", str(marks)),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the signal goes to it alone
    )
    seen: dict[int, Any] = {}
    try:
        root = psutil.Process(parent.pid)

        def running() -> bool:
            """Every level is up: leaves compute, in a lane below a worker with a budget of 8."""
            for proc in root.children(recursive=True):
                seen.setdefault(proc.pid, proc)
            leaves = _leaf_pids(marks)
            if cpus == "8":  # a lane: not a worker of the root's pool
                leaves -= {proc.pid for proc in root.children()}
            return (
                bool(leaves)
                and any(p.name.startswith("nest-joblib-") for p in temp.iterdir())
                and len(seen) >= 4
            )

        deadline = time.monotonic() + 60
        while not running():
            assert parent.poll() is None, parent.communicate()
            assert time.monotonic() < deadline, f"the levels never started: {_describe(seen)}"
            time.sleep(0.05)
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
    proc = run_child("robust_import_first", first, timeout=60)
    assert proc.stdout.strip() == "nested-loky"
    assert "Warning" not in proc.stderr


@pytest.mark.timeout(120)
def test_a_nested_backend_unpickles_in_a_fresh_process_before_joblib() -> None:
    """As in a Dask or Ray worker: the pickle arrives before anything imported joblib."""
    blob = run_child("robust_pickle_backend", "dump", timeout=60).stdout
    proc = run_child("robust_pickle_backend", "load", blob, timeout=60)
    assert proc.stdout.split() == ["NestedLokyBackend", "1", "nested-loky"]
    assert "Warning" not in proc.stderr
