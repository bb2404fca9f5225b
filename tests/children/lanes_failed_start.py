"""A lane whose start fails after loky spawned its process.

On Python 3.13 a worker's ``threading._shutdown`` runs before any
multiprocessing finalizer, and refuses new atexit hooks from then on. A
thread that starts a lane in that moment gets its process spawned by loky,
then the submit fails, as loky's exit hook is refused; were that process
left starting, it would read its semaphores after the exit finalizers
unlinked them, and print loky's traceback. Here threading refuses at once.
Reports the error that ``start`` raised and the processes left below this
one (loky's resource tracker aside).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import psutil

from children.common import emit


def refuse(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("can't register atexit after shutdown")


def main() -> None:
    from nest_joblib._private.scheduling.lanes import lanes

    threading._register_atexit = refuse  # type: ignore[attr-defined]
    error = None
    try:
        lanes().start(dict(os.environ))
    except RuntimeError as exc:
        error = str(exc)
    left = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if not any("resource_tracker" in part for part in proc.cmdline()):
                left.append(proc.pid)
        except psutil.Error:  # gone meanwhile
            pass
    emit({"error": error, "left": left})


if __name__ == "__main__":
    main()
