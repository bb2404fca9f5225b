"""A worker killed one level down, then one at the top: the budget keeps all its tokens.

Run with ``NEST_JOBLIB_CPUS=3``.
"""

from __future__ import annotations

import os
import signal
import tempfile

from joblib import Parallel, delayed
from joblib.externals.loky.process_executor import TerminatedWorkerError

from children.common import busy, emit, meet, peak, spin_until, timed


def die(i: int) -> None:
    if i == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    busy(0.5)


def die_below(caller: int) -> None:
    """Die in a lane (a process below the caller); compute in the caller itself."""
    if os.getpid() != caller:
        os.kill(os.getpid(), signal.SIGKILL)
    busy(0.2)


def task(kill: bool, barrier: str, done: str) -> str:
    # Both outer tasks hold a worker of the pool (and a token) before the nested call.
    if not meet(barrier):
        return "alone"
    if kill:
        # The other outer task holds the pool's second worker: the third CPU is
        # free and no worker is spare, so the nested call starts a lane beside
        # its caller, and the victim holds its token in it, one level down.
        try:
            caller = os.getpid()
            Parallel(n_jobs=2)(delayed(die_below)(caller) for _ in range(20))
        except TerminatedWorkerError:
            return "terminated"
        finally:
            open(os.path.join(done, "done"), "x").close()
        return "survived"
    # Hold the pool's second worker until the nested call is over.
    return "busy" if spin_until(lambda: bool(os.listdir(done)), 60) else "not told"


def leaf(barrier: str) -> tuple[list[float], bool]:
    # The first three leaves compute at once only if the budget still has three tokens.
    together = meet(barrier, 3)
    [span] = timed(0.1)
    return span, together


def main() -> None:
    with tempfile.TemporaryDirectory() as barrier, tempfile.TemporaryDirectory() as done:
        outcome = Parallel(n_jobs=2)(delayed(task)(k, barrier, done) for k in (True, False))
    try:
        Parallel(n_jobs=3)(delayed(die)(i) for i in range(2))
        top = "survived"
    except TerminatedWorkerError:
        top = "terminated"
    # With every token back, three leaves compute at once again.
    with tempfile.TemporaryDirectory() as barrier:
        leaves = Parallel(n_jobs=3)(delayed(leaf)(barrier) for _ in range(9))
    emit(
        {
            "outcome": outcome,
            "top": top,
            "together": [together for _, together in leaves],
            "peak": peak(span for span, _ in leaves),
        }
    )


if __name__ == "__main__":
    main()
