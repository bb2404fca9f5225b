"""The trace (NEST_JOBLIB_TRACE, nest_joblib.trace()): a known program, slice by slice."""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import child_env, last_json, run_child

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no budget, no trace")

#: The debug line of each lane that came up (see .scheduling.lanes).
LANE_UP = re.compile(r"lane \d+ of this process is up")


def _slices(trace: dict[str, Any], cat: str = "task") -> list[dict[str, Any]]:
    return [e for e in trace["traceEvents"] if e["ph"] == "X" and e.get("cat") == cat]


def _check_tree(trace: dict[str, Any], ran: list[list[Any]], budget: int) -> None:
    """Every task is one slice where it ran; slices nest; tokens stay within the budget."""
    slices = _slices(trace)
    seen = collections.Counter((e["name"], e["args"]["level"], e["pid"]) for e in slices)
    assert seen == collections.Counter(tuple(r[:3]) for r in ran)
    assert all(e["args"]["ok"] for e in slices)
    assert {e["args"]["where"] for e in slices} <= {
        "top-level batch", "inline", "stand-in", "lane", "helper"
    }  # fmt: skip
    assert {e["args"]["where"] for e in slices if e["args"]["level"] == 0} == {"top-level batch"}
    by_thread: dict[tuple[int, int], list[tuple[int, int]]] = collections.defaultdict(list)
    for e in slices:
        by_thread[e["pid"], e["tid"]].append((e["ts"], e["ts"] + e["dur"]))
    for spans in by_thread.values():
        spans.sort(key=lambda s: (s[0], -s[1]))
        for i, (a0, a1) in enumerate(spans):
            for b0, b1 in spans[i + 1 :]:
                assert b0 >= a1 or (a0 <= b0 and b1 <= a1), ((a0, a1), (b0, b1))
    holds: dict[int, list[tuple[int, int]]] = collections.defaultdict(list)
    for e in _slices(trace, "token"):
        holds[e["args"]["slot"]].append((e["ts"], e["ts"] + e["dur"]))
    assert holds, "tokens were held"
    assert set(holds) <= set(range(budget))
    for spans in holds.values():
        spans.sort()
        assert all(b0 >= a1 for (_, a1), (b0, _) in zip(spans, spans[1:])), spans
    tokens = [e["args"]["tokens"] for e in trace["traceEvents"] if e["name"] == "tokens held"]
    assert tokens
    assert min(tokens) >= 0
    assert max(tokens) <= budget
    assert trace["otherData"]["budget"] == budget
    assert trace["otherData"]["dropped_events"] == {}


def _names(trace: dict[str, Any]) -> dict[int, str]:
    return {
        e["pid"]: e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "process_name"
    }


