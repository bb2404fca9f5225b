"""Which threads of ours are left, in the root and in top-level workers, between calls."""

from __future__ import annotations

import threading

from joblib import Parallel, delayed

from children.common import emit, poll_until, spin


def ours() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("nest-joblib"))


def quiet() -> list[str]:
    """Ours once they are gone, or after 10 s (a call's threads end a moment after it)."""
    poll_until(lambda: not ours(), 10.0)
    return ours()


def leaf(i: int) -> int:
    return sum(spin() for _ in range(200))


def outer(i: int) -> int:
    return sum(Parallel(n_jobs=-1)(delayed(leaf)(j) for j in range(6)))


def check(i: int) -> list[str]:
    return quiet()


def main() -> None:
    Parallel(n_jobs=2)(delayed(outer)(i) for i in range(3))
    root = quiet()
    workers = Parallel(n_jobs=2)(delayed(check)(i) for i in range(2))
    emit({"root": root, "workers": workers})


if __name__ == "__main__":
    main()
