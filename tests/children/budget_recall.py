"""Top-level calls from two threads share the pool: a call recalls the other's stand-by batches.

The first call (one task, two workers) sends its spare worker a stand-by
batch; once that batch holds its token in the worker, the main thread makes
a second call, whose task can run only in that worker.
"""

from __future__ import annotations

import os
import tempfile
import threading

from joblib import Parallel, delayed

from children.common import emit, locked_elsewhere, poll_until, spin_until
from nest_joblib._private import budget, standby


def wait_for_signal(signal_dir: str) -> bool:
    # Holds the pool's first worker until the other thread's task has run.
    return spin_until(lambda: bool(os.listdir(signal_dir)), 30)


def give_signal(signal_dir: str) -> int:
    open(os.path.join(signal_dir, "go"), "x").close()
    return os.getpid()


def standing_by() -> bool:
    """Whether a stand-by batch runs in a spare worker, with the token handed off to it.

    Its call's ``standby-*`` mark is in the budget's directory, and the slot
    handed off to the batch is no longer reserved (``res-<slot>``): the
    worker took it.
    """
    ref = budget._own
    if ref is None:
        return False
    for name in os.listdir(ref.path):
        spares = standby._calls.get(os.path.join(ref.path, name))
        if name.startswith("standby-") and spares is not None:
            slots = frozenset(spares._slots)  # handed off to its stand-by batches
            if slots and not any(
                locked_elsewhere(os.path.join(ref.path, f"res-{slot}")) for slot in slots
            ):
                return True
    return False


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
