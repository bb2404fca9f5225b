"""A stand-by batch runs only on a token that the root holds for it.

Budget 2, a pool of 2, one outer task with a nested call of 4 leaves: the
pool's spare worker stands by and helps, on the second token. With "held",
this root holds that token itself for the whole call: no stand-by batch may
run then, and every leaf runs in the outer task's process.
"""

from __future__ import annotations

import os
import sys
import time

from joblib import Parallel, delayed

from children.common import busy, count_free_tokens, emit, poll_until
from nest_joblib._private import budget


def leaf() -> int:
    busy(0.2)
    return os.getpid()


def outer() -> dict[str, object]:
    ref = budget.given_ref()
    assert ref is not None
    # The spare worker's stand-by batch takes the free token a moment after the call starts.
    none_free = poll_until(lambda: count_free_tokens(ref) == 0, 10)
    pids = Parallel(n_jobs=2)(delayed(leaf)() for _ in range(4))
    return {"pid": os.getpid(), "leaf_pids": sorted(set(pids)), "none_free": none_free}


def main() -> None:
    held = sys.argv[1:] == ["held"]
    ref = budget.root_budget(2)
    token = budget.budget_for(ref).try_acquire() if held else None
    tokens = [] if token is None else [token]
    [out] = Parallel(n_jobs=2)(delayed(outer)() for _ in range(1))
    for token in tokens:
        token.release()
    returned = time.monotonic()
    out["all free after"] = poll_until(lambda: count_free_tokens(ref) == 2, 1)
    out["after"] = time.monotonic() - returned
    emit(out)


if __name__ == "__main__":
    main()
