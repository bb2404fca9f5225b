"""On/off environment variables (``NEST_JOBLIB``, ``NEST_JOBLIB_DEBUG``): one parser.

Standard library only: the start-up module imports it to word a warning about
a bad ``NEST_JOBLIB`` (it tells the accepted values apart itself, from a copy
of :data:`ON` and :data:`OFF` that a test keeps equal to these, so that a good
value costs no import at start-up).
"""

from __future__ import annotations

__all__ = ["OFF", "ON", "parse_switch"]

#: Accepted values, case and surrounding blanks ignored.
ON = ("1", "true", "on", "yes")
OFF = ("0", "false", "off", "no")


def parse_switch(name: str, raw: str | None, default: bool) -> tuple[bool, str | None]:
    """Parse an on/off variable: (value, problem or None). A bad value is off."""
    if raw is None:
        return default, None
    value = raw.strip().lower()
    if value in ON:
        return True, None
    if value in OFF:
        return False, None
    return False, (
        f"{name}={raw!r} is not recognised; accepted values are "
        f"{', '.join(ON)} (on) or {', '.join(OFF)} (off)"
    )
