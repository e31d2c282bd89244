"""The handler: logger.info("user %s did %d things", "alice", 42) through
logkit.Handler (shm transport, family storage) beside the stdlib FileHandler
and NullHandler (the floor: what stdlib logging costs with a handler that
does nothing), in one run, same logger setup, same record.
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import report  # noqa: E402

import logkit  # noqa: E402

N = min(int(os.environ.get("LOGKIT_BENCH_N", "1000000")), 300000)
REPEAT = 5


def per_record_ns(handler, n=N, repeat=REPEAT):
    """Best of `repeat` runs of n logger.info calls, ns per record."""
    logger = logging.getLogger(f"bench.handler.{id(handler)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.handlers[:] = [handler]
    info = logger.info
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            info("user %s did %d things", "alice", 42)
        best = min(best, (time.perf_counter_ns() - t0) / n)
    logger.handlers[:] = []
    return best


def main():
    with tempfile.TemporaryDirectory(prefix="logkit-bench-", dir=os.environ.get("LOGKIT_BENCH_DIR")) as d:
        null = per_record_ns(logging.NullHandler())
        fh = logging.FileHandler(os.path.join(d, "std.log"))
        fileh = per_record_ns(fh)
        fh.close()
        # Segments big enough that rotation is rare but real (each run writes N records).
        lk = logkit.Handler(storage="family", transport="shm", directory=d, family="bench",
                            segment_size="64MiB")
        ours = per_record_ns(lk)
        written = sum(1 for _ in logkit.open_reader(d, "bench"))
        lk.close()
        assert written == N * REPEAT, (written, N * REPEAT)
    rows = [
        {"case": "stdlib NullHandler (floor)", "ns": null},
        {"case": "stdlib FileHandler", "ns": fileh, "ratio": fileh / null, "ratio_to": "of the floor"},
        {"case": "logkit.Handler (shm + family)", "ns": ours, "ratio": ours / null,
         "ratio_to": "of the floor (target <= 1.15x)"},
        {"case": "logkit.Handler records/s vs FileHandler", "ns": ours, "ratio": fileh / ours,
         "ratio_to": "FileHandler's records/s (target ~2.5x)"},
    ]
    report("handler", rows, [f"logger.info('user %s did %d things', 'alice', 42), {N} records per run, "
                             f"best of {REPEAT}; logkit wrote {written} records, all read back"])


if __name__ == "__main__":
    main()
