"""The plugin as users get it: no code changes, a fresh interpreter per case.

The programs are ``tests/children/plugin_*.py``. ``plugin_tree.py FANS`` runs
a tree of nested ``Parallel(n_jobs=2)`` calls whose leaves meet at a barrier:
they get through together only if they compute at the same time, so in more
than one process.
"""

from __future__ import annotations

import os
from typing import Any

from conftest import JOBLIB_VERSION, run_child, run_child_json, run_json

#: A node of the tree (``here``, ``below``) or a leaf, as ``plugin_tree.py`` reports them.
Node = dict[str, Any]


def _leaves(node: Node, callers: tuple[Node, ...] = ()) -> list[tuple[Node, tuple[Node, ...]]]:
    """(leaf, where every caller above it ran) for each leaf of the tree."""
    if "here" not in node:
        return [(node, callers)]
    out = []
    for child in node["below"]:
        out.extend(_leaves(child, (*callers, node["here"])))
    return out


def _assert_nested_in_processes(tree: Node, levels: list[int], count: int) -> None:
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
    tree = run_child_json("plugin_tree", "2")["tree"]
    _assert_nested_in_processes(tree, [0, 1], 2)


def test_three_levels_run_leaves_in_other_processes() -> None:
    tree = run_child_json("plugin_tree", "1,2")["tree"]
    _assert_nested_in_processes(tree, [0, 1, 2], 2)


def test_plain_joblib_when_disabled() -> None:
    out = run_child_json("plugin_tree", "2", env={"NEST_JOBLIB": "0"})
    assert "JoblibFinder" not in out["finders"]
    assert out["clock"]  # joblib's own time module
    assert out["nested"] == []
    assert out["default"] == "loky"
    leaves = _leaves(out["tree"])
    for leaf, callers in leaves:
        # joblib's own nesting: threads in the first worker, then sequential. The
        # leaves run in those threads, where a nested call would get the sequential backend.
        assert leaf["pid"] == callers[-1]["pid"]
        assert leaf["backend"] == "SequentialBackend"


def test_thread_hints_get_threads_inside_workers() -> None:
    out = run_child_json("plugin_thread_hints")
    for pid, ident, inner in out:
        assert {leaf_pid for leaf_pid, _ in inner} == {pid}
        assert any(leaf_ident != ident for _, leaf_ident in inner)


def test_n_jobs_none_keeps_its_meaning() -> None:
    out = run_child_json("plugin_n_jobs_none")
    assert set(out["top"]) == {out["main"]}
    for pid, inner in out["nested"]:
        assert set(inner) == {pid}


def test_explicit_plain_backend_keeps_joblib_behaviour() -> None:
    out = run_child_json("plugin_explicit_backend")
    for pid, inner in out:
        assert {leaf_pid for leaf_pid, _ in inner} == {pid}
        # In threads of the worker, whose nested calls would run sequentially.
        assert {name for _, name in inner} == {"SequentialBackend"}


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
    out = run_child_json("plugin_variant_behaviour", timeout=180)
    squares = [i * i for i in range(6)]
    assert out["generator"] == squares
    if JOBLIB_VERSION >= (1, 4):  # return_as="generator_unordered" is new in joblib 1.4
        assert out["unordered"] == squares
    else:
        assert "unordered" not in out
    assert out["batched"] == [i * i for i in range(10)]
    assert out["error"] == ["KeyError", "'leaf 3'"]
    assert out["timeout"] == "TimeoutError"  # joblib raises multiprocessing's


def test_upstream_readme_apply() -> None:
    """The upstream package's usage, verbatim, with the plugin off."""
    out = run_child_json("nested_pair", "apply", env={"NEST_JOBLIB": "0"})
    for pid, inner in out:
        # The nested level computed in two processes at once, not only in its caller.
        assert len(set(inner)) == 2
        assert set(inner) - {pid}


def test_upstream_readme_custom_backend() -> None:
    out = run_child_json("plugin_upstream_custom")
    assert out["active"] is True
    assert "nested-custom" in out["nested"]
    for pid, inner in out["runs"]:
        for leaf_pid, name, level in inner:
            assert leaf_pid != pid
            assert name == "NestedMyBackend"
            assert level == 2


def test_apply_is_idempotent_and_reports_state() -> None:
    out = run_child_json("plugin_apply_idempotent", env={"NEST_JOBLIB": "0"})
    assert out == {
        "before": False,
        "after": True,
        "nested": ["nested-loky", "nested-threading"],
        "default": "nested-loky",
    }


def test_no_variant_pretends_to_nest() -> None:
    out = run_child("plugin_no_nested_multiprocessing")
    assert "Invalid backend: nested-multiprocessing" in out.stdout
    assert "nested-loky" in out.stdout


def test_inner_max_num_threads_reaches_every_nested_level() -> None:
    """``parallel_config(inner_max_num_threads=3)``: each nested backend says 3, and
    its workers get thread pools of 3 (the variant's promise: same settings one
    level down)."""
    out = run_child_json("plugin_inner_threads")
    assert out == {
        "task": [1, 3, "3"],
        "nested_call": [1, 3],
        "leaves": [[2, 3, "3"], [2, 3, "3"]],
    }


def test_no_plugin_thread_outlives_the_nested_calls() -> None:
    """Between calls, neither the root nor a top-level worker runs a thread of ours
    (threads that wait for an event in the same process wait, they do not poll),
    but for a worker's one thread that waits on a pidfd of its parent, to end
    with it (Linux; see ``process.exit_with_parent``)."""
    watch = ["nest-joblib-parent-watch"] if hasattr(os, "pidfd_open") else []
    out = run_child_json("plugin_threads_left")
    assert out == {"root": [], "workers": [watch, watch]}
