"""The CPU budget: a fixed number of tokens shared by a whole process tree.

Like the GNU make jobserver, but crash-safe: each token is a slot file in a
directory that the root process creates, held with ``fcntl.flock``. The
kernel drops the lock when its holder dies, so a killed worker never shrinks
the pool. A batch of tasks holds one token while it computes and lends it out
while it waits for a nested ``Parallel`` (see :mod:`.nested`).

This is the bottom layer of the budget: slots, tokens and hand-offs. What a
worker does with its token between batches is :mod:`.keep`'s policy.

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
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, TypeVar

from nest_joblib._warnings import warn

from . import directory

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("nest_joblib")

_Job = TypeVar("_Job")

_POLL_MIN = 0.001
_POLL_MAX = 0.02
_HANDOFF_POLL = 0.002
#: How long a worker waits for the slot held for it before taking any other.
_HANDOFF_GRACE = 0.05
#: How long a worker that got another slot keeps asking for the one held for it
#: (until the dispatcher lets go of it, or someone else took it meanwhile).
_WITHDRAW_WAIT = 2.0


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


class Token:
    """One held slot; :meth:`release` gives it back (once)."""

    __slots__ = ("budget", "slot")

    def __init__(self, budget: Budget, slot: int) -> None:
        #: The budget it belongs to; ``None`` once released.
        self.budget: Budget | None = budget
        self.slot = slot

    def release(self) -> None:
        budget, self.budget = self.budget, None
        if budget is not None:
            budget._release(self.slot)


class Budget:
    """The slots of one budget, as seen from this process."""

    #: True for the stand-in without ``fcntl``: no tokens at all.
    static = False

    def __init__(self, ref: BudgetRef) -> None:
        self.ref = ref
        #: Why the budget's files cannot be locked in this process, once seen.
        self.broken: str | None = None
        self._lock = threading.Lock()
        # Descriptors of the slot and reservation files, a bounded number open
        # at once whatever the budget's size (a held slot's stays open).
        self._fds = _Files(ref.path, "slot")
        self._probes = _Files(ref.path, "res")
        # flock belongs to an open file description, so this process must
        # itself keep two of its threads off the same slot.
        self._held: set[int] = set()
        self._handoffs: Handoffs | None = None

    @property
    def size(self) -> int:
        return self.ref.size

    def try_acquire(self) -> Token | None:
        """A free token, or ``None`` at once if every slot is held."""
        size = self.ref.size
        start = random.randrange(size)
        for i in range(size):
            token = self._try_slot((start + i) % size, reserved_ok=False)
            if token is not None or self.broken is not None:
                return token
        return None

    def _break(self, exc: OSError) -> None:
        """The budget's files cannot be locked here (not merely held elsewhere)."""
        if self.broken is None:
            self.broken = f"{type(exc).__name__}: {exc}"
            warn(
                f"cannot lock the CPU budget's files ({self.broken}); this process runs "
                "its tasks without tokens, and its nested calls in their caller"
            )

    def _reserved(self, slot: int) -> bool:
        """Whether a dispatcher reserves ``slot`` for the batch it handed off."""
        return _locked(self._probes, slot)

    def acquire(self, timeout: float | None = None) -> Token | None:
        """Wait for a free token, at most ``timeout`` seconds if given.

        ``None`` after the timeout, from the static stand-in, or when broken.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for delay in backoff():
            token = self.try_acquire()
            if token is not None or self.broken is not None:
                return token
            if deadline is not None:
                delay = min(delay, deadline - time.monotonic())
                if delay <= 0:
                    return None
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def take_handoff(self, slot: int) -> Token | None:
        """Take the token that the dispatching process holds for us in ``slot``.

        Locking ``req-<slot>`` asks for it; the dispatcher's watcher sees the
        request and unlocks the slot. Should someone else be quicker, any
        free slot will do after a short grace period.
        """
        try:
            path = os.path.join(self.ref.path, f"req-{slot}")
            req = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            self._break(exc)
            return None
        try:
            fcntl.flock(req, fcntl.LOCK_EX)
            token = self._wait_for(slot)
        except OSError as exc:
            os.close(req)
            self._break(exc)
            return None
        except BaseException:
            os.close(req)
            raise
        if token is None:
            os.close(req)
            return None
        if token.slot == slot:
            os.close(req)  # drops the request lock
        else:
            # Another slot came first. The dispatcher may not have seen the
            # request yet: dropping it now would leave our slot held there,
            # for nobody, until the batch ends. Keep asking until it lets go.
            threading.Thread(
                target=self._withdraw_request,
                args=(req, slot),
                name="nest-joblib-withdraw",
                daemon=True,
            ).start()
        return token

    def _wait_for(self, slot: int) -> Token | None:
        """``slot`` once its holder lets go, or any free slot after a grace period."""
        deadline = time.monotonic() + _HANDOFF_GRACE
        for delay in backoff():
            token = self._try_slot(slot)
            if token is None and time.monotonic() > deadline:
                token = self.try_acquire()
            if token is not None or self.broken is not None:
                return token
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _withdraw_request(self, req: int, slot: int) -> None:
        try:
            deadline = time.monotonic() + _WITHDRAW_WAIT
            while time.monotonic() < deadline:
                token = self._try_slot(slot)  # free: the dispatcher let go of it
                if token is not None:
                    token.release()
                    return
                time.sleep(_HANDOFF_POLL)
        finally:
            os.close(req)

    def _try_slot(self, slot: int, reserved_ok: bool = True) -> Token | None:
        """``slot``'s token if it is free and, unless ``reserved_ok``, no batch waits for it."""
        with self._lock:
            if slot in self._held or self.broken is not None:
                return None
            try:
                fd = self._fd(slot)
                if not _lock(fd):
                    return None
                if not reserved_ok and self._reserved(slot):  # between a dispatcher and its batch
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    return None
            except OSError as exc:
                self._break(exc)
                return None
            self._held.add(slot)
            self._fds.pin(slot)
            return Token(self, slot)

    def hand_off(self, token: Token) -> int:
        """Keep ``token`` until the batch it was reserved for asks for it."""
        if self._handoffs is None:
            self._handoffs = Handoffs(self)
        self._handoffs.add(token)
        return token.slot

    def cancel_handoff(self, slot: int) -> None:
        """The batch is over: release its token if it never asked for it."""
        if self._handoffs is not None:
            self._handoffs.cancel(slot)

    def cancel_handoff_when_done(self, slot: int, job: Any) -> None:
        """:meth:`cancel_handoff` once ``job`` (the batch's future) is done."""
        job.add_done_callback(lambda _: self.cancel_handoff(slot))

    def send_handed_off(self, token: Token | None, send: Callable[[int | None], _Job]) -> _Job:
        """``send(slot)`` a batch with ``token`` handed off to it; the batch's future.

        ``slot`` is ``None`` without a token. The token comes back when the
        future is done if the batch never asked for it, and at once if
        ``send`` raises (a pool that refuses the batch).
        """
        slot = None if token is None else self.hand_off(token)
        try:
            job = send(slot)
        except BaseException:
            if slot is not None:
                self.cancel_handoff(slot)
            raise
        if slot is not None:
            self.cancel_handoff_when_done(slot, job)
        return job

    def held_slots(self) -> list[int]:
        with self._lock:
            return sorted(self._held)

    def has_free(self) -> bool:
        token = self.try_acquire()
        if token is None:
            return False
        token.release()
        return True

    def _fd(self, slot: int) -> int:
        return self._fds.get(slot)

    def _release(self, slot: int) -> None:
        with self._lock:
            if slot in self._held:
                fcntl.flock(self._fds.get(slot), fcntl.LOCK_UN)
                self._held.discard(slot)
                self._fds.unpin(slot)

    def _forget(self) -> None:
        """In a forked child: the parent's locks are not ours to give back."""
        self._fds.close_all()
        self._probes.close_all()
        self._held.clear()
        if self._handoffs is not None:
            self._handoffs.forget()
        self._handoffs = None
        self._lock = threading.Lock()


