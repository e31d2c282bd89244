"""Rotation: the write-latency distribution of a family writer across many
rotations (1 MiB and 8 MiB segments; one process, and two processes writing
into the same family), against the targets of issue 15 ("never stall the
caller": p99.99 <= 50 us, max <= 1 ms, throughput unchanged), and the
longest stall of an asyncio event loop that logs heavily through
logkit.Handler across rotations (target <= 1 ms).

Each write is timed alone (perf_counter_ns around FamilyWriter.write, the
collector off, so a pause of Python's GC is not charged to logkit); the
throughput rows time the same writes in a plain loop.  Environment:
LOGKIT_BENCH_ROTATIONS (rotations a case crosses, default 100),
LOGKIT_BENCH_DIR (where the families go; default the system's temp dir).
"""
from __future__ import annotations

import array
import asyncio
import gc
import logging
import multiprocessing
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import report  # noqa: E402

import logkit  # noqa: E402
from logkit.family import history_segments  # noqa: E402

ROTATIONS = int(os.environ.get("LOGKIT_BENCH_ROTATIONS", "100"))
TEXT = "user alice did 42 things on the rotation bench, a line of about a hundred bytes ....."
# One message's share of a segment: 64-byte header + text, 8-byte aligned.
MSG_BYTES = (64 + len(TEXT) + 7) // 8 * 8
P9999_TARGET_NS = 50_000
MAX_TARGET_NS = 1_000_000
LOOP_STALL_TARGET_NS = 1_000_000


def _writes_for(segment_size: int, rotations: int) -> int:
    return segment_size // MSG_BYTES * rotations + 1


def _timed_writes(directory: str, segment_size: int, n: int, go=None) -> tuple[array.array, float, int]:
    """n writes, each timed: (latencies ns, seconds for all, rotations this writer did)."""
    w = logkit.open_writer(directory, "bench", segment_size=segment_size)
    lat = array.array("q", bytes(8 * n))
    write, clock = w.write, time.perf_counter_ns
    if go is not None:
        go.wait()
    gc.disable()
    try:
        start = clock()
        for i in range(n):
            t0 = clock()
            write(TEXT)
            lat[i] = clock() - t0
        total = (clock() - start) / 1e9
    finally:
        gc.enable()
    rotations = w.rotations
    w.close()
    return lat, total, rotations


def _untimed_rate(directory: str, segment_size: int, n: int) -> float:
    """Writes a second across rotations, in a plain loop (no per-write clock)."""
    w = logkit.open_writer(directory, "bench", segment_size=segment_size)
    write = w.write
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            write(TEXT)
        rate = n / (time.perf_counter() - t0)
    finally:
        gc.enable()
    w.close()
    return rate


def _child(directory, segment_size, n, go, out_path):
    lat, total, rotations = _timed_writes(directory, segment_size, n, go)
    with open(out_path, "wb") as f:
        f.write(array.array("q", [rotations, int(total * 1e9)]).tobytes())
        f.write(lat.tobytes())


def _two_processes(directory: str, segment_size: int, n: int) -> tuple[array.array, float, int]:
    """Two spawned processes, n writes each, started together: merged latencies,
    the longer wall time, the rotations both did."""
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    outs = [os.path.join(directory, f".lat{k}") for k in range(2)]
    procs = [ctx.Process(target=_child, args=(directory, segment_size, n, go, outs[k])) for k in range(2)]
    for p in procs:
        p.start()
    # Both create or open the family before the start signal (their opening is not timed).
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(directory, "bench")) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.set()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"bench child exited {p.exitcode}")
    lat, longest, rotations = array.array("q"), 0.0, 0
    for path in outs:
        with open(path, "rb") as f:
            head = array.array("q", f.read(16))
            part = array.array("q")
            part.frombytes(f.read())
        rotations += head[0]
        longest = max(longest, head[1] / 1e9)
        lat.extend(part)
        os.unlink(path)
    return lat, longest, rotations


def percentile(sorted_lat, p: float) -> int:
    return sorted_lat[min(len(sorted_lat) - 1, int(p / 100.0 * len(sorted_lat)))]


