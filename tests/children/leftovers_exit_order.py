"""When the root's exit removes its budget directory: after multiprocessing's pool finalizers.

argv[1]: how the program ends: "return", "raise" (an exception out of the
main module) or "exit" (``sys.exit(3)``). A finalizer of the pools' priority
(multiprocessing's ``Pool`` registers its ``_terminate_pool`` at 15) prints
whether the directory is still there when it runs: the reaping must come
after it.
"""

from __future__ import annotations

import os
import sys
from multiprocessing import util

from joblib import Parallel, delayed

from children.common import emit


def leaf(i: int) -> int:
    return i * i


def outer(i: int) -> int:
    return sum(Parallel(n_jobs=2)(delayed(leaf)(j) for j in range(4)))


def main() -> None:
    from nest_joblib._private import budget

    emit(sum(Parallel(n_jobs=2)(delayed(outer)(i) for i in range(2))))
    ref = budget.own_ref()
    assert ref is not None

    def at_pool_priority() -> None:
        emit({"directory": ref.path, "there": os.path.isdir(ref.path)})

    util.Finalize(None, at_pool_priority, exitpriority=15)
    if sys.argv[1] == "raise":
        raise RuntimeError("the program fails")
    if sys.argv[1] == "exit":
        sys.exit(3)


if __name__ == "__main__":
    main()
