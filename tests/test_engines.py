"""Nested calls on real engines: a dask.distributed cluster, a local Ray, scikit-learn.

Each case starts its engine on loopback inside a fresh interpreter (the
programs are ``tests/children/engines_*.py``). These need
the ``engines`` tox environment (dask[distributed], ray, scikit-learn); the
start-up and bad-value cases run everywhere.
"""

from __future__ import annotations

import importlib.util

import pytest

from conftest import run_child, run_child_json, run_json, run_python


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


engines = pytest.mark.engines
needs_dask = pytest.mark.skipif(not _installed("distributed"), reason="needs dask.distributed")
needs_ray = pytest.mark.skipif(not _installed("ray"), reason="needs ray")
needs_sklearn = pytest.mark.skipif(not _installed("sklearn"), reason="needs scikit-learn")


@engines
@needs_dask
@pytest.mark.parametrize("depth", [2, 3])
def test_nested_dask_runs_on_the_cluster(depth: int) -> None:
    out = run_child_json("engines_tree", "dask", str(depth), timeout=180)
    rows = out["rows"]
    assert {row[0] for row in rows} <= set(out["workers"])
    assert len({row[0] for row in rows}) == 2  # both workers took part
    assert {row[1] for row in rows} == {"NestedDaskDistributedBackend"}
    leaves = [row for row in rows if row[3]]
    assert len(leaves) == 2**depth
    assert {row[2] for row in leaves} == {depth}


@engines
@needs_ray
@pytest.mark.parametrize("depth", [2, 3])
def test_nested_ray_without_registration(depth: int) -> None:
    out = run_child_json(
        "engines_tree", "ray", str(depth), env={"NEST_JOBLIB_BACKENDS": "ray"}, timeout=240
    )
    rows = out["rows"]
    assert out["main"] not in {row[0] for row in rows}  # all in Ray worker processes
    assert {row[1] for row in rows} == {"NestedRayBackend"}
    assert len([row for row in rows if row[3]]) == 2**depth
    # The second level ran as Ray tasks in new pool actors, not in its caller.
    second = [row for row in rows if row[2] == 2 and row[3] == (depth == 2)]
    assert second
    assert all(row[0] != row[4] for row in second)
    # Each nested call gets a share of the cluster's 4 CPUs (4 // 2 = 2 below
    # the outer call, then 1: run in the caller), so the pool actors stay at
    # 2 + 2 * 2 instead of 2 + 2 * 4 + 8 * 4 with n_jobs=-1 at every level.
    assert out["actors"] <= 2 + 2 * 2


@engines
@needs_sklearn
def test_scikit_learn_nested_cross_validation_unchanged() -> None:
    import tempfile

    results = {}
    # A budget of 4 CPUs leaves room below the two folds on this 2-core machine.
    for mode, extra in (("plain", {"NEST_JOBLIB": "0"}), ("nested", {"NEST_JOBLIB_CPUS": "4"})):
        with tempfile.NamedTemporaryFile("r", suffix=".fits") as fits:
            out = run_child_json(
                "engines_sklearn_cv", env={**extra, "FITS": fits.name}, timeout=240
            )
            out["fits"] = [tuple(map(int, line.split())) for line in fits.read().splitlines()]
        results[mode] = out
    assert results["nested"]["scores"] == results["plain"]["scores"]
    # 2 folds x (3 candidates x 3 splits + 1 refit) fits, in both modes.
    assert len(results["nested"]["fits"]) == len(results["plain"]["fits"]) == 20
    main = results["nested"]["main"]
    # Nested: each fold fits in its own worker first, on its CPU, as plain
    # joblib would, and starts a lane for a CPU free in the budget, which
    # takes queued fits once it is up (it imports scikit-learn first): some
    # fits ran in processes started below the fold workers (3 or 4 here).
    below = [pid for pid, ppid in results["nested"]["fits"] if ppid != main]
    assert len(below) >= 1
    # Plain joblib: in threads of the fold's worker, a child of the main process.
    main = results["plain"]["main"]
    assert all(ppid == main for _, ppid in results["plain"]["fits"])


@engines
@needs_sklearn
def test_scikit_learn_forest_still_gets_threads() -> None:
    out = run_child_json("engines_forest", timeout=180)
    for pid, ident, seen in out:
        assert {tree_pid for tree_pid, _ in seen} == {pid}  # threads, in the worker
        assert any(tree_ident != ident for _, tree_ident in seen)


def test_start_up_with_engines_named_imports_no_engine() -> None:
    out = run_json(
        """
import json, sys
import joblib.parallel
heavy = [m for m in ("dask", "distributed", "ray") if m in sys.modules]
print(json.dumps({"heavy": heavy,
                  "nested": sorted(n for n in joblib.parallel.BACKENDS if "nested" in n)}))
""",
        env={"NEST_JOBLIB_BACKENDS": "dask,ray"},
    )
    assert out["heavy"] == []
    assert {"nested-dask", "nested-ray", "nested-loky"} <= set(out["nested"])


@pytest.mark.parametrize(
    ("value", "known", "message"),
    [
        ("dask,,ray", ["nested-dask", "nested-ray"], None),
        (" Ray ", ["nested-ray"], None),
        ("spark", [], "cannot start jobs from inside Spark executors"),
        ("nonsense", [], "'nonsense' is not a known engine"),
        ("dask,nonsense", ["nested-dask"], "accepted names are dask, ray"),
    ],
)
def test_bad_engine_names(value: str, known: list[str], message: str | None) -> None:
    proc = run_python(
        """
import json, joblib.parallel
print(json.dumps(sorted(n for n in joblib.parallel.BACKENDS
                        if n in ("nested-dask", "nested-ray"))))
""",
        env={"NEST_JOBLIB_BACKENDS": value},
    )
    import json

    assert json.loads(proc.stdout) == known
    if message is None:
        assert "NestJoblibWarning" not in proc.stderr
    else:
        assert message in proc.stderr
        assert proc.stderr.count("NestJoblibWarning") == 1


@pytest.mark.skipif(_installed("ray"), reason="ray is installed here")
def test_missing_engine_says_what_to_install() -> None:
    proc = run_child("engines_missing", env={"NEST_JOBLIB_BACKENDS": "ray"})
    assert "EngineMissing" in proc.stdout
    assert "pip install 'nest-joblib[ray]'" in proc.stdout
