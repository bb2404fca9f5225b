"""The wait watcher never asks for the CPU clock of a thread that has exited.

A token holder's thread can end between the watcher's look at the holders
and its making that thread's clock: ``pthread_getcpuclockid`` on a thread
that is gone is undefined behaviour (glibc reads the thread's descriptor,
freed or reused by then; the kernel has zeroed its thread id, which names
the calling thread's own clock). Here the look is held open with a hook:
``budget.holders`` returns its snapshot only once the holder has left its
token and been joined. Every call of ``time.pthread_getcpuclockid`` is
recorded with whether the thread it names was alive then.
"""

from __future__ import annotations

import threading
import time

from children.common import emit, take_free_tokens
from nest_joblib._private import budget, waits


def main() -> None:
    ref = budget.root_budget(2)
    tokens = take_free_tokens(ref)
    entered, leave = threading.Event(), threading.Event()

    def holder() -> None:
        with budget.Holding(tokens[0]):
            entered.set()
            leave.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    entered.wait(10)
    real_holders = budget.holders

    def holders_then_exit() -> dict[int, tuple[int, int | None]]:
        snapshot = real_holders()
        leave.set()
        thread.join(10)  # the holder is gone before the watcher makes its clock
        return snapshot

    real_clockid = time.pthread_getcpuclockid
    calls: list[bool] = []

    def clockid(ident: int) -> int:
        calls.append(ident in {t.ident for t in threading.enumerate()})
        return real_clockid(ident)

    budget.holders = holders_then_exit
    time.pthread_getcpuclockid = clockid
    try:
        waits.watcher()._idle_tokens()
    finally:
        budget.holders = real_holders
        time.pthread_getcpuclockid = real_clockid
    for token in tokens:
        token.release()
    emit({"holder_gone": not thread.is_alive(), "dead": calls.count(False), "calls": len(calls)})


if __name__ == "__main__":
    main()
