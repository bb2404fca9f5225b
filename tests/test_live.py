"""``nest_joblib.info()`` and the trees ``nest-joblib status`` lists, on a running tree."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import child_command, child_env, clean_env, last_json, run_python

pytestmark = pytest.mark.skipif(
    not Path("/proc/locks").exists(), reason="holders are read from Linux's /proc/locks"
)


def test_info_and_status_on_a_running_tree(tmp_path: Path) -> None:
    signals = tmp_path / "signals"
    signals.mkdir()
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {"NEST_JOBLIB_CPUS": "3", "TMPDIR": str(temp)}
    child = subprocess.Popen(
        child_command("live_tree", str(signals)),
        env=child_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(list(signals.glob("ready-*"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = {
            path.name.split("-")[1]: int(path.name.split("-")[2]) for path in signals.iterdir()
        }
        assert set(ready) == {"b", "leaf0", "leaf1"}
        status = subprocess.run(
            [sys.executable, "-m", "nest_joblib", "status", "--json"],
            env=clean_env(env),
            capture_output=True,
            text=True,
            timeout=60,
        )
        text = subprocess.run(
            [sys.executable, "-m", "nest_joblib", "status"],
            env=clean_env(env),
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    finally:
        (signals / "go").touch()
        out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    report = last_json(out)

    # The tree as `status` saw it: its root, its size, every token held, by whom: the
    # root for the two batches of its pool, task a's process for the leaf it sent to a lane.
    a = next(task for task in report["tasks"] if task["name"] == "a")
    [tree] = json.loads(status.stdout)["trees"]
    assert tree["root_pid"] == report["pid"] == child.pid
    assert tree["budget"] == 3
    assert tree["alive"] is True
    assert tree["free"] == 0
    assert sorted(tree["holders"].values()) == sorted([child.pid, child.pid, a["info"]["pid"]])
    assert ready["b"] != a["info"]["pid"]
    assert Path(tree["directory"]).parent == temp
    assert f"root {child.pid}, budget 3, 0 free" in text

    # info() in the root, before the first call made the budget's directory, and after.
    before, after = report["before"], report["after"]
    assert before["budget"] == 3
    assert before["source"] == "NEST_JOBLIB_CPUS"
    assert (before["role"], before["directory"], before["free"]) == (None, None, None)
    assert after["role"] == "root"
    assert after["directory"] == tree["directory"]
    assert (after["held"], after["free"], after["placed_elsewhere"]) == (0, 3, 0)
    assert report["free_after"] < 1  # every token free within a second of the call's return

    # info() in the workers: they run on tokens the root holds; a's nested call placed a
    # leaf elsewhere (and held its token meanwhile, as the tree showed).
    for task in report["tasks"]:
        info = task["info"]
        assert info["role"] == "worker"
        assert info["budget"] == 3
        assert info["directory"] == tree["directory"]
        assert info["held"] == 0
    assert a["placed"] == 1
    assert a["info"]["pid"] in a["leaves"]  # the other leaf ran elsewhere
    assert len(set(a["leaves"])) == 2


def test_info_without_a_budget() -> None:
    code = "import json, nest_joblib; print(json.dumps(nest_joblib.info()))"
    cases = {
        "no joblib": ({}, "none: joblib is not imported"),
        "off": ({"NEST_JOBLIB_CPUS": "off"}, "off: NEST_JOBLIB_CPUS=off"),
        "disabled": ({"NEST_JOBLIB": "0"}, "none: joblib is not patched"),
        "unavailable": ({}, "unavailable: "),
    }
    nested = (  # a call that needs the budget, whose directory cannot be made
        "import tempfile, warnings; warnings.simplefilter('ignore'); "
        "from joblib import Parallel, delayed\n"
        "def denied(*args, **kwargs): raise PermissionError(13, 'denied')\n"
        "tempfile.mkdtemp = denied; Parallel(n_jobs=2)(delayed(abs)(i) for i in range(2)); "
    )
    for name, (env, source) in cases.items():
        prelude = {"no joblib": "", "unavailable": nested}.get(name, "import joblib; ")
        info = last_json(run_python(prelude + code, env=env).stdout)
        assert info["budget"] is None, name
        assert info["source"].startswith(source), (name, info)
        assert (info["directory"], info["free"], info["held"]) == (None, None, 0), name
