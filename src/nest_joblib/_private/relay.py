"""Work that must not run on loky's own threads, handed to a thread of the plugin.

A future's done callbacks run on the thread that settles it: for loky, its
executor's manager thread. joblib's callback dispatches the call's next batch
from there, and the plugin sends stand-by batches from there; either way a
``submit`` that waits for the executor's ``_submit_resize_lock``. Another
top-level call of the process (from another thread, with another ``n_jobs``)
resizing the shared executor holds that lock while it waits for the running
jobs to end, which only the blocked manager thread can end: loky's resize
deadlock, which plain joblib meets now and then. A :class:`Relay` runs such
work in order in a thread of its own instead, so the manager thread goes on
settling jobs, and the resize ends.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Callable

from . import contract

logger = logging.getLogger("nest_joblib")


class Relay:
    """One top-level call's thread for work that loky's threads hand over.

    The thread starts with the first such work and ends once it has none
    left: it outlives neither the call nor its last relayed submit.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._work: collections.deque[Callable[[], None]] = collections.deque()
        self._running = False

    def run(self, work: Callable[[], None]) -> None:
        """``work()`` now, or in the relay's thread when called on one of loky's threads."""
        if not contract.on_loky_thread():
            work()
            return
        with self._cond:
            self._work.append(work)
            if self._running:
                return
            self._running = True
        try:
            threading.Thread(target=self._drain, name="nest-joblib-relay", daemon=True).start()
        except BaseException:  # no thread to be had: run it here, as plain joblib would
            self._drain()

    def _drain(self) -> None:
        while True:
            with self._cond:
                if not self._work:
                    self._running = False
                    return
                work = self._work.popleft()
            _run_guarded(work)


def _run_guarded(work: Callable[[], None]) -> None:
    try:
        work()
    except Exception as exc:  # each work item settles its own future; never the thread
        logger.debug("relayed work failed: %r", exc)
