"""What a top-level worker does with its token between two batches.

Between two batches a worker is idle for a few milliseconds. Released at once,
its CPU would look free to every nested call in the tree, which would start a
process for it only to find the CPU taken again. So a worker *keeps* a
finished batch's token for 50 ms, for its next batch. When no batch comes, the
token is *idle*: the idle policy given to :func:`keeper_for` may use it (work
sharing lends it to a helper thread, see :mod:`.sharing`) or it is freed.

While a helper thread has the token, a new batch of the worker waits for the
helper to finish its task and hand the token back: the batch then runs on the
CPU the process already had, not beside the helper's task under the same GIL.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable

from .budget import Budget, Token

#: How long a worker keeps a finished batch's token for its next batch.
_KEEP = 0.05


class Keeper:
    """The kept token of one budget in this process, and its idle policy.

    ``on_idle(keeper, token)`` runs when a kept token expires. It returns
    whether it took the token (it then gives it back with :meth:`helper_done`);
    otherwise the token is freed.
    """

    def __init__(self, on_idle: Callable[[Keeper, Token], bool]) -> None:
        self._on_idle = on_idle
        self._cond = threading.Condition()
        self._kept: Token | None = None
        self._kept_until = 0.0
        self._timer = False  # the expiry thread runs (only while a token is kept)
        self._helping = False
        self._wanted = False

    def keep(self, token: Token) -> None:
        """Hold a finished batch's token a moment for this process's next batch."""
        with self._cond:
            old, self._kept = self._kept, token
            self._kept_until = time.monotonic() + _KEEP
            if not self._timer:
                self._timer = True
                threading.Thread(target=self._expire, name="nest-joblib-keep", daemon=True).start()
        if old is not None:
            old.release()

    def unkeep(self) -> Token | None:
        """The token kept for this process's next batch, if any.

        If a helper took it meanwhile, wait for the helper to finish its task
        and hand it back.
        """
        with self._cond:
            if self._kept is None and self._helping:
                self._wanted = True
                while self._helping:
                    self._cond.wait()
                self._wanted = False
            token, self._kept = self._kept, None
            self._cond.notify_all()
            return token

    def reclaim_wanted(self) -> bool:
        """For the helper: a batch of this process waits for the token."""
        return self._wanted

    def helper_done(self, token: Token) -> None:
        """The helper is done with the token: to the waiting batch, or freed."""
        with self._cond:
            self._helping = False
            give = self._wanted
            if give:
                self._kept = token
                self._kept_until = time.monotonic() + _KEEP
            self._cond.notify_all()
        if not give:
            token.release()

    def _expire(self) -> None:
        # Waits on the condition: keep() and unkeep() wake it; it ends as soon
        # as nothing is kept, so a process between calls runs no such thread.
        while True:
            with self._cond:
                while self._kept is not None and self._kept_until > time.monotonic():
                    self._cond.wait(self._kept_until - time.monotonic())
                token, self._kept = self._kept, None
                if token is None:
                    self._timer = False
                    return
                self._helping = True
            try:
                taken = self._on_idle(self, token)
            except Exception:
                taken = False
            if not taken:
                self.helper_done(token)


_keepers: dict[Budget, Keeper] = {}
_keepers_lock = threading.Lock()


def keeper_for(budget: Budget, on_idle: Callable[[Keeper, Token], bool]) -> Keeper:
    """This process's keeper of ``budget`` (made with ``on_idle`` the first time)."""
    with _keepers_lock:
        keeper = _keepers.get(budget)
        if keeper is None:
            keeper = _keepers[budget] = Keeper(on_idle)
        return keeper


def _after_fork_in_child() -> None:
    # The parent's kept tokens are not ours: budget.py forgets their locks.
    global _keepers_lock
    _keepers.clear()
    _keepers_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
