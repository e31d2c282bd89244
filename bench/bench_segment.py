"""Segment write path: seg.write() from Python beside its floors, one and two processes.

Floors, measured in the same run:
  * bare reserve + copy + commit (no checksum) called from Python, one call per message;
  * the same bare step in a tight Cython loop, and a full write (with checksum) in a Cython loop.
References: stdlib logging to a NullHandler and to a FileHandler, same 64-byte text.
Page faults: segments are created with MADV_POPULATE_WRITE (pre-faulted), so no
page fault lands on the measured write path.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import report  # noqa: E402

from logkit import Segment  # noqa: E402
from logkit import _bench  # noqa: E402

TEXT = "x" * 64
PAYLOAD = TEXT.encode()
N = int(os.environ.get("LOGKIT_BENCH_N", "1000000"))
MSG = 128                                   # 64-byte header + 64-byte text
SEG_SIZE = ((N * MSG * 2 + 8192) + 4095) // 4096 * 4096


def _fresh(directory, name):
    return Segment.create(os.path.join(directory, name), size=SEG_SIZE)


def best_ns(directory, label, body, repeat=3):
    best = float("inf")
    for i in range(repeat):
        seg = _fresh(directory, f"{label}.{i}")
        t0 = time.perf_counter_ns()
        body(seg, N)
        dt = time.perf_counter_ns() - t0
        assert seg.stats()["reserved"] >= N, seg.stats()
        seg.close()
        os.unlink(os.path.join(directory, f"{label}.{i}"))
        best = min(best, dt / N)
    return best


def py_write(seg, n):
    w = seg.write
    for _ in range(n):
        w(TEXT, 20)


def py_bare(seg, n):
    b = _bench.bare_write
    for _ in range(n):
        b(seg, PAYLOAD)


def cy_bare(seg, n):
    _bench.bare_loop(seg, PAYLOAD, n)


def cy_write(seg, n):
    _bench.write_loop(seg, PAYLOAD, n)


def _child(path, n, barrier, out):
    seg = Segment.open(path)
    w = seg.write
    barrier.wait()
    t0 = time.perf_counter()
    for _ in range(n):
        w(TEXT, 20)
    out.put((t0, time.perf_counter()))
    seg.close()


def _word_child(path, n, barrier, out):
    import mmap
    with open(path, "r+b") as f:
        m = mmap.mmap(f.fileno(), 4096)
    barrier.wait()
    t0 = time.perf_counter()
    _bench.shared_word_loop(m, n)
    out.put((t0, time.perf_counter()))
    m.close()


def _race(ctx, target, argsets):
    """Start one process per argument tuple, release them together, return the
    wall time from the first start to the last end."""
    barrier, out = ctx.Barrier(len(argsets)), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, barrier, out)) for a in argsets]
    for p in procs:
        p.start()
    spans = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join()
    return max(e for _, e in spans) - min(s for s, _ in spans)


def processes(directory, nproc, repeat=3, shared=True):
    """Aggregate messages/s of `nproc` processes writing at once, into one
    segment (shared=True) or each into a segment of its own (the control)."""
    ctx = mp.get_context("spawn")
    best = 0.0
    for i in range(repeat):
        paths = [os.path.join(directory, f"mp{nproc}.{i}.{k}") for k in range(1 if shared else nproc)]
        for path in paths:
            Segment.create(path, size=SEG_SIZE * nproc).close()
        wall = _race(ctx, _child, [(paths[k % len(paths)], N) for k in range(nproc)])
        written = 0
        for path in paths:
            seg = Segment.open(path, readonly=True)
            written += seg.stats()["written"]
            seg.close()
            os.unlink(path)
        assert written == N * nproc, written
        best = max(best, N * nproc / wall)
    return best


def shared_word(directory, nproc, repeat=3):
    """Aggregate CAS increments/s of `nproc` processes on one shared 64-bit word:
    the most reservations a second that one word can hand out on this machine."""
    ctx = mp.get_context("spawn")
    path = os.path.join(directory, "word")
    with open(path, "wb") as f:
        f.write(bytes(4096))
    n = N * 4
    best = 0.0
    for _ in range(repeat):
        best = max(best, n * nproc / _race(ctx, _word_child, [(path, n)] * nproc))
    os.unlink(path)
    return best


def stdlib(directory, handler_kind):
    logger = logging.getLogger(f"bench.{handler_kind}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    h = logging.NullHandler() if handler_kind == "null" else logging.FileHandler(os.path.join(directory, "std.log"))
    logger.handlers[:] = [h]
    n = min(N, 200000)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            logger.info(TEXT)
        best = min(best, (time.perf_counter_ns() - t0) / n)
    h.close()
    return best


def main():
    with tempfile.TemporaryDirectory(prefix="logkit-bench-", dir=os.environ.get("LOGKIT_BENCH_DIR")) as d:
        floor_py = best_ns(d, "bare-py", py_bare)
        write_py = best_ns(d, "write-py", py_write)
        floor_cy = best_ns(d, "bare-cy", cy_bare)
        write_cy = best_ns(d, "write-cy", cy_write)
        one = processes(d, 1)
        two = processes(d, 2)
        two_apart = processes(d, 2, shared=False)
        word1 = shared_word(d, 1)
        word2 = shared_word(d, 2)
        null = stdlib(d, "null")
        fileh = stdlib(d, "file")
    rows = [
        {"case": "seg.write(64 B text) from Python", "ns": write_py,
         "ratio": write_py / floor_py, "ratio_to": "of the Python-called floor (target <= 2.0x)"},
        {"case": "floor: bare reserve+copy+commit, Python call", "ns": floor_py},
        {"case": "floor: bare reserve+copy+commit, Cython loop", "ns": floor_cy},
        {"case": "full write incl. CRC-32C, Cython loop", "ns": write_cy,
         "ratio": write_cy / floor_cy, "ratio_to": "of the Cython-loop floor"},
        {"case": "1 process seg.write (aggregate)", "ns": 1e9 / one},
        {"case": "2 processes seg.write (aggregate)", "ns": 1e9 / two,
         "ratio": two / one, "ratio_to": "throughput of 1 process (target >= 1.3x)"},
        {"case": "control: 2 processes, a segment each", "ns": 1e9 / two_apart,
         "ratio": two_apart / one, "ratio_to": "throughput of 1 process"},
        {"case": "ceiling: CAS on one shared word, 1 process", "ns": 1e9 / word1},
        {"case": "ceiling: CAS on one shared word, 2 processes", "ns": 1e9 / word2,
         "ratio": word2 / one, "ratio_to": "throughput of 1 seg.write process (the most 2 can reach)"},
        {"case": "stdlib logger.info -> NullHandler", "ns": null,
         "ratio": null / write_py, "ratio_to": "of seg.write's cost"},
        {"case": "stdlib logger.info -> FileHandler", "ns": fileh,
         "ratio": fileh / write_py, "ratio_to": "of seg.write's cost"},
    ]
    report("segment", rows, [f"{N} messages per measurement, best of 3; segments pre-faulted with "
                             "MADV_POPULATE_WRITE at creation",
                             f"checksum: CRC-32C, hardware={__import__('logkit._segment', fromlist=['x']).crc32c_uses_hardware()}"])


if __name__ == "__main__":
    main()
