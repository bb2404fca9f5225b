"""Large arrays travel by reference: how a nested call's tasks are pickled.

A task that leaves its caller's process (for a lane or a helper) is pickled
once, with joblib's own memory-mapping reducers (see
:func:`.contract.memmapping_reducers`) and the nested ``Parallel``'s
``max_nbytes``, ``mmap_mode`` and ``temp_folder``, as joblib's loky pool
pickles what it sends to its workers: a 400 MB array given to every leaf
travels as a few hundred bytes naming its file, not once per task.

The call's folder is recorded in the tree's budget directory before joblib
makes it (:func:`.directory.record_maps`): a tree killed whole leaves it,
and only such a record lets a later root remove it.
"""

from __future__ import annotations

import logging
import os
import pickle
import threading
import uuid
from typing import Any, Callable

from . import contract, directory

logger = logging.getLogger("nest_joblib")


class TaskPickler:
    """Pickles the tasks of one nested call; :meth:`close` deletes its files.

    ``record_in`` is the tree's budget directory, where the call's folder is
    recorded (``None``: not recorded, as in tests).
    """

    def __init__(
        self,
        max_nbytes: int | None = 1024**2,
        mmap_mode: str = "r",
        temp_folder: str | None = None,
        record_in: str | None = None,
    ) -> None:
        self._root = temp_folder
        self._record_in = record_in
        self._record: str | None = None
        self._lock = threading.Lock()
        self._manager: Any = None  # made with the first dump: most calls dump nothing
        self._closed = False
        self._reducers = contract.memmapping_reducers(max_nbytes, mmap_mode, self._folder)

    def _folder(self) -> str:
        with self._lock:
            if self._closed:
                raise RuntimeError("this nested call is over")
            if self._manager is None:
                # joblib may make the folder at once (in /dev/shm): recorded first.
                context = uuid.uuid4().hex
                if self._record_in:
                    self._record = directory.record_maps(self._record_in, context, self._root)
                self._manager = contract.temp_folder_manager(self._root, context)
            manager = self._manager
        return contract.temp_folder(manager)

    def dumps(self, task: Callable[[], Any]) -> bytes:
        """``task`` as bytes; raises what pickling raises."""
        try:
            return contract.dumps(task, self._reducers)
        except Exception as exc:
            # joblib 1.3 cannot reduce a memory map under numpy 2 (it calls
            # np.byte_bounds): by value then, as pickling without joblib would.
            logger.debug("memory-mapping pickler failed (%r): pickling by value", exc)
            return contract.dumps(task)

    def close(self) -> None:
        """Delete the call's memory-map folder (maps still open stay readable)."""
        with self._lock:
            manager, self._manager = self._manager, None
            record, self._record = self._record, None
            self._closed = True
        if manager is None:
            return
        folder = contract.temp_folder(manager)
        try:
            contract.clean_temp_folder(manager)
        except OSError as exc:  # pragma: no cover - a folder removed under us
            logger.debug("could not remove a memory-map folder: %r", exc)
        if record is not None and not os.path.lexists(folder):
            directory.forget_maps(record)


class Pickled:
    """A task pickled by a :class:`TaskPickler`, run where it is unpickled.

    loky pickles this object as the bytes it holds, so a lane receives the
    task exactly as a helper does.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __getstate__(self) -> bytes:
        return self.data

    def __setstate__(self, data: bytes) -> None:
        self.data = data

    def __call__(self) -> Any:
        return load(self.data)()


def load(data: bytes) -> Callable[[], Any]:
    """The task that :meth:`TaskPickler.dumps` pickled."""
    task: Callable[[], Any] = pickle.loads(data)
    return task
