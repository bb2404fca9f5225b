"""Three levels of ``Parallel(n_jobs=4)`` under a large budget and few descriptors."""

from __future__ import annotations

import resource

from joblib import Parallel, delayed

from children.common import emit, spin


def node(depth: int) -> int:
    if depth == 0:
        return sum(spin() for _ in range(20))
    return sum(Parallel(n_jobs=4)(delayed(node)(depth - 1) for _ in range(4)))


def main() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    emit({"total": node(3), "leaves": 64, "nofile": soft})


if __name__ == "__main__":
    main()
