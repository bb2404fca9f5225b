"""The CPU budget's invariants, shown by counting, never by timing.

Each case is a program of ``tests/children/`` (``budget_*.py``), run in a fresh interpreter.
"""

from __future__ import annotations

import pytest

from conftest import run_child_json


@pytest.mark.parametrize(("cpus", "bounded"), [("2", True), ("off", False)])
def test_three_levels_never_exceed_the_budget(cpus: str, bounded: bool) -> None:
    # Naive nesting oversubscribes: its leaves wait until three compute at once.
    args = () if bounded else ("meet",)
    out = run_child_json("budget_three_levels", *args, env={"NEST_JOBLIB_CPUS": cpus}, timeout=240)
    assert out["leaves"] == 27
    if bounded:
        assert out["peak"] <= 2
    else:  # naive nesting, for contrast: the same tree oversubscribes
        assert out["together"] == [True] * 27
        assert out["peak"] > 2


def test_a_killed_worker_does_not_shrink_the_budget() -> None:
    out = run_child_json("budget_killed_worker", env={"NEST_JOBLIB_CPUS": "3"}, timeout=240)
    assert out["outcome"] == ["terminated", "busy"]
    assert out["top"] == "terminated"
    # With every token back, three leaves computed at once again.
    assert out["together"] == [True] * 9
    assert out["peak"] == 3


def test_a_batch_that_loky_refuses_gives_its_token_back() -> None:
    """A worker dies before the next call's first batch is in: loky refuses the batch.

    The token handed off to it comes back (it used to stay held by the root
    for a batch that never ran, and a later call waited for it for ever).
    """
    out = run_child_json("budget_submit_fails", env={"NEST_JOBLIB_CPUS": "2"}, timeout=120)
    assert out == {"error": "TerminatedWorkerError", "free": 2}


@pytest.mark.parametrize(("cpus", "inline"), [("2", True), ("off", False)])
def test_a_nested_call_with_no_free_cpu_starts_no_process(cpus: str, inline: bool) -> None:
    out = run_child_json("budget_no_free_cpu", env={"NEST_JOBLIB_CPUS": cpus}, timeout=120)
    workers = {task["pid"] for task in out}
    for task in out:
        assert task["together"]  # both outer tasks held their CPU before the nested calls
        if inline:
            assert task["children"] == 0
            # In the caller, or in the other top-level worker once it is idle (it
            # helps, see the next tests): never in a new process.
            assert task["pid"] in task["leaf_pids"]
            assert set(task["leaf_pids"]) <= workers
        else:  # naive nesting starts a pool below each worker
            assert task["children"] >= 1
            assert task["pid"] not in task["leaf_pids"]


def test_an_idle_worker_helps_a_nested_call_elsewhere_and_starts_nothing() -> None:
    """The outer task that ends first lends its CPU to the other's nested call."""
    out = run_child_json("budget_sharing", env={"NEST_JOBLIB_CPUS": "2"}, timeout=120)
    a, b = out["a"], out["b"]
    assert a["together"]
    assert b["together"]
    assert a["pid"] != b["pid"]
    assert b["pid"] in a["leaf_pids"]  # the idle top-level worker ran leaves of the call
    assert a["pid"] in a["leaf_pids"]  # as did the caller, inline
    assert set(a["leaf_pids"]) == {a["pid"], b["pid"]}  # and no lane was started
    assert a["children"] == 0
    assert len(a["leaf_pids"]) == 8
    assert out["peak"] <= 2


def test_an_error_in_a_helped_task_reaches_the_caller() -> None:
    out = run_child_json("budget_sharing", "fail", env={"NEST_JOBLIB_CPUS": "2"}, timeout=120)
    a, b = out["a"], out["b"]
    assert a["together"]
    assert b["together"]
    assert a["error"].endswith(f"failed in {b['pid']}")  # raised in the helper
    assert "timed_leaf" in a["trace"]  # with the leaf's own frames


def test_a_spare_top_level_worker_helps_instead_of_a_new_lane() -> None:
    """An outer loop shorter than the pool: its spare worker takes the free CPU.

    Also in the calls that follow at once, on a warm pool (a stand-by batch
    once found no token free there, and the nested call started a lane beside
    the idle worker).
    """
    out = run_child_json("budget_spare_helps", env={"NEST_JOBLIB_CPUS": "2"}, timeout=120)
    assert len(out["calls"]) == 3
    for call in out["calls"]:
        assert all(leaf["together"] for leaf in call["leaves"])
        pids = {leaf["pid"] for leaf in call["leaves"]}
        # The caller and one other process: the pool's other worker (both children of the root).
        assert call["pid"] in pids
        assert len(pids) == 2
        assert call["parents"] == [out["root"]]
        assert call["children"] == 0  # no lane was started
        assert call["peak"] <= 2


