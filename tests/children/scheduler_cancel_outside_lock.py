"""Closing a nested call settles its futures outside the call's own lock.

A future's callbacks are foreign code: joblib's takes the ``Parallel``'s
lock, which its dispatching thread holds while it submits the next task. Here
a callback of a queued task's future takes a lock ``L`` that another thread
holds while it submits to the same call, as joblib's ``_dispatch`` does; the
call is closed (``abort_everything``, a generator broken off) meanwhile. With
the futures cancelled under the call's lock, the two threads wait for each
other for ever.
"""

from __future__ import annotations

import threading
from typing import Any

from children.common import emit, take_free_tokens
from nest_joblib._private import budget
from nest_joblib._private.scheduling import Scheduler


def main() -> None:
    ref = budget.root_budget(2)
    held = take_free_tokens(ref)  # no CPU free: the queued task stays queued
    call = Scheduler(1, budget.budget_for(ref), ref, {}, 1)
    gate = threading.Event()
    call.submit(lambda: gate.wait(30))  # the inline runner's task, while we look
    queued = call.submit(lambda: 1)
    dispatching = threading.Lock()  # joblib's Parallel._lock
    cancelling = threading.Event()

    def joblibs_callback(_: Any) -> None:
        cancelling.set()
        with dispatching:
            pass

    queued.add_done_callback(joblibs_callback)
    refused: list[str] = []

    def dispatch() -> None:
        with dispatching:
            cancelling.wait(10)  # the call is being closed: submit the next task now
            try:
                call.submit(lambda: 2)
            except RuntimeError as exc:
                refused.append(str(exc))

    dispatcher = threading.Thread(target=dispatch, daemon=True)
    dispatcher.start()
    closer = threading.Thread(target=call.close, kwargs={"cancel": True}, daemon=True)
    closer.start()
    dispatcher.join(10)
    closer.join(10)
    deadlocked = dispatcher.is_alive() or closer.is_alive()
    gate.set()
    for token in held:
        token.release()
    emit({"deadlocked": deadlocked, "cancelled": queued.cancelled(), "refused": refused})


if __name__ == "__main__":
    main()
