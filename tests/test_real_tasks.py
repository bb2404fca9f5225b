"""The tasks people really nest: large arrays, tasks that wait, timeouts, errors.

Each case counts what happened (where a leaf ran, what it received, how many
started, whether they met); none times anything but the one bound a timeout
promises.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import JOBLIB_VERSION, run_child_json

pytest.importorskip("numpy")

#: Two CPUs whatever the machine: the cases below are about what happens
#: when the budget is smaller than the work.
TWO = {"NEST_JOBLIB_CPUS": "2"}
ONE = {"NEST_JOBLIB_CPUS": "1"}
PLAIN = {"NEST_JOBLIB": "0"}


@pytest.mark.parametrize("max_nbytes", ["default", "none"])
def test_large_arrays_reach_other_processes_as_memory_maps(max_nbytes: str, tmp_path: Path) -> None:
    out = run_child_json("real_memmaps", max_nbytes, str(tmp_path), "ok", env=TWO)
    given_type, given_file = out["given"]
    assert given_type == "memmap"  # joblib's top-level pool mapped the root's array
    elsewhere = [leaf for leaf in out["leaves"] if leaf["pid"] != out["pid"]]
    assert all(leaf["together"] for leaf in out["leaves"])
    assert elsewhere, "no leaf ran outside the caller"
    for leaf in elsewhere:
        # An existing memory map travels as a reference to its file, always.
        assert leaf["given"] == ["memmap", given_file]
        # A small array by value.
        assert leaf["small"] == ["ndarray", None]
        if max_nbytes == "default":
            # A fresh large array is dumped into the call's folder, once.
            fresh_type, fresh_file = leaf["fresh"]
            assert fresh_type == "memmap"
            assert Path(fresh_file).is_relative_to(tmp_path)
        else:
            assert leaf["fresh"] == ["ndarray", None]
    if max_nbytes == "default":
        files = {leaf["fresh"][1] for leaf in elsewhere}
        assert len(files) == 1
    # The call's memory maps are gone once it has returned.
    assert out["left"] == []


def test_no_memory_map_outlives_a_nested_call_that_failed(tmp_path: Path) -> None:
    out = run_child_json("real_memmaps", "default", str(tmp_path), "fail", env=TWO)
    # A leaf in another process failed, and its fresh array was a map in the call's folder...
    mapped = out["leaves"].removeprefix("mapped ")
    assert Path(mapped).is_relative_to(tmp_path), out["leaves"]
    # ...which is gone, now that the call failed.
    assert out["left"] == []


#: The budgets a case runs on: two CPUs, and one (no CPU to add: plain joblib's nesting).
BUDGETS = [TWO, ONE]


@pytest.mark.parametrize("env", BUDGETS, ids=["two", "one"])
def test_a_nested_timeout_fires_while_a_leaf_is_stuck(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "ours").mkdir()
    plain = run_child_json("real_failures", "timeout", str(tmp_path / "plain"), env=PLAIN)
    out = run_child_json("real_failures", "timeout", str(tmp_path / "ours"), env=env, timeout=120)
    assert plain["seconds"] < 10
    assert out["raised"] == plain["raised"]  # joblib's own class (multiprocessing's)
    assert out["raised"].endswith("TimeoutError")
    assert out["seconds"] < 10  # the stuck leaf blocks for 30 s


@pytest.mark.parametrize("env", BUDGETS, ids=["two", "one"])
def test_an_error_stops_the_queued_leaves(tmp_path: Path, env: dict[str, str]) -> None:
    out = run_child_json("real_failures", "error", str(tmp_path), env=env, timeout=120)
    assert out["raised"] == "builtins.ValueError"
    # Plain joblib's two threads start 1 or 2; here the caller and a helper may
    # each have one more in hand. Before, 39 of the 40 ran first.
    assert out["started"] <= 4


@pytest.mark.parametrize(
    ("args", "env"),
    [(("busy",), TWO), (("busy",), ONE), (("busy", "pin"), {}), (("noclock",), TWO)],
    ids=["two", "one", "one-cpu", "no-thread-clock"],
)
def test_leaves_that_wait_overlap_in_a_call_with_no_free_cpu(
    args: tuple[str, ...], env: dict[str, str]
) -> None:
    """Both outer tasks run at once, and each nested call's 4 waiting leaves too.

    On a budget of 1 (one CPU, as in a one-CPU container) as plain joblib runs
    them, and where threads have no CPU clock (macOS, Windows) in threads of
    their own. Before, one CPU turned everything below the top sequential, and
    without clocks the leaves ran one at a time.
    """
    out = run_child_json("real_waits", *args, env=env, timeout=120)
    assert [task["held"] for task in out] == [True, True]
    assert [task["met"] for task in out] == [[True] * 4, [True] * 4]


def test_a_top_level_call_gets_the_workers_it_asks_for() -> None:
    """n_jobs=8 on a budget of 2: as many tasks at once as plain joblib runs (before: 2)."""
    plain = run_child_json("real_waits", "top", env=PLAIN, timeout=120)
    plugin = run_child_json("real_waits", "top", env=TWO, timeout=120)
    # Before joblib 1.5, loky starts 5 to 7 of the 8 at first, plain or not, as timing goes.
    slack = 0 if JOBLIB_VERSION >= (1, 5) else 2
    assert plugin > 2  # the budget
    assert plugin >= plain - slack


def test_eight_waiting_leaves_meet_on_a_budget_of_two() -> None:
    out = run_child_json("real_waits", "one", env=TWO, timeout=120)
    assert out == [{"held": True, "met": [True] * 8}]


def test_waiting_leaves_overlap_in_a_call_that_finds_free_cpus() -> None:
    """A budget of 6 and a pool of 2: the nested call finds 4 CPUs free.

    Before, such a call sent its leaves to lanes, each holding its token
    while it waited: 5 at most in flight, and the barrier of 8 was not met.
    """
    out = run_child_json("real_waits", "one", env={"NEST_JOBLIB_CPUS": "6"}, timeout=120)
    assert out == [{"held": True, "met": [True] * 8}]


def test_the_wait_watcher_never_makes_the_clock_of_a_thread_that_exited() -> None:
    """A holder that leaves its token and exits while the watcher looks (issue 28, item 4).

    Before, the watcher called ``pthread_getcpuclockid`` with that thread's
    ident, after it had exited: undefined behaviour.
    """
    out = run_child_json("waits_dead_holder")
    assert out["holder_gone"]
    assert out["dead"] == 0


def test_a_wide_call_of_waiting_leaves_reaches_its_width_within_two_windows() -> None:
    """32 leaves wait on one barrier in their caller's process, on a budget of 2 (issue 29).

    They all reach it, and the watcher's windows (two ticks each) from the
    first stand-in to the last arrival are at most 2. Before, one stand-in
    started per window, each new leaf seen waiting first: about 31 windows.
    """
    out = run_child_json("waits_burst", "barrier", env=TWO, timeout=120)
    arrivals, first = out["arrivals"], out["first_stand_in"]
    assert -1 not in arrivals
    assert len(arrivals) == 32
    assert first is not None
    assert (max(arrivals) - first) / 2 <= 2


@pytest.mark.parametrize("leaves", ["mixed-numpy", "mixed-python"])
def test_tasks_that_compute_beside_tasks_that_wait_stay_within_plain_and_budget(
    leaves: str,
) -> None:
    """16 leaves in turn wait and compute, n_jobs=16, on a budget of 2 (issue 29).

    Leaves that release the GIL: never more computing at once than plain
    joblib's threads in the same program. Pure-Python leaves: never more
    processes computing at once than the budget.
    """
    plugin = run_child_json("waits_burst", leaves, env=TWO, timeout=120)
    assert plugin["computed"] == 8
    if leaves == "mixed-numpy":
        plain = run_child_json("waits_burst", leaves, env=PLAIN, timeout=120)
        assert plugin["leaves"] <= plain["leaves"]
    else:
        assert plugin["processes"] <= 2


def test_tasks_that_wait_for_their_own_nested_calls_start_no_burst() -> None:
    """A task waiting for its nested call lends its CPU; its function is not learnt as waiting.

    Else the stand-ins of its call would start together, each running a
    nested call of its own on no token. Here one stand-in at a time starts.
    """
    for _ in range(3):
        out = run_child_json("waits_burst", "nested", env=TWO, timeout=120)
        assert max(out["bursts"], default=0) <= 1, out
