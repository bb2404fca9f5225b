"""The trace file: parts merged into the Chrome Trace Event Format, and its summary.

Standard library only. The parts (:mod:`.trace`) hold one JSON record a
line; here they become one ``{"traceEvents": [...]}`` file (timestamps in
microseconds from the first event) that Perfetto, ``chrome://tracing`` and
speedscope open, and a text summary for a terminal (``nest-joblib trace``).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

#: Events one process writes at most; beyond, they are counted, not written.
CAP = 100_000
#: The order of the tracks: the root first, then the top-level workers, then lanes.
_ORDER = {"root": 0, "top-level worker": 1, "lane": 2}

Event = dict[str, Any]


def part_prefix(target: str) -> str:
    return f"{target}.part-"


def parts(target: str) -> list[str]:
    """The part files of the trace of ``target`` on disk."""
    prefix = part_prefix(target)
    found = glob.glob(glob.escape(prefix) + "*")
    return sorted(p for p in found if p[len(prefix) :].isdigit())


def claimed(target: str) -> bool:
    """Whether a live root traces to ``target`` (it holds ``<target>.claim``).

    A claim that no process holds (its root was killed) is removed.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no tree is traced there
        return False
    try:
        fd = os.open(f"{target}.claim", os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(f"{target}.claim")
    return False


def _records(path: str) -> list[Event]:
    records = []
    with open(path, "rb") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short by a kill
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


class _Merge:
    """The parts' records, turned into trace events."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lost: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.budget = 0
        self.root = 0
        self.tokens: list[tuple[int, int, int, int]] = []  # ts, delta, pid, slot
        self.t0: int | None = None
        #: Each process's last event: where what it held when it died ends.
        self.last: dict[int, int] = {}
        self.token_tracks: set[tuple[int, int]] = set()

    def read(self, found: Iterable[tuple[int, list[Event]]]) -> None:
        found = list(found)
        stamps = [r["ts"] for _, rs in found for r in rs if isinstance(r.get("ts"), int)]
        self.t0 = min(stamps, default=0)
        for _, records in found:
            for r in records:
                if r.get("k") == "lost":
                    self.lost[str(r["send"])] = r["ts"] - self.t0
        for pid, records in found:
            self._part(pid, records)

    def _part(self, pid: int, records: list[Event]) -> None:
        assert self.t0 is not None
        t0, role, opened = self.t0, "process", {}
        last = max((r["ts"] for r in records if isinstance(r.get("ts"), int)), default=t0) - t0
        self.last[pid] = last
        for r in records:
            kind = r.get("k")
            if kind == "proc":
                role = str(r.get("role", role))
                if role == "root":
                    self.root = pid
            elif kind == "thread":
                self._meta("thread_name", pid, r["tid"], {"name": r["name"]})
            elif kind == "budget":
                self.budget = max(self.budget, int(r["size"]))
            elif kind == "dropped":
                self.dropped[str(pid)] = max(self.dropped.get(str(pid), 0), int(r["n"]))
            elif kind == "B":
                opened[r["id"]] = r
            elif kind == "E" and r.get("id") in opened:
                self._slice(pid, opened.pop(r["id"]), r["ts"] - t0, {"ok": r.get("ok")})
            elif kind == "tok":
                self.tokens.append((r["ts"] - t0, int(r["d"]), pid, int(r["slot"])))
            elif kind == "i":
                self.events.append(
                    {
                        "name": r["name"],
                        "ph": "i",
                        "s": "t",
                        "ts": r["ts"] - t0,
                        "pid": pid,
                        "tid": r["tid"],
                        "args": r.get("args", {}),
                    }
                )
        for begin in opened.values():  # its process died under it
            end = self.lost.get(str(begin.get("send")))
            if end is not None and end >= begin["ts"] - t0:
                ended = "its process died: ended where its sender saw it"
            else:
                end = last
                ended = "unfinished when merged (its process died, or it still ran): ended there"
            self._slice(pid, begin, end, {"ok": False, "ended": ended})
        self._meta("process_name", pid, 0, {"name": f"{role} {pid}"})
        self._meta("process_sort_index", pid, 0, {"sort_index": _ORDER.get(role, 3)})

    def _meta(self, name: str, pid: int, tid: int, args: Event) -> None:
        self.events.append({"name": name, "ph": "M", "pid": pid, "tid": tid, "args": args})

    def _slice(self, pid: int, begin: Event, end: int, extra: Event) -> None:
        assert self.t0 is not None
        start = begin["ts"] - self.t0
        args = {k: begin.get(k) for k in ("level", "call", "where")}
        self.events.append(
            {
                "name": begin.get("name", "?"),
                "cat": "task",
                "ph": "X",
                "ts": start,
                "dur": max(end - start, 0),
                "pid": pid,
                "tid": begin["tid"],
                "args": {**args, **extra},
            }
        )

    def counters(self) -> None:
        """The tokens held in the tree, and the processes computing, over time."""
        held: dict[tuple[int, int], int] = {}
        count = 0
        for ts, delta, pid, slot in sorted(self.tokens, key=lambda t: (t[0], t[1])):
            key = (pid, slot)
            if delta > 0 and key not in held:
                held[key] = ts
            elif delta < 0 and key in held:  # one held before the trace began is not counted
                self._held(pid, slot, held.pop(key), ts)
            else:
                continue
            count += delta
            self._counter("tokens held", ts, {"tokens": count})
        for (pid, slot), since in held.items():  # its holder died: the kernel freed it
            self._held(pid, slot, since, max(self.last.get(pid, since), since))
        self._processes_computing()

    def _held(self, pid: int, slot: int, start: int, end: int) -> None:
        """A token's holding, on its holder's track "tokens held" (thread 0)."""
        self.events.append(
            {
                "name": f"token {slot}",
                "cat": "token",
                "ph": "X",
                "ts": start,
                "dur": end - start,
                "pid": pid,
                "tid": 0,
                "args": {"slot": slot},
            }
        )
        if (pid, 0) not in self.token_tracks:
            self.token_tracks.add((pid, 0))
            self._meta("thread_name", pid, 0, {"name": "tokens held"})

    def _processes_computing(self) -> None:
        edges = []
        for e in self.events:
            if e["ph"] == "X" and e["cat"] == "task":
                edges += [(e["ts"], 1, e["pid"]), (e["ts"] + e["dur"], -1, e["pid"])]
        running: dict[int, int] = defaultdict(int)
        for ts, delta, pid in sorted(edges, key=lambda t: (t[0], t[1])):
            before = bool(running[pid])
            running[pid] += delta
            if before != bool(running[pid]):
                computing = sum(1 for n in running.values() if n)
                self._counter("processes computing", ts, {"processes": computing})

    def _counter(self, name: str, ts: int, args: Event) -> None:
        self.events.append({"name": name, "ph": "C", "ts": ts, "pid": self.root, "args": args})


def merge(target: str, remove: bool = True) -> Event | None:
    """Merge the parts of ``target`` into it (removed once merged); the trace, or None if none."""
    found = []
    paths = parts(target)
    for path in paths:
        with contextlib.suppress(OSError):
            found.append((int(path.rsplit("-", 1)[1]), _records(path)))
    if not found:
        return None
    merging = _Merge()
    merging.read(found)
    merging.counters()
    trace = {
        "traceEvents": merging.events,
        "displayTimeUnit": "ms",
        "otherData": {
            "producer": "nest-joblib",
            "budget": merging.budget,
            "event_cap_per_process": CAP,
            "dropped_events": merging.dropped,
        },
    }
    temporary = f"{target}.merging-{os.getpid()}"
    with open(temporary, "w") as f:
        json.dump(trace, f, separators=(",", ":"))
    os.replace(temporary, target)
    if remove:
        for path in paths:
            with contextlib.suppress(OSError):
                os.unlink(path)
    return trace


def load(path: str) -> Event | None:
    """The trace at ``path``, or None if it is not one (unreadable, not JSON, no traceEvents)."""
    try:
        with open(path, "rb") as f:
            trace = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(trace, dict) or not isinstance(trace.get("traceEvents"), list):
        return None
    return trace


# -- the summary ----------------------------------------------------------------------

#: Columns of the summary's timeline.
COLUMNS = 60


def _union(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _row(spans: list[tuple[int, int]], span: int) -> str:
    """One process's timeline: '#' busy most of a column, '+' part of it, '.' idle."""
    width = max(span / COLUMNS, 1.0)
    cells = [0.0] * COLUMNS
    for start, end in spans:
        for col in range(int(start / width), min(int(end / width) + 1, COLUMNS)):
            lo, hi = max(start, col * width), min(end, (col + 1) * width)
            cells[col] += max(hi - lo, 0) / width
    return "".join("#" if c >= 0.5 else "+" if c > 0 else "." for c in cells)


def summary(trace: Event) -> str:
    """A text summary of ``trace``: levels, processes, tokens and a coarse timeline."""
    events = [e for e in trace["traceEvents"] if isinstance(e, dict)]
    slices = [e for e in events if e.get("ph") == "X" and e.get("cat") == "task"]
    names = {e["pid"]: e["args"]["name"] for e in events if e.get("name") == "process_name"}
    span = max((e["ts"] + e.get("dur", 0) for e in events if "ts" in e), default=0)
    lines = [f"trace of {len(slices)} tasks in {len(names)} processes over {span / 1e6:.3f} s"]
    lines.append("\nlevel   tasks   task time (s)   mean (ms)")
    levels: dict[Any, list[int]] = defaultdict(list)
    for e in slices:
        levels[e["args"].get("level")].append(e["dur"])
    for level in sorted(levels, key=str):
        durs = levels[level]
        lines.append(
            f"{level!s:<7} {len(durs):>5}   {sum(durs) / 1e6:>13.3f}   "
            f"{sum(durs) / len(durs) / 1e3:>9.1f}"
        )
    by_pid: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for e in slices:
        by_pid[e["pid"]].append((e["ts"], e["ts"] + e["dur"]))
    lines.append(f"\n{'process':<24} {'busy (s)':>9} {'idle (s)':>9}   timeline ('#' busy)")
    for pid in sorted(names, key=lambda p: (names[p].split()[0] != "root", names[p])):
        spans = _union(by_pid.get(pid, []))
        busy = sum(end - start for start, end in spans)
        lines.append(
            f"{names[pid]:<24} {busy / 1e6:>9.3f} {(span - busy) / 1e6:>9.3f}   {_row(spans, span)}"
        )
    other = trace.get("otherData", {}) if isinstance(trace.get("otherData"), dict) else {}
    tokens = [e["args"]["tokens"] for e in events if e.get("name") == "tokens held"]
    lines.append(
        f"\npeak tokens held: {max(tokens, default=0)} of a budget of {other.get('budget')}"
    )
    dropped = other.get("dropped_events") or {}
    if dropped:
        lines.append(
            f"events dropped beyond {other.get('event_cap_per_process')} per process: {dropped}"
        )
    return "\n".join(lines)
