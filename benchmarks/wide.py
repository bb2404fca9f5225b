"""Wide machines on this one: a budget of 16 CPUs, counted in processes and tokens, not seconds.

    python benchmarks/wide.py [--budget 16] [--folds 5] [--leaves 16] [--ablate lanes,helpers]

The shape that lanes exist for: an outer loop of 5 folds (``Parallel(n_jobs=5)``,
as ``cross_validate(..., n_jobs=5)``) whose folds each run an inner
``Parallel(n_jobs=16)`` of 16 leaves, on a machine of 16 CPUs. The machine
here has 2 CPUs, so the budget is set to 16 (``NEST_JOBLIB_CPUS``) and no
time is measured: each leaf computes (spins) at a barrier until as many
leaves as the budget compute at once, or 10 s pass. The table counts, per
mode, the peak of processes with a leaf computing at once (from each leaf's
process and span), the peak of tokens held (sampled with ``nest_joblib.info()``
from the root), the processes that ran leaves, and whether the barrier was
met. Plain joblib runs each fold's leaves in threads of the fold's worker
(5 processes); with the budget's lanes every CPU of the 16 is used. The
modes are plain (``NEST_JOBLIB=0``), the budget, and the budget with each
mechanism of ``--ablate`` switched off (``NEST_JOBLIB_ABLATE``, see README).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
RESULT = "WIDE-RESULT "
CHILD_CODE = "import sys, wide; sys.exit(wide.child(sys.argv[1:]))"


def meet(barrier: str, count: int, timeout: float) -> bool:
    """Arrive, then compute until ``count`` leaves arrived (``timeout`` seconds at most).

    Once a leaf gave up, the others do not wait any more: a mode that cannot
    meet the barrier ends within ``timeout``.
    """
    gave_up = os.path.join(barrier, "gave-up")
    with open(os.path.join(barrier, f"arrived-{os.getpid()}-{time.monotonic_ns()}"), "x"):
        pass
    deadline = time.monotonic() + timeout
    while sum(name.startswith("arrived-") for name in os.listdir(barrier)) < count:
        if os.path.exists(gave_up):
            return False
        if time.monotonic() > deadline:
            open(gave_up, "a").close()
            return False
        sum(range(1000))
    return True


def leaf(barrier: str, count: int) -> list[Any]:
    start = time.time()
    met = meet(barrier, count, 10.0)
    return [os.getpid(), start, time.time(), met]


def fold(barrier: str, count: int, leaves: int) -> list[list[Any]]:
    from joblib import Parallel, delayed

    return list(Parallel(n_jobs=leaves)(delayed(leaf)(barrier, count) for _ in range(leaves)))


def child(argv: list[str]) -> int:
    """In the fresh interpreter: one run, its result as one JSON line."""
    budget, folds, leaves = (int(a) for a in argv)
    import threading

    from joblib import Parallel, delayed

    import nest_joblib

    peak_tokens = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            info = nest_joblib.info()
            if info["free"] is not None and info["budget"] is not None:
                peak_tokens[0] = max(peak_tokens[0], info["budget"] - info["free"])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with tempfile.TemporaryDirectory() as barrier:
        results = Parallel(n_jobs=folds)(
            delayed(fold)(barrier, budget, leaves) for _ in range(folds)
        )
    done.set()
    sampler.join()
    spans = [span for part in results for span in part]
    print(RESULT + json.dumps({"spans": spans, "tokens": peak_tokens[0]}), flush=True)
    return 0


def peak_processes(spans: list[list[Any]]) -> int:
    events = sorted([(s, 1, p) for p, s, _, _ in spans] + [(e, -1, p) for p, _, e, _ in spans])
    running: dict[int, int] = {}
    top = 0
    for _, step, pid in events:
        running[pid] = running.get(pid, 0) + step
        top = max(top, sum(1 for n in running.values() if n > 0))
    return top


def run(mode: str, budget: int, folds: int, leaves: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEST_JOBLIB")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH")) if p)
    if mode == "plain":
        env["NEST_JOBLIB"] = "0"
    else:
        env["NEST_JOBLIB_CPUS"] = str(budget)
        if mode != "budget":
            env["NEST_JOBLIB_ABLATE"] = mode.removeprefix("off:")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD_CODE, str(budget), str(folds), str(leaves)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode or not lines:
        raise RuntimeError(f"{mode} failed:\n{proc.stderr}")
    result = json.loads(lines[-1][len(RESULT) :])
    spans = result["spans"]
    return {
        "procs": peak_processes(spans),
        "tokens": result["tokens"],
        "pids": len({span[0] for span in spans}),
        "met": all(span[3] for span in spans),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=16)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--leaves", type=int, default=16)
    parser.add_argument("--ablate", default="lanes", help="mechanisms to switch off, one by one")
    args = parser.parse_args(argv)
    modes = ["plain", "budget", *(f"off:{n.strip()}" for n in args.ablate.split(",") if n.strip())]
    shape = f"{args.folds} folds of {args.leaves} leaves"
    print(f"budget {args.budget}, {shape}, on {os.cpu_count()} CPUs")
    print(f"{'mode':<14} {'procs':>5} {'tokens':>6} {'pids':>4}  met")
    for mode in modes:
        r = run(mode, args.budget, args.folds, args.leaves)
        print(f"{mode:<14} {r['procs']:>5} {r['tokens']:>6} {r['pids']:>4}  {r['met']}", flush=True)
    print(
        "\nprocs   peak processes with a leaf computing at once"
        "\ntokens  peak tokens of the budget held (plain: no budget)"
        "\npids    processes that ran leaves"
        "\nmet     whether every leaf saw as many leaves computing at once as the budget"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
