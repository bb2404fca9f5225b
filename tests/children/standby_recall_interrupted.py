"""A KeyboardInterrupt while a top-level call recalls its stand-by batches leaves no mark.

The mark (a file in the budget directory) keeps the call's stand-by batches
helping for as long as it exists. A hook raises ``KeyboardInterrupt`` as
``recall()`` takes the lock of this process's stand-by calls (Ctrl-C at the
end of the call): were the mark removed after that point, it would stay, and
the batches would never end.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from children.common import emit
from nest_joblib._private import budget, standby


class Interrupted:
    """A lock whose taking is interrupted by Ctrl-C."""

    def __enter__(self) -> None:
        raise KeyboardInterrupt

    def __exit__(self, *_: Any) -> None:
        pass


def main() -> None:
    ref = budget.root_budget(2)
    spares = standby.Spares(ref, 1, lambda _: None)  # no batch sent: the mark alone
    calls = standby._calls()
    interrupted = False
    mark = None
    try:
        with spares.standing_by(object()):
            mark = spares._mark
            calls.lock = Interrupted()  # type: ignore[assignment]
    except KeyboardInterrupt:
        interrupted = True
    calls.lock = threading.Lock()
    emit({"made": mark is not None, "interrupted": interrupted, "left": os.path.exists(mark or "")})


if __name__ == "__main__":
    main()
