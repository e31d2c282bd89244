"""Child targets of the crash matrix (spawned by name through procs.Group).

A writer logs numbered messages (procs.message_text(writer, i): the parent
can check every byte) and appends one line per *acknowledged* message to its
own side file, ``"<i> <sequence>\\n"``, with os.write on an O_APPEND fd and
no fsync, right after the write call returned: a SIGKILL loses at most the
line of the message in flight, never claims one that was not finished.  A
write that raised is recorded ``"E <i> <error class>"`` (not acknowledged:
the message may be present or not, but at most once).
"""
from __future__ import annotations

import os
import sys
import threading
import time

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

from crashmatrix import runtime  # noqa: E402
from procs import TIMEOUT, message_class, message_data, message_severity, message_text  # noqa: E402


class Acks:
    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def ok(self, i, seq):
        os.write(self.fd, f"{i} {seq}\n".encode())

    def error(self, i, e):
        os.write(self.fd, f"E {i} {type(e).__name__}\n".encode())


def read_acks(path):
    """({i: sequence} acknowledged, [(i, error class)])."""
    acked, errors = {}, []
    try:
        with open(path) as f:
            for line in f:
                if not line.endswith("\n"):
                    continue                      # torn by the kill: never acknowledged
                parts = line.split()
                if parts[0] == "E":
                    errors.append((int(parts[1]), parts[2]))
                else:
                    acked[int(parts[0])] = int(parts[1]) if parts[1].lstrip("-").isdigit() else -1
    except FileNotFoundError:
        pass
    return acked, errors


def pipe_text(writer, i):
    """Every seventh record of a pipe writer is larger than PIPE_BUF (sent in fragments)."""
    base = message_text(writer, i)
    return base + "|" + ("%d." % i) * 1200 if i % 7 == 3 else base


def handler_level(writer, i):
    """The logging level a message goes out at through logkit.Handler (its severity)."""
    return max(1, abs(message_severity(writer, i)))


def hows(layer):
    """How a writer of this layer writes message i: hows(layer)[i % len(...)]."""
    if layer == "family":
        return ("write", "write_as", "reserve", "handler")
    if layer == "core":
        return ("write", "write_as", "reserve", "stepwise")
    return HOWS


class _Handled:
    """A family writer plus a logging.Logger whose logkit.Handler writes into
    the same family (the Handler's own Cython path, FamilySink)."""

    def __init__(self, cfg, writer):
        import logging
        import logkit
        self.w = logkit.open_writer(cfg["directory"], family=cfg["family"], segment_size=cfg["segment_size"],
                                    rotation_timeout=cfg["rotation_timeout"], wait_timeout=cfg["wait_timeout"])
        self.handler = logkit.Handler(log=cfg["family"], storage="family", directory=cfg["directory"],
                                      family=cfg["family"], segment_size=cfg["segment_size"],
                                      create_directory=True, rotation_timeout=cfg["rotation_timeout"],
                                      wait_timeout=cfg["wait_timeout"])
        self.logger = logging.getLogger(f"crashmatrix-{writer}")
        self.logger.propagate = False
        self.logger.setLevel(1)
        self.logger.addHandler(self.handler)
        self.write, self.write_as, self.reserve = self.w.write, self.w.write_as, self.w.reserve

    def log(self, level, text):
        self.logger.log(level, "%s", text)
        return -1

    def close(self):
        self.handler.close()
        self.w.close()


def _open(layer, cfg, writer=0):
    if layer == "core":
        from logkit import Segment
        return Segment.open(cfg["path"])
    if layer == "family":
        return _Handled(cfg, writer)
    if layer == "partition":
        from logkit.backends.partition import PartitionStorage
        return PartitionStorage(cfg["name"], path=cfg["path"], size=cfg["size"])
    if layer == "pipe":
        from logkit.backends.pipe import PipeTransport
        from procs.part import NoStorage
        return PipeTransport(NoStorage(), cfg["name"], fifo=cfg["fifo"], spill=cfg["spill"],
                             spill_size=cfg["spill_size"])
    raise ValueError(layer)


def _write(w, layer, writer, i, how, foreign_pid):
    sev, data, cls = message_severity(writer, i), message_data(writer, i), message_class(writer, i)
    if layer == "pipe":
        return w.write(pipe_text(writer, i), sev, data, cls)
    text = message_text(writer, i)
    if how == "handler":
        return w.log(handler_level(writer, i), text)
    if how == "stepwise":
        # the C writer with an injection point after each of its steps
        # (core.write.*), armed from the environment like any other point
        from logkit import inject
        return inject.write_stepwise(w, text, sev, data, cls)
    if how == "write" or layer == "partition" and how == "reserve":
        return w.write(text, severity=sev, data=data, data_class=cls)
    if how == "write_as" and layer == "partition":
        return w.append(_Copy(text, sev, data, cls, time.time_ns(), foreign_pid, threading.get_native_id()))
    if how == "write_as":
        # a copy of a message made elsewhere, by a process that has exited
        # (what a drain or a pipe reader writes)
        return w.write_as(text, sev, data, cls, time.time_ns(), foreign_pid, threading.get_native_id())
    tb = text.encode()
    r = w.reserve(len(tb), len(data), cls)
    half = len(tb) // 2
    r.text[:half] = tb[:half]
    r.text[half:] = tb[half:]
    if data:
        r.data[:] = data
    return r.finish(severity=sev)


