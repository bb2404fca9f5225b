"""Stand-by batches and the tokens a batch of the call may wait for (no worker runs)."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from children.common import emit
from nest_joblib._private import budget, standby


class Call:
    """What ``Spares.standing_by`` looks at of a ``Parallel`` call."""

    _iterating = False
    _aborting = False


def main() -> None:
    ref = budget.root_budget(2)
    sent: list[Any] = []

    def submit(batch: Any) -> Future[Any]:
        sent.append(batch)
        return Future()  # never runs: the stand-by batch stays queued, its token handed off

    def free() -> int:
        tokens = list(iter(budget.budget_for(ref).try_acquire, None))
        for t in tokens:
            t.release()
        return len(tokens)

    found: dict[str, dict[str, int]] = {}
    for with_token in (False, True):
        spares = standby.Spares(ref, 2, submit)
        spares.batch_sent(Future(), with_token=with_token)
        before = len(sent)
        with spares.standing_by(Call()):
            found[str(with_token)] = {"sent": len(sent) - before, "free": free()}
        found[str(with_token)]["free after"] = free()
    emit(found)


if __name__ == "__main__":
    main()
