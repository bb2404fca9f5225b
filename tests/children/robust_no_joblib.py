"""``import joblib`` where there is none: whether our finder is there, the error, what loaded.

``robust_no_joblib.py [hide]``: with ``hide``, a finder behind ours hides the
joblib of this environment. Standard library only: it also runs in a
virtual environment that holds the plugin and nothing else.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

from children.common import insert_behind_ours


class Hide:
    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name == "joblib" or name.startswith("joblib."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def main() -> None:
    finder = any(type(f).__name__ == "JoblibFinder" for f in sys.meta_path)
    if sys.argv[1:] == ["hide"]:
        insert_behind_ours(Hide())
    error = None
    try:
        import joblib  # noqa: F401
    except ModuleNotFoundError as exc:
        error = [type(exc).__name__, exc.name, str(exc)]
    modules = sorted(m for m in sys.modules if "joblib" in m)
    print(json.dumps({"finder": finder, "error": error, "modules": modules}))


if __name__ == "__main__":
    main()
