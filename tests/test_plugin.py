"""The plugin as users get it: no code changes, a fresh interpreter per case."""

from __future__ import annotations

from conftest import run_json, run_python

# A node at depth k of ``level(fans)`` calls ``Parallel(n_jobs=2)`` over fans[0] children. The
# leaves of one call wait (30 s at most) until all of them compute: they get through together
# only if they run at the same time, so in more than one process (threads share one GIL, and a
# call that runs inline runs one task at a time).
TREE = """
import json, os, tempfile, time
from joblib import Parallel, delayed
from joblib.parallel import get_active_backend

def where():
    backend, _ = get_active_backend()
    return {"pid": os.getpid(), "level": backend.nesting_level,
            "backend": type(backend).__name__}

def leaf(barrier, count):
    open(os.path.join(barrier, f"{os.getpid()}-{time.monotonic_ns()}"), "w").close()
    deadline = time.monotonic() + 30
    while len(os.listdir(barrier)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return {**where(), "together": len(os.listdir(barrier)) >= count}

def level(fans):
    here = where()
    if len(fans) == 1:
        barrier = tempfile.mkdtemp()
        below = Parallel(n_jobs=2)(delayed(leaf)(barrier, fans[0]) for _ in range(fans[0]))
    else:
        below = Parallel(n_jobs=2)(delayed(level)(fans[1:]) for _ in range(fans[0]))
    return {"here": here, "below": below}
"""


def _leaves(node: dict, callers: tuple = ()) -> list:  # type: ignore[type-arg]
    """(leaf, the pids of every caller above it) for each leaf of the tree."""
    if "here" not in node:
        return [(node, callers)]
    out = []
    for child in node["below"]:
        out.extend(_leaves(child, (*callers, node["here"])))
    return out


def _assert_nested_in_processes(tree: dict, levels: list[int], count: int) -> None:  # type: ignore[type-arg]
    leaves = _leaves(tree)
    assert len(leaves) == count
    for leaf, callers in leaves:
        assert [c["level"] for c in callers] == levels
        assert leaf["level"] == len(levels)
        assert leaf["backend"] == "NestedLokyBackend"
        assert leaf["together"]
    # Computing at once, the leaves ran in as many processes, not all of them callers.
    # (Which ones depends on the CPU budget: lanes, or the caller and an idle worker.)
    assert len({leaf["pid"] for leaf, _ in leaves}) == count
    assert any(leaf["pid"] not in {c["pid"] for c in callers} for leaf, callers in leaves)


def test_two_levels_run_leaves_in_other_processes() -> None:
    tree = run_json(
        TREE
        + """
root = {"here": where(), "below": Parallel(n_jobs=2)(delayed(level)([2]) for _ in range(1))}
print(json.dumps(root))
"""
    )
    _assert_nested_in_processes(tree, [0, 1], 2)


def test_three_levels_run_leaves_in_other_processes() -> None:
    tree = run_json(
        TREE
        + """
root = {"here": where(), "below": Parallel(n_jobs=2)(delayed(level)([1, 2]) for _ in range(1))}
print(json.dumps(root))
"""
    )
    _assert_nested_in_processes(tree, [0, 1, 2], 2)


def test_plain_joblib_when_disabled() -> None:
    tree = run_json(
        TREE
        + """
import sys, joblib.parallel
root = {"here": where(), "below": Parallel(n_jobs=2)(delayed(level)([2]) for _ in range(1))}
finders = [type(f).__name__ for f in sys.meta_path]
nested = [n for n in joblib.parallel.BACKENDS if n.startswith("nested-")]
import time
print(json.dumps({"tree": root, "finders": finders, "nested": nested,
                  "default": joblib.parallel.DEFAULT_BACKEND,
                  "clock": joblib.parallel.time is time}))
""",
        env={"NEST_JOBLIB": "0"},
    )
    assert "JoblibFinder" not in tree["finders"]
    assert tree["clock"]  # joblib's own time module
    assert tree["nested"] == []
    assert tree["default"] == "loky"
    leaves = _leaves(tree["tree"])
    for leaf, callers in leaves:
        # joblib's own nesting: threads in the first worker, then sequential.
        assert leaf["pid"] == callers[-1]["pid"]
        assert leaf["backend"] in ("ThreadingBackend", "SequentialBackend")


