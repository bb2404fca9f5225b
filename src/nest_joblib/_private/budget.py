"""The CPU budget: a fixed number of tokens shared by a whole process tree.

Like the GNU make jobserver, but crash-safe: each token is a slot file in a
directory that the root process creates, held with ``fcntl.flock``. The
kernel drops the lock when its holder dies, so a killed worker never shrinks
the pool. A batch of tasks holds one token while it computes and lends it out
while it waits for a nested ``Parallel`` (see :mod:`.budgeted`).

Where ``fcntl`` is missing (Windows), :class:`StaticBudget` stands in: it
never has a free token, so nested calls run in their caller, as plain joblib
would run them, and nothing is oversubscribed.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import shutil
import tempfile
import threading
import time
from typing import Any, Callable, NamedTuple

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("nest_joblib")

_POLL_MIN = 0.001
_POLL_MAX = 0.02


class BudgetRef(NamedTuple):
    """What travels to worker processes: where the slots are, and how many."""

    path: str
    size: int


class Token:
    """One held slot; :meth:`release` gives it back (once)."""

    __slots__ = ("_budget", "slot")

    def __init__(self, budget: Budget, slot: int) -> None:
        self._budget = budget
        self.slot = slot

    def release(self) -> None:
        budget, self._budget = self._budget, None  # type: ignore[assignment]
        if budget is not None:
            budget._release(self.slot)


class Budget:
    """The slots of one budget, as seen from this process."""

    #: True for the stand-in without ``fcntl``: no tokens at all.
    static = False

    def __init__(self, ref: BudgetRef) -> None:
        self.ref = ref
        self._lock = threading.Lock()
        self._fds: dict[int, int] = {}
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
        with self._lock:
            for i in range(size):
                slot = (start + i) % size
                if slot in self._held:
                    continue
                fd = self._fd(slot)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue
                self._held.add(slot)
                return Token(self, slot)
        return None

    def acquire(self, give_up: Callable[[], bool] | None = None) -> Token | None:
        """Wait for a free token; ``None`` only if ``give_up()`` turns true."""
        delay = _POLL_MIN
        while True:
            token = self.try_acquire()
            if token is not None:
                return token
            if give_up is not None and give_up():
                return None
            time.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)

    def has_free(self) -> bool:
        token = self.try_acquire()
        if token is None:
            return False
        token.release()
        return True

    def _fd(self, slot: int) -> int:
        fd = self._fds.get(slot)
        if fd is None:
            fd = os.open(os.path.join(self.ref.path, f"slot-{slot}"), os.O_RDWR | os.O_CREAT, 0o600)
            self._fds[slot] = fd
        return fd

    def _release(self, slot: int) -> None:
        with self._lock:
            if slot in self._held:
                fcntl.flock(self._fds[slot], fcntl.LOCK_UN)
                self._held.discard(slot)

    def _forget(self) -> None:
        """In a forked child: the parent's locks are not ours to give back."""
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()
        self._held.clear()
        self._lock = threading.Lock()


class StaticBudget(Budget):
    """The fallback without ``fcntl``: no token is ever free for a new worker."""

    static = True

    def try_acquire(self) -> Token | None:
        return None

    def acquire(self, give_up: Callable[[], bool] | None = None) -> Token | None:
        return None


_budgets: dict[BudgetRef, Budget] = {}
_budgets_lock = threading.Lock()
_own: BudgetRef | None = None
_local = threading.local()


def supported() -> bool:
    return fcntl is not None


def budget_for(ref: BudgetRef) -> Budget:
    """This process's view of the budget ``ref`` (one per process)."""
    with _budgets_lock:
        budget = _budgets.get(ref)
        if budget is None:
            budget = Budget(ref) if fcntl is not None else StaticBudget(ref)
            _budgets[ref] = budget
        return budget


def root_budget(size: int) -> BudgetRef:
    """The budget of the tree rooted in this process, made on first use."""
    global _own
    with _budgets_lock:
        if _own is None or _own.size != size:
            if fcntl is None:
                _own = BudgetRef("", size)
            else:
                path = tempfile.mkdtemp(prefix="nest-joblib-")
                _own = BudgetRef(path, size)
                atexit.register(_remove, path, os.getpid())
                logger.debug("CPU budget of %d tokens in %s", size, path)
        return _own


def _remove(path: str, pid: int) -> None:
    if os.getpid() == pid:
        shutil.rmtree(path, ignore_errors=True)


def held() -> Token | None:
    """The token held by the batch running in this thread, if any."""
    return getattr(_local, "token", None)


def set_held(token: Token | None) -> None:
    _local.token = token


class TokenHeld:
    """A batch of tasks that holds a token of the budget while it runs.

    Picklable by reference, so it travels to worker processes with the batch.
    """

    __slots__ = ("func", "ref")

    def __init__(self, func: Callable[[], Any], ref: BudgetRef) -> None:
        self.func = func
        self.ref = ref

    def __len__(self) -> int:
        return len(self.func)  # type: ignore[arg-type]

    def __getstate__(self) -> tuple[Callable[[], Any], BudgetRef]:
        return self.func, self.ref

    def __setstate__(self, state: tuple[Callable[[], Any], BudgetRef]) -> None:
        self.func, self.ref = state

    def __call__(self) -> Any:
        outer = held()
        set_held(budget_for(self.ref).acquire())
        try:
            return self.func()
        finally:
            # A nested call may have lent the token out and taken another.
            current = held()
            set_held(outer)
            if current is not None:
                current.release()


def _after_fork_in_child() -> None:
    global _own
    for budget in _budgets.values():
        budget._forget()
    _own = None
    _local.__dict__.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
