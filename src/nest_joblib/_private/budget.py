"""The CPU budget: a fixed number of tokens shared by a whole process tree.

Like the GNU make jobserver, but crash-safe: each token is a slot file in a
directory that the root process creates, held with ``fcntl.flock``. The
kernel drops the lock when its holder dies, so a killed process never shrinks
the budget.

A token is held by the process that *sends* work to another process (a
top-level batch, a stand-by batch, a lane's task), for as long as that work
runs there; the process that runs it runs on a *paid* token, the CPU its
sender pays for. So a token never changes hands between processes, and no CPU
looks free while a worker starts up or between two of its batches. Inside a
process, the thread that runs a task holds its token (:func:`held`), and lends
it to a nested call while it waits for it (see :mod:`.nested`).

This is the bottom layer of the budget: slots and tokens, no policy.

Where ``fcntl`` is missing (Windows), :class:`StaticBudget` stands in: it
never has a free token, so nested calls run in their caller, as plain joblib
would run them, and nothing is oversubscribed.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import threading
import time
from collections.abc import Iterator
from typing import NamedTuple

from nest_joblib._warnings import warn

from . import directory, process

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("nest_joblib")

_POLL_MIN = 0.001
_POLL_MAX = 0.02


def backoff(first: float = _POLL_MIN, most: float = _POLL_MAX) -> Iterator[float]:
    """Delays between two looks at something another process changes: doubling, capped."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, most)


class BudgetRef(NamedTuple):
    """What travels to worker processes: where the slots are, how many, and the
    tree's key (work sharing admits only processes that have it, see .sharing)."""

    path: str
    size: int
    key: bytes = b""


class TokenReleased(RuntimeError):
    """A token was used after it was given back: a bug of nest-joblib's, never ignored."""


class Token:
    """A CPU of the budget: one held slot, or (``slot`` None) one that the sender pays for.

    A held slot is given back with :meth:`release`, exactly once; releasing
    it again, or running on it afterwards (:class:`Holding`), raises
    :class:`TokenReleased`. A paid token is never released here: its slot is
    held by the process that sent the work.
    """

    __slots__ = ("_budget", "_released", "slot")

    def __init__(self, budget: Budget | None = None, slot: int | None = None) -> None:
        self._budget = budget
        self.slot = slot
        self._released = False

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        if self._released or self._budget is None or self.slot is None:
            raise TokenReleased(f"{self!r} cannot be released: released already, or paid")
        self._released = True
        self._budget._release(self.slot)

    def __repr__(self) -> str:
        what = "paid" if self.slot is None else f"slot {self.slot}"
        return f"<Token {what}{' (released)' if self._released else ''}>"


def paid() -> Token:
    """The token of work that another process sent here, and holds a slot for."""
    return Token()


class Budget:
    """The slots of one budget, as seen from this process."""

    #: True for the stand-in without ``fcntl``: no tokens at all.
    static = False

    def __init__(self, ref: BudgetRef) -> None:
        self.ref = ref
        #: Why the budget's files cannot be locked in this process, once seen.
        self.broken: str | None = None
        self._lock = threading.Lock()
        # Descriptors of the slot files, a bounded number open at once whatever
        # the budget's size (a held slot's stays open: closing it drops the lock).
        self._fds = _Files(ref.path, "slot")
        # flock belongs to an open file description, so this process must
        # itself keep two of its threads off the same slot.
        self._held: set[int] = set()

    @property
    def size(self) -> int:
        return self.ref.size

    def try_acquire(self) -> Token | None:
        """A free token, or ``None`` at once if every slot is held."""
        size = self.ref.size
        start = random.randrange(size)
        for i in range(size):
            token = self._try_slot((start + i) % size)
            if token is not None or self.broken is not None:
                return token
        return None

    def held_slots(self) -> list[int]:
        with self._lock:
            return sorted(self._held)

    def _break(self, exc: OSError) -> None:
        """The budget's files cannot be locked here (not merely held elsewhere)."""
        if self.broken is None:
            self.broken = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, FileNotFoundError) and not os.path.isdir(self.ref.path):
                # The tree is over: its root removed the directory as it exited
                # (a daemon thread's call that runs on meanwhile), or it died.
                logger.debug("the CPU budget's directory is gone: %s", self.broken)
                return
            warn(
                f"cannot lock the CPU budget's files ({self.broken}); this process runs "
                "its tasks without tokens, and its nested calls in their caller"
            )

    def _try_slot(self, slot: int) -> Token | None:
        with self._lock:
            if slot in self._held or self.broken is not None:
                return None
            try:
                if not _lock(self._fds.get(slot)):
                    return None
            except OSError as exc:
                self._break(exc)
                return None
            self._held.add(slot)
            self._fds.pin(slot)
            if process.tracing is not None:  # stamped once the lock is ours
                process.tracing.token(slot, 1)
            return Token(self, slot)

    def _release(self, slot: int) -> None:
        with self._lock:
            if slot in self._held:
                if process.tracing is not None:  # stamped while the lock is still ours
                    process.tracing.token(slot, -1)
                fcntl.flock(self._fds.get(slot), fcntl.LOCK_UN)
                self._held.discard(slot)
                self._fds.unpin(slot)

    def forget(self) -> None:
        """In a forked child: close the copies of the parent's descriptors.

        The parent's locks stay the parent's: they belong to open file
        descriptions that the parent still has open.
        """
        self._fds.close_all()


