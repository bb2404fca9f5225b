"""Nested ``Parallel`` shapes, run three ways: plain joblib, naive nesting, the CPU budget.

    python benchmarks/nesting.py [--repeat N] [--shapes short,uneven,...] [--leaf-seconds S]

Every run is a fresh interpreter (``sys.executable``) with one of three environments:

- ``plain``: ``NEST_JOBLIB=0``, joblib as shipped (threads, then sequential, below the top);
- ``naive``: ``NEST_JOBLIB_CPUS=off``, a fresh loky pool at every level, no budget;
- ``budget``: the default, one CPU budget for the whole process tree.

One shape at a time, its modes are interleaved so that a noisy neighbour hurts them alike:
their order rotates from one repetition to the next, and turns round after three, so that
in six repetitions each mode runs as often right after each other mode (a rotation alone
keeps the cycle plain, naive, budget: budget would always run right after naive, which on
deep starts 85 processes). For each shape and mode the table gives the median of the
wall time measured inside the child around the outer ``Parallel`` call, its ratio to plain's
median, the median wall time of the whole child process (start-up and shut-down included),
the peak number of worker processes alive (descendants of the child, sampled every
``--sample-ms`` from this process, loky's resource tracker not counted) and the peak number of
leaves computing at once (from the start and end times each leaf records), and of processes
with a leaf computing at once (threads of one process share a GIL), and the peak proportional
set size (PSS) of the whole process tree (every ``--pss-every`` samples, all shapes but deep).

Shapes: pure-Python leaves with tiny arguments (short, uneven, full, deep), and the tasks
people really nest: a 400 MB array given to every leaf (big, bigfull), leaves that wait
(wait), numpy leaves that release the GIL (numpy; warm: the same twice in a row, on a pool
that a first such call warmed before the clock started, as in a program that calls it again),
the top level alone (toplevel-wait, toplevel-cpu; toplevel-warm: toplevel-cpu on a warm pool),
leaves that wait in a nested call that finds CPUs free (waitfree: the budget mode gets a
budget of twice the CPUs, as a machine with more CPUs than its outer loop uses), nested calls
of N leaves that wait, as wide as their user asks (waitwide8, waitwide32, waitwide64), and
leaves that wait in turn with leaves that compute (mixed: only the computing ones are counted
in the peaks).

``--modes naive,budget`` runs only those modes (still interleaved): e.g. ``--modes naive,budget
--shapes short,big --repeat 20``, the pairs that tell whether the budget takes at most naive
nesting's time where the two are close. Without plain, there is no ratio and no target.

``--modes plain,budget,budget+trace`` adds the mode budget+trace: the budget with
``NEST_JOBLIB_TRACE`` set (a trace file per run, in a temporary directory removed at exit), to
tell what tracing costs (``--modes budget,budget+trace --shapes short,deep --repeat 6``).

``--placebo MODULES`` adds the mode plain+imports: plain joblib, every process of which imports
those modules as well, to tell what a plugin's imports cost from what it does.

``--child SHAPE`` runs one shape once in the current environment and prints its JSON result,
e.g. ``NEST_JOBLIB_DEBUG=1 python benchmarks/nesting.py --child deep`` to see the scheduler's
decisions on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = ("plain", "naive", "budget")
SHAPES = (
    "short",
    "uneven",
    "full",
    "deep",
    "big",
    "bigfull",
    "wait",
    "numpy",
    "warm",
    "waitfree",
    "waitwide8",
    "waitwide32",
    "waitwide64",
    "mixed",
    "toplevel-wait",
    "toplevel-cpu",
    "toplevel-warm",
)
#: Targets on the 2-core machine: max ratio to plain's median wall time (issues 3 and 12).
TARGETS = {
    "short": 0.58,
    "uneven": 0.75,
    "full": 1.03,
    "deep": 1.0,
    "big": 0.60,
    "bigfull": 1.03,
    "wait": 1.02,
    "numpy": 1.02,
    "warm": 1.02,
    "waitfree": 1.02,
    "waitwide8": 1.03,
    "waitwide32": 1.03,
    "waitwide64": 1.03,
    "mixed": 0.75,
    "toplevel-wait": 1.02,
    "toplevel-cpu": 1.02,
    "toplevel-warm": 1.02,
}
#: Upper end of the 95% bootstrap interval of the median pair ratio to plain, at most (issue 29).
UPPER_TARGETS = {"waitwide8": 1.06, "waitwide32": 1.06, "waitwide64": 1.06}
#: Widths of the waitwide shapes: one outer task, a nested ``n_jobs=N`` call of N waiting leaves.
WAITWIDE = {"waitwide8": 8, "waitwide32": 32, "waitwide64": 64}
#: mixed: a nested ``n_jobs=16`` call of leaves that wait and leaves that compute, in turn;
#: a computing leaf takes this share of a leaf's CPU time (0.3 s with the default leaf).
MIXED_LEAVES = 16
MIXED_COMPUTE = 0.6
#: With ``--cpus 1`` every shape's bound is this (issue 23: nothing taken away on one CPU).
ONE_CPU_TARGET = 1.02
#: Shapes whose budget mode gets a budget of twice the CPUs: its nested calls find CPUs free.
WIDE_BUDGET_SHAPES = ("waitfree",)
#: Peak PSS of the tree at most this many times plain's (issue 12).
PSS_TARGETS = {"big": 1.3}
#: Shapes run once before the clock starts, to time the calls that follow on a warm pool.
WARM_SHAPES = {"warm": "numpy", "toplevel-warm": "toplevel-cpu"}
#: Shapes whose leaves get the 400 MB array, made in the root.
ARRAY_SHAPES = ("big", "bigfull")
ARRAY_BYTES = 400 * 1024**2
#: Seconds a leaf of the wait shape sleeps; floats a numpy leaf sorts, how many times.
#: (Four leaves' time: 2 s with the default leaf of 0.5 s.)
WAIT_LEAVES = 4
SORTED_FLOATS = 3_000_000
RESULT_PREFIX = "NESTING-RESULT "
#: --placebo: how the modules reach the child and its workers (they all import this file).
PLACEBO_VARIABLE = "NESTING_BENCHMARK_IMPORTS"

# --------------------------------------------------------------------------------------------
# The workload. It runs in the child and in its workers, which import this file as the module
# ``nesting`` (the child puts this directory on PYTHONPATH), so functions pickle by reference.
# --------------------------------------------------------------------------------------------


def _timestamp_debug_log() -> None:
    """With ``NEST_JOBLIB_DEBUG``, stamp the plugin's log lines with the time (from here on)."""
    if not os.environ.get("NEST_JOBLIB_DEBUG"):
        return
    import logging

    stamped = logging.Formatter("%(created).3f nest-joblib[%(process)d] %(message)s")
    for handler in logging.getLogger("nest_joblib").handlers:
        handler.setFormatter(stamped)


