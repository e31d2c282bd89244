"""Child targets for tests/test_wakeup.py: processes that wait on a segment,
follow a family, or hold a listener slot until they are killed.

Started through procs.Group (spawn context, hello handshake, errors reported
over the pipe); they live in their own module so a spawned child imports
only what it runs.  Times sent back are time.perf_counter_ns(), which is
CLOCK_MONOTONIC on Linux: comparable between processes on one machine.
"""
from __future__ import annotations

import os
import time

from logkit import Segment


def child_wait_segment(conn, path, rounds, min_interval):
    """Open the segment read-only (so waiting needs its own writable header
    page), optionally listen() with `min_interval`, report ("ready", slot),
    then `rounds` times: wait at the end of what is allocated, with a 30 s
    timeout and a 30 s poll interval (a poller would miss any prompt wake),
    report ("woke", returned, perf_counter_ns, wait_stats, in_service, slot),
    and wait for the parent's go before the next round."""
    seg = Segment.open(path, readonly=True)
    if min_interval:
        seg.listen(min_interval)
    conn.send(("ready", seg.listener_slot))
    for _ in range(rounds):
        pos = seg.used()
        ok = seg.wait(pos, timeout=30, poll_interval=30)
        now = time.perf_counter_ns()
        conn.send(("woke", ok, now, seg.wait_stats(), seg.in_service, seg.listener_slot))
        conn.recv()
    seg.close()
    conn.send(("closed",))


def child_wait_forever(conn, path):
    """Wait (listed, counted as a waiter) at the last message position of the
    segment, which no message of the tests ever reaches: every write wakes
    this process and it goes back to sleep.  Report ("ready", slot) first;
    runs until killed or the segment leaves service."""
    seg = Segment.open(path, readonly=True)
    slot = seg.listen()
    conn.send(("ready", slot))
    last = (seg.size - 64) // 8 * 8
    while seg.in_service:
        seg.wait(last, timeout=30, poll_interval=30)
    conn.send(("out-of-service", seg.wait_stats()))


def child_listen_and_block(conn, path):
    """Claim a listener slot without waiting, report ("ready", slot, pid),
    then block on the pipe until killed."""
    seg = Segment.open(path, readonly=True)
    slot = seg.listen(0.25)
    conn.send(("ready", slot, os.getpid()))
    conn.recv()


def child_follow(conn, directory, family, poll_interval, count):
    """Follow the family with `poll_interval`; report ("msg", sequence, text,
    perf_counter_ns, segment file name) for each message, and after `count`
    of them ("done", problems)."""
    import logkit
    r = logkit.open_reader(directory, family)
    conn.send(("ready",))
    n = 0
    for m in r.follow(poll_interval=poll_interval, idle_timeout=60):
        conn.send(("msg", m.sequence, m.text, time.perf_counter_ns(), os.path.basename(m.segment.path)))
        n += 1
        if n == count:
            break
    conn.send(("done", list(r.problems)))
