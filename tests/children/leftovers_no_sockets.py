"""Unix sockets cannot be made in the outer tasks' processes: no work sharing, one warning each."""

from __future__ import annotations

import errno
import socket
import tempfile

from joblib import Parallel, delayed

from children.common import emit, meet


def leaf(i: int) -> int:
    return i * i


def _no_sockets() -> None:
    """From now on in this process, a new socket fails (made here: nothing travels by pickle)."""

    class NoSocket(socket.socket):
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")

    socket.socket = NoSocket  # type: ignore[misc]


def outer(barrier: str) -> list[int]:
    meet(barrier, 2)  # both CPUs held: the nested call runs inline, and would offer its tasks
    _no_sockets()
    results: list[int] = Parallel(n_jobs=2)(delayed(leaf)(i) for i in range(4))
    return results


def main() -> None:
    with tempfile.TemporaryDirectory() as barrier:
        emit(Parallel(n_jobs=2)(delayed(outer)(barrier) for _ in range(2)))


if __name__ == "__main__":
    main()
