"""Work that one process of the tree sends to another: it runs on a token its sender holds."""

from __future__ import annotations

from typing import Any, Callable

from . import budget as budget_mod
from .budget import BudgetRef


class Paid:
    """A batch (or a lane's task) that runs on the CPU its sender pays for.

    The sender holds a slot of the budget for as long as this runs (see
    :mod:`.budget`). Here it runs on a paid token, which a nested call inside
    may lend to its own inline tasks. Picklable by reference: it travels
    with the batch, and tells the receiving process which tree it is in.
    """

    __slots__ = ("func", "ref")

    def __init__(self, func: Callable[[], Any], ref: BudgetRef) -> None:
        self.func = func
        self.ref = ref

    def __getstate__(self) -> tuple[Callable[[], Any], BudgetRef]:
        return self.func, self.ref

    def __setstate__(self, state: tuple[Callable[[], Any], BudgetRef]) -> None:
        self.func, self.ref = state

    def __call__(self) -> Any:
        budget_mod.budget_for(self.ref)  # this process is in the tree from now on
        with budget_mod.Holding(budget_mod.paid()):
            return self.func()
