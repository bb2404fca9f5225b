"""Nothing left behind, nothing let in: no budget directory outlives its tree."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import child_command, child_env, last_json, run_child, run_child_json

psutil = pytest.importorskip("psutil")


def ours(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith("nest-joblib-"))


def test_a_root_killed_mid_call_leaves_nothing_once_the_next_root_runs(tmp_path: Path) -> None:
    env = {"TMPDIR": str(tmp_path), "NEST_JOBLIB_CPUS": "2"}
    victim = subprocess.Popen(
        child_command("leftovers_root", "victim"),
        env=child_env(env),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert victim.stdout is not None
        report = json.loads(victim.stdout.readline())
        directory = Path(report["directory"])
        assert directory.parent == tmp_path
        assert directory.is_dir()
        tree = psutil.Process(victim.pid).children(recursive=True)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        assert directory.is_dir()  # nobody cleaned up: the root died first
        # Its workers compute for ever: the rest of the tree goes the same way.
        for proc in tree:
            proc.kill()
        psutil.wait_procs(tree, timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
    assert run_child_json("leftovers_root", "next", env=env) > 0
    assert ours(tmp_path) == []


def test_a_run_leaves_no_directory_of_its_own(tmp_path: Path) -> None:
    env = {"TMPDIR": str(tmp_path), "NEST_JOBLIB_CPUS": "2"}
    assert run_child_json("leftovers_root", "next", env=env) > 0
    assert ours(tmp_path) == []


def test_a_sequential_call_makes_no_directory(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            *child_command("leftovers_root", "next")[:1],
            "-c",
            "import os, sys\n"
            "from joblib import Parallel, delayed\n"
            "Parallel(n_jobs=None)(delayed(abs)(i) for i in range(3))\n"
            "Parallel(n_jobs=1)(delayed(abs)(i) for i in range(3))\n"
            "print(sorted(n for n in os.listdir(os.environ['TMPDIR']) if 'nest-joblib' in n))\n"
            "sys.stdout.flush(); os._exit(0)  # no exit handler may hide a directory\n",
        ],
        env=child_env({"TMPDIR": str(tmp_path)}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    assert not os.listdir(tmp_path) or ours(tmp_path) == []


def test_a_process_without_the_key_gets_no_task_and_gives_none() -> None:
    out = run_child_json("leftovers_intruder", "root", env={"NEST_JOBLIB_CPUS": "2"}, timeout=180)
    report = out["report"]
    assert out["offered"], out
    assert len(report["offers"]) >= 2, out
    shut = {"EOFError", "ConnectionResetError", "BrokenPipeError"}
    # A wrong key: the door shuts before any task.
    assert len(report["wrong_key"]) == len(report["offers"])
    assert set(report["wrong_key"]) <= shut, report
    # No key at all: not a word back, the door shuts.
    assert len(report["no_handshake"]) == len(report["offers"])
    for heard in report["no_handshake"]:
        assert heard in shut, report
    # Every leaf of the tree ran, and returned its own result: nothing was handed in.
    assert out["results"] == [list(range(6)), list(range(6))]


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0,
    reason="runs a listener as another user: needs Linux's SO_PEERCRED and root",
)
def test_a_helper_sends_the_key_to_no_other_users_socket() -> None:
    out = run_child_json("leftovers_foreign_offer", timeout=60)
    assert out == {"refused": "AuthenticationError", "bytes_heard": 0}


def test_work_is_shared_under_a_long_temporary_directory(tmp_path: Path) -> None:
    """A 200-character TMPDIR: offers have no socket path to outgrow."""
    long = tmp_path / ("d" * (200 - len(str(tmp_path)) - 1))
    long.mkdir()
    assert len(str(long)) == 200
    out = run_child_json(
        "budget_spare_helps", env={"NEST_JOBLIB_CPUS": "2", "TMPDIR": str(long)}, timeout=120
    )
    for call in out["calls"]:
        assert all(leaf["together"] for leaf in call["leaves"])
        assert len({leaf["pid"] for leaf in call["leaves"]}) == 2
        assert call["children"] == 0  # shared with the pool's other worker, not a lane


def test_a_nested_call_in_a_forked_child_completes() -> None:
    out = run_child_json("leftovers_fork", env={"NEST_JOBLIB_CPUS": "2"}, timeout=120)
    for task in out:
        forked = task["forked"]
        assert "error" not in forked, forked
        assert forked["status"] == 0
        assert forked["pid"] != forked["parent"]
        assert [leaf[:2] for leaf in forked["results"]] == [[i, True] for i in range(4)]


@pytest.mark.parametrize("missing", ["enolck", "tmpdir"])
def test_without_a_budget_nested_calls_run_as_in_plain_joblib(missing: str, tmp_path: Path) -> None:
    env = {"NEST_JOBLIB_CPUS": "2", "TMPDIR": str(tmp_path)}
    proc = run_child("leftovers_no_budget", missing, env=env, timeout=120)
    assert (
        last_json(proc.stdout)
        == [
            [
                "ThreadingBackend",
                [[0, "SequentialBackend"], [1, "SequentialBackend"], [4, "SequentialBackend"]],
            ]
        ]
        * 2
    )
    warnings = [line for line in proc.stderr.splitlines() if "NestJoblibWarning" in line]
    assert len(warnings) == 1, proc.stderr
    assert "cannot make the CPU budget" in warnings[0]
    assert "plain joblib" in warnings[0]
    assert ours(tmp_path) == []


def test_a_large_budget_with_few_descriptors_completes() -> None:
    """``ulimit -n 256`` and a budget of 200: descriptors per process stay bounded."""
    import resource

    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    proc = subprocess.run(
        child_command("leftovers_many_cpus"),
        env=child_env({"NEST_JOBLIB_CPUS": "200"}),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=few_descriptors,
    )
    assert proc.returncode == 0, proc.stderr
    out = last_json(proc.stdout)
    assert out["nofile"] == 256
    assert out["total"] == 64 * sum(range(1000)) * 20


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts /proc/self/fd")
def test_descriptors_stay_bounded_whatever_the_budget() -> None:
    out = run_child_json("budget_descriptors")
    assert out["held_elsewhere"] == 199
    assert out["error"] is None
    assert out["found"] == [7] * 20  # the one free slot, found every time
    assert out["fds"] < 64


@pytest.mark.parametrize(("where", "cpus"), [("feeder", "4"), ("inline", "2")])
def test_an_error_in_a_background_thread_fails_the_nested_call(where: str, cpus: str) -> None:
    out = run_child_json("leftovers_thread_error", where, env={"NEST_JOBLIB_CPUS": cpus})
    assert out, out
    for result in out:
        assert result == "Injected: an error injected into a background thread"


def test_a_lane_that_starts_as_its_process_exits_prints_nothing(tmp_path: Path) -> None:
    """4 outer tasks each start a lane just as the root exits, in 6 runs.

    Before the fix, half the runs printed loky's traceback of a lane's
    process that found its semaphores gone.
    """
    for run in range(6):
        marker = tmp_path / f"exit-{run}"
        proc = run_child("lanes_start_at_exit", str(marker), "4", env={"NEST_JOBLIB_CPUS": "4"})
        assert proc.stdout.splitlines() == ["4"], proc.stdout
        assert "Traceback" not in proc.stderr, proc.stderr


def test_a_lane_whose_start_fails_leaves_no_process() -> None:
    """loky spawns a lane's process, then fails the submit: that process is ended.

    At exit on Python 3.13 the process left starting printed loky's traceback
    (1 run in 40 of the test above, with the root exiting at once).
    """
    report = run_child_json("lanes_failed_start")
    assert report == {"error": "can't register atexit after shutdown", "left": []}


@pytest.mark.slow
def test_joblibs_own_tests_leave_no_budget_directory(tmp_path: Path) -> None:
    """joblib's test_parallel (nested calls, aborts, timeouts, errors) with the plugin on."""
    proc = subprocess.run(
        [
            *child_command("leftovers_root", "next")[:1],
            "-m",
            "pytest",
            "--pyargs",
            "joblib.test.test_parallel",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "nested or abort or timeout or exception",
        ],
        env=child_env({"TMPDIR": str(tmp_path)}),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert " passed" in proc.stdout.splitlines()[-1], proc.stdout[-2000:]
    assert ours(tmp_path) == []


def test_a_process_whose_locks_fail_runs_its_tasks_without_waiting() -> None:
    proc = run_child("leftovers_no_budget", "worker", env={"NEST_JOBLIB_CPUS": "2"}, timeout=120)
    out = last_json(proc.stdout)
    assert [[square for square, _ in leaves] for _, leaves in out] == [[0, 1, 4]] * 2
    warnings = [line for line in proc.stderr.splitlines() if "NestJoblibWarning" in line]
    assert len(warnings) == 1, proc.stderr
    assert "cannot lock the CPU budget's files" in warnings[0]
    assert "No locks available" in warnings[0]


def test_without_sockets_nested_calls_complete_with_one_warning_per_process() -> None:
    proc = run_child("leftovers_no_sockets", env={"NEST_JOBLIB_CPUS": "2"}, timeout=120)
    assert last_json(proc.stdout) == [[0, 1, 4, 9]] * 2
    warnings = [line for line in proc.stderr.splitlines() if "NestJoblibWarning" in line]
    assert len(warnings) == 2, proc.stderr  # one in each outer task's process
    assert all("cannot offer tasks to idle workers" in line for line in warnings)


def test_memory_maps_of_a_tree_killed_whole_go_with_the_next_root(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.mkdir()
    env = {"TMPDIR": str(tmp_path), "NEST_JOBLIB_CPUS": "2", "JOBLIB_TEMP_FOLDER": str(maps)}
    victim = subprocess.Popen(
        child_command("leftovers_maps"), env=child_env(env), stdout=subprocess.PIPE, text=True
    )
    try:
        assert victim.stdout is not None
        report = json.loads(victim.stdout.readline())
        assert [name for name in report["maps"] if name.startswith("joblib_memmapping_folder_")]
        tree = [psutil.Process(victim.pid), *psutil.Process(victim.pid).children(recursive=True)]
        # The whole tree, loky's resource tracker included, stopped first: killed
        # one by one, the tracker saw the root die and cleaned up before its turn.
        for proc in tree:
            proc.suspend()
        for proc in tree:
            proc.kill()
        psutil.wait_procs(tree, timeout=30)
        assert os.listdir(maps)  # nobody cleaned up
    finally:
        if victim.poll() is None:
            victim.kill()
    assert run_child_json("leftovers_root", "next", env=env) > 0
    assert os.listdir(maps) == []
    assert ours(tmp_path) == []


def _orphans_alive_after(mode: str, env: dict[str, str]) -> list[bool]:
    """Run ``leftovers_orphaned_workers MODE``; which of its workers live 3 s after it died."""
    proc = subprocess.Popen(
        child_command("leftovers_orphaned_workers", mode),
        env=child_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # loky's tracker reports the dead process's semaphores
        text=True,
    )
    assert proc.stdout is not None
    with proc:  # not communicate(): workers that live on hold its output open
        workers = [psutil.Process(pid) for pid in json.loads(proc.stdout.readline())]
        assert proc.wait(timeout=60) == -signal.SIGKILL
    assert len(workers) == 2
    _, alive = psutil.wait_procs(workers, timeout=3)
    for worker in alive:
        worker.kill()
    return [worker in alive for worker in workers]


@pytest.mark.parametrize("mode", ["idle", "early"])
def test_workers_end_with_the_process_that_started_them(mode: str) -> None:
    """Found by the stress suite: joblib aborting a call kills the workers of its pool.

    A pool that one of them was starting then (a nested call from a thread of
    a task) kept a worker that loky's kill missed, for 300 s, holding the
    root's output open. Under the plugin every loky worker ends with the
    process that started it, also when that process died before the worker
    could watch it ("early"); plain joblib's live on.
    """
    assert _orphans_alive_after(mode, {}) == [False, False]
    assert _orphans_alive_after(mode, {"NEST_JOBLIB": "0"}) == [True, True]


def _dead_pid() -> int:
    """A pid that no process has here (as another container's process may have)."""
    pid = int(Path("/proc/sys/kernel/pid_max").read_text()) - 1
    while psutil.pid_exists(pid):
        pid -= 1
    return pid


def _foreign_folder(root: Path, pid: int) -> Path:
    """A joblib memory-map folder of another program, with its array file."""
    folder = root / f"joblib_memmapping_folder_{pid}_{uuid.uuid4().hex}_{uuid.uuid4().hex}"
    folder.mkdir()
    (folder / "array.pkl").write_bytes(b"another program's data")
    return folder


def test_memory_maps_of_other_programs_survive_a_nested_program(tmp_path: Path) -> None:
    """Issue 28: a pid that looks dead here may live in another container (shared /dev/shm)."""
    maps = tmp_path / "maps"
    maps.mkdir()
    env = {"TMPDIR": str(tmp_path), "NEST_JOBLIB_CPUS": "4", "JOBLIB_TEMP_FOLDER": str(maps)}
    foreign = [_foreign_folder(tmp_path, _dead_pid()), _foreign_folder(maps, _dead_pid())]
    seen = run_child_json("leftovers_foreign_maps", env=env)
    # The program made memory maps of its own (and removed them)...
    ours_made = [n for n in seen if n not in {f.name for f in foreign}]
    assert [n for n in ours_made if n.startswith("joblib_memmapping_folder_")], seen
    # ...and left the others' alone, files and all.
    assert all((f / "array.pkl").read_bytes() == b"another program's data" for f in foreign)
    assert sorted(os.listdir(maps)) == [foreign[1].name]
    assert ours(tmp_path) == []


def test_a_planted_record_removes_nothing_but_our_folders(tmp_path: Path) -> None:
    """P11: a stale directory's records are checked before any folder goes.

    One good record (its folder goes), and records or folders that must not
    lead anywhere: a record that is a link, a root that is not a plain path or
    is a link, a folder of the recorded pid with another id, a link named as
    a recorded folder.
    """
    maps, victims = tmp_path / "maps", tmp_path / "victims"
    maps.mkdir()
    victims.mkdir()
    (victims / "data").write_text("keep")
    pid, good, other = _dead_pid(), uuid.uuid4().hex, uuid.uuid4().hex
    planted = tmp_path / "nest-joblib-planted"
    planted.mkdir(mode=0o700)
    (planted / "root.lock").write_text("1 2\n")  # free: the directory is stale
    (planted / f"maps-{pid}-{good}").write_text("")
    ours_folder = maps / f"joblib_memmapping_folder_{pid}_{good}_{uuid.uuid4().hex}"
    ours_folder.mkdir()
    (ours_folder / "array.pkl").write_text("ours")
    kept = [
        maps / f"joblib_memmapping_folder_{pid}_{other}_{uuid.uuid4().hex}",  # another id
        maps / f"joblib_memmapping_folder_{pid + 1}_{good}_{uuid.uuid4().hex}",  # another pid
    ]
    for folder in kept:
        folder.mkdir()
    # A link named as our folder, to a directory of data: the link is no folder.
    (maps / f"joblib_memmapping_folder_{pid}_{good}_{uuid.uuid4().hex}").symlink_to(victims)
    # Roots that are no plain directory path: a link, and a path with "..".
    linked, dotted = uuid.uuid4().hex, uuid.uuid4().hex
    (tmp_path / "link").symlink_to(victims)
    (planted / f"maps-{pid}-{linked}").write_text(str(tmp_path / "link"))
    (planted / f"maps-{pid}-{dotted}").write_text(f"{maps}/../victims")
    for ident in (linked, dotted):
        (victims / f"joblib_memmapping_folder_{pid}_{ident}_{uuid.uuid4().hex}").mkdir()
    # A record that is a link to a good-looking record elsewhere.
    via_link = uuid.uuid4().hex
    (tmp_path / "record").write_text(str(victims))
    (planted / f"maps-{pid}-{via_link}").symlink_to(tmp_path / "record")
    (victims / f"joblib_memmapping_folder_{pid}_{via_link}_{uuid.uuid4().hex}").mkdir()
    before = sorted(os.listdir(victims))

    env = {"TMPDIR": str(tmp_path), "NEST_JOBLIB_CPUS": "2", "JOBLIB_TEMP_FOLDER": str(maps)}
    assert run_child_json("leftovers_root", "next", env=env) > 0
    assert not planted.exists()
    assert not ours_folder.exists()
    assert all(folder.is_dir() for folder in kept)
    assert sorted(os.listdir(victims)) == before
    assert (victims / "data").read_text() == "keep"


@pytest.mark.parametrize("end", ["return", "raise", "exit"])
def test_the_exit_reaps_after_the_pools_finalizers(tmp_path: Path, end: str) -> None:
    """Issue 28: the exit's cleanup ran as an atexit hook, before multiprocessing's
    finalizers (pools' at priority 15), widening a pool's exit window; it runs
    after them now, however the program ends, and still removes the directory."""
    env = {"TMPDIR": str(tmp_path), "NEST_JOBLIB_CPUS": "2"}
    proc = run_child("leftovers_exit_order", end, env=env, check=False)
    assert proc.returncode == {"return": 0, "raise": 1, "exit": 3}[end], proc.stderr
    assert last_json(proc.stdout)["there"] is True
    assert ours(tmp_path) == []


def test_a_daemon_threads_tokens_after_the_exit_cleanup_say_nothing(tmp_path: Path) -> None:
    """Issue 28: the exit removes the directory while daemon threads run nested calls;
    one that then takes a token found the slot files gone and warned."""
    env = {"TMPDIR": str(tmp_path), "NEST_JOBLIB_CPUS": "40"}
    proc = run_child("leftovers_exit_daemon", env=env)
    assert last_json(proc.stdout) == {"tried": 40, "gone": True}
    assert proc.stderr == ""
    assert ours(tmp_path) == []
