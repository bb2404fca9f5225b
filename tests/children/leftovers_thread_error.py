"""An error injected into a background thread of a nested call, in the outer task.

argv[1]: "feeder" (the call finds free CPUs: its feeder thread, which starts
lanes for its queued tasks, fails) or "inline" (no CPU is free: a
second outer task holds the other CPU of the budget until the call is over;
the call runs its tasks in its caller, and the inline runner fails).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from joblib import Parallel, delayed

from children.common import busy, emit, meet, spin_until


def leaf(i: int) -> int:
    busy(0.05)  # the queue outlasts the feeder's first look at it
    return i


class Injected(RuntimeError):
    pass


def boom(*args: object, **kwargs: object) -> None:
    raise Injected("an error injected into a background thread")


def hold(barrier: str) -> None:
    """Hold this outer task's CPU until the other's nested call is over."""
    meet(barrier, 2)
    spin_until((Path(barrier) / "over").exists, 60)


def outer(where: str, barrier: str | None) -> str:
    if barrier is not None:
        meet(barrier, 2)  # both CPUs held: the nested call runs inline
    try:
        return nested(where)
    finally:
        if barrier is not None:
            (Path(barrier) / "over").touch()


def nested(where: str) -> str:
    from nest_joblib._private import waits
    from nest_joblib._private.scheduling import lanes

    if where == "feeder":
        lanes.Lanes.retry_in = boom  # type: ignore[method-assign,assignment]
    else:
        waits.Clock.__init__ = boom  # type: ignore[method-assign]
    try:
        Parallel(n_jobs=2)(delayed(leaf)(i) for i in range(4))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no error"


def main() -> None:
    where = sys.argv[1]
    if where == "feeder":  # one outer task on a budget of 4: CPUs are free below it
        emit(Parallel(n_jobs=2)(delayed(outer)(where, None) for _ in range(1)))
        return
    with tempfile.TemporaryDirectory() as barrier:
        tasks = [delayed(outer)(where, barrier), delayed(hold)(barrier)]
        emit(Parallel(n_jobs=2)(tasks)[:1])


if __name__ == "__main__":
    main()
