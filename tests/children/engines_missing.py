"""``nested-ray`` used where Ray is not installed: the error says what to install."""

from __future__ import annotations

from joblib import Parallel, delayed, parallel_config


def main() -> None:
    try:
        with parallel_config(backend="nested-ray"):
            Parallel(n_jobs=2)(delayed(abs)(i) for i in range(2))
    except ImportError as exc:
        print(type(exc).__name__, exc)


if __name__ == "__main__":
    main()
