"""Wake-up latency: a writer process finishes a message, a waiting reader process returns.

Each message carries the writer's time.perf_counter_ns() (CLOCK_MONOTONIC,
the same clock in every process) taken just before seg.write(); the reader
subtracts it from its own reading the moment wait() (or follow()) hands it
the message.  One message at a time: the reader acknowledges each over a
pipe, the writer then pauses a random 0.3..1.3 ms (so the reader is asleep
again, and a poller's phase is random) and writes the next.

Cases: Segment.wait() on the futex; FamilyReader.follow() (futex, poll
interval 30 s); both again with the polling fallback at 1 ms (what follow()
did before wake-ups, and what a build without futex does).  Also the
writer's side: seg.write() with nobody waiting (one extra load) and with a
waiter asleep (one FUTEX_WAKE per message).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import report  # noqa: E402

from logkit import Segment, open_reader, open_writer  # noqa: E402
from logkit import _segment  # noqa: E402

N = int(os.environ.get("LOGKIT_BENCH_WAKE_N", "2000"))      # latency samples per case
POLL = 0.001                                                # the polling fallback's interval
WRITES = int(os.environ.get("LOGKIT_BENCH_WAKE_WRITES", "50000"))


def _reader_segment(path, n, poll, conn):
    if poll:
        _segment._wait_force_poll(True)
    seg = Segment.open(path, readonly=True)
    it = iter(seg)
    lat = []
    conn.send("ready")
    for _ in range(n):
        while not seg.wait(it.pos, timeout=10, poll_interval=POLL):
            pass
        t = time.perf_counter_ns()
        m = next(it)
        lat.append(t - int(m.text))
        conn.send(1)
    conn.send((lat, seg.wait_stats()))
    seg.close()


def _reader_follow(directory, n, poll, conn):
    if poll:
        _segment._wait_force_poll(True)
    r = open_reader(directory, "bench")
    lat = []
    conn.send("ready")
    for m in r.follow(poll_interval=POLL if poll else 30.0):
        t = time.perf_counter_ns()
        lat.append(t - int(m.text))
        conn.send(1)
        if len(lat) == n:
            break
    conn.send((lat, None))


def _waiter_forever(path, conn):
    seg = Segment.open(path, readonly=True)
    last = (seg.size - 64) // 8 * 8
    conn.send("ready")
    while seg.in_service:
        seg.wait(last, timeout=30)
    conn.send(seg.wait_stats())


def _latencies(ctx, target, arg, write, n, poll):
    parent, child = ctx.Pipe()
    p = ctx.Process(target=target, args=(arg, n, poll, child))
    p.start()
    rnd = random.Random(6)
    assert parent.recv() == "ready"
    for i in range(n):
        if i:
            parent.recv()                       # the reader has the previous one
        time.sleep(rnd.uniform(0.0003, 0.0013))
        write(str(time.perf_counter_ns()))
    parent.recv()
    lat, stats = parent.recv()
    p.join()
    return sorted(lat), stats


def _pct(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * (len(sorted_values) - 1) + 0.5))]


def _write_ns(seg, n, repeat=3):
    w = seg.write
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            w("x" * 64, 20)
        best = min(best, (time.perf_counter_ns() - t0) / n)
    return best


def main():
    ctx = mp.get_context("spawn")
    cases = {}
    with tempfile.TemporaryDirectory(prefix="logkit-bench-wake-", dir=os.environ.get("LOGKIT_BENCH_DIR")) as d:
        for poll in (False, True):
            path = os.path.join(d, f"seg-{poll}")
            with Segment.create(path, size=max(1 << 20, N * 128 + 8192)) as seg:
                cases[("wait", poll)] = _latencies(ctx, _reader_segment, path, seg.write, N, poll)
            fam = os.path.join(d, f"fam-{poll}")
            with open_writer(fam, "bench", segment_size=max(1 << 20, N * 128 + 8192)) as w:
                cases[("follow", poll)] = _latencies(ctx, _reader_follow, fam, w.write, N, poll)

        # The writer's side: nobody waiting, then a waiter asleep (woken by every write).
        path = os.path.join(d, "writes")
        with Segment.create(path, size=(3 * WRITES * 3 * 128 + 8192 + 4095) // 4096 * 4096) as seg:
            alone = _write_ns(seg, WRITES)
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_waiter_forever, args=(path, child))
            p.start()
            assert parent.recv() == "ready"
            deadline = time.monotonic() + 30
            while seg.header()["waiters"] == 0 and time.monotonic() < deadline:
                time.sleep(0.001)
            calls = _segment._wake_syscalls()
            watched = _write_ns(seg, WRITES)
            calls = _segment._wake_syscalls() - calls
            seg.take_out_of_service()
            parent.recv()
            p.join()
        assert calls == 3 * WRITES, calls

    fw, fw_stats = cases[("wait", False)]
    rows = []
    for what, label in (("wait", "Segment.wait"), ("follow", "follow()")):
        lat, _ = cases[(what, False)]
        plat, _ = cases[(what, True)]
        med, p99 = _pct(lat, 0.5), _pct(lat, 0.99)
        rows.append({"case": f"{label} futex wake-up, median", "ns": float(med),
                     "ratio": med / 100_000, "ratio_to": "of the 100 us target (target <= 1.0x)"})
        rows.append({"case": f"{label} futex wake-up, p99", "ns": float(p99)})
        rows.append({"case": f"{label} polling at 1 ms, median", "ns": float(_pct(plat, 0.5)),
                     "ratio": _pct(plat, 0.5) / med, "ratio_to": "of the futex median"})
        rows.append({"case": f"{label} polling at 1 ms, p99", "ns": float(_pct(plat, 0.99)),
                     "ratio": _pct(plat, 0.99) / p99, "ratio_to": "of the futex p99"})
    rows.append({"case": "seg.write, nobody waiting", "ns": alone})
    rows.append({"case": "seg.write, a waiter asleep (FUTEX_WAKE each)", "ns": watched,
                 "ratio": watched / alone, "ratio_to": "of the write with nobody waiting"})
    report("wakeup", rows, [
        f"{N} samples per latency case; writer pauses 0.3..1.3 ms between messages; "
        f"latency = reader's perf_counter_ns at return - writer's just before seg.write()",
        f"Segment.wait futex reader: {fw_stats['sleeps']} sleeps for {fw_stats['calls']} calls "
        "(one sleep per message: woken, never polling)",
        f"seg.write rows: {WRITES} writes, best of 3; {calls} FUTEX_WAKE calls with the waiter, 0 without",
    ])


if __name__ == "__main__":
    main()
