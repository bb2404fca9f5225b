"""A tree of nested calls on a real engine: ``engines_tree.py dask|ray DEPTH``.

Every node and leaf says where it ran: ``[pid, backend, nesting level, is a
leaf, the pid of its caller]``.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from joblib import Parallel, delayed, parallel_config
from joblib.parallel import get_active_backend

from children.common import emit

Row = list[object]


def where(caller: int, leaf: bool) -> Row:
    backend, _ = get_active_backend()
    return [os.getpid(), type(backend).__name__, backend.nesting_level, leaf, caller]


def node(depth: int, caller: int) -> list[Row]:
    if depth == 0:
        time.sleep(0.05)
        return [where(caller, True)]
    below = Parallel(n_jobs=-1)(delayed(node)(depth - 1, os.getpid()) for _ in range(2))
    return [where(caller, False)] + [row for rows in below for row in rows]


def on_dask(depth: int) -> None:
    import distributed

    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
        silence_logs=logging.ERROR,
    )
    with cluster, distributed.Client(cluster) as client:
        workers = sorted(client.run(os.getpid).values())
        with parallel_config(backend="nested-dask"):
            rows = Parallel(n_jobs=-1)(delayed(node)(depth - 1, 0) for _ in range(2))
    emit({"workers": workers, "rows": [r for rs in rows for r in rs], "main": os.getpid()})


def on_ray(depth: int) -> None:
    import ray

    logging.getLogger("ray.util.multiprocessing.pool").setLevel(logging.ERROR)
    # Pool actors take no CPU, so a Ray "cluster" wider than this machine is fine.
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        with parallel_config(backend="nested-ray"):
            rows = Parallel(n_jobs=2)(delayed(node)(depth - 1, 0) for _ in range(2))
        actors = len(ray._private.state.actors())
    finally:
        ray.shutdown()
    emit({"rows": [r for rs in rows for r in rs], "main": os.getpid(), "actors": actors})


def main() -> None:
    engine, depth = sys.argv[1], int(sys.argv[2])
    if engine == "dask":
        on_dask(depth)
    else:
        on_ray(depth)


if __name__ == "__main__":
    main()
