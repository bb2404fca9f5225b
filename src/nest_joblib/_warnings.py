"""The one warning category of nest-joblib, and how a warning is emitted.

Standard library only: it is imported at start-up when ``NEST_JOBLIB`` has a
bad value, and in the middle of joblib's import when the patch fails.
"""

from __future__ import annotations

import sys

__all__ = ["NestJoblibWarning", "warn"]


class NestJoblibWarning(RuntimeWarning):
    """Category of every warning nest-joblib emits (bad settings, failed patch)."""


def warn(message: str) -> None:
    """Emit one warning line that names nest-joblib and can be filtered.

    ``warn_explicit`` with a file name that does not exist prints exactly one
    line (no source line is looked up), at any call depth.
    """
    import warnings

    try:
        warnings.warn_explicit(message, NestJoblibWarning, "nest-joblib", 0, module="nest_joblib")
    except Exception:  # -W error: a warning must not break start-up or import joblib
        try:
            sys.stderr.write(f"nest-joblib: {message}\n")
        except Exception:
            pass
