"""How long a nested call's task takes in this process, by nesting level.

A lane starts only for queued work that outlasts its start (see .lanes); a
call's tasks tend to be like those of its siblings, so the running mean is
kept per level, for the life of the process (an entry of :mod:`..process`).
"""

from __future__ import annotations

import threading

from nest_joblib._private import process


class Means:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: dict[int, float] = {}

    def observe(self, level: int, seconds: float) -> None:
        with self._lock:
            mean = self._seconds.get(level)
            self._seconds[level] = seconds if mean is None else 0.7 * mean + 0.3 * seconds

    def get(self, level: int) -> float | None:
        return self._seconds.get(level)


def means() -> Means:
    return process.entry("task means", Means)
