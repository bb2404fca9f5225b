"""A handed-off slot: between the dispatcher letting go of it and its batch taking it.

``budget_handoff.py``: the dispatcher (this process) hands off the token of a
budget of one; ``budget_handoff.py batch PATH SLOT`` is the batch it was
handed off to, ``budget_handoff.py thief PATH`` another process of the tree.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys

from children.common import emit, locked_elsewhere, poll_until
from nest_joblib._private import budget


def other(*args: str) -> subprocess.Popen[str]:
    """Another process of the tree, with this budget."""
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def batch(path: str, slot: int) -> None:
    """Ask for the slot (as ``take_handoff`` does), then wait for a line before taking it."""
    b = budget.budget_for(budget.BudgetRef(path, 1))
    req = os.open(os.path.join(path, f"req-{slot}"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(req, fcntl.LOCK_EX)
    print("asked", flush=True)
    sys.stdin.readline()
    print(b._try_slot(slot) is not None, flush=True)


def thief(path: str) -> None:
    print(budget.budget_for(budget.BudgetRef(path, 1)).try_acquire() is not None)


def dispatcher() -> None:
    ref = budget.root_budget(1)
    token = budget.budget_for(ref).try_acquire()
    assert token is not None
    slot = budget.budget_for(ref).hand_off(token)
    taker = other("batch", ref.path, str(slot))
    assert taker.stdin is not None
    assert taker.stdout is not None
    assert taker.stdout.readline().strip() == "asked"
    # The dispatcher's watcher sees the request and lets go of the slot; the
    # reservation stays until the batch has taken it.
    let_go = poll_until(lambda: not locked_elsewhere(os.path.join(ref.path, f"slot-{slot}")), 30)
    reserved = locked_elsewhere(os.path.join(ref.path, f"res-{slot}"))
    stolen = other("thief", ref.path).communicate(timeout=60)[0].strip() == "True"
    taker.stdin.write("\n")
    taker.stdin.flush()
    taken = taker.communicate(timeout=60)[0].strip() == "True"
    emit({"let_go": let_go, "reserved": reserved, "stolen": stolen, "taken": taken})


def main() -> None:
    role, *args = sys.argv[1:] or ["dispatcher"]
    if role == "batch":
        batch(args[0], int(args[1]))
    elif role == "thief":
        thief(args[0])
    else:
        dispatcher()


if __name__ == "__main__":
    main()
