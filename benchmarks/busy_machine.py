"""How often a thread that computes looks as if it waited, on a machine too busy to run it.

    python benchmarks/busy_machine.py [--hogs 12] [--spinners 4] [--seconds 8] [--gil-holder]

Starts ``--hogs`` processes that spin in a shell loop, and ``--spinners``
Python processes whose one thread computes while a second thread samples its
clock every 10 ms, as the wait watcher does (``nest_joblib._private.waits``).
Prints, over all windows of 20 ms, how many the CPU time alone judges a wait
(the rule before the ready time was counted) and how many the watcher's rule
does (CPU time and time ready to run, both under a tenth of the window). Every
such judgement is false here: each one may start a stand-in on a CPU that is
not free. With ``--gil-holder``, each spinner process also runs a thread that
holds the GIL for long stretches (a builtin over a long range), and no hogs
are needed: the thread that computes then gets little CPU because it waits
for the GIL, not for an event. Linux only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

SPINNER = r"""
import json, sys, threading, time
from nest_joblib._private import waits

seconds, holder = float(sys.argv[1]), sys.argv[2] == "1"
ready = threading.Event()
def hold():  # a builtin call over a long range keeps the GIL until it returns
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(10**7))
if holder:
    threading.Thread(target=hold, daemon=True).start()
def spin():
    global clock
    clock = waits.Clock()
    ready.set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
thread = threading.Thread(target=spin)
thread.start()
ready.wait()
windows = cpu_only = watcher = 0
while thread.is_alive():
    time.sleep(waits._TICK)
    judged = clock.sample()
    (wall0, cpu0, *_), (wall1, cpu1, *_) = clock._samples[0], clock._samples[-1]
    if wall1 - wall0 >= waits._TICK * waits._WINDOW_TICKS * 0.9:
        windows += 1
        cpu_only += cpu1 - cpu0 < waits._WAITING * (wall1 - wall0)
        watcher += judged
print(json.dumps([windows, cpu_only, watcher]))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hogs", type=int, default=12)
    parser.add_argument("--spinners", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--gil-holder", action="store_true")
    args = parser.parse_args()
    hogs = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(args.hogs)]
    try:
        time.sleep(0.5)
        spinners = [
            subprocess.Popen(
                [sys.executable, "-c", SPINNER, str(args.seconds), str(int(args.gil_holder))],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(args.spinners)
        ]
        counts = [json.loads(proc.communicate()[0]) for proc in spinners]
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    windows, cpu_only, watcher = (sum(column) for column in zip(*counts))
    holders = ", each beside a thread that holds the GIL" if args.gil_holder else ""
    print(
        f"{args.hogs} hogs, {args.spinners} threads computing{holders}, {windows} windows of 20 ms"
    )
    print("| rule | windows judged a wait | share |")
    print("| --- | --- | --- |")
    print(f"| CPU time alone (before) | {cpu_only} | {cpu_only / windows:.2%} |")
    print(f"| CPU time and ready time (watcher) | {watcher} | {watcher / windows:.2%} |")


if __name__ == "__main__":
    main()
