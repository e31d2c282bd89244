"""Child targets for tests/test_backend_plainfile.py (spawned through procs.Group).

They live in their own module so spawned children can import them by name;
starting, waiting and killing stay in procs/common.py.  Message contents are a pure
function of (process, thread, counter), so the parent can check every field.
"""
from __future__ import annotations

import os
import struct
import threading

from procs.common import TIMEOUT


def record_text(p: int, t: int, i: int) -> str:
    """Text of record i of thread t of process p: with a newline, a backslash
    and a tab every few records, so escaping is exercised under the race."""
    extra = ("\nsecond line", "\\back\\slash", "\ttab", "", "ünïcode ✓")[i % 5]
    return f"p{p} t{t} i{i}{extra}"


def record_severity(p: int, t: int, i: int) -> int:
    return (p * 97 + t * 13 + i) % 501 - 250


def record_data(p: int, t: int, i: int) -> bytes:
    return struct.pack("<HHI", p, t, i) * (i % 3)


def record_class(p: int, t: int, i: int) -> str:
    return "triple" if i % 3 else ""


def child_plain_write_threads(conn, path, p, threads, per_thread, go, options):
    """Open one PlainFileStorage(path, **options), say ready, wait for `go`,
    then write `per_thread` records from each of `threads` threads at once;
    report ("done", pid, tids, stats)."""
    from logkit.backends.plainfile import PlainFileStorage
    s = PlainFileStorage("race", path=path, **options)
    conn.send(("ready",))
    if not go.wait(TIMEOUT):
        raise RuntimeError("no go signal")
    barrier = threading.Barrier(threads)
    tids: dict[int, int] = {}
    errors: list[BaseException] = []

    def work(t):
        try:
            tids[t] = threading.get_native_id()
            barrier.wait(TIMEOUT)
            for i in range(per_thread):
                s.write(record_text(p, t, i), record_severity(p, t, i),
                        record_data(p, t, i), record_class(p, t, i))
        except BaseException as e:      # re-raised below, so the parent sees the trace
            errors.append(e)

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in ts:
        th.start()
    for th in ts:
        th.join(TIMEOUT)
    if errors:
        raise errors[0]
    if any(th.is_alive() for th in ts):
        raise RuntimeError("a writer thread did not finish in time")
    stats = s.stats()
    s.close()
    conn.send(("done", os.getpid(), tids, stats))
