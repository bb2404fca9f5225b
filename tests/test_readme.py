"""The README's two set-up commands are the ones CI and the tests run."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from conftest import clean_env

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    not (ROOT / "README.md").exists(), reason="needs the source checkout"
)


def set_up_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```shell\n(.+?)\n```", section)


def test_readme_names_exactly_two_commands() -> None:
    install_and_demo, tests = set_up_commands()
    assert "pip install ." in install_and_demo
    assert install_and_demo.endswith("-m nest_joblib demo")
    assert "tox run" in tests


def test_ci_runs_the_readme_test_command() -> None:
    _, tests = set_up_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci


def test_the_readme_demo_command_runs() -> None:
    import subprocess

    install_and_demo, _ = set_up_commands()
    demo = shlex.split(install_and_demo.split("&&")[-1])
    assert demo[:3] == ["python3", "-m", "nest_joblib"]
    proc = subprocess.run(
        [sys.executable, *demo[1:], "--size", "0.01"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "plain joblib" in proc.stdout
    assert "nest-joblib" in proc.stdout
    assert "speed-up" in proc.stdout


def test_ci_requires_every_python_that_a_local_run_may_skip() -> None:
    tox = (ROOT / "tox.ini").read_text()
    assert "skip_missing_interpreters = {env:TOX_SKIP_MISSING_INTERPRETERS:true}" in tox
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert "export TOX_SKIP_MISSING_INTERPRETERS=false" in ci
