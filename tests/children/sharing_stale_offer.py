"""The marker of an offer whose process was killed is removed by the first helper it refuses.

A nested call whose process is killed (joblib aborting the top-level call
kills its workers) never closes its offer: its marker stays in the budget
directory, and every stand-by worker connected to it every 5 ms for the life
of the tree. On Linux the offer's socket listens before its marker is
written, so a refused connection proves it gone. Here markers are planted as
a killed process leaves them (naming an abstract address nobody listens on):
one pass of ``help_once`` removes it, and keeps a marker not written yet
(empty) and a live offer's; then a stand-by worker's pass removes another
while the tree's tasks still flow through helpers.
"""

from __future__ import annotations

import os
import secrets
import tempfile

from joblib import Parallel, delayed

from children.common import busy, emit, meet
from nest_joblib._private import budget
from nest_joblib._private.budgeted import budget_size
from nest_joblib._private.sharing import Offer, help_once


def leaf(i: int, barrier: str) -> int:
    if i < 2:  # the caller and the helper compute at once
        assert meet(barrier)
    busy(0.1)
    return os.getpid()


def only_task() -> list[int]:
    with tempfile.TemporaryDirectory() as barrier:
        return list(Parallel(n_jobs=-1)(delayed(leaf)(i, barrier) for i in range(8)))


def plant(directory: str, name: str, content: str) -> str:
    """A marker as an offer writes it (see ``sharing.Offer``), its socket never listening."""
    path = os.path.join(directory, name)
    with open(path, "x") as marker:
        marker.write(content)
    return path


def main() -> None:
    size = budget_size()
    assert size is not None
    ref = budget.root_budget(size)  # the tree's budget, which its top-level calls use
    gone = f"nest-joblib-{secrets.token_hex(16)}"  # nobody listens there
    stale = plant(ref.path, f"offer-00-{os.getpid()}-0", gone)
    empty = plant(ref.path, f"offer-00-{os.getpid()}-1", "")  # a marker not written yet
    live = Offer(ref.path, ref.key, 1, lambda: None, lambda *_: None, lambda *_: None)
    ran = help_once(budget.budget_for(ref), lambda: False)
    direct = {
        "ran": ran,
        "stale": os.path.exists(stale),
        "empty": os.path.exists(empty),
        "live": os.path.exists(live.path),
    }
    live.close()
    os.unlink(empty)

    killed = plant(ref.path, f"offer-00-{os.getpid()}-2", f"nest-joblib-{secrets.token_hex(16)}")
    [pids] = Parallel(n_jobs=2)([delayed(only_task)()])
    emit(
        {
            "direct": direct,
            "by_standby": os.path.exists(killed),
            "processes": len(set(pids)),
            "leaves": len(pids),
        }
    )


if __name__ == "__main__":
    main()
