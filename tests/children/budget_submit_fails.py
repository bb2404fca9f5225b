"""A top-level batch that loky refuses (a worker died meanwhile) gives back its token.

Run with ``NEST_JOBLIB_CPUS=2``.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

from joblib import Parallel, delayed
from joblib.externals.loky.process_executor import TerminatedWorkerError

from children.common import count_free_tokens, emit, poll_until
from nest_joblib._private import budget


def tasks(victim: int) -> Iterator[Any]:
    # joblib has made the call's pool (loky's, reused) and now takes the
    # tasks: a worker dies, loky sees its executor broken and refuses the
    # first batch, which already has a token handed off to it.
    os.kill(victim, signal.SIGKILL)
    time.sleep(1.0)
    yield from (delayed(os.getpid)() for _ in range(2))


def main() -> None:
    victim = Parallel(n_jobs=2)(delayed(os.getpid)() for _ in range(2))[0]
    try:
        Parallel(n_jobs=2)(tasks(victim))
        error = None
    except TerminatedWorkerError as exc:
        error = type(exc).__name__
    ref = budget.root_budget(2)
    # Tokens come back asynchronously (done callbacks): give them a moment.
    poll_until(lambda: count_free_tokens(ref) == 2, timeout=10)
    emit({"error": error, "free": count_free_tokens(ref)})


if __name__ == "__main__":
    main()
