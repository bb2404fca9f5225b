"""The environment parser (promise P8): bad input gets a clear message, never a crash.

``Settings.from_env`` is pure, so it is tested in-process under hypothesis.
What a user sees (the warning at start-up, the exit status, whether the
finder is installed) is tested in a fresh interpreter per value
(``tests/children/settings_report.py``).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import run_child, run_python
from nest_joblib._private.settings import ENGINES, Settings

VARIABLES = (
    "NEST_JOBLIB",
    "NEST_JOBLIB_BACKENDS",
    "NEST_JOBLIB_CPUS",
    "NEST_JOBLIB_DEBUG",
    "NEST_JOBLIB_ABLATE",
    "NEST_JOBLIB_TRACE",
)
ON = ("1", "true", "on", "yes")
OFF = ("0", "false", "off", "no")

#: Any text, biased towards what people actually type.
values = st.one_of(
    st.text(),
    st.sampled_from([*ON, *OFF, "", " ", "2", "-1", "off", "none", "dask", "ray", "spark"]),
    st.builds(
        lambda word, left, right: left + word + right,
        st.sampled_from([*ON, *OFF, "dask, ray", "4", "ON", "Yes", "DASK"]),
        st.sampled_from(["", " ", "\t", "\n "]),
        st.sampled_from(["", " ", "\t", " \n"]),
    ),
    st.integers(min_value=-(10**6), max_value=10**6).map(str),
)
#: Each variable absent, or set to any string.
environments = st.fixed_dictionaries({}, optional=dict.fromkeys(VARIABLES, values))


def _problems_about(problems: tuple[str, ...], name: str) -> list[str]:
    """Problems that name variable ``name`` (not a longer one sharing its prefix)."""
    return [p for p in problems if p.startswith((f"{name}=", f"{name}:"))]


@settings(max_examples=400, deadline=None)
@given(environments)
def test_any_environment_gives_settings(env: dict[str, str]) -> None:
    parsed = Settings.from_env(env)
    assert isinstance(parsed, Settings)
    assert isinstance(parsed.enabled, bool)
    assert isinstance(parsed.debug, bool)
    assert isinstance(parsed.backends, tuple)
    assert set(parsed.backends) <= set(ENGINES)
    assert len(set(parsed.backends)) == len(parsed.backends)
    assert parsed.cpus is None or (isinstance(parsed.cpus, int) and parsed.cpus >= 0)
    # Every problem names the variable it is about, and the value given.
    for problem in parsed.problems:
        about = [name for name in VARIABLES if _problems_about((problem,), name)]
        assert len(about) == 1, problem
        assert about[0] in env, problem
    # Each variable that is absent has nothing to complain about.
    for name in VARIABLES:
        if name not in env:
            assert not _problems_about(parsed.problems, name)
    # Parsing is a function of the mapping only.
    assert Settings.from_env(dict(env)) == parsed
    repr(parsed)


@settings(max_examples=300, deadline=None)
@given(values)
def test_switch_accepted_or_one_clear_problem(raw: str) -> None:
    parsed = Settings.from_env({"NEST_JOBLIB": raw})
    problems = _problems_about(parsed.problems, "NEST_JOBLIB")
    word = raw.strip().lower()
    if word in ON or word in OFF:
        assert parsed.enabled is (word in ON)
        assert problems == []
    else:
        # Fail safe: an unrecognised value turns the plugin off, and says so.
        assert parsed.enabled is False
        assert len(problems) == 1
        assert repr(raw) in problems[0]
        assert all(value in problems[0] for value in (*ON, *OFF))


@settings(max_examples=300, deadline=None)
@given(values)
def test_debug_accepted_or_one_clear_problem(raw: str) -> None:
    parsed = Settings.from_env({"NEST_JOBLIB_DEBUG": raw})
    problems = _problems_about(parsed.problems, "NEST_JOBLIB_DEBUG")
    word = raw.strip().lower()
    if word in ON or word in OFF:
        assert parsed.debug is (word in ON)
        assert problems == []
    else:
        assert parsed.debug is False
        assert len(problems) == 1
        assert repr(raw) in problems[0]
    assert parsed.enabled is True  # a bad debug switch does not turn the plugin off


@settings(max_examples=300, deadline=None)
@given(values)
def test_cpus_number_or_one_clear_problem(raw: str) -> None:
    parsed = Settings.from_env({"NEST_JOBLIB_CPUS": raw})
    problems = _problems_about(parsed.problems, "NEST_JOBLIB_CPUS")
    if parsed.cpus is None:
        # The default (joblib.cpu_count()), quietly only when nothing was given.
        assert len(problems) == (0 if not raw.strip() else 1)
        if problems:
            assert repr(raw) in problems[0]
            assert "off" in problems[0]
    else:
        assert problems == []
        assert parsed.cpus == 0 or parsed.cpus >= 1


@settings(max_examples=300, deadline=None)
@given(values)
def test_backends_known_engines_or_problems(raw: str) -> None:
    parsed = Settings.from_env({"NEST_JOBLIB_BACKENDS": raw})
    problems = _problems_about(parsed.problems, "NEST_JOBLIB_BACKENDS")
    items = [item.strip() for item in raw.split(",") if item.strip()]
    known = [item for item in items if item.lower() in ENGINES]
    assert list(parsed.backends) == list(dict.fromkeys(item.lower() for item in known))
    assert len(problems) == len(items) - len(known)
    for problem in problems:
        assert "dask" in problem or "Spark" in problem


@pytest.mark.parametrize(
    ("env", "field", "expected"),
    [
        ({}, "enabled", True),
        ({"NEST_JOBLIB": " On "}, "enabled", True),
        ({"NEST_JOBLIB": "\tNO\n"}, "enabled", False),
        ({"NEST_JOBLIB_CPUS": "off"}, "cpus", 0),
        ({"NEST_JOBLIB_CPUS": " 12 "}, "cpus", 12),
        ({"NEST_JOBLIB_CPUS": "0"}, "cpus", None),
        ({"NEST_JOBLIB_CPUS": ""}, "cpus", None),
        ({"NEST_JOBLIB_BACKENDS": "Ray, dask,ray,"}, "backends", ("ray", "dask")),
        ({"NEST_JOBLIB_BACKENDS": "spark"}, "backends", ()),
        ({"NEST_JOBLIB_DEBUG": "YES"}, "debug", True),
        ({"NEST_JOBLIB_ABLATE": " Lanes,helpers,"}, "ablate", frozenset({"lanes", "helpers"})),
        ({"NEST_JOBLIB_ABLATE": "lanes,warp"}, "ablate", frozenset({"lanes"})),
        ({"NEST_JOBLIB_TRACE": "/"}, "trace", None),
        ({"NEST_JOBLIB_TRACE": " "}, "trace", None),
        ({"NEST_JOBLIB_TRACE": "/no/such/dir/t.json"}, "trace", None),
        ({"NEST_JOBLIB_TRACE": "/tmp/t.json"}, "trace", "/tmp/t.json"),
    ],
)
def test_examples(env: dict[str, str], field: str, expected: object) -> None:
    assert getattr(Settings.from_env(env), field) == expected


# -- what a user sees, in a fresh interpreter ----------------------------------


def _warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "NestJoblibWarning" in line]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "value", ["", "   ", "\t", "2", "-1", "yes please", "enable", "o n", "1.0", "true!", "ja"]
)
def test_bad_switch_warns_and_stays_off(value: str) -> None:
    proc = run_child("settings_report", env={"NEST_JOBLIB": value}, timeout=50)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    lines = _warning_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr  # one line, though a venv runs the .pth twice
    line = lines[0]
    assert "NEST_JOBLIB=" in line
    assert repr(value) in line
    assert all(word in line for word in (*ON, *OFF)), line
    assert proc.stderr.strip() == line  # nothing else: no traceback
    assert report == {"finder": False, "default": "loky", "nested": []}


@pytest.mark.timeout(60)
def test_bad_switch_warns_exactly_one_line() -> None:
    proc = run_python("pass", env={"NEST_JOBLIB": "yes please"}, timeout=50)
    assert len(_warning_lines(proc.stderr)) == 1, proc.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("value", "enabled"),
    [
        (None, True),
        ("1", True),
        ("true", True),
        ("on", True),
        ("yes", True),
        (" On ", True),  # PRODUCT.md: case and surrounding blanks are ignored
        ("TRUE", True),
        ("\tyes\n", True),
        ("0", False),
        ("false", False),
        ("off", False),
        ("no", False),
        (" OFF ", False),
        ("No", False),
    ],
)
def test_good_switch(value: str | None, enabled: bool) -> None:
    env = {} if value is None else {"NEST_JOBLIB": value}
    proc = run_child("settings_report", env=env, timeout=50)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.stderr == ""
    assert report["finder"] is enabled
    if enabled:
        assert report["default"] == "nested-loky"
        assert "nested-loky" in report["nested"]
    else:
        assert report == {"finder": False, "default": "loky", "nested": []}


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("NEST_JOBLIB_CPUS", "many", "off"),
        ("NEST_JOBLIB_CPUS", "-3", "at least 1"),
        ("NEST_JOBLIB_BACKENDS", "dusk", "dask, ray"),
        ("NEST_JOBLIB_DEBUG", "verbose", "true"),
        ("NEST_JOBLIB_ABLATE", "warp", "stand-ins"),
        ("NEST_JOBLIB_TRACE", "", "the path of a file"),
        ("NEST_JOBLIB_TRACE", "/", "the path of a file"),
    ],
)
def test_other_bad_values_warn_once_and_patch(name: str, value: str, accepted: str) -> None:
    proc = run_child("settings_report", env={name: value}, timeout=50)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    lines = _warning_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert name in lines[0]
    assert repr(value) in lines[0]
    assert accepted in lines[0]
    assert proc.stderr.strip() == lines[0]
    # Only the bad setting falls back to its default: the plugin still works.
    assert report["finder"] is True
    assert report["default"] == "nested-loky"


@pytest.mark.timeout(60)
def test_bad_value_never_imported_joblib_is_silent_until_needed() -> None:
    """A bad budget value costs nothing in a program that never imports joblib."""
    proc = run_python(
        "import sys; print(sorted(m for m in sys.modules if 'joblib' in m))",
        env={"NEST_JOBLIB_CPUS": "many"},
        timeout=50,
    )
    assert proc.stderr == ""
    assert proc.stdout.strip() == "['_nest_joblib_startup']"
