"""No hang where plain joblib may hang: at exit, and between top-level calls of two threads.

Each case forces its interleaving in a fresh interpreter (``tests/children/``)
with gates placed in CPython's, joblib's or loky's code path, and holds the
plugin to finishing where plain joblib hangs (the contrast shows the gates
force the hang).
"""

from __future__ import annotations

import subprocess

import pytest

from conftest import run_child, run_child_json


@pytest.mark.parametrize("budget", ["1", "2"])
def test_a_thread_pool_aborted_during_the_exit_does_not_hang_it(budget: str) -> None:
    """joblib's terminate() closes the pool first, undoing the exit's TERMINATE (issue 28)."""
    out = run_child("exit_aborted_thread_pool", env={"NEST_JOBLIB_CPUS": budget}, timeout=60)
    assert out.stdout.split() == ["MAIN-DONE", "EXIT-REACHED"]


@pytest.mark.slow
def test_plain_joblib_hangs_in_the_same_interleaving() -> None:
    """The contrast: the gates force the hang, which only the plugin avoids."""
    with pytest.raises(subprocess.TimeoutExpired) as hung:
        run_child("exit_aborted_thread_pool", env={"NEST_JOBLIB": "0"}, timeout=15)
    assert "EXIT-REACHED" not in str(hung.value.stdout or b"")


@pytest.mark.parametrize(
    ("plugin", "hung"),
    [("1", [False, False]), pytest.param("0", [True, True], marks=pytest.mark.slow)],
)
def test_a_resize_under_a_dispatching_call_does_not_deadlock(plugin: str, hung: list[bool]) -> None:
    """loky resizes its executor for a call of another width while joblib dispatches the
    next batch of a running call from loky's manager thread (issue 28)."""
    out = run_child_json("pool_resize_while_dispatching", "10", env={"NEST_JOBLIB": plugin})
    assert out["hung"] == hung
    if plugin == "1":
        assert out["results"] == {"a": sum(range(12)), "b": sum(range(6))}
