"""The root holds a token for each batch running in its pool: none looks free meanwhile.

Budget 2, a pool of 2, 12 short tasks in two calls (the second on a warm
pool). Each task counts the tokens free in the tree as it starts, on a
worker that just started or just finished its last batch: there must be none.
Then a pool of 4 on the same budget: 4 tasks run at once (as in plain
joblib), and still no token is free, so nothing the plugin adds can start.
"""

from __future__ import annotations

import sys
import tempfile

from joblib import Parallel, delayed

from children.common import busy, count_free_tokens, emit, meet
from nest_joblib._private import budget


def task(barrier: str | None, count: int) -> int:
    ref = budget.given_ref()
    assert ref is not None
    free = count_free_tokens(ref)
    if barrier is not None:
        assert meet(barrier, count)
    busy(0.05)
    return free


def main() -> None:
    width = int(sys.argv[1])
    seen: list[int] = []
    for _ in range(2):
        with tempfile.TemporaryDirectory() as barrier:
            tasks = [delayed(task)(barrier if width > 2 else None, width) for _ in range(6)]
            seen += Parallel(n_jobs=width)(tasks)
    ref = budget.own_ref()
    assert ref is not None
    emit({"free while running": seen, "free after": count_free_tokens(ref)})


if __name__ == "__main__":
    main()
