"""Work that one process of the tree sends to another: it runs on a token its sender holds."""

from __future__ import annotations

from typing import Any, Callable

from . import budget as budget_mod
from . import process
from .budget import BudgetRef


class Paid:
    """A batch (or a lane's task) that runs on the CPU its sender pays for.

    The sender holds a slot of the budget for as long as this runs (see
    :mod:`.budget`). Here it runs on a paid token, which a nested call inside
    may lend to its own inline tasks. Picklable by reference: it travels
    with the batch, and tells the receiving process which tree it is in, and
    which trace it records into (``trace``: None when its sender traces
    nothing, see :mod:`.trace`). ``where``: ``"batch"`` (of the top-level
    pool) or ``"lane"``.
    """

    __slots__ = ("func", "ref", "trace")

    def __init__(self, func: Callable[[], Any], ref: BudgetRef, where: str = "batch") -> None:
        self.func = func
        self.ref = ref
        self.trace = None if process.tracing is None else process.tracing.paid(where, ref.size)

    def __getstate__(self) -> tuple[Callable[[], Any], BudgetRef, Any]:
        return self.func, self.ref, self.trace

    def __setstate__(self, state: tuple[Callable[[], Any], BudgetRef, Any]) -> None:
        self.func, self.ref, self.trace = state

    def __call__(self) -> Any:
        budget_mod.budget_for(self.ref)  # this process is in the tree from now on
        with budget_mod.Holding(budget_mod.paid()):
            if self.trace is None and process.tracing is None:
                return self.func()
            from . import trace

            return trace.received(self.trace, self.func)
