"""A process of the same user, without the tree's key, tries an offer.

The root's two outer tasks hold both CPUs; each nested call runs inline and
offers its queued leaves, which spin until the intruder is done. The
intruder (a separate interpreter, ``argv[1] == "intruder"``) finds the offers
in the budget directory and tries them as a helper would with a wrong key,
and asking for a task (and handing in a result) without any key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading

from joblib import Parallel, delayed

from children.common import emit, meet, poll_until, spin_until


def leaf(i: int, done: str) -> int:
    spin_until(lambda: os.path.exists(done), 60.0)
    return i


def outer(barrier: str, done: str) -> list[int]:
    meet(barrier, 2)
    results: list[int] = Parallel(n_jobs=2)(delayed(leaf)(i, done) for i in range(6))
    return results


def intruder(directory: str) -> None:
    """Try every offer without the key; report what came back."""
    import socket
    from multiprocessing.connection import Connection

    from nest_joblib._private.sharing import _address, _connect, _offers

    report: dict[str, list[str]] = {"offers": [], "wrong_key": [], "no_handshake": []}
    for marker in _offers(directory):
        address = _address(marker)
        if address is None:
            continue
        report["offers"].append(os.path.basename(marker))
        try:  # the protocol of a helper, with a key of the right length
            with _connect(address, b"not the key, but 32 bytes long..") as conn:
                report["wrong_key"].append(f"task of {len(conn.recv_bytes())} bytes")
        except (OSError, EOFError) as exc:
            report["wrong_key"].append(type(exc).__name__)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(address)
        with Connection(sock.detach()) as conn:
            heard = []
            try:
                conn.send_bytes(b"+")  # ask for a task straight away
                conn.send_bytes(b"\x80\x04K\x01.")  # and hand in an outcome (a pickle)
                for _ in range(5):  # whatever comes back, until the door shuts
                    message = conn.recv_bytes()
                    heard.append("pickle" if message.startswith(b"\x80") else "protocol")
            except (OSError, EOFError) as exc:
                heard.append(type(exc).__name__)
            report["no_handshake"].append(" ".join(heard))
    print(json.dumps(report))


def main() -> None:
    if sys.argv[1:2] == ["intruder"]:
        intruder(sys.argv[2])
        return
    from nest_joblib._private import budget

    with tempfile.TemporaryDirectory() as shared:
        barrier, done = os.path.join(shared, "barrier"), os.path.join(shared, "done")
        os.mkdir(barrier)
        found: dict[str, object] = {}

        def probe() -> None:
            def offers() -> int:
                ref = budget.own_ref()
                names = [] if ref is None else os.listdir(ref.path)
                return len([n for n in names if n.startswith("offer-")])

            offered = poll_until(lambda: offers() >= 2, 60.0)
            ref = budget.own_ref()
            assert ref is not None
            proc = subprocess.run(
                [sys.executable, __file__, "intruder", ref.path],
                capture_output=True,
                text=True,
                timeout=60,
            )
            found.update(offered=offered, report=json.loads(proc.stdout or "{}"), err=proc.stderr)
            with open(done, "x"):
                pass

        thread = threading.Thread(target=probe)
        thread.start()
        results = Parallel(n_jobs=2)(delayed(outer)(barrier, done) for _ in range(2))
        thread.join()
    emit({**found, "results": results})


if __name__ == "__main__":
    main()