def _rows_for(label: str, lat: array.array, seconds: float, rotations: int, rate: float | None) -> list[dict]:
    s = sorted(lat)
    rows = [{"case": f"{label}: p50", "ns": percentile(s, 50)},
            {"case": f"{label}: p99", "ns": percentile(s, 99)},
            {"case": f"{label}: p99.9", "ns": percentile(s, 99.9)},
            {"case": f"{label}: p99.99", "ns": percentile(s, 99.99),
             "ratio": percentile(s, 99.99) / P9999_TARGET_NS, "ratio_to": "of the 50 us target"},
            {"case": f"{label}: max", "ns": s[-1], "ratio": s[-1] / MAX_TARGET_NS, "ratio_to": "of the 1 ms target"},
            {"case": f"{label}: timed writes, {rotations} rotations (per write)", "ns": seconds * 1e9 / len(s)}]
    if rate is not None:
        rows.append({"case": f"{label}: untimed loop (per write)", "ns": 1e9 / rate})
    return rows


def asyncio_stall(directory: str, segment_size: int, rotations: int) -> tuple[int, int, int, int]:
    """An event loop with two tasks: one logs through logkit.Handler (20
    records a step, heavily enough to cross `rotations` rotations), one
    watches the loop (sleep(0) in a loop).  Returns (the watcher's longest
    gap between two of its steps, the logging task's longest step, records
    logged, rotations), in ns."""
    handler = logkit.Handler(log="aio", storage="family", directory=directory, family="aio",
                             segment_size=segment_size, create_directory=True)
    logger = logging.getLogger(f"bench.rotation.aio.{segment_size}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.handlers[:] = [handler]
    n = _writes_for(segment_size, rotations)
    batch = 20
    clock = time.perf_counter_ns
    result = {"gap": 0, "step": 0}
    done = asyncio.Event()

    async def log_heavily():
        info = logger.info
        for i in range(0, n, batch):
            t0 = clock()
            for _ in range(batch):
                info("user %s did %d things on the rotation bench", "alice", 42)
            result["step"] = max(result["step"], clock() - t0)
            await asyncio.sleep(0)
        done.set()

    async def watch():
        last = clock()
        while not done.is_set():
            await asyncio.sleep(0)
            now = clock()
            result["gap"] = max(result["gap"], now - last)
            last = now

    async def main():
        await asyncio.gather(log_heavily(), watch())

    gc.disable()
    try:
        asyncio.run(main())
    finally:
        gc.enable()
    logger.handlers[:] = []
    handler.close()
    hist = history_segments(directory, "aio")
    return result["gap"], result["step"], (n + batch - 1) // batch * batch, len(hist)


def main():
    rows: list[dict] = []
    notes = [f"{len(TEXT)}-byte messages ({MSG_BYTES} bytes in the segment), {ROTATIONS} rotations a case "
             "(at least); latencies are each write alone, from Python, GC off"]
    base = os.environ.get("LOGKIT_BENCH_DIR")
    for size, label in ((1 << 20, "1 MiB"), (8 << 20, "8 MiB")):
        rot = ROTATIONS if size == 1 << 20 else max(10, ROTATIONS // 4)
        n = _writes_for(size, rot)
        with tempfile.TemporaryDirectory(prefix="logkit-bench-", dir=base) as d:
            rate = _untimed_rate(os.path.join(d, "rate"), size, n)
            lat, secs, rots = _timed_writes(os.path.join(d, "one"), size, n)
            rows += _rows_for(f"{label}, 1 process", lat, secs, rots, rate)
        with tempfile.TemporaryDirectory(prefix="logkit-bench-", dir=base) as d:
            lat, secs, rots = _two_processes(d, size, n // 2)
            rows += _rows_for(f"{label}, 2 processes", lat, secs, rots, None)
    for size, label in ((1 << 20, "1 MiB"), (8 << 20, "8 MiB")):
        rot = ROTATIONS // 2 if size == 1 << 20 else max(8, ROTATIONS // 8)
        with tempfile.TemporaryDirectory(prefix="logkit-bench-", dir=base) as d:
            gap, step, records, rots = asyncio_stall(d, size, rot)
        rows.append({"case": f"asyncio + Handler, {label}: longest loop stall ({records} records, {rots} rotations)",
                     "ns": gap, "ratio": gap / LOOP_STALL_TARGET_NS, "ratio_to": "of the 1 ms target"})
        rows.append({"case": f"asyncio + Handler, {label}: longest step of 20 records", "ns": step})
    notes.append("ns/op is the latency itself for p50..max and loop-stall rows; ops/s is then 1/latency")
    report("rotation", rows, notes)


if __name__ == "__main__":
    main()
