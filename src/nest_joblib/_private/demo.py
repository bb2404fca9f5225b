"""``nest-joblib demo``: one small nested workload, plain joblib vs. the plugin.

The workload is the shape nest-joblib is for: an outer ``Parallel`` whose loop
is too short to fill the machine (one task, or two on four CPUs or more), each
task running an inner ``Parallel`` over ``2 * cpu_count()`` pure-Python leaves.
Plain joblib runs the inner loops on threads, so their pure-Python leaves share
one core; with the plugin they get processes, within the CPU budget.

Each run happens in a fresh interpreter (``python -m nest_joblib._private.demo``),
once with ``NEST_JOBLIB=0`` and once with the environment as it is. Every
outer task and every leaf records its process id and the nesting level of the
backend it runs under, so the table can say how many processes each level used.

This module imports joblib only in the child interpreters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from typing import Any, Callable, TextIO

__all__ = ["compare", "render", "run_child", "run_workload"]

#: Pure-Python loop iterations that make up one outer task's inner loop at
#: ``--size 1`` (one to two seconds of one core on a 2020s x86 machine), split
#: evenly between its leaves.
WORK_PER_OUTER_TASK = 20_000_000
#: Floor for one leaf (a few tens of milliseconds), so that leaves do not shrink
#: to nothing on machines with many CPUs.
MIN_LEAF_LOOPS = 200_000
#: Speed-ups within this band of 1.0 are reported as no measurable difference.
NOISE = 0.1


# --------------------------------------------------------------------------
# Child side: the workload itself.


def _level() -> int:
    from joblib.parallel import get_active_backend

    backend = get_active_backend()[0]
    return int(getattr(backend, "nesting_level", 0) or 0)


def spin(loops: int) -> int:
    """Pure-Python CPU work: ``loops`` iterations, no sleeping, no C extensions."""
    acc = 0
    for i in range(loops):
        acc = (acc + i * i) % 1_000_003
    return acc


def leaf(loops: int) -> tuple[int, int, int]:
    """One leaf: (nesting level, pid, checksum)."""
    return _level(), os.getpid(), spin(loops)


def outer_task(leaves: int, loops: int) -> dict[str, Any]:
    """One outer task: runs its own ``Parallel(n_jobs=-1)`` over the leaves."""
    from joblib import Parallel, delayed

    level, pid = _level(), os.getpid()
    results = Parallel(n_jobs=-1)(delayed(leaf)(loops) for _ in range(leaves))
    return {"level": level, "pid": pid, "leaves": [list(r[:2]) for r in results]}


def shape(cpus: int, size: float) -> dict[str, int]:
    """How many outer tasks, leaves per task and loops per leaf for ``cpus``."""
    outer = 2 if cpus >= 4 else 1
    leaves = 2 * cpus
    loops = max(int(WORK_PER_OUTER_TASK * size) // leaves, int(MIN_LEAF_LOOPS * size), 1)
    return {"outer": outer, "leaves": leaves, "loops": loops}


def run_workload(size: float) -> dict[str, Any]:
    """Run the workload in this interpreter; a JSON-ready report of the run."""
    import joblib
    from joblib import Parallel, delayed

    import nest_joblib

    from .state import state

    cpus = int(joblib.cpu_count())
    plan = shape(cpus, size)
    # Start the top-level workers first, untimed: both modes need them alike.
    Parallel(n_jobs=-1)(delayed(os.getpid)() for _ in range(cpus))
    start = time.perf_counter()
    tasks = Parallel(n_jobs=-1)(
        delayed(outer_task)(plan["leaves"], plan["loops"]) for _ in range(plan["outer"])
    )
    wall = time.perf_counter() - start

    levels: dict[int, set[int]] = {_level(): {os.getpid()}}
    for task in tasks:
        levels.setdefault(task["level"], set()).add(task["pid"])
        for level, pid in task["leaves"]:
            levels.setdefault(level, set()).add(pid)
    leaf_count = sum(len(task["leaves"]) for task in tasks)

    active = nest_joblib.is_active()
    budget: int | None = None
    if active:
        from .budgeted import budget_size

        budget = budget_size()
    return {
        "active": active,
        "failure": state.failure,
        "default_backend": str(joblib.parallel.DEFAULT_BACKEND),
        "budget": budget,
        "cpu_count": cpus,
        "joblib_version": joblib.__version__,
        "shape": plan,
        "leaves_run": leaf_count,
        "wall_seconds": wall,
        "processes_per_level": {str(k): len(v) for k, v in sorted(levels.items())},
    }


def _child_main(argv: Sequence[str]) -> int:
    size = float(argv[0]) if argv else 1.0
    print(json.dumps(run_workload(size)))
    return 0


# --------------------------------------------------------------------------
# Parent side: two fresh interpreters and the comparison.

#: The two runs: (key, label, extra environment; None means "remove").
MODES: tuple[tuple[str, str, dict[str, str | None]], ...] = (
    ("plain", "plain joblib", {"NEST_JOBLIB": "0"}),
    ("nested", "nest-joblib", {}),
)


def run_child(
    size: float,
    overrides: Mapping[str, str | None],
    environ: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> dict[str, Any]:
    """Run the workload in a fresh ``sys.executable``; its report, or an error."""
    env = dict(os.environ if environ is None else environ)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    cmd = [sys.executable, "-m", "nest_joblib._private.demo", repr(size)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        return {"error": f"exit status {proc.returncode}: {tail}"}
    try:
        report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": f"no report on stdout: {proc.stdout[-200:]!r}"}
    report["warnings"] = [line for line in proc.stderr.splitlines() if "nest-joblib" in line]
    return report


def compare(
    size: float = 1.0,
    progress: Callable[[str], None] | None = None,
    environ: Mapping[str, str] | None = None,
    trace: str | None = None,
) -> dict[str, Any]:
    """Run both modes and judge the outcome; a JSON-ready dict.

    ``trace``: the plugin run writes its trace there (``NEST_JOBLIB_TRACE``).
    """
    say = progress or (lambda message: None)
    runs: dict[str, dict[str, Any]] = {}
    load = _load_average()  # before our own runs add to it
    for number, (key, label, overrides) in enumerate(MODES, 1):
        say(f"[{number}/{len(MODES)}] {label}: running in a fresh interpreter ...")
        if trace is not None and key == "nested":
            overrides = {**overrides, "NEST_JOBLIB_TRACE": os.path.abspath(trace)}
        report = run_child(size, overrides, environ)
        runs[key] = report
        if "error" in report:
            say(f"[{number}/{len(MODES)}] {label}: FAILED ({report['error']})")
        else:
            say(f"[{number}/{len(MODES)}] {label}: done in {report['wall_seconds']:.2f} s")
    speedup, verdict, ok = _judge(runs["plain"], runs["nested"], environ)
    cpus = runs["nested"].get("cpu_count") or runs["plain"].get("cpu_count")
    if speedup is not None and load is not None and cpus and load > cpus:
        verdict += (
            f" Note: the machine was busy (load average {load:.1f} on {cpus} CPUs before "
            "the demo started), so these timings say little; run it again on a quiet machine."
        )
    return {
        "size": size,
        "trace": None if trace is None else os.path.abspath(trace),
        "runs": runs,
        "speedup": speedup,
        "verdict": verdict,
        "ok": ok,
        "load_average": load,
    }


def _load_average() -> float | None:
    """The one-minute load average, where the platform has one."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _judge(
    plain: dict[str, Any], nested: dict[str, Any], environ: Mapping[str, str] | None = None
) -> tuple[float | None, str, bool]:
    """(speed-up or None, one-paragraph verdict, whether the demo showed the plugin)."""
    if "error" in plain or "error" in nested:
        return None, "a run failed, so there is nothing to compare (see above)", False
    if plain["active"]:
        return None, "the plain run was patched although NEST_JOBLIB=0: cannot compare", False
    if not nested["active"]:
        why = nested.get("failure") or _inactive_reason(os.environ if environ is None else environ)
        return (
            None,
            f"nest-joblib was NOT active in the second run ({why}), so both runs are "
            "plain joblib and there is no speed-up to report. "
            "`python -m nest_joblib status` says why.",
            False,
        )
    cpus = int(nested["cpu_count"])
    if cpus <= 1:
        return (
            None,
            "joblib sees 1 CPU here: nested parallelism has nothing to gain, so no speed-up "
            "is claimed; any difference in wall time is noise.",
            True,
        )
    speedup = float(plain["wall_seconds"]) / max(float(nested["wall_seconds"]), 1e-9)
    outer = int(nested["shape"]["outer"])
    ideal = cpus / outer
    if speedup >= 1 + NOISE:
        verdict = (
            f"nest-joblib ran {speedup:.2f}x faster: the outer loop has "
            f"{_plural(outer, 'task')} for {cpus} CPUs, plain joblib runs the inner loops on "
            "threads (one core per outer task for pure Python), nest-joblib gives them "
            f"processes (ideal about {ideal:.1f}x)."
        )
    elif speedup <= 1 - NOISE:
        verdict = (
            f"nest-joblib was slower here ({speedup:.2f}x): the leaves may be too short for "
            "process start-up to pay off (try a larger --size), or the machine is busy."
        )
    else:
        verdict = (
            f"no measurable difference ({speedup:.2f}x): the leaves may be too short for "
            "process start-up to pay off (try a larger --size), or the machine is busy."
        )
    return speedup, verdict, True


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _inactive_reason(environ: Mapping[str, str]) -> str:
    from nest_joblib._switch import parse_switch

    raw = environ.get("NEST_JOBLIB")
    if not parse_switch("NEST_JOBLIB", raw, True)[0]:
        return f"NEST_JOBLIB={raw!r} in the environment turns it off"
    return "the start-up hook did not run: is nest_joblib.pth in this environment's site-packages?"


