"""scikit-learn's forests inside outer tasks: the trees are built in threads of the worker."""

from __future__ import annotations

import os
import threading
from typing import Any

import sklearn.ensemble._forest as forest
from joblib import Parallel, delayed
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

from children.common import emit

seen: list[tuple[int, int]] = []
build = forest._parallel_build_trees


def recording_build(*args: Any, **kwargs: Any) -> Any:
    seen.append((os.getpid(), threading.get_ident()))
    return build(*args, **kwargs)


def task(seed: int) -> tuple[int, int, list[tuple[int, int]]]:
    forest._parallel_build_trees = recording_build
    X, y = make_classification(n_samples=80, random_state=seed)
    RandomForestClassifier(n_estimators=8, n_jobs=2, random_state=seed).fit(X, y)
    return os.getpid(), threading.get_ident(), seen


def main() -> None:
    emit(Parallel(n_jobs=2)(delayed(task)(s) for s in range(2)))


if __name__ == "__main__":
    main()
