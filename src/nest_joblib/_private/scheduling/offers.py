"""A nested call's queued tasks on offer to the tree's idle top-level workers.

The socket, its protocol and the helpers' side are :mod:`..sharing`'s; this
is the call's side: which task a helper may take, and what its outcome does.
A helper runs on a token its root holds for it (a stand-by batch), so the
call holds none for the task. A task that did not reach its helper goes
back to the head of the queue; one whose helper died running it fails, as
with joblib's own workers.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from nest_joblib._private import contract
from nest_joblib._private.budget import BudgetRef
from nest_joblib._private.sharing import Offer
from nest_joblib._warnings import warn

from .queue import HELPER, INLINE, CallQueue, Task

logger = logging.getLogger("nest_joblib")

#: Offers could not be made here (no Unix sockets): said once per process.
_failed = False


class Offered:
    """One nested call's offer; ``payload(task)`` pickles a task (``None``: it cannot)."""

    def __init__(
        self,
        queue: CallQueue,
        ref: BudgetRef,
        level: int,
        payload: Callable[[Task], bytes | None],
    ) -> None:
        self._queue = queue
        self._payload = payload
        self._offer = Offer(ref.path, ref.key, level, self._take, self._done, self._lost)

    @classmethod
    def open(
        cls,
        queue: CallQueue,
        ref: BudgetRef,
        level: int,
        payload: Callable[[Task], bytes | None],
    ) -> Offered | None:
        """The call's offer, or ``None`` where no Unix socket can be made (said once)."""
        global _failed
        try:
            return cls(queue, ref, level, payload)
        except OSError as exc:
            if not _failed:
                _failed = True
                warn(
                    f"cannot offer tasks to idle workers ({type(exc).__name__}: {exc}); "
                    "nested calls of this process share no work, and start lanes instead"
                )
            return None

    def _take(self) -> tuple[Task, bytes] | None:
        queue = self._queue
        first = [True]

        def pick(task: Task) -> bool:
            # An idle inline runner is about to take the head: a helper taking
            # it would leave the caller's CPU idle for as long as the task runs.
            head, first[0] = first[0], False
            return not task.local and not (head and queue.running[INLINE] == 0)

        task = queue.take(HELPER, CallQueue.room_elsewhere, pick)
        payload = None if task is None else self._payload(task)
        if task is not None and payload is None:
            queue.put_back(task, HELPER)
        return None if task is None or payload is None else (task, payload)

    def _done(self, task: Task, ok: bool, value: Any) -> None:
        self._queue.finish(task, HELPER, ok, value)

    def _lost(self, task: Task, ran: bool) -> None:
        if ran:
            died = contract.TerminatedWorkerError(
                "the worker that ran this task died before it answered"
            )
            self._queue.finish(task, HELPER, False, died)
        else:
            self._queue.put_back(task, HELPER)

    def close(self) -> None:
        self._offer.close()
