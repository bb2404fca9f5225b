"""Shared helpers: every start-up case runs in a fresh interpreter.

The tests run against the package as installed in this environment (tox
builds the wheel and installs it), so a subprocess of ``sys.executable``
starts exactly like a user's program: ``nest_joblib.pth`` included.

The programs those interpreters run are modules of the package ``children``
(``tests/children/``), run by path: ``run_child("budget_recall")`` runs
``tests/children/budget_recall.py``. They share helpers from
``children.common``, which worker processes must import to unpickle the
functions defined there, so the child's ``PYTHONPATH`` is this directory
alone (:func:`child_env`): every process of the tree inherits it, however it
is started (loky, Dask's nanny, Ray's raylet, ``subprocess``), and the
package under test still comes from site-packages, never from the source tree.
Programs of a line or two stay inline (:func:`run_python`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from children.common import OUR_VARIABLES

#: joblib's (major, minor) in this environment, where the cases must allow for an older joblib.
JOBLIB_VERSION = tuple(int(part) for part in metadata.version("joblib").split(".")[:2])
#: This directory: the ``PYTHONPATH`` of child programs, so that ``children`` imports.
TESTS = Path(__file__).resolve().parent
#: The child programs, one module each.
CHILDREN = TESTS / "children"


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OUR_VARIABLES}
    env.pop("PYTHONPATH", None)  # the installed package, not the source tree
    env["PYTHONWARNINGS"] = "default"
    env.update(extra or {})
    return env


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """:func:`clean_env`, with ``PYTHONPATH`` set to this directory alone (see above)."""
    env = clean_env(extra)
    env["PYTHONPATH"] = str(TESTS)
    return env


def child_command(name: str, *args: str, python: str | Path = sys.executable) -> list[str]:
    """The command that runs ``tests/children/<name>.py`` by path with ``args``."""
    path = CHILDREN / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(path)
    return [str(python), str(path), *args]


def _completed(proc: subprocess.CompletedProcess[str], check: bool) -> None:
    if check and proc.returncode != 0:
        raise AssertionError(
            f"exit status {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )


def run_child(
    name: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run the child program ``name`` with ``args`` in a fresh interpreter of this environment."""
    proc = subprocess.run(
        child_command(name, *args),
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    _completed(proc, check)
    return proc


def run_child_json(
    name: str, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> Any:
    """Run the child program ``name``, whose last stdout line is JSON, and return it decoded."""
    return last_json(run_child(name, *args, env=env, timeout=timeout).stdout)


def last_json(stdout: str) -> Any:
    """The last line of ``stdout``, decoded as JSON."""
    return json.loads(stdout.strip().splitlines()[-1])


def run_python(
    code: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    args: tuple[str, ...] = (),
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter of this environment."""
    proc = subprocess.run(
        [sys.executable, *args, "-c", textwrap.dedent(code)],
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    _completed(proc, check)
    return proc


def run_json(code: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> Any:
    """Run ``code``, whose last stdout line is JSON, and return it decoded."""
    return last_json(run_python(code, env=env, timeout=timeout).stdout)


@pytest.fixture
def python() -> Any:
    return run_python
