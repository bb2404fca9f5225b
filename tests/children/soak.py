"""The soak: one long-lived process makes nested calls in a row, as a notebook kernel would.

    python tests/children/soak.py CALLS [EVERY]

Run by ``tests/test_soak.py`` (500 calls) and ``benchmarks/soak.py`` (2,000).
Each call is a top-level ``Parallel(n_jobs=2)`` whose tasks make nested
calls; the kinds of call come in a cycle of ten: plain nested calls, large
array arguments (memory maps), a leaf's error caught in its task, a nested
``timeout=`` with a stuck leaf, a generator broken off, two nested calls
from two threads of a task, generator_unordered consumed, and plain again.
The call right after each sample is an aborted top-level call (a task
raises while the others run nested calls: joblib kills the workers), so the
workers sampled have all lived the same 99 calls.

Every ``EVERY`` calls, once the tree is quiet (the stuck leaves' time has
passed and every token of the budget is free, or 10 s), one JSON line per
sample: open descriptors and threads of the root and of each top-level
worker, offer markers and memory-map records in the budget directory, lanes
(processes of the tree besides the root, its workers and loky's resource
tracker), tokens held in the tree, and the root's RSS. The last line holds
every sample.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import joblib
import numpy as np
from joblib import Parallel, delayed

from children.common import emit, spin

#: joblib 1.3 has no "generator_unordered": its generator stands in.
UNORDERED = "generator" if joblib.__version__.startswith("1.3.") else "generator_unordered"

#: How long a stuck leaf sleeps; its nested call times out long before.
STUCK = 0.4
KINDS = (
    "plain",
    "arrays",
    "error",
    "timeout",
    "generator",
    "plain",
    "threads",
    "unordered",
    "plain",
    "plain",
)


def leaf(i: int, array: np.ndarray | None = None) -> int:
    spin()
    return i + (0 if array is None else int(array[i]))


def failing_leaf(i: int) -> int:
    if i == 2:
        raise ValueError("a leaf fails")
    return leaf(i)


def stuck_leaf(i: int) -> int:
    if i == 0:
        time.sleep(STUCK)
    return leaf(i)


def nested(kind: str) -> int:
    if kind == "arrays":
        fresh = np.ones(200_000, dtype=np.int64)  # 1.6 MB: above max_nbytes, a memory map
        return sum(Parallel(n_jobs=2)(delayed(leaf)(i, fresh) for i in range(4)))
    if kind == "error":
        try:
            return sum(Parallel(n_jobs=2)(delayed(failing_leaf)(i) for i in range(4)))
        except ValueError:
            return -1
    if kind == "timeout":
        try:
            return sum(Parallel(n_jobs=2, timeout=0.05)(delayed(stuck_leaf)(i) for i in range(4)))
        except Exception as exc:  # joblib 1.3 raises multiprocessing's TimeoutError
            if "Timeout" not in type(exc).__name__:
                raise
            return -2
    if kind == "generator":
        results = Parallel(n_jobs=2, return_as="generator")(delayed(leaf)(i) for i in range(8))
        first = next(results)
        results.close()  # broken off
        return int(first)
    if kind == "unordered":
        unordered = Parallel(n_jobs=2, return_as=UNORDERED)
        return sum(unordered(delayed(leaf)(i) for i in range(4)))
    if kind == "threads":
        out: list[int] = []
        threads = [threading.Thread(target=lambda: out.append(nested("plain"))) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(out)
    return sum(Parallel(n_jobs=2)(delayed(leaf)(i) for i in range(4)))


def task(kind: str, k: int) -> int:
    if kind == "abort" and k == 1:
        time.sleep(0.02)  # the other tasks are in their nested calls
        raise RuntimeError("a task fails: joblib aborts the call")
    return nested("plain" if kind == "abort" else kind)


def one_call(kind: str) -> None:
    try:
        Parallel(n_jobs=2)(delayed(task)(kind, k) for k in range(4))
    except RuntimeError:
        assert kind == "abort"


def _quiet(size: int, path: str) -> None:
    """Until the stuck leaves' time has passed and no token of the tree is held (10 s at most)."""
    from nest_joblib._private.live import free_slots

    time.sleep(STUCK + 0.1)
    deadline = time.monotonic() + 10
    while len(free_slots(path, size)) < size and time.monotonic() < deadline:
        time.sleep(0.05)


def sample(call: int) -> dict[str, object]:
    import psutil
    from joblib.externals.loky import reusable_executor

    import nest_joblib

    info = nest_joblib.info()
    path, size = info["directory"], info["budget"]
    _quiet(size, path)
    info = nest_joblib.info()
    root = psutil.Process()
    executor = reusable_executor._executor
    workers = [] if executor is None else sorted(executor._processes)
    tracker = [p for p in root.children() if "resource_tracker" in " ".join(p.cmdline())]
    others = {p.pid for p in root.children(recursive=True)} - set(workers)
    others -= {p.pid for p in tracker}
    names = sorted(os.listdir(path))

    def fds_threads_lanes(pid: int) -> list[int]:
        try:
            proc = psutil.Process(pid)
            return [proc.num_fds(), proc.num_threads(), len(proc.children())]
        except psutil.Error:
            return [-1, -1, -1]

    # Quiet means settled too: a lane that is ending, an executor thread that
    # is about to go (5 s at most; what stays is what the sample shows).
    per_worker = [fds_threads_lanes(pid) for pid in workers]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.3)
        again = [fds_threads_lanes(pid) for pid in workers]
        if again == per_worker:
            break
        per_worker = again
    dump = os.environ.get("SOAK_DUMP")  # e.g. "py-spy dump --pid": stacks of odd workers
    for pid, (_, threads, lanes) in zip(workers, per_worker):
        if dump and threads != 2 + 2 * lanes:
            import subprocess

            subprocess.run([*dump.split(), str(pid)], stdout=sys.stderr, check=False)
    return {
        "call": call,
        "root_fds": root.num_fds(),
        "root_threads": root.num_threads(),
        "root_thread_names": sorted(t.name for t in threading.enumerate()),
        "root_rss_mb": round(root.memory_info().rss / 2**20, 2),
        "workers": len(workers),
        # Each worker's descriptors, threads and lanes (a lane costs its
        # worker an executor: 2 threads and its pipes).
        "per_worker": per_worker,
        "markers": sum(n.startswith("offer-") for n in names),
        "records": sum(n.startswith("maps-") for n in names),
        "lanes": len(others),
        "held": size - int(info["free"]),
    }


def main() -> None:
    calls = int(sys.argv[1])
    every = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    samples = []
    start = time.monotonic()
    for call in range(1, calls + 1):
        one_call("abort" if call % every == 1 else KINDS[(call - 1) % len(KINDS)])
        if call % every == 0:
            report = sample(call)
            report["seconds"] = round(time.monotonic() - start, 1)
            print(report, file=sys.stderr, flush=True)
            samples.append(report)
    emit(samples)


if __name__ == "__main__":
    main()