HOWS = ("write", "write_as", "reserve")


class _Copy:
    """A message made elsewhere (what a drain passes to append())."""

    def __init__(self, text, severity, data, data_class, time, process_id, thread_id):
        self.text, self.severity, self.data, self.data_class = text, severity, data, data_class
        self.time, self.process_id, self.thread_id = time, process_id, thread_id


def child_writer(conn, layer, cfg, writer, first, count, acks_path, go, census_names, census_path):
    """Open the layer's writer, say ready, wait for `go`, write messages
    first..first+count-1 (cycling write / write_as / reserve-finish, pausing
    now and then so the others interleave), acknowledging each; report
    ("done", errors, stats) and, for a pipe writer, wait for "close"."""
    from logkit.errors import LogkitError
    census = runtime.start(cfg.get("scale"), census_names)
    w = _open(layer, cfg, writer)
    how = hows(layer)
    acks = Acks(acks_path)
    conn.send(("ready",))
    if go is not None and not go.wait(TIMEOUT):
        raise RuntimeError("no go signal")
    errors = 0
    pace = cfg.get("pace", 0.0)
    for i in range(first, first + count):
        try:
            seq = _write(w, layer, writer, i, how[i % len(how)], cfg.get("foreign_pid", 0))
        except LogkitError as e:
            acks.error(i, e)
            errors += 1
            continue
        acks.ok(i, seq)
        if pace and i % 16 == 15:
            time.sleep(pace)        # a real application's pace, not a synchronisation
    stats = {}
    if hasattr(w, "stats"):
        try:
            stats = {k: v for k, v in dict(w.stats()).items() if isinstance(v, (int, float))}
        except Exception as e:      # reported, not fatal: the checks are the parent's
            stats = {"stats_error": repr(e)}
    runtime.dump_census(census, census_path)
    conn.send(("done", errors, stats))
    if layer == "pipe":
        if not conn.poll(TIMEOUT * 2):
            raise RuntimeError("no order to close")
        conn.recv()
    if hasattr(w, "close"):
        w.close()
    conn.send(("closed",))


def child_reader(conn, layer, cfg, census_names=None, census_path=None):
    """Read everything the layer's reader gives, again and again, while the
    writers work and one of them is killed or stopped, until the parent
    sends "stop"; report ("read", passes, messages seen, problems).  A
    message yielded whole-looking but wrong (checksum, contents, a duplicate
    within one pass) is a problem; a LogkitError is a refusal (noted in
    reader.refused beside the case's files); any other exception ends the
    child (the parent sees it as a crash)."""
    import collections
    import logkit
    census = runtime.start(cfg.get("scale"), census_names)
    conn.send(("ready",))
    passes = seen = refused = 0
    problems, problems_note = [], ""
    while not conn.poll(0):
        try:
            out = _read_once(layer, cfg, passes)
        except logkit.LogkitError as e:
            # a clear refusal (e.g. a partition that overflows faster than
            # it can be read) is not a crash; anything else ends the child
            refused += 1
            if refused == 1:
                problems_note = f"{type(e).__name__}: {e}"
            time.sleep(0.05)        # the reader's pace between passes, not a synchronisation
            continue
        twice = [k for k, n in collections.Counter((w, i) for w, i, _ in out["read"]).items() if n > 1]
        problems += out["problems"][:3] + [f"read twice in one pass: {twice[:3]}"] * bool(twice)
        problems = problems[:10]
        passes += 1
        seen += len(out["read"])
        time.sleep(0.05)            # the reader's pace between passes, not a synchronisation
    conn.recv()
    runtime.dump_census(census, census_path)
    if refused:                     # beside the case's files, for the parent's notes
        where = os.path.dirname(cfg.get("path") or cfg["directory"])
        with open(os.path.join(where, "reader.refused"), "w") as f:
            f.write(f"{refused} passes refused, the first with {problems_note}")
    conn.send(("read", passes, seen, problems))


def _read_once(layer, cfg, passes):
    """One pass of the layer's reader: readcheck's record of what it gave."""
    import logkit
    from crashmatrix import readcheck
    out = {"read": [], "loss_reports": [], "problems": [], "notes": [], "notices": 0}
    if layer == "core":
        seg = logkit.Segment.open(cfg["path"], readonly=True)
        for m in seg:
            readcheck.check(m, layer, out)
        seg.close()
    elif layer == "partition" and passes % 2:
        from logkit.backends.partition import open_reader as partition_reader
        try:
            r = partition_reader(cfg["path"])
        except logkit.SegmentNotFound:
            r = ()
        for m in r:
            readcheck.check(m, layer, out)
    elif os.path.exists(os.path.join(cfg["directory"], cfg["family"])):
        for m in logkit.open_reader(cfg["directory"], cfg["family"]):
            readcheck.check(m, layer, out)
    return out
