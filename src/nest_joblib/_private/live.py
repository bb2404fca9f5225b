"""The live state of the budget, as threadpoolctl shows its pools.

:func:`info` describes the calling process (``nest_joblib.info()``);
:func:`trees` lists the running process trees of this user that share a
budget (``nest-joblib status``). Both only look: they make no budget
directory and take no token for longer than a probe.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from . import budget as budget_mod
from . import directory
from .state import settings, state

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def _source() -> tuple[int | None, str]:
    """The budget's size in this process, and where it comes from (or why there is none)."""
    if not state.patched:
        return None, "none: joblib is not patched in this process"
    why = budget_mod.unavailable()
    if why is not None:
        return None, f"unavailable: {why}"
    cpus = settings().cpus
    if cpus == 0:
        return None, "off: NEST_JOBLIB_CPUS=off (naive nesting)"
    if cpus is not None:
        return cpus, "NEST_JOBLIB_CPUS"
    from joblib import cpu_count

    return int(cpu_count()), "joblib.cpu_count()"


def info() -> dict[str, Any]:
    """The budget as this process sees it: a JSON-serialisable dict (see the README)."""
    size, source = _source()
    ref = budget_mod.tree_ref()
    if ref is not None:  # what the tree has, which a worker learns from its parent
        size = ref.size
        source = "the tree's root" if budget_mod.own_ref() is None else source
    held = budget_mod.held_slots()
    path = ref.path if ref is not None and ref.path else None
    return {
        "pid": os.getpid(),
        "budget": size,
        "source": source,
        "role": None if ref is None else ("root" if budget_mod.own_ref() == ref else "worker"),
        "directory": path,
        "held": len(held),
        "held_slots": held,
        "free": None if path is None or ref is None else len(free_slots(path, ref.size)),
        "placed_elsewhere": _placed_elsewhere(),
    }


def _placed_elsewhere() -> int:
    scheduler = sys.modules.get("nest_joblib._private.scheduling")
    return 0 if scheduler is None else int(scheduler.placed_elsewhere())


def free_slots(path: str, size: int) -> list[int]:
    """The slots of the budget in ``path`` that no process holds (each probed for an instant)."""
    if fcntl is None:
        return []
    free = []
    for slot in range(size):
        try:
            fd = os.open(os.path.join(path, f"slot-{slot}"), os.O_RDWR)
        except FileNotFoundError:  # never used: free
            free.append(slot)
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue
        else:
            free.append(slot)
        finally:
            os.close(fd)  # drops the probe's lock
    return free


def _lock_holders() -> dict[tuple[int, int], int] | None:
    """(device, inode) -> pid of each ``flock`` holder, from Linux's ``/proc/locks``."""
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    holders: dict[tuple[int, int], int] = {}
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":  # "->" marks a waiter, not a holder
            continue
        try:
            major, minor, inode = fields[5].split(":")
            device = os.makedev(int(major, 16), int(minor, 16))
            holders[device, int(inode)] = int(fields[4])
        except ValueError:
            continue
    return holders


def trees(root: str | None = None) -> list[dict[str, Any]]:
    """The budget directories of this user, each with its root and who holds which token."""
    holders = _lock_holders()
    found = []
    for path in directory.listing(root):
        described = directory.describe(path)
        pid, size = described if described is not None else (None, None)
        tree: dict[str, Any] = {
            "directory": path,
            "root_pid": pid,
            "budget": size,
            "alive": _root_alive(path),
            "free": None if size is None else len(free_slots(path, size)),
            "holders": None,
        }
        if holders is not None and size is not None:
            tree["holders"] = _slot_holders(path, size, holders)
        found.append(tree)
    return found


def _root_alive(path: str) -> bool:
    """Whether the root of the tree in ``path`` still holds its ``root.lock``."""
    if fcntl is None:
        return True
    try:
        fd = os.open(os.path.join(path, directory.LOCK), os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _slot_holders(path: str, size: int, holders: dict[tuple[int, int], int]) -> dict[str, int]:
    """Slot -> pid of the process that holds it (JSON keys are strings)."""
    held = {}
    for slot in range(size):
        try:
            info = os.stat(os.path.join(path, f"slot-{slot}"))
        except OSError:
            continue
        pid = holders.get((info.st_dev, info.st_ino))
        if pid is not None:
            held[str(slot)] = pid
    return held