def test_thread_hints_get_threads_inside_workers() -> None:
    out = run_json(
        """
import json, os, threading
from joblib import Parallel, delayed
from joblib.parallel import get_active_backend

def leaf(i):
    return os.getpid(), threading.get_ident()

def task(kwargs):
    inner = Parallel(n_jobs=2, **kwargs)(delayed(leaf)(i) for i in range(4))
    return os.getpid(), threading.get_ident(), inner

hints = [{"prefer": "threads"}, {"require": "sharedmem"}]
print(json.dumps(Parallel(n_jobs=2)(delayed(task)(h) for h in hints)))
"""
    )
    for pid, ident, inner in out:
        assert {leaf_pid for leaf_pid, _ in inner} == {pid}
        assert any(leaf_ident != ident for _, leaf_ident in inner)


def test_n_jobs_none_keeps_its_meaning() -> None:
    out = run_json(
        """
import json, os
from joblib import Parallel, delayed

def leaf(i):
    return os.getpid()

def task(i):
    return os.getpid(), Parallel()(delayed(leaf)(j) for j in range(3))

top = Parallel()(delayed(leaf)(i) for i in range(2))
nested = Parallel(n_jobs=2)(delayed(task)(i) for i in range(2))
print(json.dumps({"main": os.getpid(), "top": top, "nested": nested}))
"""
    )
    assert set(out["top"]) == {out["main"]}
    for pid, inner in out["nested"]:
        assert set(inner) == {pid}


def test_explicit_plain_backend_keeps_joblib_behaviour() -> None:
    out = run_json(
        """
import json, os
from joblib import Parallel, delayed
from joblib.parallel import get_active_backend

def leaf(i):
    return os.getpid(), type(get_active_backend()[0]).__name__

def task(i):
    return os.getpid(), Parallel(n_jobs=2)(delayed(leaf)(j) for j in range(2))

print(json.dumps(Parallel(n_jobs=2, backend="loky")(delayed(task)(i) for i in range(2))))
"""
    )
    for pid, inner in out:
        assert {leaf_pid for leaf_pid, _ in inner} == {pid}
        assert {name for _, name in inner} <= {"ThreadingBackend", "SequentialBackend"}


def test_start_up_without_joblib_imports_nothing_heavy() -> None:
    code = """
import json, sys
heavy = [m for m in ("joblib", "threading", "importlib.util", "typing") if m in sys.modules]
finders = [type(f).__name__ for f in sys.meta_path]
print(json.dumps({"heavy": heavy, "finders": finders}))
"""
    on = run_json(code)
    off = run_json(code, env={"NEST_JOBLIB": "0"})
    # Only what start-up imports anyway (virtualenv's own .pth imports typing on 3.9).
    assert on["heavy"] == off["heavy"]
    assert "joblib" not in on["heavy"]
    assert on["finders"].count("JoblibFinder") == 1
    assert "JoblibFinder" not in off["finders"]


def test_nested_variant_behaves_like_its_base() -> None:
    out = run_json(
        """
import json, os, time
from joblib import Parallel, delayed

def square(i):
    return i * i

def fail(i):
    if i == 3:
        raise KeyError(f"leaf {i}")
    return i

def slow(i):
    time.sleep(5)

def task(kind):
    if kind == "generator":
        gen = Parallel(n_jobs=2, return_as="generator")(delayed(square)(i) for i in range(6))
        return list(gen)
    if kind == "unordered":
        gen = Parallel(n_jobs=2, return_as="generator_unordered")(
            delayed(square)(i) for i in range(6))
        return sorted(gen)
    if kind == "batched":
        return Parallel(n_jobs=2, batch_size=4)(delayed(square)(i) for i in range(10))
    if kind == "error":
        try:
            Parallel(n_jobs=2)(delayed(fail)(i) for i in range(6))
        except KeyError as exc:
            return ["KeyError", str(exc)]
    if kind == "timeout":
        try:
            Parallel(n_jobs=2, timeout=0.5)(delayed(slow)(i) for i in range(2))
        except Exception as exc:
            return type(exc).__name__
    return "no error"

import joblib
kinds = ["generator", "batched", "error", "timeout"]
if tuple(map(int, joblib.__version__.split(".")[:2])) >= (1, 4):
    kinds.append("unordered")  # new in joblib 1.4
print(json.dumps(dict(zip(kinds, Parallel(n_jobs=2)(delayed(task)(k) for k in kinds)))))
""",
        timeout=180,
    )
    squares = [i * i for i in range(6)]
    assert out["generator"] == squares
    assert out.get("unordered", squares) == squares
    assert out["batched"] == [i * i for i in range(10)]
    assert out["error"] == ["KeyError", "'leaf 3'"]
    assert out["timeout"] == "TimeoutError"  # joblib raises multiprocessing's


