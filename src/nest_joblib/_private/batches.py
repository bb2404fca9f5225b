"""A batch of tasks that holds a token of the budget while it runs in a worker."""

from __future__ import annotations

from typing import Any, Callable

from . import budget as budget_mod
from .budget import BudgetRef
from .keep import keeper_for
from .sharing import help_elsewhere
from .state import ablated


class TokenHeld:
    """A batch of tasks that holds a token of the budget while it runs.

    Picklable by reference, so it travels to worker processes with the batch.
    ``handoff`` is the slot that the dispatching process holds for this batch
    until the batch asks for it (see :class:`.budget.Handoffs`). Without one,
    the batch takes the token its worker kept, or else waits for a free one:
    as long as it takes, or at most ``wait`` seconds, then runs without one.
    With ``wait=0`` it takes no free token at all (a free token may be what
    another batch waits for).
    """

    __slots__ = ("func", "handoff", "keep", "ref", "wait")

    def __init__(
        self,
        func: Callable[[], Any],
        ref: BudgetRef,
        handoff: int | None = None,
        keep: bool = False,
        wait: float | None = None,
    ) -> None:
        self.func = func
        self.ref = ref
        self.handoff = handoff
        #: Keep the token a moment for this worker's next batch: for pools
        #: that fetch their next batch themselves (not lanes, whose feeder
        #: needs the token free to send the next one).
        self.keep = keep
        self.wait = wait

    def __getstate__(
        self,
    ) -> tuple[Callable[[], Any], BudgetRef, int | None, bool, float | None]:
        return self.func, self.ref, self.handoff, self.keep, self.wait

    def __setstate__(
        self, state: tuple[Callable[[], Any], BudgetRef, int | None, bool, float | None]
    ) -> None:
        self.func, self.ref, self.handoff, self.keep, self.wait = state

    def __call__(self) -> Any:
        budget = budget_mod.budget_for(self.ref)
        # An idle kept token helps the tree's nested calls (work sharing).
        keeper = keeper_for(budget, help_elsewhere)
        kept = keeper.unkeep()
        if self.handoff is not None:
            if kept is not None:
                kept.release()
            token = budget.take_handoff(self.handoff)
        elif kept is not None:
            token = kept
        elif self.wait is None or self.wait > 0:
            token = budget.acquire(self.wait)
        else:
            token = None
        holding = budget_mod.Holding(token)
        try:
            with holding:
                return self.func()
        finally:
            if holding.token is not None and self.keep and not ablated("keep"):
                keeper.keep(holding.token)
            elif holding.token is not None:
                holding.token.release()
