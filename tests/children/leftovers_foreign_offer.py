"""A socket of another user posing as an offer never receives the tree's key.

Run as root: a forked child becomes ``nobody`` and listens on an abstract
address, as an offer does, and reports every byte it receives; this process
connects to it as a helper would (:func:`nest_joblib._private.sharing._connect`).
"""

from __future__ import annotations

import os
import secrets
import socket

from children.common import emit

NOBODY = 65534


def listen_as_nobody(address: str, ready_w: int, heard_w: int) -> None:
    """In the forked child: bind ``address`` as ``nobody``, then report what arrives."""
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(address)
        sock.listen()
        os.write(ready_w, b"1")
        conn, _ = sock.accept()
        with conn:
            conn.settimeout(10)
            heard = b""
            try:
                while chunk := conn.recv(4096):
                    heard += chunk
            except OSError:
                pass
    os.write(heard_w, str(len(heard)).encode())


def main() -> None:
    from nest_joblib._private.sharing import _connect

    address = f"\0nest-joblib-test-{secrets.token_hex(8)}"
    ready_r, ready_w = os.pipe()
    heard_r, heard_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            listen_as_nobody(address, ready_w, heard_w)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(heard_w)
    assert os.read(ready_r, 1) == b"1"
    try:
        conn = _connect(address, secrets.token_bytes(32))
    except Exception as exc:
        refused = type(exc).__name__
    else:
        conn.close()
        refused = ""
    heard = int(os.read(heard_r, 32) or b"-1")
    os.waitpid(pid, 0)
    emit({"refused": refused, "bytes_heard": heard})


if __name__ == "__main__":
    main()