def _instants(trace: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [e for e in trace["traceEvents"] if e["ph"] == "i" and e["name"] == name]


@pytest.mark.timeout(120)
def test_every_task_of_every_level_is_one_slice_where_it_ran(tmp_path: Path) -> None:
    path = tmp_path / "trace.json"
    env = {"NEST_JOBLIB_TRACE": str(path), "NEST_JOBLIB_CPUS": "3", "NEST_JOBLIB_DEBUG": "1"}
    proc = run_child("trace_tree", env=env)
    report = last_json(proc.stdout)
    trace = json.loads(path.read_text())
    _check_tree(trace, report["ran"], 3)
    names = _names(trace)
    assert names[report["root"]] == f"root {report['root']}"
    workers = {r[2] for r in report["ran"]} - {report["root"]}
    assert all(names[pid].endswith(str(pid)) for pid in workers)
    # One lane-start event for every lane that came up, each with its start time.
    lanes = _instants(trace, "lane started")
    assert lanes, "the third CPU of the budget starts a lane"
    assert len(lanes) == len(LANE_UP.findall(proc.stderr))
    assert all(e["args"]["start_seconds"] > 0 for e in lanes)
    assert {names[e["pid"]].split()[0] for e in lanes} <= {"top-level", "lane", "root"}
    lane_tasks = [e for e in _slices(trace) if e["args"]["where"] == "lane"]
    assert {names[e["pid"]].split()[0] for e in lane_tasks} <= {"lane"}
    # Nothing but the trace is left beside it.
    assert sorted(os.listdir(tmp_path)) == ["trace.json"]


@pytest.mark.timeout(120)
def test_the_context_manager_traces_what_runs_inside(tmp_path: Path) -> None:
    path = tmp_path / "inside.json"
    report = last_json(
        run_child(
            "trace_tree", "context", env={"TRACE_TO": str(path), "NEST_JOBLIB_CPUS": "3"}
        ).stdout
    )
    assert report["path"] == str(path)
    _check_tree(json.loads(path.read_text()), report["ran"], 3)
    assert sorted(os.listdir(tmp_path)) == ["inside.json"]


@pytest.mark.timeout(120)
def test_a_killed_worker_still_gets_its_slice_ended(tmp_path: Path) -> None:
    path = tmp_path / "killed.json"
    report = last_json(
        run_child(
            "trace_killed", env={"NEST_JOBLIB_TRACE": str(path), "NEST_JOBLIB_CPUS": "3"}
        ).stdout
    )
    assert report == {"top": "terminated", "below": "terminated"}
    trace = json.loads(path.read_text())
    died = [e for e in _slices(trace) if not e["args"]["ok"]]
    names = {e["name"] for e in died}
    assert {"die", "die_below"} <= names, died
    # Each ends where its sender saw TerminatedWorkerError (or one killed with it, by the abort).
    assert all("its process died" in e["args"]["ended"] for e in died), died
    for name in ("die", "die_below"):
        ended = [e["args"]["ended"] for e in died if e["name"] == name]
        assert any("where its sender saw it" in text for text in ended), died
    assert "lane" in {e["args"]["where"] for e in died if e["name"] == "die_below"}
    assert {e["args"]["level"] for e in _instants(trace, "call aborted")} == {0, 1}
    assert sorted(os.listdir(tmp_path)) == ["killed.json"]


def _nest_joblib(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nest_joblib", *args],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.timeout(180)
def test_trace_prints_a_summary_and_merges_what_a_killed_root_left(tmp_path: Path) -> None:
    path = tmp_path / "trace.json"
    run_child("trace_tree", env={"NEST_JOBLIB_TRACE": str(path), "NEST_JOBLIB_CPUS": "3"})
    proc = _nest_joblib("trace", str(path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "trace of 18 tasks" in out
    assert re.search(r"^0\s+2\s", out, re.M), out
    assert re.search(r"^2\s+4\s", out, re.M), out
    assert "peak tokens held:" in out
    assert "of a budget of 3" in out
    rows = [line for line in out.splitlines() if line.startswith(("root", "top-level", "lane"))]
    assert rows, out
    assert all(len(line.split()[-1]) == 60 for line in rows), out
    # A root killed with SIGKILL writes no trace; its parts are merged by `trace PATH`.
    killed = tmp_path / "killed.json"
    proc = run_child(
        "trace_root_killed", env={"NEST_JOBLIB_TRACE": str(killed), "NEST_JOBLIB_CPUS": "3"},
        check=False,
    )  # fmt: skip
    assert proc.returncode == -9, proc.stderr
    assert not killed.exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith("killed.json.part-")]
    proc = _nest_joblib("trace", str(killed))
    assert proc.returncode == 0, proc.stderr
    assert "merged" in proc.stdout
    assert "trace of" in proc.stdout
    assert json.loads(killed.read_text())["traceEvents"]
    left = sorted(p for p in os.listdir(tmp_path) if p.startswith("killed"))
    assert left == ["killed.json"], left


@pytest.mark.parametrize("content", ["not json", "{}", "[1, 2]", None])
def test_trace_of_a_file_that_is_no_trace_says_so(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "other.json"
    if content is not None:
        path.write_text(content)
    proc = _nest_joblib("trace", str(path))
    assert proc.returncode == 2
    assert proc.stdout.strip().splitlines() == [
        f"{path}: not a trace file (JSON with a traceEvents list)"
    ]


@pytest.mark.timeout(120)
def test_a_program_that_a_task_runs_writes_a_trace_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "trace.json"
    report = last_json(
        run_child(
            "trace_subprogram", env={"NEST_JOBLIB_TRACE": str(path), "NEST_JOBLIB_CPUS": "3"}
        ).stdout
    )
    assert sorted(os.listdir(tmp_path)) == sorted(["trace.json", f"trace.json.{report['inner']}"])
    outer = json.loads(path.read_text())
    inner = json.loads((tmp_path / f"trace.json.{report['inner']}").read_text())
    assert {e["name"] for e in _slices(outer)} == {"run_program"}
    assert {e["name"] for e in _slices(inner)} == {"getpid"}


@pytest.mark.timeout(120)
def test_off_the_trace_module_is_imported_nowhere(tmp_path: Path) -> None:
    report = last_json(run_child("trace_tree", env={"NEST_JOBLIB_CPUS": "3"}).stdout)
    assert report["root_traced"] is False
    assert len(report["ran"]) == 18
    assert not any(imported for *_, imported in report["ran"])


def test_a_process_writes_at_most_the_cap_and_counts_what_it_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nest_joblib._private import trace, trace_file

    monkeypatch.setattr(trace, "CAP", 5)
    target = str(tmp_path / "capped.json")
    recorder = trace.Recorder(trace_file.part_prefix(target), "root", "test")
    for i in range(20):
        recorder.instant("tick", i=i)
    recorder.close()
    merged = trace_file.merge(target)
    assert merged is not None
    assert (
        len([e for e in merged["traceEvents"] if e["name"] == "tick"]) == 3
    )  # besides the header and the thread name
    assert merged["otherData"]["dropped_events"] == {str(os.getpid()): 17}
    assert sorted(os.listdir(tmp_path)) == ["capped.json"]


@pytest.mark.timeout(300)
def test_the_demo_writes_its_trace_and_says_how_to_open_it(tmp_path: Path) -> None:
    path = tmp_path / "demo.json"
    proc = _nest_joblib("demo", "--size", "0.01", "--trace", str(path), timeout=300)
    assert proc.returncode in (0, 1), proc.stderr  # 1: no speed-up on a busy machine
    assert "ui.perfetto.dev" in proc.stdout
    assert f"python -m nest_joblib trace {path}" in proc.stdout
    trace = json.loads(path.read_text())
    assert {e["args"]["level"] for e in _slices(trace)} == {0, 1}
    assert sorted(os.listdir(tmp_path)) == ["demo.json"]


@pytest.mark.timeout(120)
def test_stand_ins_and_waits_for_a_free_cpu_are_instant_events(tmp_path: Path) -> None:
    path = tmp_path / "waits.json"
    # No helpers: the CPU the first outer task frees goes to the second one's lanes.
    env = {"NEST_JOBLIB_TRACE": str(path), "NEST_JOBLIB_CPUS": "2", "NEST_JOBLIB_ABLATE": "helpers"}
    assert last_json(run_child("trace_waits", env=env).stdout) == [0, 8]
    trace = json.loads(path.read_text())
    stand_ins = _instants(trace, "stand-in started")
    assert stand_ins, "the naps of the first nested call wait: stand-ins start beside them"
    ran_by_stand_ins = [e for e in _slices(trace) if e["args"]["where"] == "stand-in"]
    assert {e["name"] for e in ran_by_stand_ins} == {"nap"}
    waited = _instants(trace, "task waited for a free CPU")
    assert waited, "the second nested call's tasks wait for the CPU the first outer task holds"
    assert all(e["args"]["waited_ms"] > 0 for e in waited)
