"""This process's own state, in one registry that a forked child resets in one place.

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
import threading
from typing import Any, Callable, TypeVar

_T = TypeVar("_T")

_entries: dict[str, Any] = {}
_lock = threading.Lock()


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


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # its holder, if any, is a thread of the parent
    kept = {}
    for name, value in _entries.items():
        after_fork = getattr(value, "after_fork", None)
        child = None if after_fork is None else after_fork()
        if child is not None:
            kept[name] = child
    _entries.clear()
    _entries.update(kept)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
