"""``install()`` called again: by hand, by ``site.addsitedir`` (the .pth), by the .start entry.

``robust_pth_again.py [joblib-first]``: with ``joblib-first``, joblib is
imported before all that.
"""

from __future__ import annotations

import os
import pkgutil
import site
import sys
import sysconfig

import _nest_joblib_startup as _s
from children.counting import report


def main() -> None:
    if sys.argv[1:] == ["joblib-first"]:
        import joblib

    calls = []
    real_install = _s.install

    def counted_install() -> None:
        calls.append(1)
        real_install()

    _s.install = counted_install

    _s.install()
    _s.install()
    purelib = sysconfig.get_paths()["purelib"]
    pth = os.path.join(purelib, "nest_joblib.pth")
    start = os.path.join(purelib, "nest_joblib.start")
    site.addsitedir(purelib)  # runs every .pth there again, ours included
    entry = "_nest_joblib_startup:install"
    if os.path.exists(start):
        with open(start) as lines:
            entry = next(ln.strip() for ln in lines if ln.strip() and not ln.startswith("#"))
    pkgutil.resolve_name(entry)()
    import joblib  # noqa: F401

    report(calls=len(calls), has_pth=os.path.exists(pth), entry=entry)


if __name__ == "__main__":
    main()
