"""Nested calls on Dask and Ray: the nested variant against the engine's plain backend.

    python benchmarks/engines.py [--repeat N] [--leaf-seconds S]

Needs ``dask[distributed]`` and ``ray`` (the ``engines`` tox environment has
both). Starts a ``distributed.LocalCluster`` of 2 worker processes (one thread
each) and a local Ray with 2 CPUs, on loopback, and runs the same two-level
workload (2 outer tasks, each an inner ``Parallel(n_jobs=-1)`` over 4
pure-Python leaves) under the plain backend (``dask``, ``ray``: joblib's own
nesting) and its nested variant (``nested-dask``, ``nested-ray``), alternating,
and prints median wall times and their ratio.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time

from joblib import Parallel, delayed, parallel_config


def spin(loops: int) -> int:
    n = 0
    while n < loops:  # pure-Python work
        n += 1
    return os.getpid()


def outer(loops: int) -> list[int]:
    return Parallel(n_jobs=-1)(delayed(spin)(loops) for _ in range(4))


def calibrate(seconds: float) -> int:
    began = time.perf_counter()
    spin(2_000_000)
    return int(2_000_000 * seconds / (time.perf_counter() - began))


def measure(backend: str, loops: int) -> float:
    began = time.perf_counter()
    with parallel_config(backend=backend):
        Parallel(n_jobs=2)(delayed(outer)(loops) for _ in range(2))
    return time.perf_counter() - began


def compare(engine: str, loops: int, repeat: int) -> tuple[float, float]:
    times: dict[str, list[float]] = {engine: [], f"nested-{engine}": []}
    for _ in range(repeat + 1):  # the first round warms the workers up
        for backend in times:
            times[backend].append(measure(backend, loops))
    plain, nested = (statistics.median(t[1:]) for t in times.values())
    return plain, nested


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--leaf-seconds", type=float, default=0.2)
    args = parser.parse_args()
    loops = calibrate(args.leaf_seconds)
    rows = []

    import distributed

    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster),
    ):
        rows.append(("dask", *compare("dask", loops, args.repeat)))

    import ray
    from ray.util.joblib import register_ray

    logging.getLogger("ray.util.multiprocessing.pool").setLevel(logging.ERROR)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        register_ray()
        rows.append(("ray", *compare("ray", loops, args.repeat)))
    finally:
        ray.shutdown()

    print(f"python {sys.version.split()[0]}, 2 outer x 4 leaves of {args.leaf_seconds} s")
    print(f"{'engine':8} {'plain s':>8} {'nested s':>9} {'ratio':>6}")
    for engine, plain, nested in rows:
        print(f"{engine:8} {plain:8.2f} {nested:9.2f} {nested / plain:6.2f}")


if __name__ == "__main__":
    main()
