"""Every way a user installs the project puts the start-up files in place.

Builds from this checkout into a fresh virtual environment: a wheel, a wheel
built from the sdist, and an editable install; ``pip uninstall`` removes them.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

import pytest

from conftest import child_command, child_env, clean_env, last_json

ROOT = Path(__file__).resolve().parents[1]
STARTUP_FILES = ("nest_joblib.pth", "nest_joblib.start")

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.skipif(not (ROOT / "setup.py").exists(), reason="needs the source checkout"),
    pytest.mark.timeout(600),
]


def run(*cmd: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd],
        env=clean_env() if env is None else env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", out, ROOT)
    sdist_wheels = tmp_path_factory.mktemp("from-sdist")
    (sdist,) = out.glob("*.tar.gz")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", sdist_wheels, sdist)
    (wheel,) = out.glob("*.whl")
    (wheel_from_sdist,) = sdist_wheels.glob("*.whl")
    return {"wheel": wheel, "wheel_from_sdist": wheel_from_sdist}


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", path)
    python = path / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", "joblib")
    return python


def nested_pair(python: Path) -> Any:
    """Run ``tests/children/nested_pair.py`` with ``python``: [[task pid, leaf pids]]."""
    return last_json(run(*child_command("nested_pair", python=python), env=child_env()))


def site_packages(python: Path) -> Path:
    return Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").strip())


@pytest.mark.parametrize("kind", ["wheel", "wheel_from_sdist"])
def test_wheel_carries_start_up_files_in_record(dist: dict[str, Path], kind: str) -> None:
    with zipfile.ZipFile(dist[kind]) as wheel:
        names = wheel.namelist()
        (record,) = [n for n in names if n.endswith(".dist-info/RECORD")]
        listed = {line.split(",")[0] for line in wheel.read(record).decode().splitlines()}
        pth = wheel.read("nest_joblib.pth").decode()
    for name in STARTUP_FILES:
        assert name in names
        assert name in listed
    assert pth == (ROOT / "nest_joblib.pth").read_text()
    assert len(pth.strip().splitlines()) == 1


def test_install_runs_uninstall_removes(dist: dict[str, Path], venv: Path) -> None:
    site = site_packages(venv)
    run(venv, "-m", "pip", "install", "--quiet", "--no-deps", dist["wheel"])
    for name in STARTUP_FILES:
        assert (site / name).is_file()
    ((task_pid, leaf_pids),) = nested_pair(venv)
    # No code change, and the nested level computed in two processes at once.
    assert len(set(leaf_pids)) == 2
    assert set(leaf_pids) - {task_pid}
    run(venv, "-m", "pip", "uninstall", "--yes", "nest-joblib")
    for name in STARTUP_FILES:
        assert not (site / name).exists()


def test_editable_install_runs_it(venv: Path) -> None:
    site = site_packages(venv)
    run(venv, "-m", "pip", "install", "--quiet", "--no-deps", "-e", ROOT)
    try:
        assert (site / "nest_joblib.pth").is_file()
        out = run(venv, "-c", "import nest_joblib; print(nest_joblib.is_active())")
        assert out.strip() == "True"
        ((task_pid, leaf_pids),) = nested_pair(venv)
        assert len(set(leaf_pids)) == 2
        assert set(leaf_pids) - {task_pid}
    finally:
        run(venv, "-m", "pip", "uninstall", "--yes", "nest-joblib")
    assert not (site / "nest_joblib.pth").exists()


def test_this_environment_has_the_plugin_at_the_root_of_site_packages() -> None:
    site = Path(sysconfig.get_path("purelib"))
    assert (site / "nest_joblib.pth").is_file()
    assert (site / "nest_joblib.start").is_file()
