"""The budget directory: made by a root, held for its life, reaped once stale.

A root makes its directory (``nest-joblib-*`` in the temporary directory)
when its first call needs tokens, and locks ``root.lock`` in it for as long
as it lives. The kernel drops that lock when the root dies, however it dies
(SIGKILL, a default SIGTERM, ``os._exit``...), so a directory whose lock is
free belongs to no live tree: it is *stale*. Stale directories are removed by
the next root that makes a directory and by every root as it exits, so a run
leaves none of its own behind, even when one of its processes became a root
and was killed.

Only directories of this user are touched, never through a symbolic link; a
directory without ``root.lock`` (made by an older nest-joblib, or by a root
that is still setting it up) is stale only once it is a minute old.

Memory maps live in joblib's own folders
(``joblib_memmapping_folder_<pid>_<manager>_<context>``), which loky's
resource tracker removes when their tree ends; a tree killed whole, tracker
included, leaves them. A pid in such a name proves nothing (containers that
share ``/dev/shm`` or a temporary volume see each other's processes as gone),
so a folder is removed only when a record in a budget directory names it:
each process of a tree records, before joblib makes a folder for it, the
random id that will be in the folder's name (:func:`record_maps`), and the
directory takes the folders it records with it when it goes. A folder no
record names is never touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
import tempfile
import time
from multiprocessing import util

from . import process

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("nest_joblib")

PREFIX = "nest-joblib-"
LOCK = "root.lock"
#: A record of memory-map folders: ``maps-<pid>-<id>``, naming the folders
#: ``joblib_memmapping_folder_<pid>_<id>_*`` and ``..._<pid>_*_<id>``; it holds
#: the folders' root when that is no default place of joblib's.
MAPS = "maps-"
_RECORD = re.compile(r"maps-(\d+)-([0-9a-f]{32})\Z")
_FOLDER = re.compile(r"joblib_memmapping_folder_(\d+)_([0-9a-f]+)_([0-9a-f]+)\Z")
#: After multiprocessing's pool finalizers (15) and loky's queues (10), before
#: its semaphores (0): see :func:`_at_exit`.
EXIT_PRIORITY = 1
#: Age after which a directory without a root lock is stale.
_UNLOCKED_GRACE = 60.0


class _Made(dict[str, int]):
    """This process's directories -> the descriptor that holds their root lock.

    An entry of :mod:`.process`. A forked child closes its copies of the
    descriptors: the directories, and their locks, stay the parent's.
    """

    def after_fork(self) -> None:
        for fd in self.values():
            with contextlib.suppress(OSError):
                os.close(fd)


def _mine() -> _Made:
    return process.entry("budget directories", _Made)


def make(size: int) -> str:
    """A new budget directory of ``size`` tokens, held by this process until it exits."""
    reap()
    path = tempfile.mkdtemp(prefix=PREFIX)
    try:
        # Locked before it is called root.lock: a reaper never finds it free.
        making = os.path.join(path, f"{LOCK}.{os.getpid()}")
        fd = os.open(making, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ENOLCK, EINVAL...: no flock here
            # What `nest-joblib status` shows of the tree: its root, its size.
            os.write(fd, f"{os.getpid()} {size}\n".encode())
            os.rename(making, os.path.join(path, LOCK))
        except OSError:
            os.close(fd)
            raise
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
        raise
    mine = _mine()
    if not mine:
        util.Finalize(None, _at_exit, args=(os.getpid(),), exitpriority=EXIT_PRIORITY)
    mine[path] = fd
    return path


def discard(path: str) -> None:
    """Remove a directory this process made and does not need after all."""
    fd = _mine().pop(path, None)
    shutil.rmtree(path, ignore_errors=True)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def describe(path: str) -> tuple[int, int] | None:
    """The root's pid and the budget's size, as ``path``'s ``root.lock`` names them."""
    try:
        with open(os.path.join(path, LOCK), "rb") as f:
            pid, size = f.read(64).split()[:2]
        return int(pid), int(size)
    except (OSError, ValueError):
        return None


def listing(root: str | None = None) -> list[str]:
    """The budget directories of this user in ``root`` (the temporary directory by default)."""
    root = tempfile.gettempdir() if root is None else root
    try:
        names = sorted(n for n in os.listdir(root) if n.startswith(PREFIX))
    except OSError:
        return []
    paths = []
    for name in names:
        path = os.path.join(root, name)
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
            paths.append(path)
    return paths


def reap(root: str | None = None) -> list[str]:
    """Remove the stale budget directories of this user in ``root``; their paths."""
    root = tempfile.gettempdir() if root is None else root
    try:
        names = [n for n in os.listdir(root) if n.startswith(PREFIX)]
    except OSError:
        return []
    removed = []
    for name in names:
        path = os.path.join(root, name)
        if path in _mine():
            continue
        try:
            if _remove_if_stale(path):
                removed.append(path)
        except OSError as exc:  # another root reaped it meanwhile, or it is not ours
            logger.debug("left %s: %r", path, exc)
    if removed:
        logger.debug("removed %d stale directories", len(removed))
    return removed