class _Files:
    """Descriptors of ``<kind>-<slot>`` files in a budget directory, opened on demand.

    At most :data:`_OPEN` stay open besides the pinned ones (whose lock this
    process holds: closing them would drop it), so a budget of any size costs
    a bounded number of descriptors per process.
    """

    def __init__(self, directory: str, kind: str) -> None:
        self._prefix = os.path.join(directory, f"{kind}-")
        self._open: dict[int, int] = {}  # slot -> fd, least recently used first
        self._pinned: set[int] = set()

    def get(self, slot: int) -> int:
        fd = self._open.pop(slot, None)
        if fd is None:
            fd = os.open(f"{self._prefix}{slot}", os.O_RDWR | os.O_CREAT, 0o600)
            unpinned = [s for s in self._open if s not in self._pinned]
            for old in unpinned[: max(0, len(unpinned) + 1 - _OPEN)]:
                os.close(self._open.pop(old))
        self._open[slot] = fd
        return fd

    def pin(self, slot: int) -> None:
        self._pinned.add(slot)

    def unpin(self, slot: int) -> None:
        self._pinned.discard(slot)

    def close_all(self) -> None:
        for fd in self._open.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._open.clear()
        self._pinned.clear()


#: Descriptors a :class:`_Files` keeps open besides the pinned ones.
_OPEN = 16


def _lock(fd: int) -> bool:
    """Lock ``fd`` if no one else holds it: whether it is ours now.

    Only ``EWOULDBLOCK``/``EAGAIN`` means "held elsewhere"; any other error
    (``ENOLCK`` on NFS without lockd...) means "cannot lock here", raised.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class StaticBudget(Budget):
    """The fallback without ``fcntl``: no token is ever free for a new worker."""

    static = True

    def try_acquire(self) -> Token | None:
        return None


class _Tree:
    """The budgets this process knows: the tree it is the root of, or the one it was given.

    An entry of :mod:`.process`: a forked child keeps the tree it was given
    (a nested call in it takes its tokens from the same budget), not its
    parent's open descriptors or held slots; a root's child is a root of its
    own, as the parent's directory goes when the parent exits.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.budgets: dict[BudgetRef, Budget] = {}
        self.own: BudgetRef | None = None
        #: Why no budget can be made in this process, once a call found out.
        self.unavailable: str | None = None

    def after_fork(self) -> _Tree:
        for budget in self.budgets.values():
            budget.forget()
        child = _Tree()
        if self.own is None:
            child.budgets = {ref: _view(ref) for ref in self.budgets}
        return child


def _tree() -> _Tree:
    return process.entry("budget tree", _Tree)


def _view(ref: BudgetRef) -> Budget:
    return Budget(ref) if fcntl is not None else StaticBudget(ref)


def unavailable() -> str | None:
    """Why no budget can be made in this process, once a call found out (else ``None``)."""
    return _tree().unavailable


def own_ref() -> BudgetRef | None:
    """The budget of the tree rooted in this process, if it made one."""
    return _tree().own


