"""Sealed messages end to end: what one Segment.write() from Python costs in
a sealed segment (format version 2: reserve, copy, ChaCha20-Poly1305 in C,
CRC-32C, commit) against the same write in an unsealed (version 1) segment,
for 64-byte and 1 KiB texts; and the same for one logging call through
logkit.Handler (the C write path, FamilySink.put), with and without a
config `key_file`.  One run, ratios against the unsealed rows.
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import measure, report  # noqa: E402

import logkit  # noqa: E402
from logkit import Segment  # noqa: E402
from logkit.crypto import generate_key_file  # noqa: E402

N = int(os.environ.get("LOGKIT_BENCH_N", "1000000"))


def seg_write(d: str, payload: int, n: int, key) -> float:
    """Best-of-5 ns per seg.write(text) from Python, each run in a fresh segment."""
    text = "x" * payload
    size = ((n * ((64 + payload + 16 + 7) & ~7) + 8192) + 4095) // 4096 * 4096
    best = float("inf")
    for i in range(5):
        path = os.path.join(d, f"s{payload}.{i}.{'k' if key else 'p'}")
        seg = Segment.create(path, size=size, key=key)
        w = seg.write
        t0 = time.perf_counter_ns()
        for _ in range(n):
            w(text)
        best = min(best, (time.perf_counter_ns() - t0) / n)
        assert seg.stats()["written"] == n
        seg.close()
        os.unlink(path)
    return best


def handler_call(d: str, payload: int, n: int, keyfile) -> float:
    """ns per logger.info(text) through logkit.Handler over a family."""
    logdir = os.path.join(d, f"h{payload}{'k' if keyfile else 'p'}")
    os.mkdir(logdir)
    opts = {"storage": "family", "directory": logdir, "segment_size": "64MiB"}
    if keyfile:
        opts["key_file"] = keyfile
    h = logkit.Handler(**opts)
    assert h._emitters[0].sink is not None
    log = logging.getLogger(f"bench-sealed-{payload}-{bool(keyfile)}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(h)
    text = "x" * payload
    info = log.info

    def run(k):
        for _ in range(k):
            info(text)

    try:
        return measure(run, n)
    finally:
        log.removeHandler(h)
        h.close()


def main():
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="logkit-bench-", dir=os.environ.get("LOGKIT_BENCH_DIR")) as d:
        ring = generate_key_file(os.path.join(d, "bench.keys"))
        key = (ring.current, ring.current_key)
        for payload in (64, 1024):
            size = f"{payload} B" if payload < 1024 else f"{payload // 1024} KiB"
            n = max(N // (5 if payload > 256 else 2), 1000)
            plain = seg_write(d, payload, n, None)
            sealed = seg_write(d, payload, n, key)
            nh = max(N // 20, 1000)
            hp = handler_call(d, payload, nh, None)
            hs = handler_call(d, payload, nh, ring.path)
            rows += [
                {"case": f"{size}: seg.write() from Python, unsealed (v1)", "ns": plain},
                {"case": f"{size}: seg.write() from Python, sealed (v2)", "ns": sealed,
                 "ratio": sealed / plain, "ratio_to": "of unsealed"},
                {"case": f"{size}: sealing adds", "ns": sealed - plain},
                {"case": f"{size}: logger.info() via Handler, unsealed", "ns": hp},
                {"case": f"{size}: logger.info() via Handler, key_file", "ns": hs,
                 "ratio": hs / hp, "ratio_to": "of unsealed"},
            ]
    report("sealed", rows, [
        f"seg.write: up to {N // 2} messages per run, best of 5, a fresh segment each run; "
        "Handler: a family with 64 MiB segments, best of 5",
        "sealed = the same reserve/copy/CRC-32C/commit plus lk_seal_message in C (lk_write_sealed)",
        f"total time {time.perf_counter() - t0:.1f} s",
    ])


if __name__ == "__main__":
    main()
