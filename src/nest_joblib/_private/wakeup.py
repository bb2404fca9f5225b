"""Waking joblib's result poll when a task of a nested call completes.

joblib's retrieval loop (``Parallel._retrieve``) checks whether the next
result is in and, when it is not, sleeps 10 ms with ``time.sleep(0.01)``
before it looks again. At the end of a nested call the caller's CPU stands
idle for that sleep: the inline runner has parked the token for the caller
(see :mod:`.scheduler`) and nothing else in the process may use it. In the
deep benchmark shape these sleeps added up to about 2% of the wall time.

The patch gives ``joblib.parallel`` a ``time`` module whose ``sleep`` returns
early in a thread that waits for a nested call of ours, as soon as a task of
that call completes. Anywhere else it is ``time.sleep``. The loop itself is
joblib's, unchanged: fail-fast, timeouts and generators work as before, and
a wake-up that comes too early only costs one more look.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

_waiting = threading.local()


class Clock:
    """``time``, except that ``sleep`` ends when this thread's call has news."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        news: threading.Event | None = getattr(_waiting, "news", None)
        if news is None:
            time.sleep(seconds)
        elif news.wait(seconds):
            # A completion between wait() and clear() is missed: that costs
            # the poll joblib would have made anyway, no more.
            news.clear()


def install(module: Any) -> None:
    """Give ``module`` (``joblib.parallel``) the clock; only where it uses ``time``."""
    if getattr(module, "time", None) is time:
        module.time = Clock()


def uninstall(module: Any) -> None:
    if isinstance(getattr(module, "time", None), Clock):
        module.time = time


@contextlib.contextmanager
def waking(news: threading.Event | None) -> Iterator[None]:
    """While this thread waits for a call's results, ``news`` ends its sleeps.

    ``None``: plain sleeps (a call without a scheduler of ours).
    """
    outer = getattr(_waiting, "news", None)
    _waiting.news = news
    try:
        yield
    finally:
        _waiting.news = outer
