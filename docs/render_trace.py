"""Render a nest-joblib trace as a PNG: the picture of the README.

    python docs/render_trace.py TRACE.json docs/trace-demo.png

One row per thread that ran a task (grouped by process: root, top-level workers, lanes),
a bar per task coloured by its nesting level, the lanes' starts marked, and below them the
tokens held in the tree against the budget. matplotlib is needed here only (``pip install
matplotlib``), never by the plugin. The README's picture comes from
``python -m nest_joblib demo --size 0.5 --trace demo.json`` (on 2 CPUs: on more, the demo has
two outer tasks and more leaves, and lanes show).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from typing import Any

COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52")


def _tracks(events: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """(pid, tid) of every thread that ran a task, in the order of the processes' tracks."""
    order = {e["pid"]: e["args"]["sort_index"] for e in events if e["name"] == "process_sort_index"}
    tasks = {(e["pid"], e["tid"]) for e in events if e["ph"] == "X" and e.get("cat") == "task"}
    return sorted(tasks, key=lambda t: (order.get(t[0], 9), t[0], t[1]))


def render(trace: dict[str, Any], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    events = trace["traceEvents"]
    names = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    threads = {
        (e["pid"], e["tid"]): e["args"]["name"] for e in events if e["name"] == "thread_name"
    }
    tracks = _tracks(events)
    row = {track: i for i, track in enumerate(tracks)}
    fig, (top, bottom) = plt.subplots(
        2,
        1,
        figsize=(11, 2.4 + 0.45 * len(tracks)),
        sharex=True,
        gridspec_kw={"height_ratios": [max(len(tracks), 3), 2]},
    )
    levels: dict[int, list[tuple[float, float]]] = defaultdict(list)
    rows: dict[int, list[int]] = defaultdict(list)
    span = max((e["ts"] + e.get("dur", 0) for e in events if "ts" in e), default=1) / 1e6
    for e in events:
        if e["ph"] == "X" and e.get("cat") == "task":
            level = int(e["args"].get("level") or 0)
            start, width = e["ts"] / 1e6, max(e["dur"], 1) / 1e6
            levels[level].append((start, width))
            rows[level].append(row[e["pid"], e["tid"]])
            if width > span / 12:  # where it ran, if the bar has room for it
                y = row[e["pid"], e["tid"]]
                where = e["args"].get("where", "")
                top.text(
                    start + width / 2, y, where, ha="center", va="center", fontsize=7, color="white"
                )
    for level in sorted(levels):
        colour = COLOURS[level % len(COLOURS)]
        for (start, width), y in zip(levels[level], rows[level]):
            top.broken_barh([(start, width)], (y - 0.4, 0.8), color=colour, edgecolor="white")
        top.plot([], [], color=colour, linewidth=6, label=f"tasks of level {level}")
    lanes = [e for e in events if e["ph"] == "i" and e["name"] == "lane started"]
    for e in lanes:
        ys = [row[t] for t in tracks if t[0] == e["pid"]] or [0]
        top.plot(e["ts"] / 1e6, min(ys) - 0.45, "v", color="black", markersize=6)
    if lanes:
        top.plot([], [], "v", color="black", label="a lane started")
    labels = [f"{names.get(pid, pid)} · {threads.get((pid, tid), tid)}" for pid, tid in tracks]
    top.set_yticks(range(len(tracks)), labels, fontsize=7)
    top.invert_yaxis()
    top.legend(loc="lower right", bbox_to_anchor=(1, 1), fontsize=7, ncol=4, frameon=False)
    top.set_title("nest-joblib demo: where every task ran", loc="left")
    tokens = sorted(
        (e["ts"] / 1e6, e["args"]["tokens"]) for e in events if e["name"] == "tokens held"
    )
    if tokens:
        xs, ys = zip(*tokens)
        bottom.step(xs, ys, where="post", color="#333333", label="tokens held in the tree")
    computing = [
        (e["ts"] / 1e6, e["args"]["processes"])
        for e in events
        if e["name"] == "processes computing"
    ]
    if computing:
        xs, ys = zip(*sorted(computing))
        bottom.step(xs, ys, where="post", color="#55A868", label="processes computing")
    budget = trace.get("otherData", {}).get("budget")
    if budget:
        bottom.axhline(budget, color="#C44E52", linestyle="--", label=f"budget ({budget})")
    bottom.set_ylim(-0.2, (budget or 1) + 0.8)
    bottom.set_xlabel("seconds since the trace began")
    bottom.legend(loc="lower right", bbox_to_anchor=(1, 1), fontsize=7, ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        render(json.load(f), argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