_timestamp_debug_log()


def _import_placebo() -> None:
    """``--placebo``: import the modules named, here and so in every worker (plain mode)."""
    import importlib

    for name in filter(None, os.environ.get(PLACEBO_VARIABLE, "").split(",")):
        importlib.import_module(name)


_import_placebo()

Leaf = tuple[float, float, int]  # start, end (time.time(), comparable across processes), pid


def spin(loops: int) -> int:
    """Pure-Python CPU work: holds the GIL, so threads do not help."""
    acc = 0
    for i in range(loops):
        acc = (acc + i * i) % 1000003
    return acc


def leaf(loops: int) -> list[Leaf]:
    start = time.time()
    spin(loops)
    return [(start, time.time(), os.getpid())]


def fan_out(n_jobs: int, tasks: list[Any]) -> list[Leaf]:
    """``Parallel(n_jobs)`` over ``tasks`` (``(func, *args)`` tuples); their leaves, flattened."""
    from joblib import Parallel, delayed

    results = Parallel(n_jobs=n_jobs)(delayed(func)(*args) for func, *args in tasks)
    return [record for leaves in results for record in leaves]


def array_leaf(array: Any, loops: int) -> list[Leaf]:
    """A pure-Python leaf given the big array (it reads one element of it)."""
    start = time.time()
    float(array[0])
    spin(loops)
    return [(start, time.time(), os.getpid())]


def waiting_leaf(seconds: float) -> list[Leaf]:
    """A leaf that waits, as on I/O."""
    start = time.time()
    time.sleep(seconds)
    return [(start, time.time(), os.getpid())]


def quiet_wait(seconds: float) -> list[Leaf]:
    """A leaf that waits and records nothing: the peaks of mixed count leaves that compute."""
    time.sleep(seconds)
    return []


def numpy_leaf(seed: int, sorts: int) -> list[Leaf]:
    """A leaf of numpy work that releases the GIL: sort floats it makes itself."""
    import numpy as np

    start = time.time()
    rng = np.random.default_rng(seed)
    for _ in range(sorts):
        float(np.sort(rng.random(SORTED_FLOATS))[0])
    return [(start, time.time(), os.getpid())]


