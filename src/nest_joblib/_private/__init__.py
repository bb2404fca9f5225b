"""Implementation of nest-joblib; nothing here is public API.

joblib is imported first, before any module of this package: importing
joblib fires the start-up hook, which imports these modules to patch it. Were
one of them half-imported at that moment (say ``variants``, imported to
unpickle a nested backend in a fresh worker), the patch would fail.
"""

try:
    import joblib.parallel  # noqa: F401
except ImportError:  # status and the CLI still work without joblib
    pass
