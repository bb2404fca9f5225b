"""A nested call fails as soon as joblib would: a timeout, an error.

argv[1]: "timeout" (a nested ``timeout=1`` whose first leaf blocks for 30 s)
or "error" (the first of 50 leaves raises; ``pre_dispatch="all"``).
argv[2]: a folder where each leaf that starts leaves a file.
"""

from __future__ import annotations

import os
import sys
import time

from joblib import Parallel, delayed

from children.common import busy, emit


def blocks(i: int) -> int:
    if i == 0:
        time.sleep(30)
    return i


def raises(i: int, folder: str) -> int:
    with open(os.path.join(folder, str(i)), "x"):
        pass
    if i == 0:
        raise ValueError("the first leaf fails")
    busy(0.2)
    return i


def outer(what: str, folder: str) -> object:
    began = time.monotonic()
    raised: str | None = None
    try:
        if what == "timeout":
            Parallel(n_jobs=2, timeout=1)(delayed(blocks)(i) for i in range(4))
        else:
            Parallel(n_jobs=2, pre_dispatch="all")(delayed(raises)(i, folder) for i in range(50))
    except Exception as exc:
        raised = f"{type(exc).__module__}.{type(exc).__qualname__}"
    seconds = time.monotonic() - began
    return {"raised": raised, "seconds": seconds, "started": len(os.listdir(folder))}


def main() -> None:
    what, folder = sys.argv[1], sys.argv[2]
    emit(Parallel(n_jobs=2)(delayed(outer)(what, folder) for _ in range(1))[0])


if __name__ == "__main__":
    main()
