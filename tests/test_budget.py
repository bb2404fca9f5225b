"""The CPU budget's invariants, shown by counting, never by timing."""

from __future__ import annotations

import pytest

from conftest import run_json

BUSY = """
import json, os, time
from joblib import Parallel, delayed

def busy(seconds):
    end = time.time() + seconds
    while time.time() < end:
        sum(range(1000))

def leaf(i):
    start = time.time()
    busy(0.1)
    return [[start, time.time()]]

def node(depth):
    if depth == 0:
        return leaf(0)
    spans = Parallel(n_jobs=4)(delayed(node)(depth - 1) for _ in range(3))
    return [span for spans_ in spans for span in spans_]

def peak(spans):
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    now = top = 0
    for _, step in events:
        now += step
        top = max(top, now)
    return top
"""


@pytest.mark.parametrize(("cpus", "bounded"), [("2", True), ("off", False)])
def test_three_levels_never_exceed_the_budget(cpus: str, bounded: bool) -> None:
    out = run_json(
        BUSY
        + """
spans = node(3)
print(json.dumps({"leaves": len(spans), "peak": peak(spans)}))
""",
        env={"NEST_JOBLIB_CPUS": cpus},
        timeout=240,
    )
    assert out["leaves"] == 27
    if bounded:
        assert out["peak"] <= 2
    else:  # naive nesting, for contrast: the same tree oversubscribes
        assert out["peak"] > 2


def test_a_killed_worker_does_not_shrink_the_budget() -> None:
    out = run_json(
        BUSY
        + """
import signal
from joblib.externals.loky.process_executor import TerminatedWorkerError

def die(i):
    if i == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    busy(0.5)

def task(kill):
    # One level down, so the victim holds its token in a lane of this worker.
    if kill:
        try:
            Parallel(n_jobs=2)(delayed(die)(i) for i in range(2))
        except TerminatedWorkerError:
            return "terminated"
        return "survived"
    return "idle"

outcome = Parallel(n_jobs=2)(delayed(task)(k) for k in (True,))
try:
    Parallel(n_jobs=2)(delayed(die)(i) for i in range(2))
    top = "survived"
except TerminatedWorkerError:
    top = "terminated"
# With both tokens back, two leaves compute at once again.
spans = Parallel(n_jobs=2)(delayed(leaf)(i) for i in range(6))
spans = [span for spans_ in spans for span in spans_]
print(json.dumps({"outcome": outcome, "top": top, "peak": peak(spans)}))
""",
        env={"NEST_JOBLIB_CPUS": "2"},
        timeout=240,
    )
    assert out["outcome"] == ["terminated"]
    assert out["top"] == "terminated"
    assert out["peak"] == 2


@pytest.mark.parametrize(("cpus", "inline"), [("2", True), ("off", False)])
def test_a_nested_call_with_no_free_cpu_starts_no_process(cpus: str, inline: bool) -> None:
    out = run_json(
        BUSY
        + """
import psutil, sys, tempfile

def task(barrier):
    # Wait until both outer tasks hold their CPU, so none is free below.
    open(os.path.join(barrier, str(os.getpid())), "w").close()
    while len(os.listdir(barrier)) < 2:
        time.sleep(0.01)
    pids = Parallel(n_jobs=2)(delayed(os.getpid)() for _ in range(4))
    return {"pid": os.getpid(), "leaf_pids": pids,
            "children": len(psutil.Process().children(recursive=True))}

with tempfile.TemporaryDirectory() as barrier:
    print(json.dumps(Parallel(n_jobs=2)(delayed(task)(barrier) for _ in range(2))))
""",
        env={"NEST_JOBLIB_CPUS": cpus},
        timeout=120,
    )
    workers = {task["pid"] for task in out}
    for task in out:
        if inline:
            assert task["children"] == 0
            # In the caller, or in the other top-level worker once it is idle (it
            # helps, see the next tests): never in a new process.
            assert task["pid"] in task["leaf_pids"]
            assert set(task["leaf_pids"]) <= workers
        else:  # naive nesting starts a pool below each worker
            assert task["children"] >= 1
            assert task["pid"] not in task["leaf_pids"]


SHARING = """
import sys, tempfile, traceback
import psutil

def timed_leaf(i, caller, fail_elsewhere):
    start = time.time()
    busy(0.3)
    if fail_elsewhere and os.getpid() != caller:
        raise ValueError(f"leaf {i} failed in {os.getpid()}")
    return os.getpid(), [start, time.time()]

def wide(fail_elsewhere, barrier):
    # Start only once the other outer task holds its CPU: no CPU is free, so
    # the nested call runs inline and offers its queued leaves.
    while not os.listdir(barrier):
        time.sleep(0.01)
    me = os.getpid()
    try:
        got = Parallel(n_jobs=-1)(
            delayed(timed_leaf)(i, me, fail_elsewhere) for i in range(8)
        )
    except ValueError as exc:
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return {"pid": me, "error": str(exc), "trace": trace}
    return {
        "pid": me,
        "leaf_pids": [pid for pid, _ in got],
        "spans": [span for _, span in got],
        "children": len(psutil.Process().children(recursive=True)),
    }

def narrow(barrier):
    open(os.path.join(barrier, str(os.getpid())), "w").close()
    busy(0.3)
    return {"pid": os.getpid()}

FAIL = len(sys.argv) > 1
with tempfile.TemporaryDirectory() as barrier:
    a, b = Parallel(n_jobs=2)([delayed(wide)(FAIL, barrier), delayed(narrow)(barrier)])
print(json.dumps({"a": a, "b": b, "peak": peak(a.get("spans", []))}))
"""


def test_an_idle_worker_helps_a_nested_call_elsewhere_and_starts_nothing() -> None:
    """The outer task that ends first lends its CPU to the other's nested call."""
    out = run_json(BUSY + SHARING, env={"NEST_JOBLIB_CPUS": "2"}, timeout=120)
    a, b = out["a"], out["b"]
    assert a["pid"] != b["pid"]
    assert b["pid"] in a["leaf_pids"]  # the idle top-level worker ran leaves of the call
    assert a["pid"] in a["leaf_pids"]  # as did the caller, inline
    assert set(a["leaf_pids"]) == {a["pid"], b["pid"]}  # and no lane was started
    assert a["children"] == 0
    assert len(a["leaf_pids"]) == 8
    assert out["peak"] <= 2


def test_an_error_in_a_helped_task_reaches_the_caller() -> None:
    out = run_json(
        BUSY + "import sys\nsys.argv.append('fail')\n" + SHARING,
        env={"NEST_JOBLIB_CPUS": "2"},
        timeout=120,
    )
    a, b = out["a"], out["b"]
    assert a["error"].endswith(f"failed in {b['pid']}")  # raised in the helper
    assert "timed_leaf" in a["trace"]  # with the leaf's own frames
