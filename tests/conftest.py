"""Shared helpers: every start-up case runs in a fresh interpreter.

The tests run against the package as installed in this environment (tox
builds the wheel and installs it), so a subprocess of ``sys.executable``
starts exactly like a user's program: ``nest_joblib.pth`` included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from typing import Any

import pytest

#: Variables of ours that must not leak from the developer's shell into tests.
OUR_VARIABLES = ("NEST_JOBLIB", "NEST_JOBLIB_BACKENDS", "NEST_JOBLIB_CPUS", "NEST_JOBLIB_DEBUG")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OUR_VARIABLES}
    env.pop("PYTHONPATH", None)  # the installed package, not the source tree
    env["PYTHONWARNINGS"] = "default"
    env.update(extra or {})
    return env


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
    if check and proc.returncode != 0:
        raise AssertionError(
            f"exit status {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


def run_json(code: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> Any:
    """Run ``code``, whose last stdout line is JSON, and return it decoded."""
    proc = run_python(code, env=env, timeout=timeout)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def python() -> Any:
    return run_python
