"""``backend="nested-multiprocessing"``: joblib's own error, which lists the names there are."""

from __future__ import annotations

from joblib import Parallel, delayed


def main() -> None:
    try:
        Parallel(n_jobs=2, backend="nested-multiprocessing")(delayed(abs)(i) for i in range(2))
    except ValueError as exc:
        print(exc)


if __name__ == "__main__":
    main()
