"""Interleavings found by reading the code (issue 22), each forced where it can happen.

Each case runs in a fresh interpreter (``tests/children/``) that places its
hook in the code path: a callback, a patched function, a killed process.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import run_child_json
from nest_joblib._private.budget import Budget, BudgetRef, Holding, TokenReleased, paid


def test_closing_a_call_cancels_its_futures_outside_its_lock() -> None:
    """A future's callback (joblib's) waits for a thread that waits to submit to the call."""
    out = run_child_json("scheduler_cancel_outside_lock", timeout=60)
    assert out["deadlocked"] is False
    assert out["cancelled"] is True
    assert out["refused"] == ["this nested Parallel call has been terminated"]


def test_a_token_given_back_cannot_be_used(tmp_path: Path) -> None:
    budget = Budget(BudgetRef(str(tmp_path), 2))
    token = budget.try_acquire()
    assert token is not None
    token.release()
    with pytest.raises(TokenReleased):
        token.release()
    with pytest.raises(TokenReleased), Holding(token):
        pass
    with pytest.raises(TokenReleased):  # a paid token's slot is its sender's to give back
        paid().release()
    assert budget.try_acquire() is not None  # the slot itself is free again


def test_a_helper_whose_task_timed_out_leaves_no_cpu_looking_free() -> None:
    """The CPU a helper computes on stays held after its task's nested call timed out."""
    out = run_child_json("budget_helper_timeout", env={"NEST_JOBLIB_CPUS": "2"}, timeout=120)
    assert out["timed_out"] == 6
    assert out["pids"] == 2  # the outer task's process and the helper
    assert out["free"] == 0


def test_a_lane_that_died_idle_leaves_its_task_to_others() -> None:
    out = run_child_json("lanes_dead_idle", env={"NEST_JOBLIB_CPUS": "3"}, timeout=120)
    assert out["killed"] >= 1  # the first call started a lane, which was killed
    assert out["error"] is None
    assert out["first"] == out["second"] == [0, 1, 2, 3]


def test_failed_lane_starts_back_off() -> None:
    out = run_child_json("lanes_start_backs_off", env={"NEST_JOBLIB_CPUS": "3"}, timeout=120)
    assert out["results"] == list(range(6))
    # 1.5 s of queued work: starts at 0, 50, 150, 350, 750 ms, 1.55 s at most.
    assert 1 <= out["attempts"] <= 6


def test_a_fork_while_the_budget_is_made_leaves_the_child_no_lock() -> None:
    out = run_child_json("budget_fork_while_reaping", env={"NEST_JOBLIB_CPUS": "2"}, timeout=120)
    assert out == {"result": [0, 1, 2, 3]}


# -- issue 28: interleavings read in the code ------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets: Linux only")
def test_a_helper_removes_the_marker_of_an_offer_nobody_serves() -> None:
    """A killed call's marker goes at the first refusal; one not written yet, or live, stays."""
    out = run_child_json("sharing_stale_offer", env={"NEST_JOBLIB_CPUS": "2"}, timeout=120)
    assert out["direct"] == {"ran": 0, "stale": False, "empty": True, "live": True}
    assert out["by_standby"] is False  # a stand-by worker's pass removed it
    assert out["leaves"] == 8
    assert out["processes"] == 2  # the caller and its helper: tasks still flow to helpers


def test_an_aborted_call_does_not_kill_a_lane_another_call_took() -> None:
    out = run_child_json("lanes_taken_while_given_back", timeout=120)
    assert out["a"] is True  # A's task ran in the lane
    assert out["same_lane"] is True  # B took the lane A gave back
    assert out["b_error"] is None


def test_a_lane_that_never_answers_is_given_up() -> None:
    out = run_child_json("lanes_start_gives_up", env={"NEST_JOBLIB_CPUS": "3"}, timeout=120)
    assert out["results"] == list(range(6))  # run in the caller
    assert out["freed"] is True  # the start token is free again
    assert out["attempts"] >= 1
    assert out["warnings"] == out["attempts"]  # each start that gave up says so
    assert out["children"] == 0  # the lanes' processes were ended


def test_counting_nested_calls_while_another_thread_makes_one() -> None:
    out = run_child_json("scheduler_calls_counted_while_added", timeout=60)
    assert out == {"placed": 0, "error": None, "added": 1}


def test_a_lane_start_thread_that_cannot_start_frees_its_token() -> None:
    out = run_child_json("lanes_thread_start_fails", env={"NEST_JOBLIB_CPUS": "3"}, timeout=120)
    assert out["refused"] >= 1
    assert out["error"] is None
    assert out["results"] == list(range(6))
    assert out["freed"] is True


def test_an_interrupted_recall_leaves_no_standby_mark() -> None:
    out = run_child_json("standby_recall_interrupted", timeout=60)
    assert out == {"made": True, "interrupted": True, "left": False}


def test_a_top_level_call_that_ends_hands_its_tokens_to_one_that_runs_uncovered() -> None:
    """Two top-level calls from two threads of the root, on a budget of 2: the first holds
    both tokens while the second's batches wait; a hook ends the first. Its tokens cover
    the second's batches at once: no nested call sees them free and starts lanes."""
    for _ in range(2):
        out = run_child_json("budget_overlapping_calls", env={"NEST_JOBLIB_CPUS": "2"})
        assert out["leaves"] == 8
        assert out["peak"] <= 2
