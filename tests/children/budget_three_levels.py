"""Three levels of ``Parallel`` over 3 children: 27 leaves of 0.1 s, and the peak of
processes computing at once (threads of one process count once, as P5 counts).

The top level asks for ``n_jobs=2`` (the budget: it keeps joblib's meaning),
the levels below for ``n_jobs=4``.

``budget_three_levels.py [meet]``: with ``meet``, every leaf first waits at
one barrier until three leaves compute at once (for naive nesting, which
oversubscribes: the test then needs no luck to see more than two at once).
"""

from __future__ import annotations

import os
import sys
import tempfile

from joblib import Parallel, delayed

from children.common import emit, meet, peak_processes, timed

#: A leaf's ``[pid, start, end]``, and whether it met two others (``None``: it did not wait).
Leaf = tuple[list[float], "bool | None"]


def leaf(barrier: str | None) -> Leaf:
    together = None if barrier is None else meet(barrier, 3)
    [span] = timed(0.1)
    return [os.getpid(), *span], together


def node(depth: int, barrier: str | None) -> list[Leaf]:
    if depth == 0:
        return [leaf(barrier)]
    n_jobs = 2 if depth == 3 else 4
    below = Parallel(n_jobs=n_jobs)(delayed(node)(depth - 1, barrier) for _ in range(3))
    return [record for records in below for record in records]


def main() -> None:
    with tempfile.TemporaryDirectory() as barrier:
        leaves = node(3, barrier if sys.argv[1:] == ["meet"] else None)
    emit(
        {
            "leaves": len(leaves),
            "peak": peak_processes(span for span, _ in leaves),
            "together": [together for _, together in leaves],
        }
    )


if __name__ == "__main__":
    main()
