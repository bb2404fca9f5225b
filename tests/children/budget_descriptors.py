"""Descriptors of a budget of 200 whose slots are nearly all held elsewhere.

argv[1] == "holder": hold every slot but ``argv[3]`` of the budget in
directory ``argv[2]`` until stdin closes. Otherwise: make the budget, start
the holder, then, with at most 128 descriptors, look for the free slot 20
times and count the descriptors this process has open.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile

from children.common import emit


def hold(path: str, free: int) -> None:
    from nest_joblib._private import budget

    b = budget.budget_for(budget.BudgetRef(path, 200))
    held = [b._try_slot(slot) for slot in range(200) if slot != free]
    print(sum(token is not None for token in held), flush=True)
    sys.stdin.read()


def main() -> None:
    if sys.argv[1:2] == ["holder"]:
        hold(sys.argv[2], int(sys.argv[3]))
        return
    from nest_joblib._private import budget

    with tempfile.TemporaryDirectory() as path:
        holder = subprocess.Popen(
            [sys.executable, __file__, "holder", path, "7"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None
        held = int(holder.stdout.readline())
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))
        b = budget.budget_for(budget.BudgetRef(path, 200))
        found, error = [], None
        try:
            for _ in range(20):
                token = b.try_acquire()
                found.append(None if token is None else token.slot)
                if token is not None:
                    token.release()
        except OSError as exc:
            error = repr(exc)
        fds = len(os.listdir("/proc/self/fd"))
        holder.communicate("")
    emit({"held_elsewhere": held, "found": found, "error": error, "fds": fds})


if __name__ == "__main__":
    main()
