"""A thread forks while another makes the budget's directory (and reaps stale ones).

Making the directory held the budget module's lock across the reaping, and
the lock was not made anew in a forked child: the child inherited it locked,
by a thread that does not exist there, and its first call waited for ever.
"""

from __future__ import annotations

import json
import os
import threading
import warnings

from children.common import emit
from nest_joblib._private import budget, directory

PARENT = os.getpid()
reaping = threading.Event()
go_on = threading.Event()
real_reap = directory.reap


def slow_reap(root: str | None = None) -> list[str]:
    if os.getpid() == PARENT:  # the parent's maker stays in the reaping while it forks
        reaping.set()
        go_on.wait(30)
    return real_reap(root)


def in_child(write: int) -> None:
    try:
        from joblib import Parallel, delayed
        from joblib.externals.loky import get_reusable_executor

        result = Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4))
        get_reusable_executor().shutdown(wait=True)  # its workers hold our stdout open
        out = {"result": result}
    except BaseException as exc:
        out = {"error": repr(exc)}
    os.write(write, json.dumps(out).encode())
    os._exit(0)


def main() -> None:
    directory.reap = slow_reap
    maker = threading.Thread(target=budget.root_budget, args=(2,), daemon=True)
    maker.start()
    assert reaping.wait(30)
    read, write = os.pipe()
    with warnings.catch_warnings():  # 3.12+: forking a process that has threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        os.close(read)
        in_child(write)
    os.close(write)
    go_on.set()
    maker.join(30)
    import select

    ready, _, _ = select.select([read], [], [], 60)
    report = json.loads(os.read(read, 65536) or b"{}") if ready else {"error": "no answer in 60 s"}
    if not ready:
        os.kill(pid, 9)
    os.waitpid(pid, 0)
    emit(report)


if __name__ == "__main__":
    main()