def leaves_in_turn(count: int, loops: int) -> list[Leaf]:
    return [record for _ in range(count) for record in leaf(loops)]


def deep_level(depth: int, loops: int) -> list[Leaf]:
    """``depth`` more levels of ``Parallel(n_jobs=4)`` over 4 children each."""
    if depth == 0:
        return leaf(loops)
    return fan_out(4, [(deep_level, depth - 1, loops)] * 4)


def run_shape(
    shape: str, loops: int, array: Any = None, wait: float = 2.0, sorts: int = 6
) -> list[Leaf]:
    if shape == "big":
        inner = (fan_out, -1, [(array_leaf, array, loops)] * 8)
        return fan_out(-1, [inner])
    if shape == "bigfull":
        inner = (fan_out, -1, [(array_leaf, array, loops)] * 4)
        return fan_out(-1, [inner] * 2)
    if shape == "wait":
        inner = (fan_out, -1, [(waiting_leaf, wait)] * 4)
        return fan_out(-1, [inner] * 2)
    if shape == "numpy":
        inner = (fan_out, -1, [(numpy_leaf, seed, sorts) for seed in range(8)])
        return fan_out(-1, [inner])
    if shape == "warm":
        return run_shape("numpy", loops, sorts=sorts) + run_shape("numpy", loops, sorts=sorts)
    if shape == "waitfree":
        inner = (fan_out, 8, [(waiting_leaf, wait / 2)] * 8)
        return fan_out(-1, [inner])
    if shape in WAITWIDE:
        width = WAITWIDE[shape]
        return fan_out(2, [(fan_out, width, [(waiting_leaf, wait / 2)] * width)])
    if shape == "mixed":
        computing = (leaf, max(1, round(loops * MIXED_COMPUTE)))
        tasks = [(quiet_wait, wait / 2) if i % 2 == 0 else computing for i in range(MIXED_LEAVES)]
        return fan_out(2, [(fan_out, MIXED_LEAVES, tasks)])
    if shape == "short":
        inner = (fan_out, -1, [(leaf, loops)] * 8)
        return fan_out(-1, [inner])
    if shape == "toplevel-wait":
        return fan_out(8, [(waiting_leaf, wait / 2)] * 8)
    if shape in ("toplevel-cpu", "toplevel-warm"):
        return fan_out(8, [(leaf, loops)] * 8)
    if shape == "uneven":
        wide = (fan_out, -1, [(leaf, loops)] * 6)
        return fan_out(2, [wide, (leaves_in_turn, 2, loops)])
    if shape == "full":
        inner = (fan_out, -1, [(leaf, loops)] * 2)
        return fan_out(-1, [inner] * 8)
    if shape == "deep":
        return deep_level(3, max(1, loops // 10))
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def child(argv: list[str]) -> int:
    """In the fresh interpreter: run one shape once, print the result as one JSON line."""
    shape, loops, wait, sorts = argv[0], int(argv[1]), float(argv[2]), int(argv[3])
    cpus = os.environ.get(CPUS_VARIABLE)
    if cpus:  # before joblib is imported: its cpu_count() (and the workers) see only these
        os.sched_setaffinity(0, range(int(cpus)))
    import joblib  # imported (and patched) before the clock starts, as in any real program

    array = None
    if shape in ARRAY_SHAPES:
        import numpy as np

        array = np.ones(ARRAY_BYTES // 8)  # made in the root, before the clock starts
    if shape in WARM_SHAPES:
        run_shape(WARM_SHAPES[shape], loops, sorts=sorts)
    epoch = time.time()
    start = time.perf_counter()
    leaves = run_shape(shape, loops, array, wait, sorts)
    wall = time.perf_counter() - start
    result = {
        "start": epoch,
        "wall": wall,
        "leaves": leaves,
        "backend": joblib.parallel.DEFAULT_BACKEND,
    }
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------------------------
# The driver.
# --------------------------------------------------------------------------------------------

CHILD_CODE = "import sys, nesting; sys.exit(nesting.child(sys.argv[1:]))"
#: The child pins itself to this many CPUs (``--cpus``) before it imports joblib.
CPUS_VARIABLE = "NESTING_BENCHMARK_CPUS"
#: Modes that switch one mechanism of the budget off (``--ablate``): ``off:<mechanism>``.
OFF = "off:"
#: Modes that run the budget with another installation (``--python``): ``budget@<name>``.
AT = "budget@"
#: --placebo: plain joblib, every process of which imports these modules first.
PLACEBO_MODE = "plain+imports"
#: The budget with NEST_JOBLIB_TRACE set: what tracing costs (only when asked, in --modes).
TRACE_MODE = "budget+trace"
_trace_dir: list[str] = []
#: Modes that run joblib unpatched (NEST_JOBLIB=0).
UNPATCHED = ("plain", PLACEBO_MODE)
PLACEBO: list[str] = []
#: --python: name -> the interpreter of another environment (another version of the plugin).
PYTHONS: dict[str, str] = {}


def python_of(mode: str) -> str:
    """The interpreter a mode runs with: this one, or another environment's (``--python``)."""
    return PYTHONS[mode[len(AT) :]] if mode.startswith(AT) else sys.executable


def mode_env(
    mode: str, debug: bool = False, shape: str = "", cpus: int | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEST_JOBLIB")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH")) if p)
    if cpus:
        env[CPUS_VARIABLE] = str(cpus)
    if mode == PLACEBO_MODE:
        env[PLACEBO_VARIABLE] = ",".join(PLACEBO)
    if mode in UNPATCHED:
        env["NEST_JOBLIB"] = "0"
    elif mode == "naive":
        env["NEST_JOBLIB_CPUS"] = "off"
    elif mode == TRACE_MODE:
        env["NEST_JOBLIB_TRACE"] = os.path.join(_trace_directory(), "trace.json")
    elif mode not in ("budget", PLACEBO_MODE) and not mode.startswith((OFF, AT)):
        raise ValueError(mode)
    if mode.startswith(OFF):
        env["NEST_JOBLIB_ABLATE"] = mode[len(OFF) :]
    if mode not in (*UNPATCHED, "naive") and shape in WIDE_BUDGET_SHAPES:
        env["NEST_JOBLIB_CPUS"] = str(2 * (cpus or os.cpu_count() or 1))
    if debug:
        env["NEST_JOBLIB_DEBUG"] = "1"
    return env


def _trace_directory() -> str:
    """Where budget+trace runs write their trace (each run replaces the last), removed at exit."""
    if not _trace_dir:
        import atexit
        import shutil
        import tempfile

        _trace_dir.append(tempfile.mkdtemp(prefix="nesting-trace-"))
        atexit.register(shutil.rmtree, _trace_dir[0], True)
    return _trace_dir[0]


def calibrate_sorts(seconds: float) -> int:
    """Sorts of :data:`SORTED_FLOATS` floats that take about ``seconds`` here (a numpy leaf)."""
    import numpy as np

    rng = np.random.default_rng(0)
    best = float("inf")
    for _ in range(3):
        data = rng.random(SORTED_FLOATS)
        start = time.perf_counter()
        np.sort(data)
        best = min(best, time.perf_counter() - start)
    return max(1, round(seconds / best))


def calibrate(seconds: float) -> int:
    """Loop count of :func:`spin` that takes about ``seconds`` here (best of a few tries)."""
    loops = 100_000
    while True:
        start = time.perf_counter()
        spin(loops)
        took = time.perf_counter() - start
        if took > 0.1:
            break
        loops *= 2
    best = took
    for _ in range(4):
        start = time.perf_counter()
        spin(loops)
        best = min(best, time.perf_counter() - start)
    return max(1, round(loops * seconds / best))


class Sampler(threading.Thread):
    """Counts the live descendants of one process every ``period`` seconds; keeps the peak.

    A sample reads every process's ``/proc`` entry, about 1.3 ms of CPU here: 6% of a CPU
    at 20 ms. At normal priority that time came out of the modes that keep every CPU busy,
    and not out of plain joblib, which leaves one idle. The sampler thread runs at the
    lowest priority (nice 19), so it mostly takes time that nobody else wants; the
    processes it counts live for hundreds of milliseconds, so a late sample misses none.
    """

    def __init__(self, pid: int, period: float, pss_every: int = 0) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.period = period
        self.peak = 0
        #: Peak PSS of the child and its descendants, bytes (every ``pss_every`` samples).
        self.pss_every = pss_every
        self.peak_pss = 0
        self._done = threading.Event()
        self._helpers: dict[int, bool] = {}

    def _is_helper(self, proc: Any) -> bool:
        helper = self._helpers.get(proc.pid)
        if helper is None:
            try:
                helper = any("resource_tracker" in part for part in proc.cmdline())
            except Exception:  # gone, or a zombie: count it as a worker this once
                return False
            self._helpers[proc.pid] = helper
        return helper

    def run(self) -> None:
        import psutil

        try:  # Linux: a thread's own nice value
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (AttributeError, OSError):
            pass
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        samples = 0
        while not self._done.is_set():
            try:
                procs = root.children(recursive=True)
            except psutil.Error:
                break
            alive = sum(1 for p in procs if not self._is_helper(p))
            self.peak = max(self.peak, alive)
            if self.pss_every and samples % self.pss_every == 0:
                self.peak_pss = max(self.peak_pss, self._pss([root, *procs]))
            samples += 1
            self._done.wait(self.period)

    @staticmethod
    def _pss(procs: list[Any]) -> int:
        """Proportional set size summed over ``procs``: shared pages counted once in all."""
        total = 0
        for proc in procs:
            try:
                total += proc.memory_full_info().pss
            except Exception:  # gone meanwhile, or no PSS here
                pass
        return total

    def stop(self) -> None:
        self._done.set()
        self.join()


def peak_overlap(leaves: list[Leaf]) -> tuple[int, int]:
    """Most leaves computing at the same moment, and most processes with a leaf computing.

    Threads of one process share one GIL: the second count is at most the CPUs really used.
    An end sorts before a start at a tie.
    """
    events = sorted([(s, 1, pid) for s, _, pid in leaves] + [(e, -1, pid) for _, e, pid in leaves])
    per_pid: dict[int, int] = {}
    peak = current = peak_pids = 0
    for _, step, pid in events:
        current += step
        per_pid[pid] = per_pid.get(pid, 0) + step
        if step > 0:
            peak = max(peak, current)
            peak_pids = max(peak_pids, sum(1 for n in per_pid.values() if n > 0))
    return peak, peak_pids


def run_once(
    shape: str,
    mode: str,
    loops: int,
    sample: float,
    timeout: float,
    debug_log: str | None,
    pss_every: int = 5,
    cpus: int | None = None,
    wait: float = 2.0,
    sorts: int = 6,
) -> dict[str, Any]:
    debug = debug_log is not None and mode == "budget"
    start = time.perf_counter()
    proc = subprocess.Popen(
        [python_of(mode), "-c", CHILD_CODE, shape, str(loops), str(wait), str(sorts)],
        env=mode_env(mode, debug, shape, cpus),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sampler = Sampler(proc.pid, sample, 0 if shape == "deep" else pss_every)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise RuntimeError(f"{shape}/{mode} took more than {timeout:.0f} s:\n{err}") from None
    finally:
        total = time.perf_counter() - start
        sampler.stop()
    lines = [line for line in out.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{shape}/{mode} failed (exit {proc.returncode}):\n{err}")
    result = json.loads(lines[-1][len(RESULT_PREFIX) :])
    backend = result["backend"]
    expected = "loky" if mode in UNPATCHED else "nested-loky"
    if backend != expected:
        raise RuntimeError(
            f"{shape}/{mode}: the child's default backend is {backend!r}, not {expected!r}: "
            f"the plugin is not in the state this mode needs:\n{err}"
        )
    for line in err.splitlines():
        if "Warning" in line and not debug:
            print(f"  {shape}/{mode} child: {line}", file=sys.stderr)
    if debug:
        with open(debug_log, "a") as log:  # type: ignore[arg-type]
            log.write(f"===== {shape} (budget) wall from child below =====\n{err}")
    leaves = result["leaves"]
    computing, computing_procs = peak_overlap(leaves)
    return {
        "wall": result["wall"],
        "total": total,
        "workers": sampler.peak,
        "computing": computing,
        "procs": computing_procs,
        "leaf_pids": len({pid for _, _, pid in leaves}),
        "leaf_time": statistics.median(e - s for s, e, _ in leaves),
        "backend": result["backend"],
        "pss": sampler.peak_pss,
    }


def _median(runs: list[dict[str, Any]], key: str) -> float:
    """The median of ``key`` over ``runs``; NaN for a mode that did not run."""
    return statistics.median(r[key] for r in runs) if runs else float("nan")


def print_table(
    shapes: list[str],
    runs: dict[tuple[str, str], list[dict[str, Any]]],
    budget: int,
    modes: list[str],
    cpus: int | None = None,
) -> None:
    header = (
        f"{'shape':<13} {'mode':<14} {'wall':>6} {'ratio':>6} {'95% pairs':>13} {'target':>7} "
        f"{'total':>6} "
        f"{'workers':>7} {'leaves':>6} {'procs':>5} {'pids':>4} {'leaf':>5} {'pss':>6} "
        f"{'pss/p':>6}  walls"
    )
    print(header)
    print("-" * len(header))
    for shape in shapes:
        plain = _median(runs.get((shape, "plain"), []), "wall")
        naive = _median(runs.get((shape, "naive"), []), "wall")
        plain_pss = _median(runs.get((shape, "plain"), []), "pss")
        for mode in modes:
            rs = runs[shape, mode]
            wall = statistics.median(r["wall"] for r in rs)
            ratio = wall / plain
            workers = max(r["workers"] for r in rs)
            computing = max(r["computing"] for r in rs)
            pss = statistics.median(r["pss"] for r in rs)
            pss_ratio = pss / plain_pss if plain_pss else float("nan")
            low, high = _pair_interval(runs.get((shape, "plain"), []), rs)
            target = ""
            if (mode == "budget" or mode.startswith(AT)) and "plain" in modes:
                # not (wall > naive): true when naive did not run (NaN)
                bound = ONE_CPU_TARGET if cpus == 1 else TARGETS.get(shape)
                ok = (bound is None or ratio <= bound) and not wall > naive
                if shape == "deep":
                    ok = ok and computing <= budget and workers <= 4 * budget
                if shape in PSS_TARGETS:
                    ok = ok and pss_ratio <= PSS_TARGETS[shape]
                if shape in UPPER_TARGETS and cpus != 1:
                    ok = ok and high <= UPPER_TARGETS[shape]
                if shape == "mixed":
                    ok = ok and max(r["procs"] for r in rs) <= budget
                target = ("-" if bound is None else f"{bound:.2f}") + ("" if ok else "!")
            print(
                f"{shape:<13} {mode:<14} {wall:>6.2f} {ratio:>6.2f} "
                f"{f'[{low:.2f}, {high:.2f}]':>13} {target:>7} "
                f"{statistics.median(r['total'] for r in rs):>6.2f} {workers:>7} {computing:>6} "
                f"{max(r['procs'] for r in rs):>5} {max(r['leaf_pids'] for r in rs):>4} "
                f"{statistics.median(r['leaf_time'] for r in rs):>5.2f} "
                f"{pss / 1024**3:>6.2f} {pss_ratio:>6.2f}  "
                + " ".join(f"{r['wall']:.2f}" for r in rs)
            )
    print(
        "\nwall    median s around the outer Parallel, in the child (the main figure)"
        "\nratio   wall / plain's wall (nan without plain, and then no target)"
        "\n95% pairs  percentile bootstrap interval of the median of the ratios of the runs to"
        "\n        plain's run of the same repetition (4000 resamples; waitwide: upper end <= 1.06)"
        "\ntarget  the bound for the budget mode, '!' = missed; every shape also needs a wall"
        "\n        no longer than naive's, deep leaves <= budget and workers <= 4 x budget,"
        "\n        big a peak PSS <= 1.3 x plain's, mixed procs <= budget"
        "\ntotal   median s of the whole child process, start-up and shut-down included"
        "\nworkers peak live worker processes (descendants of the child, loky's resource tracker"
        "\n        not counted), max over the repetitions"
        "\nleaves  peak leaves computing at once (wall-clock overlap; threads of one process count"
        "\n        each though they share one GIL), max over the repetitions"
        "\nprocs   peak processes with a leaf computing at once (CPUs really busy with leaves)"
        "\npids    processes that ran leaves; leaf: median wall s of one leaf"
        "\npss     median of the peak PSS of the process tree, GB (not sampled for deep: it"
        "\n        starts 85 processes naively); pss/p: its ratio to plain's; walls: each run"
    )


def _pair_interval(plain: list[dict[str, Any]], runs: list[dict[str, Any]]) -> tuple[float, float]:
    """The 95% interval of the median ratio of ``runs`` to plain's runs of the same repetitions."""
    pairs = [b["wall"] / a["wall"] for a, b in zip(plain, runs)]
    return bootstrap_median(pairs) if pairs else (float("nan"), float("nan"))


def bootstrap_median(values: list[float], rounds: int = 4000) -> tuple[float, float]:
    """A 95% percentile-bootstrap interval of the median of ``values`` (seeded: repeatable)."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(rounds))
    return medians[int(0.025 * rounds)], medians[int(0.975 * rounds) - 1]


def print_ablation(
    shapes: list[str], runs: dict[tuple[str, str], list[dict[str, Any]]], modes: list[str]
) -> None:
    """Per mechanism and shape: the median of off/on pair ratios, its interval, and beside
    them the peak processes computing at once and the peak PSS, on and off."""
    header = (
        f"{'mechanism':<12} {'shape':<13} {'off/on':>6} {'95% interval':>14} {'pairs':>5} "
        f"{'procs on/off':>12} {'pss GB on/off':>13}"
    )
    print(header)
    print("-" * len(header))
    for mode in modes:
        if not mode.startswith(OFF):
            continue
        for shape in shapes:
            on, off = runs.get((shape, "budget"), []), runs.get((shape, mode), [])
            pairs = list(zip(on, off))
            if not pairs:
                continue
            ratios = [b["wall"] / a["wall"] for a, b in pairs]
            low, high = bootstrap_median(ratios)
            procs = f"{max(a['procs'] for a, _ in pairs)}/{max(b['procs'] for _, b in pairs)}"
            pss = (
                f"{statistics.median(a['pss'] for a, _ in pairs) / 1024**3:.2f}/"
                f"{statistics.median(b['pss'] for _, b in pairs) / 1024**3:.2f}"
            )
            print(
                f"{mode[len(OFF) :]:<12} {shape:<13} {statistics.median(ratios):>6.3f} "
                f"{f'[{low:.3f}, {high:.3f}]':>14} {len(pairs):>5} {procs:>12} {pss:>13}"
            )
    print(
        "\noff/on  median over the repetitions of (wall with the mechanism off) / (wall with it"
        "\n        on), both runs of a pair from the same repetition; above 1: it pays"
        "\n95%     percentile bootstrap of that median (4000 resamples of the pairs)"
        "\nprocs   peak processes with a leaf computing at once, on/off (max over the runs)"
        "\npss     median peak PSS of the process tree, on/off"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeat", type=int, default=6, help="runs per shape and mode (6: every order once)"
    )
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated shapes")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes")
    parser.add_argument(
        "--leaf-seconds", type=float, default=0.5, help="CPU time of one leaf (deep: a tenth)"
    )
    parser.add_argument("--sample-ms", type=float, default=20.0, help="process sampling period")
    parser.add_argument(
        "--pss-every", type=int, default=5, help="samples between two PSS readings (0: none)"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    parser.add_argument(
        "--debug-log", metavar="PATH", help="append budget runs' NEST_JOBLIB_DEBUG=1 stderr here"
    )
    parser.add_argument("--child", metavar="SHAPE", help="run SHAPE once here, print JSON")
    parser.add_argument(
        "--cpus", type=int, help="pin each child (not this driver) to this many CPUs first"
    )
    parser.add_argument(
        "--ablate",
        metavar="NAMES",
        help="switch these mechanisms off one at a time (comma-separated, or 'all'): modes "
        "budget and off:NAME for each, and the table of off/on pair ratios",
    )
    parser.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="also run the budget with the interpreter of another environment, as mode "
        "budget@NAME (another version of the plugin, side by side); repeatable",
    )
    parser.add_argument(
        "--placebo",
        metavar="MODULES",
        help="also run plain joblib with these modules (comma-separated) imported in every "
        "process, as mode plain+imports: what a plugin's imports alone cost, whatever they do",
    )
    parser.add_argument("--save", metavar="PATH", help="append every run here (JSON lines)")
    parser.add_argument("--load", metavar="PATH", help="print the tables of runs saved before")
    args = parser.parse_args(argv)
    args.shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in args.shapes if s not in SHAPES]
    if unknown:
        parser.error(f"unknown shape(s) {', '.join(unknown)}; known: {', '.join(SHAPES)}")
    asked = {m.strip() for m in args.modes.split(",") if m.strip()}
    known_modes = (*MODES, TRACE_MODE)
    if asked - set(known_modes) or not asked:
        unknown_modes = ", ".join(sorted(asked - set(known_modes)))
        what = f"unknown mode(s) {unknown_modes}" if asked else "no mode"
        parser.error(f"--modes: {what}; known: {', '.join(known_modes)}")
    args.modes = [m for m in known_modes if m in asked]  # in the usual order
    if args.ablate:
        known = mechanisms()
        names = known if args.ablate == "all" else [n.strip() for n in args.ablate.split(",")]
        unknown = [n for n in names if n not in known]
        if unknown:
            parser.error(f"--ablate: unknown {', '.join(unknown)}; known: {', '.join(known)}")
        args.modes = ["budget", *(OFF + name for name in names)]
    for item in args.python:
        name, sep, path = item.partition("=")
        if not sep or not name or not os.path.isfile(path):
            parser.error(f"--python {item!r}: expected NAME=PATH to an interpreter")
        PYTHONS[name] = path
        args.modes.append(AT + name)
    if args.placebo is not None:
        import importlib.util

        PLACEBO.extend(m.strip() for m in args.placebo.split(",") if m.strip())

        def found(name: str) -> bool:
            try:
                return importlib.util.find_spec(name) is not None
            except ImportError:  # its parent package is missing
                return False

        if not PLACEBO:
            parser.error("--placebo: name at least one module")
        missing = [m for m in PLACEBO if not found(m)]
        if missing:
            parser.error(f"--placebo: no module named {', '.join(missing)}")
        args.modes.append(PLACEBO_MODE)
    if args.cpus is not None and not 1 <= args.cpus <= (os.cpu_count() or 1):
        parser.error(f"--cpus must be between 1 and {os.cpu_count()}")
    if args.cpus == 1:  # a budget of 4 means nothing on one CPU (issue 23)
        args.shapes = [s for s in args.shapes if s not in WIDE_BUDGET_SHAPES]
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.leaf_seconds <= 0:
        parser.error("--leaf-seconds must be positive")
    return args


def mechanisms() -> list[str]:
    """The mechanisms ``NEST_JOBLIB_ABLATE`` can switch off (from the installed plugin)."""
    from nest_joblib._private.settings import MECHANISMS

    return list(MECHANISMS)


def load_runs(path: str) -> dict[tuple[str, str], list[dict[str, Any]]]:
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            runs.setdefault((record["shape"], record["mode"]), []).append(record)
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.load:
        saved = load_runs(args.load)
        modes = list(dict.fromkeys(mode for _, mode in saved))
        shapes = [s for s in SHAPES if any(shape == s for shape, _ in saved)]
        if any(m.startswith(OFF) for m in modes):
            print_ablation(shapes, saved, modes)
        else:
            import joblib

            print_table(shapes, saved, args.cpus or joblib.cpu_count(), modes, args.cpus)
        return 0
    loops = calibrate(args.leaf_seconds)
    if args.child:
        # Same interpreter set-up as a timed run, in the caller's environment.
        env = dict(os.environ)
        env["PYTHONPATH"] = mode_env("budget")["PYTHONPATH"]
        wait = WAIT_LEAVES * args.leaf_seconds
        sorts = calibrate_sorts(args.leaf_seconds)
        cmd = [sys.executable, "-c", CHILD_CODE, args.child, str(loops), str(wait), str(sorts)]
        return subprocess.call(cmd, env=env)

    import joblib

    budget = joblib.cpu_count()
    sorts = calibrate_sorts(args.leaf_seconds)
    print(
        f"python {sys.version.split()[0]}, joblib {joblib.__version__}, cpu_count {budget}, "
        f"leaf {args.leaf_seconds} s = {loops} loops or {sorts} sorts, repeat {args.repeat}",
        flush=True,
    )
    modes = args.modes
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {
        (shape, mode): [] for shape in args.shapes for mode in modes
    }
    # Repetitions outside, shapes inside: a long run stopped early still covers every shape.
    for rep in range(args.repeat):
        for shape in args.shapes:
            order = modes[rep % len(modes) :] + modes[: rep % len(modes)]
            if (rep // len(modes)) % 2:
                order.reverse()
            for mode in order:
                r = run_once(
                    shape,
                    mode,
                    loops,
                    args.sample_ms / 1000,
                    args.timeout,
                    args.debug_log,
                    args.pss_every,
                    args.cpus,
                    WAIT_LEAVES * args.leaf_seconds,
                    sorts,
                )
                runs[shape, mode].append(r)
                if args.save:
                    with open(args.save, "a") as f:
                        f.write(json.dumps({"shape": shape, "mode": mode, "rep": rep, **r}) + "\n")
                print(
                    f"  rep {rep + 1} {shape:<13} {mode:<14} wall {r['wall']:6.2f}  "
                    f"total {r['total']:6.2f}  workers {r['workers']:3}  "
                    f"leaves {r['computing']:3}  procs {r['procs']}  "
                    f"pss {r['pss'] / 1024**3:.2f} GB  ({r['backend']})",
                    file=sys.stderr,
                    flush=True,
                )
    print()
    if args.ablate:
        print_ablation(args.shapes, runs, modes)
    else:
        print_table(args.shapes, runs, args.cpus or budget, modes, args.cpus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
