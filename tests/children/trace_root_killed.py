"""A traced root killed with SIGKILL once its tree has run tasks: it writes no trace."""

from __future__ import annotations

import os
import signal

from joblib import Parallel, delayed

from children.common import busy


def middle(i: int) -> int:
    busy(0.05)
    return sum(Parallel(n_jobs=2)(delayed(os.getpid)() for _ in range(2)))


if __name__ == "__main__":
    Parallel(n_jobs=2)(delayed(middle)(i) for i in range(2))
    os.kill(os.getpid(), signal.SIGKILL)
