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
import signal, tempfile
from joblib.externals.loky.process_executor import TerminatedWorkerError

def die(i):
    if i == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    busy(0.5)

def task(kill, barrier):
    if kill:
        # Once the other outer task holds the pool's second worker, the third
        # CPU is free and no worker is spare: the nested call starts lanes,
        # and the victim holds its token in one of them, one level down.
        while not os.listdir(barrier):
            time.sleep(0.01)
        try:
            Parallel(n_jobs=2)(delayed(die)(i) for i in range(2))
        except TerminatedWorkerError:
            return "terminated"
        return "survived"
    open(os.path.join(barrier, "busy"), "w").close()
    busy(1.5)
    return "busy"

with tempfile.TemporaryDirectory() as barrier:
    outcome = Parallel(n_jobs=2)(delayed(task)(k, barrier) for k in (True, False))
try:
    Parallel(n_jobs=3)(delayed(die)(i) for i in range(2))
    top = "survived"
except TerminatedWorkerError:
    top = "terminated"
# With every token back, three leaves compute at once again.
spans = Parallel(n_jobs=3)(delayed(leaf)(i) for i in range(9))
spans = [span for spans_ in spans for span in spans_]
print(json.dumps({"outcome": outcome, "top": top, "peak": peak(spans)}))
""",
        env={"NEST_JOBLIB_CPUS": "3"},
        timeout=240,
    )
    assert out["outcome"] == ["terminated", "busy"]
    assert out["top"] == "terminated"
    assert out["peak"] == 3


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


MEET = """
import psutil, tempfile

