"""A finder like setuptools' editable one, behind ours: specs from ``spec_from_file_location``."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any, ClassVar

from children.common import insert_behind_ours
from children.counting import report


class EditableFinder:
    supplied: ClassVar[list[str]] = []

    def __init__(self, root: str) -> None:
        self.root = root

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        kwargs: dict[str, Any] = {}
        if name == "joblib":
            where = os.path.join(self.root, "__init__.py")
            kwargs = {"submodule_search_locations": [self.root]}
        elif name == "joblib.parallel":
            where = os.path.join(self.root, "parallel.py")
        else:
            return None
        EditableFinder.supplied.append(name)
        return importlib.util.spec_from_file_location(name, where, **kwargs)


def main() -> None:
    spec = importlib.machinery.PathFinder.find_spec("joblib")
    assert spec is not None
    assert spec.origin is not None
    finder = EditableFinder(os.path.dirname(spec.origin))
    insert_behind_ours(finder)
    import joblib  # noqa: F401

    report(supplied=EditableFinder.supplied)


if __name__ == "__main__":
    main()
