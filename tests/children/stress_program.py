"""Runs one generated program of the stress suite (see ``tests/stress.py``); prints its report.

    python stress_program.py PROGRAM.json LOG_DIR

Its report is the stdout line that starts with ``STRESS-REPORT ``, then JSON
(a line of its own: a lane whose parent is killed as it starts prints loky's
traceback on the same stdout): the outcome of the top-level call (its value,
or the qualified name of its exception), its wall time and, when the plugin is
active, how long after the call every token of the budget was free again
(``nest_joblib.info()``): within a second of the call's return, or of the end
of the last leaf that was stuck past a timeout.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from children.stress_tasks import qualified, run_call

#: Marks the report's line on stdout.
REPORT = "STRESS-REPORT "
#: How long after the call (or the last stuck leaf) every token must be free.
FREE_WITHIN = 1.0


def _stuck(log: str) -> tuple[int, float]:
    """Stuck leaves still running, and when the last one that ended did."""
    try:
        with open(os.path.join(log, "spans")) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return 0, 0.0
    started = {line.split()[1] for line in lines if line.startswith("stuck-start ")}
    ended = {
        line.split()[1]: float(line.split()[2]) for line in lines if line.startswith("stuck-end ")
    }
    return len(started - set(ended)), max(ended.values(), default=0.0)


def tokens_free(log: str, returned: float, longest_stuck: float) -> dict[str, Any]:
    """Wait until every token is free; how long that took after the deadline's start."""
    import nest_joblib

    give_up = time.time() + longest_stuck + 2 * FREE_WITHIN
    while True:
        state = nest_joblib.info()
        now = time.time()
        running, last_end = _stuck(log)
        since = max(returned, last_end)
        if state["free"] is None or state["free"] == state["budget"]:
            return {"ok": True, "after": max(0.0, now - since), "info": state}
        if (not running and now - since > FREE_WITHIN) or now > give_up:
            return {"ok": False, "after": now - since, "stuck_running": running, "info": state}
        time.sleep(0.02)


def main() -> int:
    program_path, log = sys.argv[1], sys.argv[2]
    with open(program_path) as f:
        program = json.load(f)
    import joblib  # noqa: F401 (patched now, before the clock starts)

    start = time.perf_counter()
    try:
        outcome: list[Any] = ["value", run_call(program["call"], "r", log)]
    except Exception as exc:
        outcome = ["raise", qualified(exc), str(exc)[:200]]
    wall = time.perf_counter() - start
    returned = time.time()
    report: dict[str, Any] = {"outcome": outcome, "wall": wall}
    if os.environ.get("NEST_JOBLIB") != "0":
        report["tokens"] = tokens_free(log, returned, program["longest_stuck"])
    print(REPORT + json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
