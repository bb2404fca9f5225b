"""A traced tree whose task runs a Python program that uses joblib: a root of its own.

It inherits NEST_JOBLIB_TRACE, finds the path claimed, and writes ``PATH.<pid>``.
"""

from __future__ import annotations

import json
import subprocess
import sys

from joblib import Parallel, delayed

from children.common import emit

PROGRAM = (
    "import os, json; from joblib import Parallel, delayed; "
    "Parallel(n_jobs=2)(delayed(os.getpid)() for _ in range(2)); print(json.dumps(os.getpid()))"
)


def run_program(i: int) -> int:
    if i:
        return 0
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True
    )
    return int(json.loads(done.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    emit({"inner": max(Parallel(n_jobs=2)(delayed(run_program)(i) for i in range(2)))})
