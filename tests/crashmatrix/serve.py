"""`logkit ARGS...` (the real command line, logkit.cli.main) in a process
prepared for a crash-matrix case: timeouts scaled (runtime), and in a census
run every injection point counted and written out at exit.

    python serve.py ARGS...     (environment: CRASHMATRIX_TIMEOUT_SCALE,
                                 CRASHMATRIX_CENSUS=file, CRASHMATRIX_CENSUS_NAMES=a,b,...)
"""
from __future__ import annotations

import atexit
import os
import sys

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

from crashmatrix import runtime  # noqa: E402

if __name__ == "__main__":
    import faulthandler
    import signal
    faulthandler.register(signal.SIGUSR1, all_threads=True)   # the harness asks where a stuck server is
    names = os.environ.get("CRASHMATRIX_CENSUS_NAMES")
    path = os.environ.get(runtime.ENV_CENSUS)
    census = runtime.start(None, names.split(",") if (names is not None and path) else None)
    if census is not None:
        atexit.register(runtime.dump_census, census, path)
    from logkit.cli import main
    sys.exit(main(sys.argv[1:]))
