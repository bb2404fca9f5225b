"""Work sharing: idle top-level workers run tasks that nested calls elsewhere have queued.

A nested call *offers* its queued tasks on a Unix socket in the budget's
directory. Workers of the top-level pool that have nothing to do *help*, in a
stand-by batch that the root sends them and holds a token for (see
:mod:`.standby`): they connect to an offer and run its queued tasks one at a
time, so a CPU is used at once by a process that is already warm, where a
lane would first spend about half a second of CPU starting up.

Nothing is lost: a task that does not reach its helper goes back to the head
of its call's queue; one whose helper dies running it fails, as with
joblib's own workers.

Nothing is let in: on Linux an offer listens in the abstract socket namespace
(no path, so no length limit and nothing left on disk), named by a marker file
in the budget directory (mode 0700); elsewhere the socket is the marker. A
connection's first message must be the budget's key, which travels only
inside the pickled budget reference, and on Linux the peer must run as this
user, both ways: an offer serves only a peer of this user that sends the key,
and a helper sends the key only to an offer of this user. A process without
the key gets and gives nothing. (The same user can still read a process's
memory: the key keeps out other programs of that user that do not read it,
not a debugger.)

The protocol has as few messages as it can: every system call of the offer's
thread waits for the GIL beside the caller's inline task, up to the switch
interval (5 ms) each, while the helper's CPU stands idle. So the key is sent
as it is rather than proved by a challenge (between two processes of this
user on a Unix socket nobody else can read it; the challenge of
:mod:`multiprocessing.connection` takes four messages), it is also the
helper's first ask for a task, and each outcome asks for the next one in its
first byte. A helper's first task came about 50 ms after it connected with
the challenge and a separate ask; with this, about 20 ms.
"""

from __future__ import annotations

import contextlib
import hmac
import itertools
import logging
import os
import pickle
import secrets
import socket
import struct
import sys
import threading
from collections.abc import Callable
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection
from typing import Any

from . import contract
from .arrays import load
from .budget import Budget

logger = logging.getLogger("nest_joblib")

_PREFIX = "offer-"
_ids = itertools.count()
#: Linux's abstract socket namespace: an address that is a name, not a path.
_ABSTRACT = sys.platform.startswith("linux")
#: How long a connecting process may take to send the key.
_HANDSHAKE = 5.0
#: The budget's key is 32 bytes: a longer first message is not it.
_KEY_MAX = 256
#: The first byte of an outcome: whether the helper asks for another task.
_MORE, _LAST = b"+", b"."


def _peer_is_us(sock: socket.socket) -> bool:
    """Whether the peer of a Unix socket runs as this user (true where unknown)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return True
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, 12))
    return bool(uid == os.getuid())


class Offer:
    """The queued tasks of one call, served to helpers on a Unix socket.

    ``take()`` gives the next task to hand out and its pickled form (see
    :mod:`.arrays`), or ``None``; ``done(item, ok, value)`` takes its outcome,
    ``lost(item, ran)`` hears that its helper went away, before the task reached it
    or (``ran``) while running it.
    """

    def __init__(
        self,
        directory: str,
        key: bytes,
        level: int,
        take: Callable[[], tuple[Any, bytes] | None],
        done: Callable[[Any, bool, Any], None],
        lost: Callable[[Any, bool], None],
    ) -> None:
        self._take, self._done, self._lost = take, done, lost
        self._key = key
        # Deeper calls first: their tasks are shorter, so helpers balance better there.
        name = f"{_PREFIX}{99 - min(level, 99):02d}-{os.getpid()}-{next(_ids)}"
        self.path = os.path.join(directory, name)
        self._closed = False
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if _ABSTRACT:
                address = f"nest-joblib-{secrets.token_hex(16)}"
                self._sock.bind("\0" + address)
                self._sock.listen()
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as marker:
                    marker.write(address)
            else:
                self._sock.bind(self.path)
                self._sock.listen()
        except OSError:
            self._sock.close()
            raise
        try:
            threading.Thread(target=self._accept, name="nest-joblib-offer", daemon=True).start()
        except BaseException:  # no thread can start: no marker may name a socket nobody serves
            self.close()
            self._sock.close()
            raise

    def close(self) -> None:
        self._closed = True
        try:
            os.unlink(self.path)
        except OSError:
            pass
        try:  # wakes the accepting thread, which then ends
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _accept(self) -> None:
        try:
            while not self._closed:
                try:
                    conn, _ = self._sock.accept()
                except OSError:
                    return
                threading.Thread(
                    target=self._admit, args=(conn,), name="nest-joblib-serve", daemon=True
                ).start()
        finally:
            self._sock.close()

    def _admit(self, sock: socket.socket) -> None:
        """Serve a connection from the tree: this user, with the budget's key."""
        try:
            if not _peer_is_us(sock):
                logger.debug("refused a connection to an offer from another user")
                sock.close()
                return
            conn = Connection(sock.detach())
        except OSError:
            sock.close()
            return
        # The key: the helper's first message, and its first ask. (A program of
        # this user that sends part of a message would hold this thread; such a
        # program can do worse, see above.)
        try:
            if not conn.poll(_HANDSHAKE):
                raise AuthenticationError("no key")
            if not hmac.compare_digest(conn.recv_bytes(_KEY_MAX), self._key):
                raise AuthenticationError("not the budget's key")
        except (AuthenticationError, OSError, EOFError) as exc:
            logger.debug("refused a connection to an offer without the key: %r", exc)
            conn.close()
            return
        self._serve(conn)

    def _serve(self, conn: Connection) -> None:
        in_hand: list[Any] = []  # the task handed out and not answered yet
        try:
            self._serve_tasks(conn, in_hand)
        except BaseException as exc:  # never lose a task to an error of ours
            logger.debug("an offer's connection failed: %r", exc)
            for item in in_hand:
                self._lost(item, False)

    def _serve_tasks(self, conn: Connection, in_hand: list[Any]) -> None:
        with conn:
            while True:  # the helper has asked for a task
                taken = None if self._closed else self._take()
                if taken is None:
                    _send(conn, b"")
                    return
                item, task = taken
                in_hand.append(item)
                try:
                    conn.send_bytes(task)
                except OSError:  # the helper went away: the task never reached it
                    in_hand.clear()
                    self._lost(item, False)
                    return
                try:
                    data = conn.recv_bytes()
                except (OSError, EOFError):  # the helper died running it
                    in_hand.clear()
                    self._lost(item, True)
                    return
                try:
                    ok, value = pickle.loads(memoryview(data)[1:])
                except Exception as exc:
                    ok, value = False, exc
                in_hand.clear()
                self._done(item, ok, value)
                if data[:1] != _MORE:
                    return


