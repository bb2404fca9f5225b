"""A daemon thread takes tokens after the root's exit removed its budget directory.

As a nested call's feeder does while the program exits: the budget is wider
than the descriptors a process keeps open (16), so the thread opens slot
files of a directory that is gone. A finalizer of a lower priority than the
root's cleanup lets it run then, and waits for it. Nothing may be printed:
the tree is over, the call runs on without tokens.
"""

from __future__ import annotations

import threading
from multiprocessing import util

from joblib import Parallel, delayed

from children.common import emit


def leaf(i: int) -> int:
    return i * i


def outer(i: int) -> int:
    return sum(Parallel(n_jobs=2)(delayed(leaf)(j) for j in range(4)))


def main() -> None:
    from nest_joblib._private import budget

    emit(sum(Parallel(n_jobs=2)(delayed(outer)(i) for i in range(2))))
    ref = budget.own_ref()
    assert ref is not None
    assert ref.size > 16
    gate, done = threading.Event(), threading.Event()
    got: list[budget.Token | None] = []

    def feeder() -> None:
        gate.wait()
        view = budget.budget_for(ref)
        got.extend(view.try_acquire() for _ in range(ref.size))
        done.set()

    threading.Thread(target=feeder, daemon=True).start()

    def after_the_cleanup() -> None:
        gate.set()
        done.wait(30)
        # A slot whose descriptor this process still had open may lock (its file is
        # gone with the directory, harmlessly): which ones, try_acquire's random start decides.
        emit({"tried": len(got), "gone": budget.budget_for(ref).broken is not None})

    util.Finalize(None, after_the_cleanup, exitpriority=-100)


if __name__ == "__main__":
    main()