def given_ref() -> BudgetRef | None:
    """The budget of the tree this process is a worker of (given by its parent), if any."""
    tree = _tree()
    if tree.own is not None:
        return None
    with tree.lock:
        return next(iter(tree.budgets), None)


def tree_ref() -> BudgetRef | None:
    """The budget of the tree this process belongs to: its own, or the one it was given."""
    own = own_ref()
    return own if own is not None else given_ref()


def held_slots() -> list[int]:
    """The slots whose token this process holds (``flock``), in every budget it knows."""
    tree = _tree()
    with tree.lock:
        budgets = list(tree.budgets.values())
    return sorted(slot for b in budgets for slot in b.held_slots())


def budget_for(ref: BudgetRef) -> Budget:
    """This process's view of the budget ``ref`` (one per process)."""
    tree = _tree()
    with tree.lock:
        budget = tree.budgets.get(ref)
        if budget is None:
            budget = tree.budgets[ref] = _view(ref)
        return budget


class BudgetUnavailable(OSError):
    """No budget can be made here: the temporary directory or ``flock`` fails."""


def root_budget(size: int) -> BudgetRef:
    """The budget of the tree rooted in this process, made on first use.

    Raises :class:`BudgetUnavailable` when its directory cannot be made or
    locked (an unwritable temporary directory, a file system without
    ``flock``), and says why from then on (:func:`unavailable`). The
    directory is made without holding the tree's lock: making it reaps stale
    ones, and a thread that forks meanwhile must not leave its child a lock
    that no thread of the child will release.
    """
    tree = _tree()
    own = tree.own
    if own is not None and own.size == size:
        return own
    if fcntl is None:
        made = BudgetRef("", size)
    else:
        try:
            path = directory.make(size)
        except OSError as exc:
            tree.unavailable = f"{type(exc).__name__}: {exc}"
            raise BudgetUnavailable(exc.errno, tree.unavailable) from exc
        made = BudgetRef(path, size, secrets.token_bytes(32))
    with tree.lock:
        if tree.own is None or tree.own.size != size:
            tree.own = made
            logger.debug("CPU budget of %d tokens in %s", size, made.path)
        own = tree.own
    if own is not made and made.path:  # another thread was quicker: ours is not needed
        directory.discard(made.path)
    return own


class _Holders:
    """The token each thread of this process runs its task on (an entry of :mod:`.process`)."""

    def __init__(self) -> None:
        self.local = threading.local()
        #: Thread ident -> (native id, CPU clock id or None), for the threads that hold a
        #: token (see .waits). The clock is made by the thread itself, while it surely
        #: lives: made by another thread for an ident, it may name one that has exited.
        self.threads: dict[int, tuple[int, int | None]] = {}


def _holders() -> _Holders:
    return process.entry("token holders", _Holders)


def held() -> Token | None:
    """The token of the task running in this thread, if any."""
    return getattr(_holders().local, "token", None)


def set_held(token: Token | None) -> None:
    if token is not None and token.released:
        raise TokenReleased(f"{token!r} was given back: no task runs on it")
    holders = _holders()
    holders.local.token = token
    if token is None:
        holders.threads.pop(threading.get_ident(), None)
    else:
        holders.threads[threading.get_ident()] = (threading.get_native_id(), _own_clock())


def _own_clock() -> int | None:
    """The calling thread's CPU clock id (None where threads have none), made once."""
    local = _holders().local
    if not hasattr(local, "clock"):
        make = getattr(time, "pthread_getcpuclockid", None)
        local.clock = None if make is None else make(threading.get_ident())
    clock: int | None = local.clock
    return clock


def holders() -> dict[int, tuple[int, int | None]]:
    """The threads of this process that hold a token: ident -> (native id, CPU clock id)."""
    return dict(_holders().threads)


class Holding:
    """Run code in this thread holding ``token``: ``with Holding(token):``.

    The thread's previous token is restored afterwards. A released token
    raises :class:`TokenReleased`: no task may run on a CPU given back.
    """

    __slots__ = ("_outer", "token")

    def __init__(self, token: Token | None) -> None:
        self.token = token
        self._outer: Token | None = None

    def __enter__(self) -> Holding:
        self._outer = held()
        set_held(self.token)
        return self

    def __exit__(self, *exc: object) -> None:
        set_held(self._outer)
