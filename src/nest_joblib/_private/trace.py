"""The trace: what happens to every task of a tree, recorded as it happens.

Imported only when tracing is on (``NEST_JOBLIB_TRACE``, :func:`nest_joblib.trace`);
everywhere else one module global says it is off (``process.tracing is None``).

A *session* belongs to the root: it claims the trace's path and merges the
parts at its end (:mod:`.trace_file`). What it records travels with the work:
every :class:`.batches.Paid` that a traced process sends carries the session's
part prefix, and the process that runs it records into a part file of its own,
``<prefix><pid>``, one JSON line per event, written at once (a task's start is
on disk before it runs). The tasks themselves are labelled where they are
submitted (:meth:`Recorder.submitted`): each function of a joblib batch is
wrapped in a picklable :class:`Traced` that knows its call and level, and finds
out where it runs when it runs.
"""

from __future__ import annotations

import contextlib
import glob
import json
import multiprocessing.util
import os
import threading
import time
import weakref
from typing import Any, Callable

from joblib.parallel import BatchedCalls

from nest_joblib._warnings import warn

from . import process
from .trace_file import CAP, merge, part_prefix

#: Where a task ran, as the trace labels it.
BATCH, LANE, HELPER, INLINE, STAND_IN, THREAD = (
    "top-level batch",
    "lane",
    "helper",
    "inline",
    "stand-in",
    "thread",
)
_BY_THREAD = {"nest-joblib-inline": INLINE, "nest-joblib-stand-in": STAND_IN}

#: What a traced Paid carries: the part prefix, the session, where it runs (``batch``
#: or ``lane``) and its send id.
Info = tuple[str, str, str, str]


def now() -> int:
    """Microseconds on a clock every process of the machine shares."""
    return time.monotonic_ns() // 1000


