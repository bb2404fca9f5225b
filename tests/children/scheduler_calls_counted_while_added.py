"""``info()`` counts this process's nested calls while another thread makes one.

``placed_elsewhere()`` iterates the set of nested calls, to which any thread
adds its new call. A hook holds the iteration after its first call until
another thread has made a second call (2 s at most: once additions wait for
the iteration, it goes on without it). Iterating a ``WeakSet`` that grows
meanwhile raises "Set changed size during iteration".
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import Any

from children.common import emit, take_free_tokens
from nest_joblib._private import budget
from nest_joblib._private.scheduling import Scheduler, placed_elsewhere


def main() -> None:
    ref = budget.root_budget(2)
    held = take_free_tokens(ref)
    tokens = budget.budget_for(ref)
    first = Scheduler(1, tokens, ref, {}, 1)
    adding, added = threading.Event(), threading.Event()
    armed = [True]
    iterate = weakref.WeakSet.__iter__

    def held_after_first(self: weakref.WeakSet[Any]) -> Iterator[Any]:
        if not (armed and first in self):  # another set, or once done
            yield from iterate(self)
            return
        armed.clear()
        for n, call in enumerate(iterate(self)):
            yield call
            if n == 0:
                adding.set()
                added.wait(2)

    weakref.WeakSet.__iter__ = held_after_first  # type: ignore[method-assign]
    made: list[Scheduler] = []

    def add() -> None:
        adding.wait(30)
        made.append(Scheduler(1, tokens, ref, {}, 1))
        added.set()

    adder = threading.Thread(target=add, daemon=True)
    adder.start()
    try:
        placed, error = placed_elsewhere(), None
    except RuntimeError as exc:
        placed, error = -1, str(exc)
    adder.join(30)
    weakref.WeakSet.__iter__ = iterate  # type: ignore[method-assign]
    for call in [first, *made]:
        call.close()
    for token in held:
        token.release()
    emit({"placed": placed, "error": error, "added": len(made)})


if __name__ == "__main__":
    main()
