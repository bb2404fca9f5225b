"""The contract with joblib: kept by this joblib, or broken on purpose.

argv[1]: "check" (run the check, print "ok"), "engine" (make the nested
variant of a Dask backend without ``_to_func_args``), or the piece to remove
before the patch: "external-backends", "reset-batch-stats",
"exception-with-traceback" (run with ``NEST_JOBLIB=0``, so that the patch
runs here, after the removal).
"""

from __future__ import annotations

import sys

import joblib.parallel as jp
from joblib import _parallel_backends as backends
from joblib.externals.loky import process_executor as executor

from children.common import emit


def main() -> None:
    what = sys.argv[1]
    from nest_joblib._private import contract

    if what == "check":
        contract.check()
        print("ok")
        return
    if what == "engine":
        from nest_joblib._private import variants

        class DaskDistributedBackend(backends.ParallelBackendBase):  # type: ignore[misc]
            # No _to_func_args: the batch a Dask backend ships.
            pass

        DaskDistributedBackend.__module__ = "joblib._dask"
        DaskDistributedBackend.__qualname__ = "DaskDistributedBackend"
        try:
            variants.nested_variant(DaskDistributedBackend)
        except contract.ContractError as exc:
            print(exc)
        return
    if what == "external-backends":
        del jp.EXTERNAL_BACKENDS
    elif what == "reset-batch-stats":
        del backends.AutoBatchingMixin.reset_batch_stats
    elif what == "exception-with-traceback":
        del executor._ExceptionWithTraceback
    from nest_joblib._hook import patch_module

    patch_module(jp)
    emit(
        {
            "default": jp.DEFAULT_BACKEND,
            "nested": sorted(b for b in jp.BACKENDS if b.startswith("nested-")),
        }
    )


if __name__ == "__main__":
    main()
