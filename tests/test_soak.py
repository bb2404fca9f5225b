"""Issue 28's soak, short: a long-lived process keeps flat descriptors, threads and memory (P13).

``benchmarks/soak.py`` runs the same program (``tests/children/soak.py``) for
2,000 calls and prints the table; here 500 calls, sampled every 100, with the
same rules (``tests/children/soak_rules.py``): from call 200 on, descriptors
and threads equal at every sample (the root's, and each top-level worker's),
no offer marker left and no token held, and the root's RSS grows by less
than 5 MB in all.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from children.soak_rules import breaches, table
from conftest import run_child_json

pytest.importorskip("psutil")
pytest.importorskip("numpy")


@pytest.mark.slow
def test_a_long_lived_process_stays_flat(tmp_path: Path) -> None:
    env = {"TMPDIR": str(tmp_path), "NEST_JOBLIB_CPUS": "4"}
    samples = run_child_json("soak", "500", "100", env=env, timeout=600)
    assert [s["call"] for s in samples] == [100, 200, 300, 400, 500]
    assert breaches(samples) == [], table(samples)
    assert list(tmp_path.iterdir()) == []
