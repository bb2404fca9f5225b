"""What a user sees of the settings: whether the finder is installed, joblib's default backend,
and the nested backends."""

from __future__ import annotations

import _nest_joblib_startup as s
from children.common import emit


def main() -> None:
    finder = s.installed_finder() is not None
    import joblib.parallel

    emit(
        {
            "finder": finder,
            "default": joblib.parallel.DEFAULT_BACKEND,
            "nested": sorted(b for b in joblib.parallel.BACKENDS if b.startswith("nested-")),
        }
    )


if __name__ == "__main__":
    main()
