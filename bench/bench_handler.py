"""The handler: logger.info("user %s did %d things", "alice", 42) through
logkit.Handler (shm transport, family storage) beside the stdlib FileHandler
and NullHandler (the floor: what stdlib logging costs with a handler that
does nothing), in one run, same logger setup, same record.
"""
from __future__ import annotations

import logging
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import report  # noqa: E402

import logkit  # noqa: E402

N = min(int(os.environ.get("LOGKIT_BENCH_N", "1000000")), 300000)
REPEAT = 7


def _logger(handler):
    logger = logging.getLogger(f"bench.handler.{id(handler)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.handlers[:] = [handler]
    return logger


def _one_run(logger, n):
    info = logger.info
    t0 = time.perf_counter_ns()
    for _ in range(n):
        info("user %s did %d things", "alice", 42)
    return (time.perf_counter_ns() - t0) / n


def per_record_runs(handlers, n=N, repeat=REPEAT):
    """`repeat` runs of n logger.info calls for each handler: a list per
    handler of ns per record.  The handlers take turns run by run (a round),
    so a slow minute of the machine hits all of them alike."""
    loggers = [_logger(h) for h in handlers]
    runs = [[] for _ in handlers]
    for _ in range(repeat):
        for i, lg in enumerate(loggers):
            runs[i].append(_one_run(lg, n))
    for lg in loggers:
        lg.handlers[:] = []
    return runs


def per_record_ns(handlers, n=N, repeat=REPEAT):
    """Best of the runs, per handler."""
    return [min(r) for r in per_record_runs(handlers, n, repeat)]


def main():
    with tempfile.TemporaryDirectory(prefix="logkit-bench-", dir=os.environ.get("LOGKIT_BENCH_DIR")) as d:
        fh = logging.FileHandler(os.path.join(d, "std.log"))
        # Segments big enough that rotation is rare but real (each run writes N records).
        lk = logkit.Handler(storage="family", transport="shm", directory=d, family="bench",
                            segment_size="64MiB")
        runs = per_record_runs([logging.NullHandler(), fh, lk])
        null, fileh, ours = (min(r) for r in runs)
        # The same comparison, round by round: the median of ours/floor over
        # rounds in which both ran a minute apart at most.
        paired = statistics.median(o / f for f, o in zip(runs[0], runs[2]))
        fh.close()
        written = sum(1 for _ in logkit.open_reader(d, "bench"))
        lk.close()
        assert written == N * REPEAT, (written, N * REPEAT)
        # The other storage backends through the same handler, for reference
        # (fewer records: a plain file costs a system call per record).
        others = {
            "partition": logkit.Handler(storage="partition", path=os.path.join(d, "bench.part"),
                                        size="64MiB", directory=d, family="drained"),
            "plainfile": logkit.Handler(storage="plainfile", path=os.path.join(d, "bench.log"),
                                        format="text", max_size="1GiB"),
        }
        n_other = max(N // 5, 1000)
        other_ns = dict(zip(others, per_record_ns([logging.NullHandler(), *others.values()],
                                                  n=n_other, repeat=3)[1:]))
        for h in others.values():
            h.close()
    rows = [
        {"case": "stdlib NullHandler (floor)", "ns": null},
        {"case": "stdlib FileHandler", "ns": fileh, "ratio": fileh / null, "ratio_to": "of the floor"},
        {"case": "logkit.Handler (shm + family)", "ns": ours, "ratio": ours / null,
         "ratio_to": "of the floor (target <= 1.15x)"},
        {"case": "logkit.Handler, median of paired rounds", "ns": statistics.median(runs[2]), "ratio": paired,
         "ratio_to": "of the floor in the same round (target <= 1.15x)"},
        {"case": "logkit.Handler records/s vs FileHandler", "ns": ours, "ratio": fileh / ours,
         "ratio_to": "FileHandler's records/s (target ~2.5x)"},
    ]
    for name, ns in other_ns.items():
        rows.append({"case": f"logkit.Handler (shm + {name})", "ns": ns, "ratio": ns / null,
                     "ratio_to": "of the floor"})
    report("handler", rows, [f"logger.info('user %s did %d things', 'alice', 42), {N} records per run, "
                             f"best of {REPEAT} (or the median over {REPEAT} rounds where said); logkit wrote {written} records, all read back"])


if __name__ == "__main__":
    main()
