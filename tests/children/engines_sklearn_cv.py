"""scikit-learn: a grid search (``n_jobs=-1``) inside cross-validation (``n_jobs=2``).

Every fit appends ``<pid> <parent pid>`` to the file named by ``$FITS``, and
computes 0.3 s more in pure Python: fits that outlast a process start, as
the fits worth nesting do.
"""

from __future__ import annotations

import os
from typing import Any

from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score

from children.common import busy, emit


class Recording(LogisticRegression):  # type: ignore[misc]
    def fit(self, X: Any, y: Any, **kw: Any) -> Any:
        with open(os.environ["FITS"], "a") as f:
            f.write(f"{os.getpid()} {os.getppid()}\n")
        busy(0.3)
        return super().fit(X, y, **kw)


def main() -> None:
    X, y = make_classification(n_samples=120, n_features=8, random_state=0)
    search = GridSearchCV(Recording(max_iter=200), {"C": [0.1, 1, 10]}, cv=3, n_jobs=-1)
    scores = cross_val_score(search, X, y, cv=2, n_jobs=2)
    emit({"scores": scores.tolist(), "main": os.getpid()})


if __name__ == "__main__":
    main()