def render(result: Mapping[str, Any]) -> str:
    """The side-by-side table and the verdict, as text."""
    runs = result["runs"]
    columns = [label for _, label, _ in MODES]
    reports = [runs[key] for key, _, _ in MODES]
    rows: list[tuple[str, list[str]]] = []
    good = [r for r in reports if "error" not in r]
    if good:
        plan = good[-1]["shape"]
        head = (
            f"workload: {_plural(plan['outer'], 'outer task')} x {plan['leaves']} pure-Python "
            f"leaves of {plan['loops']:,} loops each; joblib sees "
            f"{_plural(good[-1]['cpu_count'], 'CPU')}"
        )
    else:
        head = "workload: did not run"

    def cell(report: Mapping[str, Any], fn: Callable[[Mapping[str, Any]], str]) -> str:
        return "failed" if "error" in report else fn(report)

    rows.append(("wall time", [cell(r, lambda r: f"{r['wall_seconds']:.2f} s") for r in reports]))
    levels = sorted({int(k) for r in good for k in r["processes_per_level"]})
    names = {0: "caller", 1: "outer tasks", 2: "leaves"}
    for level in levels:
        label = f"processes at level {level} ({names.get(level, 'nested')})"
        key = str(level)
        counts = [
            "failed" if "error" in r else str(r["processes_per_level"].get(key, 0)) for r in reports
        ]
        rows.append((label, counts))
    rows.append(
        (
            "nest-joblib active",
            [cell(r, lambda r: "yes" if r["active"] else "no") for r in reports],
        )
    )
    rows.append(
        (
            "CPU budget",
            [cell(r, lambda r: "-" if r["budget"] is None else str(r["budget"])) for r in reports],
        )
    )
    speedup = result["speedup"]
    rows.append(("speed-up", ["1.00x", "n/a" if speedup is None else f"{speedup:.2f}x"]))

    width0 = max(len(label) for label, _ in rows)
    widths = [max(len(columns[i]), *(len(vals[i]) for _, vals in rows)) for i in range(2)]
    lines = [head, ""]
    lines.append(" ".join([" " * width0, *(c.rjust(w) for c, w in zip(columns, widths))]).rstrip())
    lines.append(" ".join(["-" * width0, *("-" * w for w in widths)]))
    for label, vals in rows:
        lines.append(" ".join([label.ljust(width0), *(v.rjust(w) for v, w in zip(vals, widths))]))
    lines.append("")
    lines.append(textwrap.fill(str(result["verdict"]), width=100))
    for report, column in zip(reports, columns):
        if "error" in report:
            lines.append(f"{column} run failed: {report['error']}")
    return "\n".join(lines)


