"""A joblib that looks different: a loader changes ``joblib.parallel`` before our hook runs.

``robust_mutating_finder.py MUTATION``, one of :data:`MUTATIONS`.
"""

from __future__ import annotations

import collections
import importlib.machinery
import sys
from collections.abc import Callable, Sequence
from importlib.abc import Loader
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

from children.common import insert_behind_ours
from children.counting import report


def _drop_external(module: Any) -> None:
    del module.EXTERNAL_BACKENDS


def _wrap_backends(module: Any) -> None:
    module.BACKENDS = collections.UserDict(module.BACKENDS)


def _rename_external(module: Any) -> None:
    module.BACKENDS_RENAMED = module.EXTERNAL_BACKENDS
    del module.EXTERNAL_BACKENDS


MUTATIONS: dict[str, Callable[[Any], None]] = {
    "drop-external": _drop_external,
    "wrap-backends": _wrap_backends,
    "rename-external": _rename_external,
}


class MutatingLoader:
    """Runs joblib.parallel's body, then changes it before our hook runs."""

    def __init__(self, loader: Loader, mutate: Callable[[Any], None]) -> None:
        self.loader = loader
        self.mutate = mutate

    def create_module(self, spec: ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        self.mutate(module)


class MutatingFinder:
    def __init__(self, mutate: Callable[[Any], None]) -> None:
        self.mutate = mutate

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name != "joblib.parallel":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        assert spec is not None
        assert spec.loader is not None
        spec.loader = MutatingLoader(spec.loader, self.mutate)  # type: ignore[assignment]
        return spec


def main() -> None:
    finder = MutatingFinder(MUTATIONS[sys.argv[1]])
    insert_behind_ours(finder)
    import joblib
    import joblib.parallel as jp
    from joblib import Parallel, delayed

    original_register = getattr(jp.register_parallel_backend, "__wrapped__", None)
    squares = Parallel(n_jobs=2)(delayed(pow)(i, 2) for i in range(4))
    report(
        squares=squares,
        version=joblib.__version__,
        backends=sorted(jp.BACKENDS),
        wrapped=original_register is not None,
    )


if __name__ == "__main__":
    main()
