"""Child programs of the tests: each module runs, by path, in a fresh interpreter.

``conftest.run_child("<module>", *args)`` runs ``tests/children/<module>.py``
with this directory's parent on ``PYTHONPATH``, so that the modules, and the
worker processes they start, import the helpers of :mod:`children.common`.
Each prints its report, as JSON, as the last line of its stdout.
"""
