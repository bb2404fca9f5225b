"""The soak of issue 28: one long-lived process makes nested calls in a row; is it flat?

    python benchmarks/soak.py [--calls 2000] [--every 100] [--cpus 4]

Runs ``tests/children/soak.py`` (the program of ``tests/test_soak.py``, which
runs 500 calls) in a fresh interpreter of this environment, with a temporary
``TMPDIR``, and prints its samples as a table, then whether the rules hold
(``tests/children/soak_rules.py``): from call 200 on, descriptors and threads
of the root and of each top-level worker equal at every sample, no offer
marker and no token held, the root's RSS grown by less than 5 MB. Each
sample's line also goes to stderr as the run goes. Linux; needs psutil and
numpy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from children.soak_rules import breaches, table  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--cpus", default="4", help="NEST_JOBLIB_CPUS (default 4)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEST_JOBLIB")}
        env.update(TMPDIR=tmp, NEST_JOBLIB_CPUS=args.cpus, PYTHONPATH=str(TESTS))
        proc = subprocess.run(
            [sys.executable, str(TESTS / "children" / "soak.py"), str(args.calls), str(args.every)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        left = sorted(os.listdir(tmp))
    samples = json.loads(proc.stdout.strip().splitlines()[-1])
    print(table(samples))
    found = breaches(samples)
    print()
    print("left in TMPDIR:", left or "nothing")
    # What loky's resource tracker of the tree found at its exit (named semaphores,
    # folders), by kind: leaked meanwhile, though removed in the end.
    for count, kind in re.findall(r"There appear to be (\d+) leaked (\w+) objects", proc.stderr):
        print(f"loky's resource tracker at exit: {kind} leaked {count} objects")
    print("rules:", "all hold" if not found else "broken:")
    for line in found:
        print("  " + line)
    return 1 if found or left else 0


if __name__ == "__main__":
    sys.exit(main())
