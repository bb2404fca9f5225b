"""A budget that cannot be made: ``flock`` fails with ENOLCK (argv[1] ==
"enolck"), or no temporary directory can be made ("tmpdir"), both patched in
this root, the one process that makes the budget (as root, a directory's mode
does not stop this process). Nested calls must then run as in plain joblib.

"worker": the budget is made, but in one outer task's process every attempt
to take a lock fails with ENOLCK from then on: its nested call must not wait.
"""

from __future__ import annotations

import errno
import fcntl
import sys
import tempfile

from joblib import Parallel, delayed
from joblib.parallel import get_active_backend

from children.common import busy, emit


def _no_flock(fd: object, operation: int) -> None:
    raise OSError(errno.ENOLCK, "No locks available")


def _no_new_locks() -> None:
    """From now on in this process, every lock attempt fails (giving back still works)."""
    original = fcntl.flock  # made here, in the worker: nothing of it travels by pickle

    def flock(fd: int, operation: int) -> None:
        if operation & fcntl.LOCK_UN:
            original(fd, operation)
        else:
            _no_flock(fd, operation)

    fcntl.flock = flock  # type: ignore[assignment]


def _no_directory(*args: object, **kwargs: object) -> str:
    raise PermissionError(errno.EACCES, "Permission denied", "/tmp")


def leaf(i: int) -> list[object]:
    busy(0.05)  # the call's feeder looks for a free CPU meanwhile: a lock attempt
    backend, _ = get_active_backend()
    return [i * i, type(backend).__name__]


def middle(i: int, worker: bool = False) -> list[object]:
    if worker and i == 0:
        _no_new_locks()
    backend, _ = get_active_backend()
    leaves = Parallel(n_jobs=2)(delayed(leaf)(j) for j in range(3))
    return [type(backend).__name__, leaves]


def main() -> None:
    worker = sys.argv[1:] == ["worker"]
    if sys.argv[1:] == ["enolck"]:
        fcntl.flock = _no_flock
    elif not worker:
        tempfile.mkdtemp = _no_directory  # type: ignore[assignment]
    emit(Parallel(n_jobs=2)(delayed(middle)(i, worker) for i in range(2)))


if __name__ == "__main__":
    main()