def _connect(address: str, key: bytes) -> Connection:
    """A connection to the offer at ``address``, admitted with ``key``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(address)
        if not _peer_is_us(sock):  # never the key to another user's socket
            raise AuthenticationError("an offer of another user")
        conn = Connection(sock.detach())
    except BaseException:
        sock.close()
        raise
    try:
        conn.send_bytes(key)
    except BaseException:
        conn.close()
        raise
    return conn


def _send(conn: Connection, data: bytes) -> None:
    try:
        conn.send_bytes(data)
    except OSError:
        pass


def _outcome(ok: bool, value: Any) -> bytes:
    if not ok:
        value = contract.picklable_exception(value)
    try:
        return contract.dumps((ok, value))
    except BaseException as exc:  # as loky does: say so rather than lose the task
        return contract.dumps((False, RuntimeError(f"the result could not be pickled: {exc!r}")))


def _offers(directory: str) -> list[str]:
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [os.path.join(directory, n) for n in sorted(names) if n.startswith(_PREFIX)]


def _address(marker: str) -> str | None:
    """The socket address an offer's marker names (``None``: gone, or not written yet)."""
    if not _ABSTRACT:
        return marker
    try:
        with open(marker) as f:
            name = f.read()
    except OSError:
        return None
    return "\0" + name if name else None


def _remove_refused(marker: str, address: str) -> None:
    """Remove the marker of an offer whose socket refused a connection: nobody serves it.

    A call whose process was killed (joblib aborting the top-level call kills
    its workers) never closes its offer; its marker would stay for the life
    of the tree, and every helper would try it every 5 ms. On Linux a refusal
    proves the offer gone: its socket listens before its marker is written
    (an empty marker, not written yet, names no address and is never tried),
    and a closing offer removes its marker before it stops listening.
    Elsewhere the marker is the socket, bound before it listens: a refusal
    may come from an offer about to listen, so it stays. The marker is read
    again first: one that names another socket now is another offer's.
    """
    if _ABSTRACT and _address(marker) == address:
        with contextlib.suppress(OSError):
            os.unlink(marker)


def help_once(budget: Budget, stop: Callable[[], bool]) -> int:
    """One pass over the offers, running their tasks here until ``stop()``.

    The tasks run in this thread, on its token (a stand-by batch's, which
    the root pays for). Returns how many ran.
    """
    ran = 0
    for marker in _offers(budget.ref.path):
        if stop():
            break
        address = _address(marker)
        if address is None:
            continue
        try:
            conn = _connect(address, budget.ref.key)  # asks for a first task
        except ConnectionRefusedError:  # the call is over, or its process is gone
            _remove_refused(marker, address)
            continue
        except (OSError, AuthenticationError):  # the call is over
            continue
        with conn:
            more = True
            while more:
                try:
                    task = conn.recv_bytes()
                except (OSError, EOFError):
                    break
                if not task:
                    break
                outcome = _run(task)
                ran += 1
                more = not stop()
                try:  # the outcome, and whether this helper asks for another task
                    conn.send_bytes((_MORE if more else _LAST) + outcome)
                except OSError:  # the call was aborted meanwhile
                    break
    return ran


def _run(task: bytes) -> bytes:
    """Run one offered task: its outcome, pickled."""
    try:
        return _outcome(True, load(task)())
    except BaseException as exc:  # handed to the calling Parallel, as a lane would
        return _outcome(False, exc)
