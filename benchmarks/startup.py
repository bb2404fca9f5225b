"""Start-up cost of the plugin (promise P3): ``python benchmarks/startup.py``.

Measures ``python -c pass`` and ``python -c "import joblib"`` with the plugin
enabled, disabled (``NEST_JOBLIB=0``) and not installed, as medians over many
interleaved runs (one command at a time; each round runs every configuration
once, each taking every place in the order equally often), and prints ratios
to "not installed". Targets: ``pass`` <= 1.03, ``import joblib``
<= 1.10. Then shows the ``-X importtime`` lines that belong to the plugin and
checks that it drags in nothing heavy.

What "not installed" means, honestly
------------------------------------
Uninstalling and reinstalling between runs is neither interleavable nor safe
in an environment that others use, and a different virtual environment would
differ in more than the plugin. So the script builds two throw-away twins of
the environment it runs in (``--venv``, default: this interpreter's), with the
same base interpreter (``python -m venv --without-pip``):

- *installed*: every entry of the original site-packages, linked, except that
  nest-joblib is installed the way a wheel installs it: ``nest_joblib.pth``,
  ``nest_joblib.start``, ``_nest_joblib_startup.py`` and ``nest_joblib/``
  copied in (an editable install's path hook and metadata are left out);
- *not installed*: exactly the same, without those four entries.

Enabled and disabled both run in the *installed* twin. The twins differ by
the plugin's files only: same interpreter, same packages (the same files, by
symbolic link), same ``.pth`` files of other packages, same path layout.
Byte code is written and warmed up first (``PYTHONDONTWRITEBYTECODE`` is
cleared for the runs): a wheel install compiles the plugin at install time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLUGIN_FILES = ("nest_joblib.pth", "nest_joblib.start", "_nest_joblib_startup.py", "nest_joblib")
#: Left out of both twins: what an editable install adds instead of the files.
EDITABLE_ONLY = ("__editable__.nest_joblib", "__editable___nest_joblib", "nest_joblib-")
#: Modules the start-up hook must never import (P3).
HEAVY = ("joblib", "threading", "importlib.util", "typing", "logging", "nest_joblib")
COMMANDS = {"pass": "pass", "import joblib": "import joblib"}
TARGETS = {"pass": 1.03, "import joblib": 1.10}


def _purelib(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def _plugin_sources(python: Path) -> dict[str, Path]:
    """Where this environment's nest-joblib files are (wheel or editable)."""
    out = subprocess.run(
        [
            str(python),
            "-c",
            "import _nest_joblib_startup, nest_joblib; "
            "print(_nest_joblib_startup.__file__); print(nest_joblib.__file__)",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "NEST_JOBLIB": "0"},
    )
    startup, package = out.stdout.split("\n")[:2]
    site = _purelib(python)
    return {
        "nest_joblib.pth": site / "nest_joblib.pth",
        "nest_joblib.start": site / "nest_joblib.start",
        "_nest_joblib_startup.py": Path(startup),
        "nest_joblib": Path(package).parent,
    }


