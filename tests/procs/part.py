"""Child targets for the partition and pipe backend tests (spawned by name).

Started through procs.Group (the "spawn" context, hello handshake, kills by
pid); this module only adds targets.  Message contents come from procs.common's
message_text()/message_severity()/message_data(), a pure function of
(writer, counter), so the parent can check every record it reads back.
"""
from __future__ import annotations

import os
import sys
import threading

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TESTS_DIR not in sys.path:           # spawned children import this module by name
    sys.path.insert(0, TESTS_DIR)

from procs.common import (TIMEOUT, message_class, message_data, message_severity,  # noqa: E402
                          message_text)
from waiting import wait_until  # noqa: E402


def write_record(storage, writer, i):
    """Write message i of `writer` through any storage or transport."""
    return storage.write(message_text(writer, i), message_severity(writer, i),
                         message_data(writer, i), message_class(writer, i))


# ---------------------------------------------------------------- partition

def child_partition_write(conn, path, size, writer, count, go, pace=0.0, key_file=None):
    """Open the partition (sealed with key_file if given), say ready, wait
    for `go`, write `count` messages from 2 threads (even and odd counters;
    each pauses `pace` seconds after every 50, the pace of a real
    application), report ("done", count), close."""
    import time
    from logkit.backends.partition import PartitionStorage
    s = PartitionStorage("test", path=path, size=size, key_file=key_file)
    conn.send(("ready",))
    if not go.wait(TIMEOUT):
        raise RuntimeError("no go signal")
    errors = []

    def work(parity):
        try:
            for i in range(parity, count, 2):
                write_record(s, writer, i)
                if pace and i % 100 < 2:
                    time.sleep(pace)        # an application's pace, not a synchronisation
        except BaseException as e:      # reported to the parent below
            errors.append(repr(e))

    ts = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(TIMEOUT)
    if errors:
        raise RuntimeError(errors)
    s.close()
    conn.send(("done", count))


def child_partition_drain_stalling(conn, path, directory, family, stop_after, where):
    """Drain the partition into a family, but stop at the `stop_after`-th
    message: where="before" stops before appending it, "after" right after
    appending it and before the drain records its progress.  There report
    ("stalled", n) and wait to be SIGKILLed."""
    from logkit.backends.family import FamilyStorage
    from logkit.backends.partition import PartitionStorage
    s = PartitionStorage("test", path=path)
    fam = FamilyStorage("test", directory=directory, family=family, create_directory=True,
                        segment_size="64KiB")

    class Into:
        n = 0

        def append(self, m):
            if where == "before" and self.n + 1 == stop_after:
                conn.send(("stalled", self.n))
                conn.poll(TIMEOUT)
                raise RuntimeError("not killed")
            seq = fam.append(m)
            self.n += 1
            if where == "after" and self.n == stop_after:
                conn.send(("stalled", self.n))
                conn.poll(TIMEOUT)
                raise RuntimeError("not killed")
            return seq

        def reader(self):
            return fam.reader()

        def flush(self):
            fam.flush()

    s.drain(Into(), everything=True)
    conn.send(("finished",))


def child_partition_swap_stalling(conn, path, size, count, stage):
    """Write `count` messages, then force a swap and stop inside it at
    `stage` ("reuse": before the new half is formatted; "publish": formatted,
    not yet published); report ("stalled", sequences written) and wait to be
    SIGKILLed."""
    import logkit.backends.partition as part
    s = part.PartitionStorage("test", path=path, size=size)
    seqs = [write_record(s, 0, i) for i in range(count)]

    def stall(*a, **k):
        conn.send(("stalled", seqs))
        conn.poll(TIMEOUT)
        raise RuntimeError("not killed")

    if stage == "reuse":
        part.PartitionStorage._reuse = stall
    else:
        part.PartitionStorage._publish = stall
    s.swap()
    raise RuntimeError("swap did not stall")


# ---------------------------------------------------------------- pipe

class NoStorage:
    """The storage of a pipe transport in a writer process: the reader
    stores the records, so the writer's side has nothing to do."""

    def flush(self):
        pass

    def close(self):
        pass

    def after_fork(self):
        pass


def big_text(writer, i):
    """A text larger than PIPE_BUF for every seventh counter (fragmented), else the usual one."""
    base = message_text(writer, i)
    return base + "|" + ("%d." % i) * 2000 if i % 7 == 3 else base


