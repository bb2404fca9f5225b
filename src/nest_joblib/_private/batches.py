"""A batch of tasks that holds a token of the budget while it runs in a worker."""

from __future__ import annotations

from typing import Any, Callable

from . import budget as budget_mod
from .budget import BudgetRef
from .keep import keeper_for
from .sharing import help_elsewhere


class TokenHeld:
    """A batch of tasks that holds a token of the budget while it runs.

    Picklable by reference, so it travels to worker processes with the batch.
    ``handoff`` is the slot that the dispatching process holds for this batch
    until the batch asks for it (see :class:`.budget.Handoffs`). Without one,
    the batch takes the token its worker kept, or waits for a free one; an
    ``optional`` batch takes only the token its worker kept, and runs
    without one otherwise (a free token may be what another batch waits for).
    """

    __slots__ = ("func", "handoff", "keep", "optional", "ref")

    def __init__(
        self,
        func: Callable[[], Any],
        ref: BudgetRef,
        handoff: int | None = None,
        keep: bool = False,
        optional: bool = False,
    ) -> None:
        self.func = func
        self.ref = ref
        self.handoff = handoff
        #: Keep the token a moment for this worker's next batch: for pools
        #: that fetch their next batch themselves (not lanes, whose feeder
        #: needs the token free to send the next one).
        self.keep = keep
        self.optional = optional

    def __getstate__(self) -> tuple[Callable[[], Any], BudgetRef, int | None, bool, bool]:
        return self.func, self.ref, self.handoff, self.keep, self.optional

    def __setstate__(
        self, state: tuple[Callable[[], Any], BudgetRef, int | None, bool, bool]
    ) -> None:
        self.func, self.ref, self.handoff, self.keep, self.optional = state

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
        else:
            token = None if self.optional else budget.acquire()
        holding = budget_mod.Holding(token)
        try:
            with holding:
                return self.func()
        finally:
            if holding.token is not None and self.keep:
                keeper.keep(holding.token)
            elif holding.token is not None:
                holding.token.release()
