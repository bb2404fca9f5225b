"""This process's own state, in one registry that a forked child resets in one place;
and its end with the process it serves.

Everything nest-joblib keeps for the life of a process (the budgets it knows
and the slots it holds, the directories it made, the lanes it started, the
stand-by calls it serves, its running nested calls, the threads the wait
watcher follows) is an *entry* here, made on first use by the module that
owns it (:func:`entry`). A child made with ``os.fork()`` inherits a copy of
all of it, parts of which are not its own (locks held by its parent, threads
that do not exist in it, its parent's lanes): right after the fork, each
entry's ``after_fork()`` says what the child keeps of it (a new object), or
the entry is dropped and made afresh when the child first needs it.
"""

from __future__ import annotations

import os
import select
import threading
import time
import weakref
from typing import Any, Callable, Generic, TypeVar

_T = TypeVar("_T")

_entries: dict[str, Any] = {}
_lock = threading.Lock()
#: The trace this process records into (a ``.trace.Recorder``), or None: tracing
#: is off, and every hook of it costs one look at this global.
tracing: Any = None


def entry(name: str, make: Callable[[], _T]) -> _T:
    """This process's entry ``name``, made by ``make()`` the first time."""
    try:
        return _entries[name]  # type: ignore[no-any-return]
    except KeyError:
        pass
    with _lock:
        if name not in _entries:
            _entries[name] = make()
        return _entries[name]  # type: ignore[no-any-return]


class Live(Generic[_T]):
    """The live objects of one kind in this process (an entry's value), from any thread.

    Iterating a ``WeakSet`` while another thread adds to it raises "Set
    changed size during iteration"; an object collected meanwhile is no
    change (the set defers that removal). So every access takes one lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: weakref.WeakSet[_T] = weakref.WeakSet()

    def add(self, item: _T) -> None:
        with self._lock:
            self._items.add(item)

    def discard(self, item: _T) -> None:
        with self._lock:
            self._items.discard(item)

    def now(self) -> list[_T]:
        with self._lock:
            return list(self._items)


def _after_fork_in_child() -> None:
    global _lock, tracing
    _lock = threading.Lock()  # its holder, if any, is a thread of the parent
    tracing = None  # the parent's part is the parent's: traced again once sent work
    kept = {}
    for name, value in _entries.items():
        after_fork = getattr(value, "after_fork", None)
        child = None if after_fork is None else after_fork()
        if child is not None:
            kept[name] = child
    _entries.clear()
    _entries.update(kept)
    if PARENT_VARIABLE in os.environ:  # the workers this child starts are its own
        os.environ[PARENT_VARIABLE] = str(os.getpid())


#: Where the process has no pidfd (not Linux): how often it looks for its parent.
_PARENT_POLL = 0.2
#: Set by every process that patches joblib to its pid, and so inherited by the loky
#: workers it starts: a worker reads who started it even if that process is gone by
#: the time the worker imports joblib (``os.getppid()`` then names init).
PARENT_VARIABLE = "_NEST_JOBLIB_PARENT"


def patched(loky_worker: bool) -> None:
    """joblib was just patched here: name this process as its workers' parent, and
    if it is a loky worker itself, end it with the process that started it."""
    inherited = os.environ.get(PARENT_VARIABLE, "")
    os.environ[PARENT_VARIABLE] = str(os.getpid())
    if loky_worker and hasattr(os, "pidfd_open"):  # elsewhere it would poll: left as loky is
        exit_with_parent(int(inherited) if inherited.isdigit() else os.getppid())


def exit_with_parent(parent: int) -> None:
    """End this process as soon as ``parent``, the process it serves, is gone.

    For lanes, and on Linux for loky workers of any pool. When joblib aborts a call,
    loky kills that pool's workers and their descendants; a worker that one
    of them was starting at that moment is missed, and lives on idle (loky's
    workers hold both ends of their call queue, so they see no end of file)
    until loky's idle timeout of 300 s, keeping the root's output pipes open;
    worse, a lane whose task still runs would compute on a token that its
    dead parent no longer holds. On Linux a thread waits on a pidfd of the
    parent, which the kernel makes readable when it exits; elsewhere it looks
    every 0.2 s. (``PR_SET_PDEATHSIG`` follows the thread that started the
    process, not the process, so it cannot serve here.) Idempotent.
    """
    entry("parent-watch", lambda: _watch(parent))


def _watch(parent: int) -> threading.Thread:
    if os.getppid() != parent:
        if not alive(parent):  # gone before we could watch it
            os._exit(1)
        parent = os.getppid()  # not ours after all: watch the one we have
    try:
        pidfd = os.pidfd_open(parent)  # type: ignore[attr-defined,unused-ignore]
    except (AttributeError, OSError):
        pidfd = None
    if os.getppid() != parent:  # gone while we looked
        os._exit(1)

    def watch() -> None:
        if pidfd is not None:
            select.select([pidfd], [], [])
        else:
            while os.getppid() == parent:
                time.sleep(_PARENT_POLL)
        os._exit(1)

    thread = threading.Thread(target=watch, name="nest-joblib-parent-watch", daemon=True)
    thread.start()
    return thread


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's: it exists
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
