"""Family reading: seek by sequence and by time in a family of 1,000 segments
(target <= 5 ms each), and a full sequential read, zero-copy, counting only
(target >= 2 million messages a second), beside reading the same messages as
lines of a plain text file with Python (the stdlib way to read a log back).
"""
from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import report  # noqa: E402

import logkit  # noqa: E402

SEGMENTS = int(os.environ.get("LOGKIT_BENCH_SEGMENTS", "1000"))
READ_N = int(os.environ.get("LOGKIT_BENCH_READ_N", "1000000"))
T0 = 1_700_000_000_000_000_000


def build_small(d):
    """~SEGMENTS segments of 8 KiB, with distinct, increasing times."""
    w = logkit.open_writer(d, "app", segment_size=8192)
    i = 0
    while w.rotations < SEGMENTS - 1:
        w.write(f"message {i}", 20, time=T0 + i * 1000)
        i += 1
    return i


def seek_ms(r, n, by):
    rng = random.Random(1)
    times = []
    for _ in range(200):
        k = rng.randrange(n)
        t0 = time.perf_counter()
        m = r.seek(sequence=k + 1) if by == "sequence" else r.seek(time=T0 + k * 1000)
        times.append((time.perf_counter() - t0) * 1e3)
        assert m.sequence == k + 1, (by, k, m.sequence)
    return statistics.median(times), max(times)


def read_rate(d, n):
    r = logkit.open_reader(d, "app")
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        c = 0
        for _m in r:
            c += 1
        best = max(best, c / (time.perf_counter() - t0))
        assert c == n
    return best


def text_rate(path, n):
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        c = 0
        with open(path, encoding="utf-8") as f:
            for _line in f:
                c += 1
        best = max(best, c / (time.perf_counter() - t0))
        assert c == n
    return best


def main():
    with tempfile.TemporaryDirectory(prefix="logkit-bench-") as d:
        small = os.path.join(d, "small")
        n_small = build_small(small)
        r = logkit.open_reader(small, "app")
        nseg = len(r.segment_paths())
        seq_med, seq_max = seek_ms(r, n_small, "sequence")
        time_med, time_max = seek_ms(r, n_small, "time")
        small_rate = read_rate(small, n_small)

        big = os.path.join(d, "big")
        w = logkit.open_writer(big, "app", segment_size="8MiB")
        text = os.path.join(d, "big.log")
        with open(text, "w", encoding="utf-8") as f:
            for i in range(READ_N):
                msg = f"user {i % 997} did {i % 13} things"
                w.write(msg, 20)
                f.write(f"2026-11-23T00:00:00.000000 INFO {msg}\n")
        big_rate = read_rate(big, READ_N)
        txt = text_rate(text, READ_N)
    rows = [
        {"case": f"seek(sequence=) in {nseg} segments, median", "ns": seq_med * 1e6,
         "ratio": seq_med / 5.0, "ratio_to": "of the 5 ms target"},
        {"case": f"seek(sequence=) in {nseg} segments, worst of 200", "ns": seq_max * 1e6},
        {"case": f"seek(time=) in {nseg} segments, median", "ns": time_med * 1e6,
         "ratio": time_med / 5.0, "ratio_to": "of the 5 ms target"},
        {"case": f"seek(time=) in {nseg} segments, worst of 200", "ns": time_max * 1e6},
        {"case": f"read {n_small} msgs across {nseg} segments (per msg)", "ns": 1e9 / small_rate},
        {"case": f"read {READ_N} msgs, 8 MiB segments (per msg)", "ns": 1e9 / big_rate,
         "ratio": big_rate / 2e6, "ratio_to": "of the 2 M msg/s target"},
        {"case": "same messages as text lines, Python for-line loop", "ns": 1e9 / txt,
         "ratio": big_rate / txt, "ratio_to": "logkit read rate / text line rate"},
    ]
    report("family", rows, ["seek times in the ns/op column are per seek; read rows are per message"])


if __name__ == "__main__":
    main()
