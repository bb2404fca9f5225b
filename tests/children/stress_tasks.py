"""The tasks of the stress suite's generated programs (see ``tests/stress.py``).

A program is a tree of nested ``Parallel`` calls, written as JSON-ready
dicts. Worker processes import this module to unpickle :func:`run_task`
(by reference), so it imports nothing heavy at import time.

Every task returns ``[path, payload]``: its path in the tree, and for a leaf
its kind, for a call the list of its tasks' values (or ``["caught", name]``),
so a program's value is fixed by the program alone and the results of
``generator_unordered`` can be matched by path. Leaves that compute (or read
an array) append their span to ``<log>/spans``: ``pid start end``, wall-clock
seconds; leaves stuck past a
timeout log ``stuck-start`` and ``stuck-end`` lines, so that the driver knows
when the last of them ended.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Elements of the array a call hands its "array" leaves: 2.4 MB, above joblib's max_nbytes (1 MB).
ARRAY_LENGTH = 300_000
#: Exceptions a "raise" leaf raises, by name.
ERRORS = {"ValueError": ValueError, "KeyError": KeyError, "ZeroDivisionError": ZeroDivisionError}


def _log(log: str, line: str) -> None:
    fd = os.open(os.path.join(log, "spans"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())  # one write: lines of processes never mix
    finally:
        os.close(fd)


def _compute(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(500))


def run_call(call: dict[str, Any], path: str, log: str) -> Any:
    """Run ``call``'s ``Parallel``; its results (the first ``take`` of a generator)."""
    from joblib import Parallel, delayed

    kwargs: dict[str, Any] = {"n_jobs": call["n_jobs"], "return_as": call["return_as"]}
    for name in ("batch_size", "pre_dispatch", "prefer", "timeout"):
        if call.get(name) is not None:
            kwargs[name] = call[name]
    array = None
    if any(task["kind"] == "array" for task in call["tasks"]):
        import numpy as np

        array = np.arange(ARRAY_LENGTH, dtype=np.float64)
    tasks = [
        delayed(run_task)(task, f"{path}.{i}", log, array if task["kind"] == "array" else None)
        for i, task in enumerate(call["tasks"])
    ]
    results = Parallel(**kwargs)(tasks)
    if call["return_as"] == "list":
        return results
    taken = []
    for result in results:
        taken.append(result)
        if call.get("take") is not None and len(taken) >= call["take"]:
            break  # broken off: the generator is dropped, as a user's loop would
    del results
    return taken


def run_caught(call: dict[str, Any], path: str, log: str) -> Any:
    """:func:`run_call`; its exception, if ``call["catch"]``, as ``["caught", class, message]``."""
    if not call.get("catch"):
        return run_call(call, path, log)
    try:
        return run_call(call, path, log)
    except Exception as exc:
        return ["caught", qualified(exc), str(exc)[:200]]


def qualified(exc: BaseException) -> str:
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"


def run_task(task: dict[str, Any], path: str, log: str, array: Any = None) -> Any:
    kind = task["kind"]
    if kind == "compute":
        start = time.time()
        _compute(task["seconds"])
        _log(log, f"{os.getpid()} {start} {time.time()}")
    elif kind == "sleep":
        time.sleep(task["seconds"])
    elif kind == "raise":
        raise ERRORS[task["error"]](path)
    elif kind == "array":
        start = time.time()
        assert array is not None
        assert float(array[-1]) == ARRAY_LENGTH - 1
        _compute(task["seconds"])
        _log(log, f"{os.getpid()} {start} {time.time()}")
    elif kind == "stuck":
        _log(log, f"stuck-start {path}")
        time.sleep(task["seconds"])
        _log(log, f"stuck-end {path} {time.time()}")
    elif kind == "call":
        return [path, run_caught(task["call"], path, log)]
    elif kind == "threads":
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            futures = [
                pool.submit(run_caught, call, f"{path}.t{i}", log)
                for i, call in enumerate(task["calls"])
            ]
            return [path, [future.result() for future in futures]]
    else:
        raise AssertionError(f"unknown task kind {kind!r}")
    return [path, kind]