def _remove_if_stale(path: str) -> bool:
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        return False
    try:
        fd = os.open(os.path.join(path, LOCK), os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        if time.time() - info.st_mtime < _UNLOCKED_GRACE:
            return False  # a root may be making it right now
        _remove(path)
        return True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its root is alive
        _remove(path)  # holding its lock: no root can revive it meanwhile
        return True
    finally:
        os.close(fd)


def _at_exit(pid: int) -> None:
    """The root's exit: its directories go, with the folders they record, then stale ones.

    A multiprocessing finalizer, not an ``atexit`` hook: those run before
    multiprocessing's finalizers (last in, first out), and this one must run
    after the pools' (:data:`EXIT_PRIORITY`), so that the listings and locks
    of the reaping do not widen the window of a pool's exit. By then joblib's
    own ``atexit`` hooks have removed the folders of its finished calls.
    """
    if os.getpid() != pid:  # a forked child that exits normally: not its directories
        return
    mine = _mine()
    for path, fd in list(mine.items()):
        _remove(path)
        with contextlib.suppress(OSError):
            os.close(fd)
    mine.clear()
    reap()


def record_maps(path: str, ident: str, root: str | None = None) -> str | None:
    """Record in budget directory ``path`` that memory-map folders named with ``ident`` are ours.

    ``ident`` is a random id (32 hex digits) that joblib puts in the name of
    the folders of this process (a manager's or a context's), and ``root``
    where they live when that is no default place. Written before anything
    is dumped into such a folder (before joblib makes it, where the id is
    known beforehand), so a tree killed while it uses one leaves none that
    its directory does not name. The record's path; ``None`` if it cannot be
    written (the folders are then joblib's alone, as in plain joblib).
    """
    record = os.path.join(path, f"{MAPS}{os.getpid()}-{ident}")
    root = root or os.environ.get("JOBLIB_TEMP_FOLDER") or ""
    try:
        fd = os.open(record, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, os.fsencode(root))
        finally:
            os.close(fd)
    except (OSError, ValueError) as exc:  # the tree is over (its directory gone)
        logger.debug("could not record memory-map folders in %s: %r", path, exc)
        return None
    return record


def forget_maps(record: str) -> None:
    """Remove a record whose folders are gone."""
    with contextlib.suppress(OSError):
        os.unlink(record)


def _remove(path: str) -> None:
    """Remove budget directory ``path`` (ours), and the memory-map folders it records."""
    with contextlib.suppress(OSError):
        _remove_recorded(path)
    shutil.rmtree(path, ignore_errors=True)


def _remove_recorded(path: str) -> list[str]:
    """The memory-map folders that ``path``'s records name, removed; their paths.

    Nothing here trusts what a record says: its name must be a record's, it
    must be a plain file of this user; a folder must match joblib's name with
    the recorded pid and id, be a directory (not a link) of this user, and lie
    in one of joblib's default places or in a recorded root that is a
    directory of this user.
    """
    ids: set[tuple[str, str]] = set()
    roots = dict.fromkeys(
        r for r in (tempfile.gettempdir(), os.environ.get("JOBLIB_TEMP_FOLDER"), "/dev/shm") if r
    )
    for name in os.listdir(path):
        match = _RECORD.match(name)
        if match is None:
            continue
        try:
            root = _read_record(os.path.join(path, name))
        except OSError as exc:  # a link (O_NOFOLLOW), or gone meanwhile
            logger.debug("left record %s: %r", name, exc)
            continue
        if root is None:
            continue
        ids.add((match.group(1), match.group(2)))
        if root and _own_root(root):
            roots[root] = None
    return _remove_folders(ids, list(roots)) if ids else []


def _read_record(record: str) -> str | None:
    """The root a record names (``""``: joblib's defaults); ``None`` if it is no record of ours."""
    fd = os.open(record, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            return None
        return os.fsdecode(os.read(fd, 4096))
    finally:
        os.close(fd)


def _own_root(root: str) -> bool:
    """Whether ``root`` is an absolute, plain path to a directory of this user (no link)."""
    if not os.path.isabs(root) or os.path.normpath(root) != root or "\0" in root:
        return False
    try:
        info = os.lstat(root)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()


def _remove_folders(ids: set[tuple[str, str]], roots: list[str]) -> list[str]:
    removed = []
    for root in roots:
        try:
            names = os.listdir(root)
        except OSError:
            continue
        for name in names:
            match = _FOLDER.match(name)
            if match is None:
                continue
            pid, first, second = match.groups()
            if (pid, first) not in ids and (pid, second) not in ids:
                continue
            folder = os.path.join(root, name)
            try:
                info = os.lstat(folder)
                if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
                    shutil.rmtree(folder)
                    removed.append(folder)
            except OSError as exc:  # its tracker removed it meanwhile
                logger.debug("left %s: %r", folder, exc)
    return removed
