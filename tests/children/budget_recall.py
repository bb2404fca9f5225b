"""Top-level calls from two threads share the pool: a call recalls the other's stand-by batches.

The first call (one task, two workers) sends its spare worker a stand-by
batch on a token the root holds for it; then the main thread makes a second
call, whose task can run only in that worker.
"""

from __future__ import annotations

import os
import tempfile
import threading

from joblib import Parallel, delayed

from children.common import count_free_tokens, emit, poll_until, spin_until
from nest_joblib._private import budget


def wait_for_signal(signal_dir: str) -> bool:
    # Holds the pool's first worker until the other thread's task has run.
    return spin_until(lambda: bool(os.listdir(signal_dir)), 30)


def give_signal(signal_dir: str) -> int:
    open(os.path.join(signal_dir, "go"), "x").close()
    return os.getpid()


def standing_by() -> bool:
    """Whether a stand-by batch is out: its call's mark is in the budget's directory, and
    the root holds a token for it beside the one of the call's batch (none is free)."""
    ref = budget.own_ref()
    if ref is None:
        return False
    marks = [name for name in os.listdir(ref.path) if name.startswith("standby-")]
    return bool(marks) and count_free_tokens(ref) == 0


def main() -> None:
    got: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as signal_dir:
        first = threading.Thread(
            target=lambda: got.update(
                a=Parallel(n_jobs=2)(delayed(wait_for_signal)(signal_dir) for _ in range(1))
            )
        )
        first.start()
        got["standing_by"] = poll_until(standing_by, 60)
        got["b"] = Parallel(n_jobs=2)(delayed(give_signal)(signal_dir) for _ in range(1))
        first.join()
    emit(got)


if __name__ == "__main__":
    main()
