"""A finder that supplies ``joblib.parallel`` itself, ahead of ours or behind it.

``robust_claiming_finder.py ahead|behind``
"""

from __future__ import annotations

import importlib.machinery
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

from children.common import insert_behind_ours
from children.counting import report


class ClaimsParallel:
    """Supplies joblib.parallel itself, with a plain SourceFileLoader spec."""

    claimed = 0

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name != "joblib.parallel":
            return None
        ClaimsParallel.claimed += 1
        return importlib.machinery.PathFinder.find_spec(name, path)


def main() -> None:
    if sys.argv[1] == "ahead":
        sys.meta_path.insert(0, ClaimsParallel())
    else:
        insert_behind_ours(ClaimsParallel())
    import joblib  # noqa: F401

    report(claimed=ClaimsParallel.claimed)


if __name__ == "__main__":
    main()
