"""nest-joblib's environment variables, parsed in one place.

``NEST_JOBLIB`` itself is read at start-up, by the start-up module (status
reads it again here to say why); everything else is read when joblib is
patched. On/off values are parsed by :mod:`nest_joblib._switch`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from nest_joblib._switch import parse_switch

__all__ = ["ENGINES", "MECHANISMS", "Settings"]

#: Engines whose nested variants ``NEST_JOBLIB_BACKENDS`` can pre-register.
ENGINES = ("dask", "ray")
#: Engines that cannot run joblib calls from inside their own tasks.
_UNNESTABLE_ENGINES = {
    "spark": "joblibspark cannot start jobs from inside Spark executors, so a "
    "nested Spark backend cannot exist; use dask or ray for nested calls",
}


#: Mechanisms of the budget that ``NEST_JOBLIB_ABLATE`` can switch off, to
#: measure what each one is worth (``benchmarks/nesting.py --ablate``). Not for
#: users: a benchmark's switch, with no promise attached.
MECHANISMS = (
    "inline",
    "stand-ins",
    "lanes",
    "helpers",
)


class Settings:
    """Every nest-joblib environment variable, parsed once.

    Build it with :meth:`from_env` from any mapping (``os.environ`` in real
    use, a plain dict in tests). Bad values never raise: each one becomes a
    message in :attr:`problems` and a safe value.
    """

    __slots__ = ("ablate", "backends", "cpus", "debug", "enabled", "problems", "trace")

    def __init__(
        self,
        enabled: bool = True,
        backends: tuple[str, ...] = (),
        cpus: int | None = None,
        debug: bool = False,
        problems: tuple[str, ...] = (),
        ablate: frozenset[str] = frozenset(),
        trace: str | None = None,
    ) -> None:
        #: ``NEST_JOBLIB``: whether the plugin patches joblib at all.
        self.enabled = enabled
        #: ``NEST_JOBLIB_BACKENDS``: engines whose nested variants are
        #: registered lazily, in :data:`ENGINES`.
        self.backends = backends
        #: ``NEST_JOBLIB_CPUS``: the CPU budget; ``None`` means
        #: ``joblib.cpu_count()``, ``0`` means no budget (naive nesting).
        self.cpus = cpus
        #: ``NEST_JOBLIB_DEBUG``: log to stderr at debug level.
        self.debug = debug
        #: One message per bad value, naming the variable, the value and
        #: what is accepted.
        self.problems = problems
        #: ``NEST_JOBLIB_ABLATE``: mechanisms switched off (benchmarks only).
        self.ablate = ablate
        #: ``NEST_JOBLIB_TRACE``: where the tree's trace goes (an absolute path), or None.
        self.trace = trace

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"Settings({fields})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Settings):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        problems: list[str] = []
        enabled, problem = parse_switch("NEST_JOBLIB", environ.get("NEST_JOBLIB"), True)
        if problem:
            problems.append(problem + "; nest-joblib stays off")
        backends = _parse_backends(environ.get("NEST_JOBLIB_BACKENDS"), problems)
        cpus = _parse_cpus(environ.get("NEST_JOBLIB_CPUS"), problems)
        debug, problem = parse_switch("NEST_JOBLIB_DEBUG", environ.get("NEST_JOBLIB_DEBUG"), False)
        if problem:
            problems.append(problem + "; debug logging stays off")
        ablate = _parse_ablate(environ.get("NEST_JOBLIB_ABLATE"), problems)
        trace = _parse_trace(environ.get("NEST_JOBLIB_TRACE"), problems)
        return cls(enabled, backends, cpus, debug, tuple(problems), ablate, trace)


def _parse_backends(raw: str | None, problems: list[str]) -> tuple[str, ...]:
    if raw is None:
        return ()
    names: list[str] = []
    for item in raw.split(","):
        name = item.strip().lower()
        if not name:
            continue
        if name in ENGINES:
            if name not in names:
                names.append(name)
        elif name in _UNNESTABLE_ENGINES:
            problems.append(
                f"NEST_JOBLIB_BACKENDS: {name!r} is ignored: {_UNNESTABLE_ENGINES[name]}"
            )
        else:
            problems.append(
                f"NEST_JOBLIB_BACKENDS={raw!r}: {item.strip()!r} is not a known "
                f"engine and is ignored; accepted names are {', '.join(ENGINES)} "
                "(comma-separated)"
            )
    return tuple(names)


def _parse_ablate(raw: str | None, problems: list[str]) -> frozenset[str]:
    if raw is None:
        return frozenset()
    names = {item.strip().lower() for item in raw.split(",") if item.strip()}
    unknown = sorted(names - set(MECHANISMS))
    if unknown:
        problems.append(
            f"NEST_JOBLIB_ABLATE={raw!r}: {', '.join(map(repr, unknown))} ignored; accepted "
            f"names are {', '.join(MECHANISMS)} (comma-separated; for benchmarks only)"
        )
    return frozenset(names & set(MECHANISMS))


def _parse_cpus(raw: str | None, problems: list[str]) -> int | None:
    if raw is None or not raw.strip():
        return None
    value = raw.strip().lower()
    if value in ("off", "none", "unlimited"):
        return 0
    try:
        cpus = int(value)
    except ValueError:
        cpus = -1
    if cpus >= 1:
        return cpus
    problems.append(
        f"NEST_JOBLIB_CPUS={raw!r} is not accepted; use a whole number of CPUs "
        "of at least 1, or 'off' for no budget; using joblib.cpu_count()"
    )
    return None


def _parse_trace(raw: str | None, problems: list[str]) -> str | None:
    if raw is None:
        return None
    path = raw.strip()
    why = None
    if not path:
        why = "is empty"
    elif os.path.isdir(path):
        why = "is a directory"
    elif not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        why = "is in a directory that does not exist"
    if why is None:
        return os.path.abspath(path)
    problems.append(
        f"NEST_JOBLIB_TRACE={raw!r} {why}; accepted is the path of a file to write the "
        "trace to, in an existing directory; nothing is traced"
    )
    return None
