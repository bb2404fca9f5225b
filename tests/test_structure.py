"""The shape of the installed package: imports flow one way, joblib's private
surface is checked in one place, and a joblib that breaks it stays plain."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from conftest import last_json, run_child

psutil = pytest.importorskip("psutil")


def _installed_modules() -> dict[str, Path]:
    """Module name -> file, for the start-up module and the package as installed."""
    modules: dict[str, Path] = {}
    startup = importlib.util.find_spec("_nest_joblib_startup")
    package = importlib.util.find_spec("nest_joblib")
    assert startup is not None
    assert startup.origin is not None
    assert package is not None
    assert package.origin is not None
    modules["_nest_joblib_startup"] = Path(startup.origin)
    root = Path(package.origin).parent
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(("nest_joblib", *parts))
        modules[name.removesuffix(".__init__")] = path
    return modules


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Our modules that ``name`` imports, at module level or in a function."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        found.update(t for t in targets if t in known and t != name)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_imports_flow_one_way() -> None:
    modules = _installed_modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    assert graph["nest_joblib._private.scheduling.scheduler"], "the graph was read"
    assert _cycle(graph) is None
    # The package never reaches back into the start-up module, except the
    # command line, which reports on it.
    users = {name for name, deps in graph.items() if "_nest_joblib_startup" in deps}
    assert users <= {"nest_joblib._private.status"}, users
    # The token layer knows nothing of sharing, stand-by or scheduling: it
    # stands on the budget directory and the process registry alone, which
    # stand on nothing of ours.
    base = {"nest_joblib._private", "nest_joblib._private.process"}
    budget_deps = graph["nest_joblib._private.budget"]
    allowed = {*base, "nest_joblib._private.directory", "nest_joblib._warnings"}
    assert budget_deps <= allowed, budget_deps
    assert graph["nest_joblib._private.directory"] <= base
    assert graph["nest_joblib._private.process"] <= {"nest_joblib._private"}


def test_the_code_fits_in_one_read() -> None:
    """No class over 300 lines, no function over 60; one handler for fork, in the registry."""
    too_long = []
    forks = []
    for name, path in _installed_modules().items():
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > (300 if isinstance(node, ast.ClassDef) else 60):
                    too_long.append(f"{name}.{node.name}: {lines} lines")
        if "register_at_fork(" in source:
            forks.append(name)
    assert too_long == []
    assert forks == ["nest_joblib._private.process"]


def test_the_start_up_module_takes_nothing_from_the_package_at_import_time() -> None:
    path = _installed_modules()["_nest_joblib_startup"]
    tree = ast.parse(path.read_text())
    top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top_level if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in top_level if isinstance(n, ast.ImportFrom)]
    assert names
    assert not [name for name in names if name.startswith("nest_joblib")]


def test_the_start_up_copy_of_the_switch_values_matches_the_parser() -> None:
    import _nest_joblib_startup as startup
    from nest_joblib import _switch

    assert (startup.ON, startup.OFF) == (_switch.ON, _switch.OFF)


def test_the_joblib_under_test_keeps_the_contract() -> None:
    """Runs on every joblib of the tox matrix (1.3 to the newest)."""
    assert run_child("structure_contract", "check").stdout.strip() == "ok"


@pytest.mark.parametrize(
    ("breakage", "named"),
    [
        ("external-backends", "joblib.parallel.EXTERNAL_BACKENDS"),
        ("reset-batch-stats", "LokyBackend.reset_batch_stats"),
        ("exception-with-traceback", "process_executor._ExceptionWithTraceback"),
    ],
)
def test_a_joblib_that_breaks_the_contract_stays_plain_with_one_warning(
    breakage: str, named: str
) -> None:
    proc = run_child("structure_contract", breakage, env={"NEST_JOBLIB": "0"})
    assert last_json(proc.stdout) == {"default": "loky", "nested": []}
    warnings = [line for line in proc.stderr.splitlines() if "NestJoblibWarning" in line]
    assert len(warnings) == 1, proc.stderr
    assert named in warnings[0]
    assert "joblib runs unpatched" in warnings[0]


def test_an_engine_that_breaks_its_part_is_refused_when_its_variant_is_made() -> None:
    assert "_to_func_args" in run_child("structure_contract", "engine").stdout