def make_twin(source_python: Path, where: Path, with_plugin: bool) -> Path:
    """A venv of the same base interpreter whose site-packages mirrors the source's."""
    base = subprocess.run(
        [str(source_python), "-c", "import sys; print(sys._base_executable)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run([base, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    source_site = _purelib(source_python)
    twin_site = _purelib(python)
    plugin = _plugin_sources(source_python)
    for entry in sorted(source_site.iterdir()):
        name = entry.name
        if name in PLUGIN_FILES or name.startswith(EDITABLE_ONLY) or name == "__pycache__":
            continue
        target = twin_site / name
        if entry.suffix == ".pth":
            shutil.copy(entry, target)  # read at every start: a real file, as installed
        else:
            target.symlink_to(entry)
    if with_plugin:
        for name, path in plugin.items():
            if not path.exists():
                continue  # e.g. no .start file
            if path.is_dir():
                shutil.copytree(path, twin_site / name, ignore=shutil.ignore_patterns("*.pyc"))
            else:
                shutil.copy(path, twin_site / name)
    subprocess.run([str(python), "-m", "compileall", "-q", str(twin_site)], check=False)
    return python


def run_once(python: Path, code: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([str(python), "-c", code], env=env, check=True)
    return time.perf_counter() - start


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEST_JOBLIB", "PYTHON"))}
    return env


def importtime(python: Path, env: dict[str, str]) -> list[tuple[int, str, str]]:
    """(depth, module, line) of every import of ``python -X importtime -c pass``."""
    stderr = subprocess.run(
        [str(python), "-X", "importtime", "-c", "pass"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    out = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "imported package" not in line:
            field = line.split("|")[-1][1:]
            name = field.lstrip(" ")
            out.append(((len(field) - len(name)) // 2, name, line))
    return out


def plugin_lines(imports: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
    """The plugin's own line and the lines of everything imported beneath it."""
    names = [name for _, name, _ in imports]
    index = names.index("_nest_joblib_startup")
    depth = imports[index][0]
    first = index
    while first > 0 and imports[first - 1][0] > depth:
        first -= 1
    return imports[first : index + 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="runs per case (default 200)")
    parser.add_argument("--venv", type=Path, default=Path(sys.prefix), help="environment")
    args = parser.parse_args()

    source_python = args.venv / "bin" / "python"
    with tempfile.TemporaryDirectory(prefix="nest-joblib-bench-") as tmp:
        installed = make_twin(source_python, Path(tmp) / "installed", with_plugin=True)
        plain = make_twin(source_python, Path(tmp) / "not-installed", with_plugin=False)
        env = base_env()
        configs = {
            "enabled": (installed, env),
            "disabled (NEST_JOBLIB=0)": (installed, {**env, "NEST_JOBLIB": "0"}),
            "not installed": (plain, env),
        }
        names = list(configs)
        times: dict[tuple[str, str], list[float]] = {(c, k): [] for c in COMMANDS for k in configs}
        # One command at a time, so that a 150 ms `import joblib` never runs just before a
        # 10 ms `pass`; within it, every configuration takes every place in the order equally
        # often. (A fixed shuffle of all six cases put "enabled" and "disabled", which differ
        # by one variable read, a steady 1% apart.)
        for command, code in COMMANDS.items():
            for config in names * 3:  # warm up: byte code, file system caches
                run_once(configs[config][0], code, configs[config][1])
            for round_ in range(args.runs):
                shift = round_ % len(names)
                order = names[shift:] + names[:shift]
                if (round_ // len(names)) % 2:
                    order.reverse()
                for config in order:
                    python, cenv = configs[config]
                    times[command, config].append(run_once(python, code, cenv))

        print(f"{sys.version.split()[0]}, {args.runs} interleaved runs per case, medians")
        print(f"{'command':<16}{'configuration':<28}{'median ms':>10}{'ratio':>8}  target")
        failed = []
        for command in COMMANDS:
            reference = statistics.median(times[command, "not installed"])
            for config in configs:
                median = statistics.median(times[command, config])
                ratio = median / reference
                target = TARGETS[command]
                mark = ""
                if config == "enabled":
                    mark = f"<= {target:.2f} {'ok' if ratio <= target else 'MISSED'}"
                    if ratio > target:
                        failed.append(command)
                print(f"{command:<16}{config:<28}{median * 1000:>10.2f}{ratio:>8.3f}  {mark}")

        print("\npython -X importtime -c pass, lines of the plugin (enabled):")
        imports = importtime(installed, env)
        for _, _, line in plugin_lines(imports):
            print("  " + line)
        dragged = [name for _, name, _ in plugin_lines(imports)[:-1]]
        print(f"  modules the plugin drags in: {dragged or 'none'}")
        names = {name for _, name, _ in imports}
        heavy = [module for module in HEAVY if module in names]
        assert not heavy, f"start-up imports {heavy}"
        reference_names = {name for _, name, _ in importtime(plain, env)}
        extra = sorted(names - reference_names)
        print(f"  modules imported at start-up that 'not installed' does not import: {extra}")
        assert set(extra) <= {"_nest_joblib_startup", "__future__"}, extra
        if failed:
            print(f"\ntarget missed for: {', '.join(failed)}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