def test_standing_by_ends_with_the_call() -> None:
    """A spare worker with nothing to help gives its worker and its CPU back after the call."""
    out = run_child_json("budget_standby_ends", env={"NEST_JOBLIB_CPUS": "2"}, timeout=120)
    # Both workers and both tokens were free again: the next call's two tasks met.
    assert [together for _, together in out["second"]] == [True, True]
    assert len({pid for pid, _ in out["second"]}) == 2
    assert out["left"] == []


def test_a_call_from_another_thread_recalls_standing_by_workers() -> None:
    """Top-level calls from two threads share the pool: spare workers go back to it."""
    out = run_child_json("budget_recall", env={"NEST_JOBLIB_CPUS": "2"}, timeout=120)
    assert out["standing_by"]  # the second call came once the first's spare worker stood by
    assert out["a"] == [True]  # the second call's task ran while the first call's waited


@pytest.mark.parametrize("width", [2, 4])
def test_no_cpu_looks_free_while_the_pool_runs_batches(width: int) -> None:
    """The root holds a token per running batch, from its dispatch to its result.

    A worker that starts, or moves on to its next batch, never leaves a CPU
    that another process could take for free; a pool wider than the budget
    (4 workers on 2 tokens) runs as plain joblib's and leaves none free either.
    """
    out = run_child_json("budget_pool_tokens", str(width), env={"NEST_JOBLIB_CPUS": "2"})
    assert out["free while running"] == [0] * 12
    assert out["free after"] == 2


@pytest.mark.parametrize("held", [False, True])
def test_a_stand_by_batch_runs_only_on_a_token_held_for_it(held: bool) -> None:
    args = ("held",) if held else ()
    out = run_child_json("budget_standby_tokens", *args, env={"NEST_JOBLIB_CPUS": "2"})
    assert out["none_free"]
    if held:  # no token for a stand-by batch: the spare worker does not help
        assert out["leaf_pids"] == [out["pid"]]
    else:  # it helps, on the token the root holds for it
        assert out["pid"] in out["leaf_pids"]
        assert len(out["leaf_pids"]) == 2
    assert out["all free after"]  # within a second of the call's return


@pytest.mark.parametrize("where", ["task", "thread"])
def test_tasks_that_cannot_leave_their_process_run_in_the_caller(where: str) -> None:
    """Found by the stress suite: a call from a thread of a task hung while a CPU was free.

    Its caller holds no token, so it used to send every task to lanes, and a
    task that no lane or helper can take (it cannot be pickled, or every token
    was taken meanwhile) waited for ever. It now runs in the caller's process,
    as plain joblib's threads would run it.
    """
    out = run_child_json(
        "budget_thread_local_tasks", where, env={"NEST_JOBLIB_CPUS": "3"}, timeout=60
    )
    for task in out:
        assert task["together"]
        assert task["leaf_pids"] == [task["pid"]] * 4


def test_calls_from_threads_of_a_task_stay_within_the_budget() -> None:
    """Found by the stress suite: a thread of a task loses joblib's nesting context.

    Its call looked like a top-level one, and made a budget and a pool of its
    own inside the worker: three processes computed on a budget of two. It is
    nested in the tree of the worker it runs in.
    """
    for _ in range(3):
        out = run_child_json("budget_thread_calls", env={"NEST_JOBLIB_CPUS": "2"}, timeout=120)
        assert out["leaves"] == 10
        assert out["peak"] <= 2


def test_lanes_use_every_cpu_of_a_budget_wider_than_the_pool() -> None:
    """Two folds on a budget of 8: 8 leaves compute at once, in 8 processes (6 of them lanes).

    Lanes belong to the process that started them, so each fold keeps its
    own: once the barrier is met, a fold may start one more for a CPU that
    the other fold's lane freed. A lane that has just started runs its first
    task on the token that paid for its start: were it released in between,
    the other fold would start a lane on it, and 7 to 12 lanes started, not 6.
    """
    out = run_child_json("lanes_fill_the_budget", env={"NEST_JOBLIB_CPUS": "8"}, timeout=180)
    assert out["met"] is True
    assert 8 <= out["pids"] <= 10
    assert 6 <= out["lanes"] <= 8
