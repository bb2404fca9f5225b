"""A task forks; the child makes a nested call of its own, then exits."""

from __future__ import annotations

import json
import os
import tempfile
import warnings

from joblib import Parallel, delayed

from children.common import emit, meet, spin


def leaf(i: int) -> list[int]:
    return [i, sum(spin() for _ in range(20)) > 0, os.getpid()]


def forked_call() -> object:
    """In a forked child: a nested call; its results come back through a pipe."""
    read, write = os.pipe()
    with warnings.catch_warnings():  # 3.12+: forking a process that has threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child
        try:
            os.close(read)
            results = Parallel(n_jobs=2)(delayed(leaf)(i) for i in range(4))
            out = json.dumps({"pid": os.getpid(), "results": results}).encode()
        except BaseException as exc:
            out = json.dumps({"error": repr(exc)}).encode()
        os.write(write, out)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        report = json.loads(pipe.read() or b"{}")
    _, status = os.waitpid(pid, 0)
    return {**report, "status": status, "parent": os.getpid()}


def outer(barrier: str) -> object:
    meet(barrier, 2)  # both outer tasks hold their CPU
    before = Parallel(n_jobs=2)(delayed(leaf)(i) for i in range(2))  # lanes, helpers in use
    return {"before": len(before), "forked": forked_call()}


def main() -> None:
    with tempfile.TemporaryDirectory() as barrier:
        emit(Parallel(n_jobs=2)(delayed(outer)(barrier) for _ in range(2)))


if __name__ == "__main__":
    main()
