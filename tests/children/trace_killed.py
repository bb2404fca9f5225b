"""Workers killed mid-task under NEST_JOBLIB_TRACE: one at the top level, one in a lane.

Run with ``NEST_JOBLIB_CPUS=3``.
"""

from __future__ import annotations

import os
import signal

from joblib import Parallel, delayed
from joblib.externals.loky.process_executor import TerminatedWorkerError

from children.common import busy, emit


def die(i: int) -> None:
    busy(0.1)
    if i == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    busy(0.3)


def die_below(caller: int) -> None:
    """Die in a lane (a process below the caller); compute elsewhere (the caller, a helper)."""
    busy(0.05)
    if os.getppid() == caller:
        os.kill(os.getpid(), signal.SIGKILL)
    busy(0.1)


def below(i: int) -> str:
    if i:  # holds the pool's other worker: the nested call's lane takes the third CPU
        busy(0.5)
        return "busy"
    try:
        caller = os.getpid()
        Parallel(n_jobs=3)(delayed(die_below)(caller) for _ in range(30))
    except TerminatedWorkerError:
        return "terminated"
    return "survived"


def main() -> None:
    under, _ = Parallel(n_jobs=2)(delayed(below)(i) for i in range(2))
    try:
        Parallel(n_jobs=2)(delayed(die)(i) for i in range(2))
        top = "survived"
    except TerminatedWorkerError:
        top = "terminated"
    emit({"top": top, "below": under})


if __name__ == "__main__":
    main()
