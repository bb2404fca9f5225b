"""What the plugin did in this interpreter: settings in force, patch state."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .settings import Settings


@dataclass
class State:
    #: Set when the patch has been applied to the live ``joblib.parallel``.
    patched: bool = False
    #: Why the patch is not applied, when it failed.
    failure: str | None = None
    #: ``apply()`` flags in force.
    set_default: bool = True
    auto_register: bool = True
    #: How the patch came in: "plugin" (the start-up hook) or "apply()".
    source: str | None = None
    #: Names of the nested variants registered so far.
    variants: list[str] = field(default_factory=list)


state = State()
_settings: Settings | None = None


def settings() -> Settings:
    """The environment as parsed the first time anyone asked, in this process."""
    global _settings
    if _settings is None:
        _settings = Settings.from_env(os.environ)
    return _settings


def ablated(mechanism: str) -> bool:
    """Whether ``NEST_JOBLIB_ABLATE`` switched ``mechanism`` off (benchmarks only)."""
    return mechanism in settings().ablate