def meet(barrier, count=2, timeout=30):
    # True once `count` callers wait here at the same time (False after `timeout` s).
    open(os.path.join(barrier, f"{os.getpid()}-{time.monotonic_ns()}"), "w").close()
    deadline = time.monotonic() + timeout
    while len(os.listdir(barrier)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(os.listdir(barrier)) >= count
"""


def test_a_spare_top_level_worker_helps_instead_of_a_new_lane() -> None:
    """An outer loop shorter than the pool: its spare worker takes the free CPU."""
    out = run_json(
        BUSY
        + MEET
        + """
def timed_leaf(i, barrier):
    # The first two leaves must compute at once: the inline caller runs one task at a time.
    together = meet(barrier) if i < 2 else True
    start = time.time()
    busy(0.2)
    return {"pid": os.getpid(), "span": [start, time.time()], "together": together}

def only_task():
    barrier = tempfile.mkdtemp()
    leaves = Parallel(n_jobs=-1)(delayed(timed_leaf)(i, barrier) for i in range(8))
    return {"pid": os.getpid(), "leaves": leaves,
            "children": len(psutil.Process().children(recursive=True))}

[task] = Parallel(n_jobs=2)([delayed(only_task)()])
pids = {leaf["pid"] for leaf in task["leaves"]}
print(json.dumps({**task, "root": os.getpid(),
                  "parents": sorted({psutil.Process(p).ppid() for p in pids}),
                  "peak": peak([leaf["span"] for leaf in task["leaves"]])}))
""",
        env={"NEST_JOBLIB_CPUS": "2"},
        timeout=120,
    )
    assert all(leaf["together"] for leaf in out["leaves"])
    pids = {leaf["pid"] for leaf in out["leaves"]}
    # The caller and one other process: the pool's other worker (both children of the root).
    assert out["pid"] in pids
    assert len(pids) == 2
    assert out["parents"] == [out["root"]]
    assert out["children"] == 0  # no lane was started
    assert out["peak"] <= 2


def test_standing_by_ends_with_the_call() -> None:
    """A spare worker with nothing to help gives its worker and its CPU back after the call."""
    out = run_json(
        BUSY
        + MEET
        + """
from nest_joblib._private import budget

def alone(i):
    busy(0.3)  # no nested call: the spare worker has nothing to help with
    return os.getpid()

def pair(barrier):
    return os.getpid(), meet(barrier)

first = Parallel(n_jobs=2)(delayed(alone)(i) for i in range(1))
barrier = tempfile.mkdtemp()
second = Parallel(n_jobs=2)(delayed(pair)(barrier) for _ in range(2))
left = [n for n in os.listdir(budget._own.path) if n.startswith("standby-")]
print(json.dumps({"second": second, "left": left}))
""",
        env={"NEST_JOBLIB_CPUS": "2"},
        timeout=120,
    )
    # Both workers and both tokens were free again: the next call's two tasks met.
    assert [together for _, together in out["second"]] == [True, True]
    assert len({pid for pid, _ in out["second"]}) == 2
    assert out["left"] == []


def test_a_call_from_another_thread_recalls_standing_by_workers() -> None:
    """Top-level calls from two threads share the pool: spare workers go back to it."""
    out = run_json(
        BUSY
        + """
import tempfile, threading

signal_dir = tempfile.mkdtemp()

def wait_for_signal():
    # Holds the pool's first worker until the other thread's task has run.
    deadline = time.monotonic() + 30
    while not os.listdir(signal_dir) and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(os.listdir(signal_dir))

def give_signal():
    open(os.path.join(signal_dir, "go"), "w").close()
    return os.getpid()

got = {}
first = threading.Thread(
    target=lambda: got.update(a=Parallel(n_jobs=2)(delayed(wait_for_signal)() for _ in range(1))))
first.start()
time.sleep(1.0)  # the first call's spare worker is standing by by now
got["b"] = Parallel(n_jobs=2)(delayed(give_signal)() for _ in range(1))
first.join()
print(json.dumps(got))
""",
        env={"NEST_JOBLIB_CPUS": "2"},
        timeout=120,
    )
    assert out["a"] == [True]  # the second call's task ran while the first call's waited


def test_the_caller_of_a_nested_call_wakes_when_a_task_completes() -> None:
    """joblib polls for results every 10 ms: a completion ends the caller's wait at once."""
    out = run_json(
        BUSY
        + """
import threading
import joblib.parallel
from nest_joblib._private.wakeup import Clock

def outer(_):
    counts = {"sleeps": 0, "cut_short": 0}
    caller = threading.get_ident()

    class Counting(Clock):
        def sleep(self, seconds):
            start = time.perf_counter()
            super().sleep(seconds)
            if threading.get_ident() == caller:
                counts["sleeps"] += 1
                # time.sleep never returns early: only news from the call does.
                counts["cut_short"] += time.perf_counter() - start < seconds

    joblib.parallel.time = Counting()
    leaves = Parallel(n_jobs=2)(delayed(leaf)(i) for i in range(4))
    return {"leaves": len(leaves), **counts}

print(json.dumps(Parallel(n_jobs=2)(delayed(outer)(i) for i in range(2))))
""",
        env={"NEST_JOBLIB_CPUS": "2"},
        timeout=120,
    )
    for call in out:  # both workers busy: each nested call ran inline, its caller polling
        assert call["leaves"] == 4
        assert call["sleeps"] > 0
        assert call["cut_short"] > 0


def test_a_handed_off_slot_is_kept_for_its_batch() -> None:
    """Between the dispatcher letting go of a slot and its batch taking it, no one else can."""
    out = run_json(
        """
import json, subprocess, sys, time
from nest_joblib._private import budget

ref = budget.root_budget(1)
slot = budget.budget_for(ref).hand_off(budget.budget_for(ref).try_acquire())

def other(code):
    # Another process of the tree, with this budget.
    return subprocess.Popen(
        [sys.executable, "-c", "import sys, time, os, fcntl\\n"
         "from nest_joblib._private import budget\\n"
         f"b = budget.budget_for(budget.BudgetRef({ref.path!r}, 1))\\n" + code],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

# The batch asks for its slot (as take_handoff does), then waits before taking it.
batch = other(
    f"req = os.open(os.path.join(b.ref.path, 'req-{slot}'), os.O_RDWR | os.O_CREAT)\\n"
    "fcntl.flock(req, fcntl.LOCK_EX)\\n"
    "print('asked', flush=True); sys.stdin.readline()\\n"
    f"print(b._try_slot({slot}) is not None, flush=True)\\n")
assert batch.stdout.readline().strip() == "asked"
time.sleep(0.5)  # the dispatcher has let go of the slot by now
thief = other("print(b.try_acquire() is not None)")
stolen = thief.communicate(timeout=60)[0].strip() == "True"
batch.stdin.write("\\n"); batch.stdin.flush()
taken = batch.communicate(timeout=60)[0].strip() == "True"
print(json.dumps({"stolen": stolen, "taken": taken}))
""",
        env={"NEST_JOBLIB_CPUS": "1"},
        timeout=120,
    )
    assert out == {"stolen": False, "taken": True}


def test_stand_by_batches_take_no_token_a_batch_may_wait_for() -> None:
    """A call that has a batch without a token sends no stand-by batch; a recall frees tokens."""
    out = run_json(
        """
import json
from concurrent.futures import Future
from nest_joblib._private import budget, standby

ref = budget.root_budget(2)
sent = []

def submit(batch):
    sent.append(batch)
    return Future()  # never runs: the stand-by batch stays queued, its token handed off

def free():
    tokens = [t for t in iter(budget.budget_for(ref).try_acquire, None)]
    for t in tokens:
        t.release()
    return len(tokens)

class Call:
    _iterating = False
    _aborting = False

found = {}
for with_token in (False, True):
    spares = standby.Spares(ref, 2, submit)
    spares.batch_sent(Future(), with_token=with_token)
    before = len(sent)
    with spares.standing_by(Call()):
        found[str(with_token)] = {"sent": len(sent) - before, "free": free()}
    found[str(with_token)]["free after"] = free()
print(json.dumps(found))
""",
        env={"NEST_JOBLIB_CPUS": "2"},
    )
    # A batch without a token may be waiting for one: no stand-by batch takes it.
    assert out["False"] == {"sent": 0, "free": 2, "free after": 2}
    # Otherwise a spare worker gets one, with a free token handed off; the end of
    # the call gives back that token though its batch never ran.
    assert out["True"] == {"sent": 1, "free": 1, "free after": 2}
