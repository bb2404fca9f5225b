"""Stand-by batches and the tokens a batch of the call may wait for (no worker runs)."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from children.common import count_free_tokens, emit, take_free_tokens
from nest_joblib._private import budget, keep, sharing, standby
from nest_joblib._private.batches import TokenHeld


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

    found: dict[str, dict[str, Any]] = {}
    for case in ("tokenless", "free", "all kept"):
        # "all kept": every token held, as by workers that keep theirs after a call.
        held = take_free_tokens(ref) if case == "all kept" else []
        spares = standby.Spares(ref, 2, submit)
        spares.batch_sent(Future(), with_token=case != "tokenless")
        before = len(sent)
        with spares.standing_by(Call()):
            batches = sent[before:]
            found[case] = {
                "sent": [{"handoff": b.handoff is not None, "wait": b.wait} for b in batches],
                "free": count_free_tokens(ref),
            }
        for token in held:
            token.release()
        found[case]["free after"] = count_free_tokens(ref)
    # A batch sent without a token (as the "all kept" stand-by batch): it
    # waits for a free token, takes one freed meanwhile and keeps it for a
    # next batch; it runs without one when none comes in time.
    waiting = TokenHeld(lambda: None, ref, keep=True, wait=1.0)
    keeper = keep.keeper_for(budget.budget_for(ref), sharing.help_elsewhere)
    for freed in (True, False):
        held = take_free_tokens(ref)
        if freed:
            threading.Timer(0.2, held.pop().release).start()
        waiting()
        kept = keeper.unkeep()
        found[f"freed {freed}"] = {"took": kept is not None}
        for t in [*held, *([kept] if kept else [])]:
            t.release()
    emit(found)


if __name__ == "__main__":
    main()
