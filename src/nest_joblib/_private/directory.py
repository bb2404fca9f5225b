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

The memory maps of nested calls live in joblib's own folders
(``joblib_memmapping_folder_<pid>_...``, see :mod:`.arrays`), which loky's
resource tracker removes when their tree ends; a tree killed whole, tracker
included, leaves them. So the same reaping removes those of this user in
joblib's default places (``JOBLIB_TEMP_FOLDER``, ``/dev/shm``, the temporary
directory) whose process is gone.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import shutil
import stat
import tempfile
import time

from . import process

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("nest_joblib")

PREFIX = "nest-joblib-"
LOCK = "root.lock"
#: joblib's memory-map folders, by the pid of the process that made them.
_MEMMAPS = re.compile(r"joblib_memmapping_folder_(\d+)_")
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
        atexit.register(_at_exit, os.getpid())
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
    removed += _reap_memmaps([root, os.environ.get("JOBLIB_TEMP_FOLDER"), "/dev/shm"])
    if removed:
        logger.debug("removed %d stale directories", len(removed))
    return removed


def _reap_memmaps(roots: list[str | None]) -> list[str]:
    """joblib's memory-map folders of this user whose process is gone."""
    removed = []
    for root in dict.fromkeys(r for r in roots if r):
        try:
            names = os.listdir(root)
        except OSError:
            continue
        for name in names:
            match = _MEMMAPS.match(name)
            if match is None or process.alive(int(match.group(1))):
                continue
            path = os.path.join(root, name)
            try:
                info = os.lstat(path)
                if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
                    shutil.rmtree(path)
                    removed.append(path)
            except OSError as exc:  # its tracker removed it meanwhile
                logger.debug("left %s: %r", path, exc)
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
        shutil.rmtree(path)
        return True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its root is alive
        shutil.rmtree(path)  # holding its lock: no root can revive it meanwhile
        return True
    finally:
        os.close(fd)


def _at_exit(pid: int) -> None:
    if os.getpid() != pid:  # a forked child that exits normally: not its directories
        return
    mine = _mine()
    for path, fd in list(mine.items()):
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.close(fd)
    mine.clear()
    reap()
