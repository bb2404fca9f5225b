"""A lane that another call took is not killed by an abort of the call it served before.

When a lane's task is done, the lane is given back idle, and the call that
sent the task stops counting it among the lanes it kills if aborted. Here a
hook holds the lane's manager thread right after the lane is given back:
call B takes the idle lane and sends it a task, then call A is aborted.
Were A to let go of the lane only after giving it back, its abort would kill
the lane under B's task, which would fail though nothing of B failed.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from children.common import emit
from nest_joblib._private import budget
from nest_joblib._private.arrays import TaskPickler
from nest_joblib._private.scheduling.lanes import LaneFeeder, lanes
from nest_joblib._private.scheduling.queue import CallQueue


def main() -> None:
    ref = budget.root_budget(4)
    tokens = budget.budget_for(ref)
    pickler = TaskPickler()

    def feeder(queue: CallQueue) -> LaneFeeder:
        return LaneFeeder(
            queue, tokens, ref, {}, 1, lambda task: pickler.dumps(task.func), lambda *_: None
        )

    here = lanes()
    lane = here.start({})
    given_back, resume = threading.Event(), threading.Event()
    original = here.give_back

    def give_back(given: Any) -> None:
        original(given)
        if not given_back.is_set():  # A's task is done: hold right here
            given_back.set()
            resume.wait(30)

    here.give_back = give_back  # type: ignore[method-assign,assignment]

    queue_a, queue_b = CallQueue(2), CallQueue(2)
    feeder_a, feeder_b = feeder(queue_a), feeder(queue_b)
    a = queue_a.put(os.getpid)
    feeder_a._send(lane, tokens.try_acquire())  # type: ignore[arg-type]
    assert given_back.wait(30)

    b = queue_b.put(os.getpid)
    taken = here.take_idle()
    feeder_b._send(taken, tokens.try_acquire())  # type: ignore[arg-type]
    feeder_a.close(cancel=True)  # call A is aborted
    resume.set()

    error = b.exception(timeout=30)
    emit(
        {
            "a": a.result(timeout=30) != os.getpid(),
            "same_lane": taken is lane,
            "b_error": None if error is None else type(error).__name__,
        }
    )


if __name__ == "__main__":
    main()
