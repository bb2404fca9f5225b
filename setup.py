"""Put nest_joblib.pth (and nest_joblib.start) at the root of site-packages.

No pyproject-only way exists to ship a top-level file into site-packages, so
``build_py`` copies both into the build tree (wheels, and sdists built into
wheels) and ``editable_wheel`` writes them into the editable wheel, so that
``pip install -e .`` runs the hook too. Both end up in RECORD, so
``pip uninstall`` removes them.
"""

from __future__ import annotations

import os
from typing import Any

from setuptools import setup
from setuptools.command.build_py import build_py

STARTUP_FILES = ("nest_joblib.pth", "nest_joblib.start")
HERE = os.path.dirname(os.path.abspath(__file__))


class build_py_with_startup_files(build_py):
    def run(self) -> None:
        super().run()
        for name in STARTUP_FILES:
            self.copy_file(
                os.path.join(HERE, name), os.path.join(self.build_lib, name), preserve_mode=False
            )

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        return outputs + [os.path.join(self.build_lib, name) for name in STARTUP_FILES]


cmdclass: dict[str, Any] = {"build_py": build_py_with_startup_files}

try:
    from setuptools.command.editable_wheel import editable_wheel
except ImportError:  # pragma: no cover - setuptools < 64 has no PEP 660
    pass
else:

    class _WithStartupFiles:
        """Wraps setuptools' editable strategy to add the start-up files."""

        def __init__(self, strategy: Any) -> None:
            self._strategy = strategy

        def __call__(self, wheel: Any, files: Any, mapping: Any) -> None:
            self._strategy(wheel, files, mapping)
            for name in STARTUP_FILES:
                with open(os.path.join(HERE, name), "rb") as f:
                    wheel.writestr(name, f.read())

        def __enter__(self) -> _WithStartupFiles:
            self._strategy.__enter__()
            return self

        def __exit__(self, *exc: object) -> None:
            self._strategy.__exit__(*exc)

    class editable_wheel_with_startup_files(editable_wheel):
        def _select_strategy(self, *args: Any, **kwargs: Any) -> Any:
            return _WithStartupFiles(super()._select_strategy(*args, **kwargs))

    cmdclass["editable_wheel"] = editable_wheel_with_startup_files

setup(cmdclass=cmdclass)
