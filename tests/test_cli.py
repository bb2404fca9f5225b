"""``python -m nest_joblib`` / ``nest-joblib``: ``status`` and ``demo``.

Every case runs the command in a fresh interpreter of this environment, so
the start-up hook runs (or not) exactly as it does for a user.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from conftest import clean_env

#: The console script declared in pyproject.toml, installed beside the interpreter.
SCRIPT = Path(sys.executable).parent / "nest-joblib"
#: A demo small enough for a test: process start-up dominates its timings.
TINY = ("--size", "0.01")


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    command: Sequence[str] = (sys.executable, "-m", "nest_joblib"),
    timeout: float = 240,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, *args],
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def status_json(env: Mapping[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    proc = run_cli("status", "--json", env=env)
    report: dict[str, Any] = json.loads(proc.stdout)
    return proc.returncode, report


# -- status -----------------------------------------------------------------


def test_status_text_when_active() -> None:
    proc = run_cli("status")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.splitlines()[0].endswith(": ACTIVE")
    assert "nest_joblib.pth" in out
    assert "enabled:          yes (NEST_JOBLIB is not set: on by default)" in out
    assert "start-up hook:    ran in this interpreter" in out
    assert "joblib patched:   yes (by the plugin)" in out
    assert "default backend:  nested-loky" in out
    assert "nested-loky" in out.split("nested backends:")[1].splitlines()[0]
    assert "(from joblib.cpu_count())" in out
    assert f"Python:           {platform.python_version()}" in out
    assert "bad value" not in out
    assert "hint:" not in out


def test_status_json_when_active() -> None:
    import joblib

    code, report = status_json()
    assert code == 0
    assert report["active"] is True
    assert report["installed"] is True
    assert all(Path(p).name == "nest_joblib.pth" for p in report["pth_files"])
    assert report["pth_files"]
    assert report["enabled"] is True
    assert report["hook_fired"] is True
    assert report["patched"] is True
    assert report["patch_source"] == "plugin"
    assert report["failure"] is None
    assert report["default_backend"] == "nested-loky"
    assert {"nested-loky", "nested-threading"} <= set(report["nested_backends"])
    assert report["environment"] == dict.fromkeys(
        (
            "NEST_JOBLIB",
            "NEST_JOBLIB_BACKENDS",
            "NEST_JOBLIB_CPUS",
            "NEST_JOBLIB_DEBUG",
            "NEST_JOBLIB_TRACE",
        )
    )
    assert report["problems"] == []
    assert report["cpu_budget"] == report["joblib_cpu_count"] == joblib.cpu_count()
    assert report["cpu_budget_source"] == "joblib.cpu_count()"
    assert report["cpu_budget_in_force"] is True
    assert report["joblib_version"] == joblib.__version__
    assert report["python_version"] == platform.python_version()
    assert report["hints"] == []


def test_status_when_disabled() -> None:
    env = {"NEST_JOBLIB": "0"}
    proc = run_cli("status", env=env)
    assert proc.returncode == 1
    out = proc.stdout
    assert out.splitlines()[0].endswith(": NOT ACTIVE")
    assert "enabled:          no (NEST_JOBLIB='0' turns it off)" in out
    assert "start-up hook:    did not run" in out
    assert "joblib patched:   no" in out
    assert "default backend:  loky" in out
    assert "nested backends:  none" in out
    assert "not in force" in out
    assert "hint: NEST_JOBLIB='0' turns it off" in out

    code, report = status_json(env)
    assert code == 1
    assert report["active"] is False
    assert report["installed"] is True  # installed, but switched off
    assert report["enabled"] is False
    assert report["hook_fired"] is False
    assert report["patched"] is False
    assert report["default_backend"] == "loky"
    assert report["nested_backends"] == []
    assert report["environment"]["NEST_JOBLIB"] == "0"
    assert report["cpu_budget_in_force"] is False


def test_status_with_bad_values() -> None:
    env = {"NEST_JOBLIB_CPUS": "zero", "NEST_JOBLIB_BACKENDS": "nonsense"}
    proc = run_cli("status", env=env)
    assert proc.returncode == 0  # bad values are flagged, the plugin stays active
    assert "bad value: NEST_JOBLIB_CPUS='zero' is not accepted" in proc.stdout
    assert "bad value: NEST_JOBLIB_BACKENDS='nonsense'" in proc.stdout
    assert "(from joblib.cpu_count())" in proc.stdout

    code, report = status_json(env)
    assert code == 0
    assert report["active"] is True
    assert len(report["problems"]) == 2
    cpus, backends = sorted(report["problems"], reverse=True)
    assert cpus.startswith("NEST_JOBLIB_CPUS='zero'")
    assert "at least 1" in cpus
    assert backends.startswith("NEST_JOBLIB_BACKENDS='nonsense'")
    assert "dask, ray" in backends
    assert report["settings"]["cpus"] is None
    assert report["settings"]["backends"] == []
    assert report["cpu_budget_source"] == "joblib.cpu_count()"


def test_status_with_bad_switch() -> None:
    code, report = status_json({"NEST_JOBLIB": "maybe"})
    assert code == 1
    assert report["enabled"] is False
    assert report["hook_fired"] is False
    assert "not recognised" in report["enabled_reason"]
    assert any(p.startswith("NEST_JOBLIB='maybe'") for p in report["problems"])


@pytest.mark.parametrize(
    ("value", "budget", "source"),
    [("3", 3, "NEST_JOBLIB_CPUS"), ("off", None, "off")],
)
def test_status_budget_source(value: str, budget: int | None, source: str) -> None:
    env = {"NEST_JOBLIB_CPUS": value, "NEST_JOBLIB_BACKENDS": "dask"}
    code, report = status_json(env)
    assert code == 0
    assert report["cpu_budget"] == budget
    assert report["cpu_budget_source"].startswith(source)
    assert "nested-dask" in report["nested_backends"]
    proc = run_cli("status", env=env)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("CPU budget:"))
    assert (f"{budget} CPUs (from NEST_JOBLIB_CPUS)" if budget else "off") in line


def test_no_command_is_status() -> None:
    default, explicit = run_cli(), run_cli("status")
    assert default.returncode == explicit.returncode == 0
    assert default.stdout == explicit.stdout
    as_json = run_cli("--json")
    assert json.loads(as_json.stdout)["active"] is True
    off = run_cli(env={"NEST_JOBLIB": "off"})
    assert off.returncode == 1
    assert "NOT ACTIVE" in off.stdout


def test_console_script() -> None:
    assert SCRIPT.is_file(), f"{SCRIPT} is not installed"
    proc = run_cli("--json", command=(str(SCRIPT),))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["active"] is True
    proc = run_cli("--version", command=(str(SCRIPT),))
    assert proc.returncode == 0
    assert proc.stdout.startswith("nest-joblib ")


def test_usage_errors() -> None:
    proc = run_cli("demo", "--size", "0")
    assert proc.returncode == 2
    assert "'0' is not a positive number" in proc.stderr
    assert run_cli("frobnicate").returncode == 2


# -- demo -------------------------------------------------------------------


def table(stdout: str) -> dict[str, list[str]]:
    """The demo's table: row label -> [plain joblib, nest-joblib] cells."""
    lines = stdout.splitlines()
    rule = next(i for i, line in enumerate(lines) if line and set(line) <= {"-", " "})
    spans = [m.span() for m in re.finditer(r"-+", lines[rule])]
    assert len(spans) == 3

    def cells(line: str) -> list[str]:
        return [line[start:end].strip() for start, end in spans]

    assert cells(lines[rule - 1]) == ["", "plain joblib", "nest-joblib"]
    rows: dict[str, list[str]] = {}
    for line in lines[rule + 1 :]:
        if not line.strip():
            break
        label, *values = cells(line)
        rows[label] = values
    return rows