def main(
    size: float = 1.0, as_json: bool = False, stream: TextIO | None = None, trace: str | None = None
) -> int:
    """Run the demo, print the table (or JSON) to stdout; 0 when it showed the plugin.

    ``trace``: where the plugin run's trace goes (see :mod:`.trace`).
    """
    err = sys.stderr if stream is None else stream
    say = lambda message: print(message, file=err, flush=True)  # noqa: E731
    result = compare(size, progress=say, trace=trace)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print(render(result))
        if result["trace"] is not None:
            print(_trace_hint(result["trace"]))
    return 0 if result["ok"] else 1


def _trace_hint(path: str) -> str:
    if not os.path.exists(path):
        return f"\nno trace at {path}: the plugin run wrote none (see its warnings above)"
    return (
        f"\ntrace of the nest-joblib run: {path}\n"
        "  open it in https://ui.perfetto.dev (Open trace file), chrome://tracing or "
        "https://www.speedscope.app;\n"
        f"  or in this terminal: python -m nest_joblib trace {path}"
    )


if __name__ == "__main__":
    # Re-import under the package name, so that workers unpickle the leaves by
    # reference to ``nest_joblib._private.demo`` rather than ``__main__``.
    from nest_joblib._private.demo import _child_main

    sys.exit(_child_main(sys.argv[1:]))