def child_pipe_write_batches(conn, fifo, spill, writer):
    """Open a pipe transport; for each order ("batch", first, n, until_sent)
    write records first..first+n-1 (and, if until_sent, go on writing
    "extra" records until at least one went through the pipe), then report
    ("written", last counter written, stats).  Order "quit" closes."""
    import time

    from logkit.backends.pipe import PipeTransport

    t = PipeTransport(NoStorage(), "test", fifo=fifo, spill=spill, spill_size="64KiB")
    conn.send(("ready",))
    i = 0
    while True:
        if not conn.poll(TIMEOUT):
            raise RuntimeError("no order")
        order = conn.recv()
        if order[0] == "quit":
            t.close()
            conn.send(("closed", t.stats()))
            return
        _, first, n, until_sent = order
        i = first
        for i in range(first, first + n):
            write_record(t, writer, i)
        while until_sent and t.stats()["sent"] == 0:
            # The transport tries a reader-less FIFO again only every
            # REOPEN_INTERVAL: wait until its clock (time.monotonic) passes
            # that moment rather than spin.
            wait_until(lambda: time.monotonic() >= t._retry_at, "the transport's next reopen", interval=0.001)
            i += 1
            write_record(t, writer, i)
        conn.send(("written", i, t.stats()))


def child_pipe_write_until_killed(conn, fifo, spill, writer, report_every):
    """Write records (every seventh one larger than PIPE_BUF) forever,
    reporting ("progress", last finished counter) every `report_every`."""
    from logkit.backends.pipe import PipeTransport

    t = PipeTransport(NoStorage(), "test", fifo=fifo, spill=spill, spill_size="2MiB")
    conn.send(("ready",))
    i = 0
    while True:
        t.write(big_text(writer, i), message_severity(writer, i), message_data(writer, i),
                message_class(writer, i))
        if i % report_every == 0:
            conn.send(("progress", i, t.stats()))
        i += 1


def child_pipe_write_paced(conn, fifo, spill, writer, count, go, pause_every=50, pause=0.002):
    """Write records 0..count-1 (every seventh one larger than PIPE_BUF)
    through a pipe transport, pausing `pause` seconds every `pause_every`
    records, so the writing lasts while the parent kills and restarts the
    reader; then report ("done", stats) and close."""
    import time

    from logkit.backends.pipe import PipeTransport

    t = PipeTransport(NoStorage(), "test", fifo=fifo, spill=spill, spill_size="32MiB")
    conn.send(("ready",))
    if not go.wait(TIMEOUT):
        raise RuntimeError("no go")
    for i in range(count):
        t.write(big_text(writer, i), message_severity(writer, i), message_data(writer, i),
                message_class(writer, i))
        if i % pause_every == pause_every - 1:
            time.sleep(pause)               # the writing's pace, so it outlasts the kills: not a synchronisation
    conn.send(("done", t.stats()))
    if not conn.poll(TIMEOUT):
        raise RuntimeError("no order to close")
    conn.recv()
    t.close()


def child_pipe_drain_killed_at(conn, fifo, directory, family, point, nth):
    """Drain `fifo` into a family with drain_pipe, and SIGKILL this process
    at `point` the `nth` time (1-based) it is reached:

    * "journaled": the batch is in the journal, not yet consumed from the FIFO;
    * "consumed": consumed, the batch word not yet moved (so the journal
      still calls the batch unconfirmed);
    * "stored": a record is in the family, its progress not yet recorded.

    Reports ("ready",) once the FIFO is open for reading."""
    import signal

    from logkit.backends import pipejournal
    from logkit.backends.family import FamilyStorage
    from logkit.backends.pipe import drain_pipe

    seen = [0]

    def reached(where):
        if where == point:
            seen[0] += 1
            if seen[0] == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    J = pipejournal.PipeJournal
    consume = J._consume

    def _consume(self, n):
        reached("journaled")
        consume(self, n)
        reached("consumed")
    J._consume = _consume

    storage = FamilyStorage("p", directory=directory, family=family, create_directory=True)
    append = storage.append

    def _append(rec):
        seq = append(rec)
        reached("stored")
        return seq
    storage.append = _append

    stop = threading.Event()
    recover = J.recover

    def _recover(self):
        n = recover(self)
        conn.send(("ready",))
        return n
    J.recover = _recover
    drain_pipe(fifo, storage, stop=stop, spill=False, idle_timeout=TIMEOUT)
    raise RuntimeError(f"{point} #{nth} was never reached")