def test_demo_runs_both_modes() -> None:
    proc = run_cli("demo", *TINY)
    assert proc.returncode == 0, proc.stderr
    assert "[1/2] plain joblib: running" in proc.stderr
    assert "[1/2] plain joblib: done in" in proc.stderr
    assert "[2/2] nest-joblib: running" in proc.stderr
    assert "[2/2] nest-joblib: done in" in proc.stderr
    assert proc.stdout.startswith("workload: ")
    rows = table(proc.stdout)
    assert next(iter(rows)) == "wall time"
    assert all(cell.endswith(" s") for cell in rows["wall time"])
    assert "processes at level 0 (caller)" in rows
    assert "processes at level 1 (outer tasks)" in rows
    assert "processes at level 2 (leaves)" in rows
    assert rows["processes at level 0 (caller)"] == ["1", "1"]
    assert rows["nest-joblib active"] == ["no", "yes"]
    assert rows["CPU budget"][0] == "-"
    assert rows["speed-up"][0] == "1.00x"
    # The demo claims a speed-up only where joblib sees more than one CPU.
    import joblib

    if joblib.cpu_count() > 1:
        assert re.fullmatch(r"\d+\.\d\dx", rows["speed-up"][1])
    else:
        assert rows["speed-up"][1] == "n/a"
    verdict = proc.stdout.rstrip().splitlines()[-1]
    assert "NOT active" not in verdict


def test_demo_json() -> None:
    proc = run_cli("demo", *TINY, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["ok"] is True
    plain, nested = result["runs"]["plain"], result["runs"]["nested"]
    assert plain["active"] is False
    assert plain["default_backend"] == "loky"
    assert nested["active"] is True
    assert nested["default_backend"] == "nested-loky"
    for run in (plain, nested):
        shape = run["shape"]
        assert run["leaves_run"] == shape["outer"] * shape["leaves"]
        assert set(run["processes_per_level"]) == {"0", "1", "2"}
        assert run["processes_per_level"]["0"] == 1
    # Plain joblib runs nested leaves on threads of the outer worker: the same processes.
    assert plain["processes_per_level"]["2"] == plain["processes_per_level"]["1"]


def test_demo_on_one_cpu_claims_nothing() -> None:
    proc = run_cli("demo", *TINY, env={"LOKY_MAX_CPU_COUNT": "1"})
    assert proc.returncode == 0, proc.stderr
    rows = table(proc.stdout)
    assert rows["speed-up"][1] == "n/a"
    assert "joblib sees 1 CPU" in proc.stdout
    assert "nothing to gain" in proc.stdout


def test_demo_says_when_plugin_is_off() -> None:
    proc = run_cli("demo", *TINY, env={"NEST_JOBLIB": "0"})
    assert proc.returncode == 1
    rows = table(proc.stdout)
    assert rows["nest-joblib active"] == ["no", "no"]
    assert rows["speed-up"][1] == "n/a"
    assert "nest-joblib was NOT active in the second run" in proc.stdout
    assert "NEST_JOBLIB='0'" in proc.stdout


def test_status_tells_whether_joblib_was_imported_first() -> None:
    _, fresh = status_json()
    assert fresh["joblib_imported_before_status"] is False
    proc = run_cli(
        "-c",
        "import joblib, sys; from nest_joblib._cli import main; "
        "sys.exit(main(['status', '--json']))",
        command=(sys.executable,),
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["joblib_imported_before_status"] is True
