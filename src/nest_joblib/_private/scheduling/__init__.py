"""Running the tasks of one nested ``Parallel`` call within the CPU budget.

A nested call's tasks wait in one queue (:mod:`.queue`) and are pulled from
it by its *placements*, each with its admission rule in one place:

- the **inline runner** runs them in the caller's process, one at a time, on
  the CPU its caller lends it while it waits, as plain joblib's threads would
  (:mod:`.local`);
- **stand-ins**, threads beside it, run the next task while every task there
  waits, up to ``n_jobs`` in flight (:mod:`.local`, :mod:`..waits`);
- **lanes**, worker processes started below the caller, run a task on each
  CPU that is free anywhere in the tree, its token held by the caller's
  process meanwhile (:mod:`.lanes`);
- **helpers**, idle workers of the top-level pool standing by on a token their
  root holds, take queued tasks on offer (:mod:`.offers`, :mod:`..sharing`).

Tasks that leave the process are pickled once, large arrays by reference
(:mod:`..arrays`). The first task that fails stops the call: nothing more is
started, as joblib aborts the call on its first error.
"""

from .scheduler import Scheduler, placed_elsewhere

__all__ = ["Scheduler", "placed_elsewhere"]
