"""The patch fails while it commits: ``EXTERNAL_BACKENDS.update`` raises. Run with NEST_JOBLIB=0."""

from __future__ import annotations

from typing import Any

import nest_joblib._hook as _h
from children.counting import report


class NoUpdate(dict[str, Any]):
    def update(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("this joblib's EXTERNAL_BACKENDS cannot be updated")


def main() -> None:
    import joblib  # noqa: F401
    import joblib.parallel as jp

    jp.EXTERNAL_BACKENDS = NoUpdate(jp.EXTERNAL_BACKENDS)
    _h.patch_module(jp)
    report()


if __name__ == "__main__":
    main()
