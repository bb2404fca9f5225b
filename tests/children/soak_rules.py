"""The soak's rules and table (standard library only), shared by its test and its benchmark.

``samples`` are the dicts that ``children/soak.py`` prints, one per sample.
"""

from __future__ import annotations

from typing import Any

#: The rules hold from this call on (the first calls warm things up).
FROM_CALL = 200
#: The root's RSS may grow by less than this, from then to the end.
RSS_GROWTH_MB = 5.0
_FLAT = ("root_fds", "root_threads")
_ZERO = ("markers", "held")


def breaches(samples: list[dict[str, Any]]) -> list[str]:
    """What breaks the rules, one line each (none: the soak passes)."""
    kept = [s for s in samples if s["call"] >= FROM_CALL]
    if not kept:
        return [f"no sample from call {FROM_CALL} on"]
    first, out = kept[0], []
    # A worker's descriptors and threads, by how many lanes it has (a lane is
    # its worker's executor: 2 threads and pipes): one value each, at every sample.
    by_lanes: dict[int, set[tuple[int, int]]] = {}
    for s in kept:
        for fds, threads, lanes in s["per_worker"]:
            by_lanes.setdefault(lanes, set()).add((fds, threads))
    out += [
        f"workers with {lanes} lanes: (fds, threads) {sorted(seen)}"
        for lanes, seen in sorted(by_lanes.items())
        if len(seen) > 1
    ]
    for s in kept:
        out += [
            f"call {s['call']}: {key} {first[key]} -> {s[key]}"
            for key in _FLAT
            if s[key] != first[key]
        ]
        out += [f"call {s['call']}: {key} {s[key]}" for key in _ZERO if s[key] != 0]
    growth = kept[-1]["root_rss_mb"] - first["root_rss_mb"]
    if growth >= RSS_GROWTH_MB:
        out.append(f"root RSS grew by {growth:.1f} MB from call {first['call']}")
    return out


def table(samples: list[dict[str, Any]]) -> str:
    """The samples as a Markdown table."""
    head = (
        "| call | s | root fds | root threads | root RSS MB | workers: fds/threads/lanes "
        "| lanes | offer markers | map records | tokens held |"
    )
    rows = [head, "| " + " | ".join(["---"] * (head.count("|") - 1)) + " |"]
    for s in samples:
        cells = [
            s["call"],
            s["seconds"],
            s["root_fds"],
            s["root_threads"],
            s["root_rss_mb"],
            ", ".join("/".join(map(str, w)) for w in s["per_worker"]),
            s["lanes"],
            s["markers"],
            s["records"],
            s["held"],
        ]
        rows.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(rows)