class Recorder:
    """This process's part of one trace: appends events to ``<prefix><pid>``."""

    def __init__(self, prefix: str, role: str, session: str) -> None:
        self.prefix = prefix
        self.role = role
        #: The root's session: a later one at the same path is another trace.
        self.session = session
        self.pid = os.getpid()
        self._fd = os.open(f"{prefix}{self.pid}", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._lock = threading.Lock()
        self._written = 0
        self.dropped = 0
        self._threads: set[int] = set()
        self._sends = 0
        self._calls = 0
        self._budget = 0
        self._local = threading.local()
        self._waiting: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._write({"k": "proc", "pid": self.pid, "role": role, "ts": now()})

    # -- writing ------------------------------------------------------------------

    def _write(self, record: dict[str, Any]) -> None:
        with self._lock:
            if self._fd < 0:  # closed: its number may be another file's by now
                return
            if self._written >= CAP:
                self.dropped += 1
                if self.dropped & (self.dropped - 1):  # a power of two is written
                    return
                record = {"k": "dropped", "n": self.dropped}
            else:
                self._written += 1
            try:
                os.write(self._fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())
            except OSError:  # a full disk, a part removed under us: the trace loses it
                pass

    def close(self) -> None:
        with self._lock:
            if self._fd < 0:
                return
            if self.dropped:
                line = json.dumps({"k": "dropped", "n": self.dropped}) + "\n"
                with contextlib.suppress(OSError):
                    os.write(self._fd, line.encode())
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1

    def _tid(self) -> int:
        tid = threading.get_native_id()
        if tid not in self._threads:
            self._threads.add(tid)
            name = threading.current_thread().name
            self._write({"k": "thread", "tid": tid, "name": name})
        return tid

    # -- what senders record -------------------------------------------------------

    def paid(self, where: str, size: int) -> Info:
        """What a :class:`.batches.Paid` carries (see :data:`Info`)."""
        with self._lock:
            self._sends += 1
            send = f"{self.pid}.{self._sends}"
            first = size != self._budget
            self._budget = size
        if first:
            self._write({"k": "budget", "size": size})
        return self.prefix, self.session, where, send

    def sent(self, paid: Any, future: Any) -> None:
        """``paid`` was sent; if its process dies, its task ends when this one sees it."""
        info = paid.trace
        if info is None:
            return

        def done(f: Any) -> None:
            if f.cancelled() or f.exception() is None:
                return
            error = type(f.exception()).__name__
            self._write({"k": "lost", "send": info[3], "ts": now(), "error": error})

        future.add_done_callback(done)

    def submitted(self, func: Any, call: Any, level: int) -> None:
        """Label the tasks of a joblib batch of ``call`` (at nesting ``level``)."""
        items = getattr(func, "items", None)
        if not isinstance(func, BatchedCalls) or not isinstance(items, list):
            return
        label = getattr(call, "_nest_trace_call", None)
        if label is None:
            with self._lock:
                self._calls += 1
                label = f"{self.pid}.{self._calls}"
            call._nest_trace_call = label
        func.items = [(Traced(f, label, level), a, k) for f, a, k in items]

    def token(self, slot: int, delta: int) -> None:
        self._write({"k": "tok", "slot": slot, "d": delta, "ts": now()})

    def instant(self, name: str, **args: Any) -> None:
        self._write({"k": "i", "name": name, "tid": self._tid(), "ts": now(), "args": args})

    def cpu_wait(self, feeder: Any, found: bool) -> None:
        """A feeder looked for a free CPU for a queued task: an instant once it waited."""
        began = self._waiting.pop(feeder, None) if found else None
        if not found and feeder not in self._waiting:
            self._waiting[feeder] = now()
        elif began is not None:
            self.instant("task waited for a free CPU", waited_ms=round((now() - began) / 1000, 3))

    # -- what runners record -------------------------------------------------------

    def received(self, info: Info | None, func: Callable[[], Any]) -> Any:
        """Run ``func``, sent here in a traced Paid (``info``), in this thread."""
        local = self._local
        outer = getattr(local, "paid", None)
        local.paid = info
        try:
            return func()
        finally:
            local.paid = outer

    def run(self, task: Traced, args: Any, kwargs: Any) -> Any:
        paid = getattr(self._local, "paid", None)
        where = _BY_THREAD.get(threading.current_thread().name)
        if where is None and paid is not None:
            where = LANE if paid[2] == "lane" else (BATCH if task.level == 0 else HELPER)
        with self._lock:
            self._sends += 1
            number = self._sends
        record = {
            "k": "B",
            "id": number,
            "tid": self._tid(),
            "name": _name(task.func),
            "level": task.level,
            "call": task.call,
            "where": where or THREAD,
            "send": None if paid is None else paid[3],
            "ts": now(),
        }
        self._write(record)  # on disk before the task runs
        ok = False
        try:
            value = task.func(*args, **kwargs)
            ok = True
            return value
        finally:
            self._write({"k": "E", "id": number, "ts": now(), "ok": ok})


def _name(func: Any) -> str:
    """The task's function: through ``functools.partial`` and scikit-learn's ``delayed`` wrapper."""
    for _ in range(3):
        inner = getattr(func, "func", None) or getattr(func, "function", None)
        if inner is None or not callable(inner):
            break
        func = inner
    return str(getattr(func, "__qualname__", None) or type(func).__name__)


class Traced:
    """A task's function, labelled with its call and level: it records itself when it runs."""

    __slots__ = ("call", "func", "level")

    def __init__(self, func: Callable[..., Any], call: str, level: int) -> None:
        self.func = func
        self.call = call
        self.level = level

    def __getstate__(self) -> tuple[Callable[..., Any], str, int]:
        return self.func, self.call, self.level

    def __setstate__(self, state: tuple[Callable[..., Any], str, int]) -> None:
        self.func, self.call, self.level = state

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        recorder = process.tracing
        if not isinstance(recorder, Recorder):
            return self.func(*args, **kwargs)
        return recorder.run(self, args, kwargs)


# -- processes that receive work ---------------------------------------------------


def received(info: Info | None, func: Callable[[], Any]) -> Any:
    """A Paid ran here: join its trace (or leave an ended one), then run ``func``."""
    recorder = process.tracing
    if info is None:
        if isinstance(recorder, Recorder) and recorder.role != "root":
            process.tracing = None  # the root's session ended: so does ours
            recorder.close()
        return func()
    if not isinstance(recorder, Recorder) or recorder.session != info[1]:
        if isinstance(recorder, Recorder) and recorder.role == "root":
            return func()  # a root's own session goes on (a task sent back to it)
        role = "lane" if info[2] == "lane" else "top-level worker"
        try:
            fresh = Recorder(info[0], role, info[1])
        except OSError:  # the part cannot be made here: this process goes untraced
            return func()
        process.tracing = fresh
        if isinstance(recorder, Recorder):
            recorder.close()
        recorder = fresh
    return recorder.received(info, func)


# -- the root's session --------------------------------------------------------------


class Session:
    """The root's trace: claims ``target`` (or ``target.<pid>``), merges the parts at its end."""

    def __init__(self, target: str) -> None:
        self.target, self._claim = _claim(os.path.abspath(target))
        self.prefix = part_prefix(self.target)
        for stale in glob.glob(glob.escape(self.prefix) + "*"):  # of a run killed before
            with contextlib.suppress(OSError):
                os.unlink(stale)
        session = f"{os.getpid()}.{time.monotonic_ns()}"
        self.recorder = Recorder(self.prefix, "root", session)
        self._outer = process.tracing
        self._done = False
        process.tracing = self.recorder

    def finish(self) -> str | None:
        """Stop recording here, merge the parts into the target: its path (None: done before)."""
        if self._done:
            return None
        self._done = True
        if process.tracing is self.recorder:
            process.tracing = self._outer
        self.recorder.close()
        try:
            merge(self.target)
        except OSError as exc:  # a full disk, a directory gone: the parts stay for `trace PATH`
            warn(f"cannot write the trace to {self.target} ({exc}); its parts stay beside it")
        finally:
            _unclaim(self.target, self._claim)
        return self.target


def _claim(target: str) -> tuple[str, int | None]:
    """The path this root's trace goes to, and the descriptor of its claim.

    The first root to lock ``<target>.claim`` writes ``target``; a program
    that a task of a traced tree runs (it inherits the variable) writes
    ``<target>.<pid>``. A claim whose root was killed is free again: the
    kernel dropped its lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no tree is traced there
        return target, None
    for path in (target, f"{target}.{os.getpid()}"):
        fd = os.open(f"{path}.claim", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return path, fd
    raise OSError(f"cannot claim {target} for a trace")


def _unclaim(target: str, fd: int | None) -> None:
    with contextlib.suppress(OSError):
        os.unlink(f"{target}.claim")
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


_sessions: dict[str, Session] = {}
_lock = threading.Lock()


def root(target: str) -> None:
    """``NEST_JOBLIB_TRACE``: this process roots a tree; its trace lands at exit."""
    with _lock:
        if _sessions or isinstance(process.tracing, Recorder):  # traced already, or a worker
            return
        session = _sessions[target] = Session(target)
    # After loky's and multiprocessing's own finalizers (pools, lanes): every
    # process has written its part by then.
    multiprocessing.util.Finalize(None, session.finish, exitpriority=-100)


@contextlib.contextmanager
def traced(path: str | os.PathLike[str]) -> Any:
    """:func:`nest_joblib.trace`: trace the calls made inside, merged when it ends."""
    session = Session(os.fspath(path))
    try:
        yield session.target
    finally:
        session.finish()
