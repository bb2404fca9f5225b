"""``apply()`` twice, with the plugin off: the state it reports before and after."""

from __future__ import annotations

import joblib.parallel

from children.common import emit
from nest_joblib import apply, is_active, nested_backends


def main() -> None:
    before = is_active()
    apply()
    apply(set_default=False, auto_register=False)
    emit(
        {
            "before": before,
            "after": is_active(),
            "nested": nested_backends(),
            "default": joblib.parallel.DEFAULT_BACKEND,
        }
    )


if __name__ == "__main__":
    main()
