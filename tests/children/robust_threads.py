"""Eight threads import joblib at the same moment: patched once."""

from __future__ import annotations

import threading

from children.counting import report


def main() -> None:
    barrier = threading.Barrier(8)
    seen: list[list[object]] = []
    errors: list[str] = []

    def work() -> None:
        try:
            barrier.wait(timeout=30)
            import joblib
            import joblib.parallel

            from nest_joblib._private.patch import is_patched

            seen.append(
                [
                    joblib.parallel.DEFAULT_BACKEND,
                    is_patched(joblib.parallel),
                    joblib.register_parallel_backend is joblib.parallel.register_parallel_backend,
                ]
            )
        except BaseException as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    report(seen=seen, errors=errors)


if __name__ == "__main__":
    main()