class Handoffs:
    """Tokens this process holds for batches it sent to other processes.

    A dispatcher takes the token when it sends the batch, so that no other
    nested call mistakes the CPU for free while the worker starts up; the
    worker asks for it by locking ``req-<slot>``; a thread here sees the
    request and unlocks the slot. From the hand-off until the worker has the
    slot, ``res-<slot>`` stays locked too: :meth:`Budget.try_acquire` leaves
    a reserved slot alone, so nobody else takes it in the moment between.
    """

    def __init__(self, budget: Budget) -> None:
        self._budget = budget
        self._cond = threading.Condition()
        self._pending: dict[int, Token] = {}
        #: Reserved slots (the lock on ``res-<slot>`` is held through the fd).
        self._reserved: dict[int, int] = {}
        self._reqs = _Files(budget.ref.path, "req")
        self._watching = False

    def add(self, token: Token) -> None:
        path = os.path.join(self._budget.ref.path, f"res-{token.slot}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # no one else reserves a slot we hold
        with self._cond:
            self._unreserve(token.slot)
            self._reserved[token.slot] = fd
            self._pending[token.slot] = token
            if not self._watching:  # a thread only while something is reserved
                self._watching = True
                threading.Thread(
                    target=self._watch, name="nest-joblib-handoffs", daemon=True
                ).start()

    def cancel(self, slot: int) -> None:
        with self._cond:
            token = self._pending.pop(slot, None)
            self._unreserve(slot)
        if token is not None:
            token.release()

    def _unreserve(self, slot: int) -> None:
        fd = self._reserved.pop(slot, None)
        if fd is not None:
            os.close(fd)  # drops the lock

    def _requested(self, slot: int) -> bool:
        """Whether the worker holds the request lock of ``slot``."""
        return _locked(self._reqs, slot)

    def _watch(self) -> None:
        try:
            self._watch_requests()
        except OSError as exc:  # cannot look (descriptors exhausted...): let go of it all
            logger.debug("the hand-off watcher failed: %r", exc)
            with self._cond:
                pending, self._pending = list(self._pending.values()), {}
                for slot in list(self._reserved):
                    self._unreserve(slot)
                self._watching = False
            for token in pending:  # each batch then takes any free slot after its grace
                token.release()

    def _watch_requests(self) -> None:
        # The request is a lock taken in another process: nothing here can
        # wake this thread, so it looks every few milliseconds.
        while True:
            with self._cond:
                if not self._reserved:
                    self._watching = False
                    return
                pending = set(self._pending)
                reserved = list(self._reserved)
            for slot in reserved:
                requested = self._requested(slot)
                if slot in pending and requested:
                    with self._cond:
                        token = self._pending.pop(slot, None)
                    if token is not None:
                        token.release()  # the reservation stays until it is taken
                elif slot not in pending and not requested:
                    # The worker has its slot (it drops the request then), or gave up.
                    with self._cond:
                        if slot not in self._pending:
                            self._unreserve(slot)
            time.sleep(_HANDOFF_POLL)

    def forget(self) -> None:
        """In a forked child: the parent's reservations are not ours to keep."""
        _close_all(list(self._reserved.values()))
        self._reqs.close_all()


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
        _close_all(list(self._open.values()))
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


def _locked(files: _Files, slot: int) -> bool:
    """Whether another open file holds a lock on ``files``' file of ``slot``."""
    fd = files.get(slot)
    if not _lock(fd):
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class StaticBudget(Budget):
    """The fallback without ``fcntl``: no token is ever free for a new worker."""

    static = True

    def try_acquire(self) -> Token | None:
        return None

    def acquire(self, timeout: float | None = None) -> Token | None:
        return None

    def take_handoff(self, slot: int) -> Token | None:
        return None


_budgets: dict[BudgetRef, Budget] = {}
_budgets_lock = threading.Lock()
_own: BudgetRef | None = None
_local = threading.local()
#: Why no budget can be made in this process, once a call found out.
unavailable: str | None = None


def own_ref() -> BudgetRef | None:
    """The budget of the tree rooted in this process, if it made one."""
    return _own


def tree_ref() -> BudgetRef | None:
    """The budget of the tree this process belongs to: its own, or the one it was given."""
    if _own is not None:
        return _own
    with _budgets_lock:
        return next(iter(_budgets), None)


def given_ref() -> BudgetRef | None:
    """The budget of the tree this process is a worker of (given by its parent), if any."""
    if _own is not None:
        return None
    with _budgets_lock:
        return next(iter(_budgets), None)


def held_slots() -> list[int]:
    """The slots whose token this process holds (``flock``), in every budget it knows."""
    with _budgets_lock:
        budgets = list(_budgets.values())
    return sorted(slot for b in budgets for slot in b.held_slots())


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


class BudgetUnavailable(OSError):
    """No budget can be made here: the temporary directory or ``flock`` fails."""


def root_budget(size: int) -> BudgetRef:
    """The budget of the tree rooted in this process, made on first use.

    Raises :class:`BudgetUnavailable` when its directory cannot be made or
    locked (an unwritable temporary directory, a file system without
    ``flock``).
    """
    global _own
    with _budgets_lock:
        if _own is None or _own.size != size:
            if fcntl is None:
                _own = BudgetRef("", size)
            else:
                try:
                    path = directory.make(size)
                except OSError as exc:
                    raise BudgetUnavailable(exc.errno, f"{type(exc).__name__}: {exc}") from exc
                _own = BudgetRef(path, size, secrets.token_bytes(32))
                logger.debug("CPU budget of %d tokens in %s", size, path)
        return _own


def held() -> Token | None:
    """The token held by the batch running in this thread, if any."""
    return getattr(_local, "token", None)


def set_held(token: Token | None) -> None:
    _local.token = token
    if token is None:
        _holders.pop(threading.get_ident(), None)
    else:
        _holders[threading.get_ident()] = threading.get_native_id()


#: Thread ident -> its native id, for the threads of this process that hold a
#: token for their task (see .waits).
_holders: dict[int, int] = {}


def holders() -> dict[int, int]:
    """The threads of this process that hold a token: ident -> native id."""
    return dict(_holders)


class Holding:
    """Run code in this thread holding ``token``: ``with Holding(token) as h:``.

    A nested call inside may lend the token out and come back with another,
    so afterwards ``h.token`` is the one held at the end: the caller's to
    release or keep. The thread's previous token is restored.
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
        self.token = held()
        set_held(self._outer)


def _after_fork_in_child() -> None:
    global _own
    for budget in _budgets.values():
        budget._forget()
    _own = None
    _local.__dict__.clear()
    _holders.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