def test_upstream_readme_apply() -> None:
    """The upstream package's usage, verbatim, with the plugin off."""
    out = run_json(
        """
import json, os, tempfile, time
from nest_joblib import apply
from joblib import Parallel, delayed

apply()

def leaf(barrier):
    # Both leaves wait (30 s at most) until both compute: at once, so in two processes.
    open(os.path.join(barrier, f"{os.getpid()}-{time.monotonic_ns()}"), "w").close()
    deadline = time.monotonic() + 30
    while len(os.listdir(barrier)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.getpid()

def task(i):
    barrier = tempfile.mkdtemp()
    return os.getpid(), Parallel(n_jobs=2)(delayed(leaf)(barrier) for j in range(2))

print(json.dumps(Parallel(n_jobs=2)(delayed(task)(i) for i in range(1))))
""",
        env={"NEST_JOBLIB": "0"},
    )
    for pid, inner in out:
        # The nested level computed in two processes at once, not only in its caller.
        assert len(set(inner)) == 2
        assert set(inner) - {pid}


def test_upstream_readme_custom_backend() -> None:
    out = run_json(
        """
import json, os, time
from joblib import Parallel, delayed
from joblib.parallel import (LokyBackend, get_active_backend, parallel_backend,
                             register_parallel_backend)
from nest_joblib import apply, is_active, nested_backends

apply()

class MyBackend(LokyBackend):
    pass

register_parallel_backend("custom", MyBackend)

def leaf(i):
    time.sleep(0.3)
    backend = get_active_backend()[0]
    return os.getpid(), type(backend).__name__, backend.nesting_level

def task(i):
    return os.getpid(), Parallel(n_jobs=2)(delayed(leaf)(j) for j in range(2))

with parallel_backend("nested-custom"):
    runs = Parallel(n_jobs=2)(delayed(task)(i) for i in range(1))
print(json.dumps({"runs": runs, "active": is_active(), "nested": nested_backends()}))
"""
    )
    assert out["active"] is True
    assert "nested-custom" in out["nested"]
    for pid, inner in out["runs"]:
        for leaf_pid, name, level in inner:
            assert leaf_pid != pid
            assert name == "NestedMyBackend"
            assert level == 2


def test_apply_is_idempotent_and_reports_state() -> None:
    out = run_json(
        """
import json
import joblib.parallel
from nest_joblib import apply, is_active, nested_backends
before = is_active()
apply(); apply(set_default=False, auto_register=False)
print(json.dumps({"before": before, "after": is_active(), "nested": nested_backends(),
                  "default": joblib.parallel.DEFAULT_BACKEND}))
""",
        env={"NEST_JOBLIB": "0"},
    )
    assert out == {
        "before": False,
        "after": True,
        "nested": ["nested-loky", "nested-threading"],
        "default": "nested-loky",
    }


def test_no_variant_pretends_to_nest() -> None:
    out = run_python(
        """
from joblib import Parallel, delayed
try:
    Parallel(n_jobs=2, backend="nested-multiprocessing")(delayed(abs)(i) for i in range(2))
except ValueError as exc:
    print(exc)
""",
    )
    assert "Invalid backend: nested-multiprocessing" in out.stdout
    assert "nested-loky" in out.stdout
