"""A finder whose loader has only the old protocol (``load_module``), ahead of ours or behind.

``robust_legacy_finder.py ahead|behind [call]``: with ``call``, run a plain
``Parallel`` call too.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

from children.common import insert_behind_ours
from children.counting import report


class LegacyLoader:
    """A loader of the old protocol: load_module, no exec_module."""

    def __init__(self, spec: ModuleSpec) -> None:
        self.spec = spec

    def load_module(self, fullname: str) -> ModuleType:
        module = importlib.util.module_from_spec(self.spec)
        sys.modules[fullname] = module
        try:
            self.spec.loader.exec_module(module)  # type: ignore[union-attr]
        except BaseException:
            del sys.modules[fullname]
            raise
        return sys.modules[fullname]


class LegacyFinder:
    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name != "joblib.parallel":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        assert spec is not None
        legacy: Any = LegacyLoader(spec)  # no exec_module: not an importlib.abc.Loader
        return importlib.machinery.ModuleSpec(name, legacy, origin=spec.origin)


def main() -> None:
    where, *call = sys.argv[1:]
    if where == "ahead":
        sys.meta_path.insert(0, LegacyFinder())
    else:
        insert_behind_ours(LegacyFinder())
    import joblib  # noqa: F401

    if call != ["call"]:
        report()
        return
    from joblib import Parallel, delayed

    squares = Parallel(n_jobs=2)(delayed(pow)(i, 2) for i in range(4))
    report(squares=squares)


if __name__ == "__main__":
    main()
