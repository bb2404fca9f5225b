"""The ``nest-joblib`` command (also ``python -m nest_joblib``).

``status`` (the default) says whether the plugin is active here and why;
``demo`` runs a small nested workload with plain joblib and with the plugin
and compares them. Standard library only; joblib is imported by ``status``
(which is what makes the start-up hook apply its patch) and by the demo's
child interpreters, never by this module.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from ._version import __version__

PROG = "nest-joblib"


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Nested joblib.Parallel calls that stay parallel. Without a command, runs `status`."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--json", action="store_true", default=False, help="print JSON (for `status`)"
    )
    commands = parser.add_subparsers(dest="command", metavar="{status,demo,trace}")

    status = commands.add_parser(
        "status",
        help="is the plugin installed, enabled and active here, and why (the default)",
        description=(
            "Report whether nest-joblib is installed, enabled and active in this "
            "interpreter. Exit status 0 when joblib is patched, 1 when it is not."
        ),
    )
    status.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print a JSON object"
    )

    demo = commands.add_parser(
        "demo",
        help="run a small nested workload with plain joblib and with nest-joblib",
        description=(
            "Run one small nested workload (pure-Python leaves) twice, in fresh "
            "interpreters: plain joblib (NEST_JOBLIB=0) and with nest-joblib as this "
            "environment configures it. Prints wall time, processes per nesting level "
            "and the speed-up. Exit status 0 when the plugin ran, 1 when it did not."
        ),
    )
    demo.add_argument(
        "--size",
        type=_positive,
        default=1.0,
        metavar="FACTOR",
        help="scale the work per leaf (default 1: a few seconds in all; 0.01 for a smoke test)",
    )
    demo.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print a JSON object"
    )
    demo.add_argument(
        "--trace",
        metavar="PATH",
        default=None,
        help="write the plugin run's trace to PATH (Chrome Trace Event Format)",
    )
    _add_trace(commands)
    return parser


def _add_trace(commands: Any) -> None:
    trace = commands.add_parser(
        "trace",
        help="summarize a trace (NEST_JOBLIB_TRACE), merging its parts if its root was killed",
        description=(
            "Print a text summary of a trace written by NEST_JOBLIB_TRACE or "
            "nest_joblib.trace(): tasks and time per nesting level, busy and idle time "
            "per process, the peak of tokens held against the budget, and a timeline. "
            "Part files left beside PATH (a root that was killed) are merged into PATH "
            "first. Exit status 2 when PATH is not a trace."
        ),
    )
    trace.add_argument("path", metavar="PATH", help="the trace file")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def format_status(report: Mapping[str, Any]) -> str:
    """The status report as text."""
    lines: list[str] = []
    add = lines.append
    headline = "ACTIVE" if report["active"] else "NOT ACTIVE"
    add(f"nest-joblib {report['nest_joblib_version']}: {headline}")
    add("")
    startup = [*report["pth_files"], *report["start_files"]]
    add(f"installed:        {_yes(report['installed'])}")
    for path in startup:
        add(f"                  {path}")
    add(f"enabled:          {_yes(report['enabled'])} ({report['enabled_reason']})")
    add("environment:")
    for name, value in report["environment"].items():
        shown = "(not set)" if value is None else repr(value)
        add(f"  {name:<21} {shown}")
    for problem in report["problems"]:
        add(f"  bad value: {problem}")
    add(f"start-up hook:    {'ran in this interpreter' if report['hook_fired'] else 'did not run'}")
    if report["joblib_version"] is None:
        add(f"joblib:           cannot be imported ({report['joblib_error']})")
    else:
        patched = "yes" if report["patched"] else "no"
        if report["patched"] and report["patch_source"]:
            patched += f" (by the {report['patch_source']})"
        add(f"joblib patched:   {patched}")
        if report["failure"]:
            add(f"patch failed:     {report['failure']}")
        add(f"default backend:  {report['default_backend']}")
        nested = ", ".join(report["nested_backends"]) or "none"
        add(f"nested backends:  {nested}")
    if report["cpu_budget"] is None and report["cpu_budget_source"].startswith("off"):
        budget = report["cpu_budget_source"]
    else:
        budget = f"{report['cpu_budget']} CPUs (from {report['cpu_budget_source']})"
    if not report["active"]:
        budget += ", not in force: joblib is not patched"
    add(f"CPU budget:       {budget}")
    add(f"running trees:    {_trees_line(report['trees'])}")
    for tree in report["trees"]:
        add(f"  {_tree_line(tree)}")
    add(f"joblib:           {report['joblib_version'] or 'not importable'}")
    add(f"Python:           {report['python_version']} ({report['python_executable']})")
    if report["hints"]:
        add("")
        for hint in report["hints"]:
            add(f"hint: {hint}")
    return "\n".join(lines)


def _trees_line(trees: Sequence[Mapping[str, Any]]) -> str:
    alive = sum(1 for tree in trees if tree["alive"])
    if not trees:
        return "none of this user in the temporary directory"
    return f"{alive} of this user ({len(trees) - alive} stale, removed by the next root)"


def _tree_line(tree: Mapping[str, Any]) -> str:
    head = f"{tree['directory']}: root {tree['root_pid']}, budget {tree['budget']}"
    if not tree["alive"]:
        return head + ", root gone (stale)"
    head += f", {tree['free']} free"
    holders = tree["holders"]
    if holders is None:
        return head + "; holders not known here (Linux's /proc/locks tells)"
    held = ", ".join(f"token {slot} by {pid}" for slot, pid in sorted(holders.items()))
    return head + (f"; {held}" if held else "")


def run_status(as_json: bool, out: TextIO) -> int:
    # Before anything of nest_joblib._private, whose __init__ imports joblib.
    joblib_was_imported = "joblib.parallel" in sys.modules
    from ._private.status import gather

    report = gather(joblib_was_imported=joblib_was_imported)
    if as_json:
        print(json.dumps(report, indent=2), file=out)
    else:
        print(format_status(report), file=out)
    return 0 if report["active"] else 1


def run_trace(path: str, out: TextIO) -> int:
    """``trace PATH``: merge leftover parts, then summarize; 2 when PATH is not a trace."""
    from ._private import trace_file

    path = os.path.abspath(path)
    if trace_file.claimed(path):
        print(f"{path}: a root still traces to it; its trace lands there when it exits", file=out)
        return 1
    found = trace_file.parts(path)
    if found:
        trace_file.merge(path)
        print(f"merged {len(found)} part files into {path} (its root did not)", file=out)
    trace = trace_file.load(path)
    if trace is None:
        print(f"{path}: not a trace file (JSON with a traceEvents list)", file=out)
        return 2
    print(trace_file.summary(trace), file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``nest-joblib`` and ``python -m nest_joblib``; the exit status."""
    args = build_parser().parse_args(argv)
    as_json = bool(getattr(args, "json", False))
    try:
        if args.command == "demo":
            from ._private import demo

            return demo.main(size=args.size, as_json=as_json, trace=args.trace)
        if args.command == "trace":
            return run_trace(args.path, sys.stdout)
        return run_status(as_json, sys.stdout)
    except BrokenPipeError:  # `nest-joblib status | head`
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silences the exit flush
        except OSError:
            pass
        return 1
