"""Spawning, synchronising with and killing writer processes for the tests.

This is the one place that starts processes.  Rules it keeps:

* Children are started with the "spawn" context: a fresh interpreter that
  imports this module by name ("procs.common") and logkit, so nothing of the
  parent's state (mappings, cached pid/tid) leaks into a child.
* Every child talks to the parent over its own Pipe.  The first thing a
  child sends is ("hello", pid, this module's __file__), which the parent
  checks: the child really imported *this* file.
* Waiting is always on a pipe, Event or Barrier with a timeout (TIMEOUT),
  or on a condition with waiting.wait_until; a fixed sleep is never used
  to order anything.
* A child that raises sends ("error", traceback) before it dies, and the
  parent's recv() turns that into a ChildFailed assertion with the trace.
* Killing is os.kill(pid, SIGKILL) on the one pid, then a join.

The child target functions (everything named ``child_*``) live here too, so
spawned children can import them.  Message contents are a pure function of
(writer, counter), so the parent can check every byte it reads back.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection as mpc
import os
import random
import signal
import struct
import sys
import threading
import time
import traceback

from logkit import Segment, SegmentFull
from logkit.errors import MessageLost

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TESTS_DIR not in sys.path:           # spawned children inherit sys.path
    sys.path.insert(0, TESTS_DIR)

from waiting import TIMEOUT  # noqa: E402  (the longest any single wait may take)

CTX = multiprocessing.get_context("spawn")

# What `import procs` gives (procs/__init__.py re-exports it): the machinery,
# the message contents, and the child targets of the core, family and
# handler tests.
__all__ = [
    "CTX", "TIMEOUT", "TESTS_DIR", "ChildFailed", "Child", "Group", "recv_all", "wait_any", "process_state",
    "message_text", "parse_text", "message_severity", "message_has_data", "message_data", "message_class",
    "write_message", "check_message",
    "child_write_many", "child_fill_to_the_end", "child_write_and_vanish", "child_read_all",
    "child_write_until_killed", "child_stop_in_reservation",
    "child_family_write", "child_family_follow", "child_family_rotation_victim", "child_family_rotation_resuming_victim",
    "child_family_write_pausing_takeover",
    "HANDLER_LEVELS", "handler_text", "child_handler_threads", "stop_after_appends", "install_offline",
]


class ChildFailed(AssertionError):
    """A child process raised, died unexpectedly, or did not answer in time."""


# ====================================================================== parent side

@contextlib.contextmanager
def _pythonpath():
    """Put tests/ on PYTHONPATH while a child starts (belt and braces: spawn
    also hands the child the parent's sys.path)."""
    old = os.environ.get("PYTHONPATH")
    parts = [p for p in (old or "").split(os.pathsep) if p]
    if TESTS_DIR not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([TESTS_DIR] + parts)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


class Child:
    """One spawned process and the parent's end of its pipe."""

    def __init__(self, target, args, name):
        self.name = name
        self.conn, self._child_conn = CTX.Pipe(duplex=True)
        self.process = CTX.Process(target=_bootstrap, args=(target, self._child_conn, args),
                                   name=name, daemon=True)
        self.pid = None
        self.module_file = None     # procs.common.__file__ as the child imported it
        self.killed = False

    def start(self):
        with _pythonpath():
            self.process.start()
        self._child_conn.close()
        self.pid = self.process.pid
        return self

    def _describe(self):
        return f"child {self.name} (pid {self.pid}, exitcode {self.process.exitcode})"

    def recv(self, timeout=TIMEOUT):
        """The next message the child sent (hello handled here); ChildFailed on
        an error report, on EOF, or when nothing arrives within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if not self.conn.poll(max(left, 0)):
                raise ChildFailed(f"{self._describe()}: nothing received within {timeout} s")
            try:
                msg = self.conn.recv()
            except EOFError:
                self.process.join(5)
                raise ChildFailed(f"{self._describe()}: pipe closed (child died)") from None
            if msg[0] == "hello":
                _, pid, module_file = msg
                if pid != self.pid:
                    raise ChildFailed(f"{self._describe()}: hello from pid {pid}")
                self.module_file = module_file
                continue
            if msg[0] == "error":
                self.process.join(5)
                raise ChildFailed(f"{self._describe()} raised:\n{msg[1]}")
            return msg

    def expect(self, kind, timeout=TIMEOUT):
        """recv() a message of this kind and return its payload (msg[1:])."""
        msg = self.recv(timeout)
        if msg[0] != kind:
            raise ChildFailed(f"{self._describe()}: expected {kind!r}, got {msg!r:.300}")
        return msg[1:]

    def send(self, obj):
        self.conn.send(obj)

    def kill(self, timeout=TIMEOUT):
        """SIGKILL this one child and reap it; returns its exit code."""
        if self.process.exitcode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.killed = True
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise ChildFailed(f"{self._describe()}: still alive {timeout} s after SIGKILL")
        return self.process.exitcode

    def join(self, timeout=TIMEOUT):
        """Wait for the child to exit by itself; returns its exit code."""
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise ChildFailed(f"{self._describe()}: did not exit within {timeout} s")
        return self.process.exitcode

    def close(self):
        self.conn.close()


class Group:
    """Context manager owning a set of children: on exit every child still
    alive is SIGKILLed (by pid) and reaped, and every pipe is closed."""

    def __init__(self):
        self.children = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for c in self.children:
            if c.pid is not None and c.process.exitcode is None:
                try:
                    os.kill(c.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                c.process.join(TIMEOUT)
            c.close()
        return False

    def spawn(self, target, *args, name=None):
        """Start one child running target(conn, *args)."""
        c = Child(target, args, name or f"{target.__name__}-{len(self.children)}")
        self.children.append(c)
        return c.start()

    def spawn_many(self, n, target, args_of):
        """Start n children, target(conn, *args_of(i)), all before waiting on any."""
        return [self.spawn(target, *args_of(i), name=f"{target.__name__}-{i}") for i in range(n)]


def recv_all(children, kind, timeout=TIMEOUT):
    """One message of `kind` from each child, in children order."""
    return [c.expect(kind, timeout) for c in children]


def process_state(pid: int) -> str:
    """The scheduler state of `pid` as /proc/<pid>/stat gives it (R running,
    S asleep, T stopped, Z zombie...), or "X" once there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            st = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return "X"
    return st[st.rindex(b")") + 2:st.rindex(b")") + 3].decode()   # after "(comm) ", which may hold spaces


def wait_any(children, timeout=TIMEOUT):
    """The children whose pipes have something to read (at least one)."""
    by_conn = {c.conn: c for c in children}
    ready = mpc.wait(list(by_conn), timeout)
    if not ready:
        raise ChildFailed(f"none of {[c.name for c in children]} sent anything within {timeout} s")
    return [by_conn[r] for r in ready]


# ====================================================================== child side

def _bootstrap(target, conn, args):
    """Runs in the child: say hello (proving which procs.common it imported),
    run the target, report any exception to the parent."""
    try:
        conn.send(("hello", os.getpid(), os.path.abspath(__file__)))
        target(conn, *args)
    except BaseException:
        try:
            conn.send(("error", traceback.format_exc()))
        except Exception:
            pass
        raise


# Message contents: a pure function of (writer, counter).

def message_text(writer, i):
    """Text of message i of writer `writer`: parseable, of varying length."""
    return f"w{writer}:{i}:" + "abcdefghijklmnopq"[: (i * 7 + writer) % 18]


def parse_text(text):
    """(writer, counter) from message_text(), or None if it is not one."""
    parts = text.split(":")
    if len(parts) != 3 or not parts[0].startswith("w"):
        return None
    w, i = int(parts[0][1:]), int(parts[1])
    return (w, i) if message_text(w, i) == text else None


def message_severity(writer, i):
    return (writer * 31 + i) % 501 - 250


def message_has_data(writer, i):
    return i % 4 == 0


def message_data(writer, i):
    return struct.pack("<II", writer, i) * (1 + i % 3) if message_has_data(writer, i) else b""


def message_class(writer, i):
    return "pair" if message_has_data(writer, i) else ""


def write_message(seg, writer, i, via_reserve):
    """Write message i of `writer`, by write() or by reserve()/fill/finish();
    returns its sequence number."""
    text = message_text(writer, i)
    data = message_data(writer, i)
    cls = message_class(writer, i)
    sev = message_severity(writer, i)
    if not via_reserve:
        return seg.write(text, severity=sev, data=data, data_class=cls)
    tb = text.encode()
    r = seg.reserve(len(tb), len(data), cls)
    half = len(tb) // 2
    r.text[:half] = tb[:half]               # filled in two steps: a kill can land between
    r.text[half:] = tb[half:]
    if data:
        r.data[:] = data
    return r.finish(severity=sev)


def check_message(m, writer, i):
    """Problems with Message m as message i of `writer` (empty list: none)."""
    problems = []
    if not m.checksum_ok():
        problems.append("checksum")
    if m.severity != message_severity(writer, i):
        problems.append(f"severity {m.severity}")
    if bytes(m.data) != message_data(writer, i):
        problems.append("data")
    if m.data_class != message_class(writer, i):
        problems.append(f"data_class {m.data_class!r}")
    return [f"message at {m.offset} (w{writer}:{i}): {p}" for p in problems]


# ---------------------------------------------------------------- child targets

def child_write_many(conn, path, writer, count, go):
    """Open the segment, say ready, wait for `go`, write `count` messages
    (every eighth through reserve/finish), report done."""
    seg = Segment.open(path)
    conn.send(("ready",))
    if not go.wait(TIMEOUT):
        raise RuntimeError("no go signal")
    for i in range(count):
        write_message(seg, writer, i, via_reserve=(i % 8 == 7))
    conn.send(("done", count))
    seg.close()


def _edge_thread(seg, writer, thread, seed, out):
    """Write random-size messages until a smallest (64-byte) message is refused."""
    rnd = random.Random(seed)
    res = {"tid": threading.get_native_id(), "written": [], "refusals": 0, "errors": []}
    smallest = False
    counter = 0
    while True:
        text = "" if smallest else f"p{writer}t{thread}c{counter}:" + "z" * rnd.randrange(0, 240)
        try:
            if rnd.random() < 0.3:
                tb = text.encode()
                r = seg.reserve(len(tb))
                r.text[:] = tb
                seq = r.finish(severity=counter % 200)
            else:
                seq = seg.write(text, severity=counter % 200)
        except SegmentFull:
            res["refusals"] += 1
            if smallest:
                break
            smallest = True         # a smaller message may still fit: go down to the minimum
            continue
        except BaseException as e:  # any other refusal is a failure the parent reports
            res["errors"].append(f"{type(e).__name__}: {e}")
            break
        res["written"].append((seq, text, counter % 200))
        counter += 1
    out[thread] = res


def child_fill_to_the_end(conn, paths, writer, threads, barrier, seed):
    """For each segment in `paths`: meet the other writer processes at
    `barrier`, then race `threads` threads writing until the segment refuses
    even a 64-byte message.  Reports ("round", k, [per-thread results])."""
    for k, path in enumerate(paths):
        seg = Segment.open(path)
        barrier.wait(TIMEOUT)
        out = [None] * threads
        ts = [threading.Thread(target=_edge_thread, args=(seg, writer, t, seed * 1000 + k * 100 + t, out))
              for t in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        seg.close()
        conn.send(("round", k, out))


def child_write_and_vanish(conn, path, writer, count):
    """Write `count` messages, report their sequences, then os._exit(0):
    no close, no sync, no interpreter shutdown."""
    seg = Segment.open(path)
    seqs = [write_message(seg, writer, i, via_reserve=(i % 3 == 0)) for i in range(count)]
    conn.send(("written", seqs))
    os._exit(0)


def child_read_all(conn, path):
    """Open the segment read-only and report everything a reader sees."""
    seg = Segment.open(path, readonly=True)
    it = seg.messages()
    msgs = [(m.sequence, m.offset, m.text, m.severity, m.process_id, m.data_class, bytes(m.data),
             m.checksum_ok()) for m in it]
    conn.send(("read", msgs, list(it.open_reservations), list(it.gaps), list(it.damaged), seg.stats()))
    seg.close()


def child_write_until_killed(conn, path, writer, seed, report_every):
    """Write messages forever (a random mix of write() and reserve/finish),
    reporting ("progress", last finished counter) every `report_every`
    messages.  Stops only if the segment fills, which the parent treats as
    a failure of the test's sizing."""
    seg = Segment.open(path)
    rnd = random.Random(seed)
    conn.send(("ready",))
    i = 0
    while True:
        try:
            write_message(seg, writer, i, via_reserve=rnd.random() < 0.5)
        except SegmentFull:
            conn.send(("full", i - 1))
            conn.poll(TIMEOUT)
            return
        if i % report_every == 0:
            conn.send(("progress", i))
        i += 1


def child_stop_in_reservation(conn, path, writer, finished_before, fill, with_data):
    """Write `finished_before` messages, then reserve message number
    `finished_before`, fill `fill` bytes of its text (and its data if
    with_data), report ("reserved", offset, sequence, finished sequences) and
    wait for an order: "finish" finishes it and reports the outcome."""
    seg = Segment.open(path)
    done = [write_message(seg, writer, i, via_reserve=False) for i in range(finished_before)]
    i = finished_before
    tb = message_text(writer, i).encode()
    data = b"D" * 24 if with_data else b""
    r = seg.reserve(len(tb), len(data), "blob" if with_data else "")
    r.text[:fill] = tb[:fill]
    if with_data:
        r.data[:] = data
    conn.send(("reserved", r.offset, r.sequence, done))
    if not conn.poll(TIMEOUT):
        return
    order = conn.recv()
    if order == "finish":
        r.text[:] = tb
        try:
            seq = r.finish(severity=message_severity(writer, i))
        except MessageLost as e:
            conn.send(("finished", "lost", str(e)))
        else:
            conn.send(("finished", "ok", seq))
    if conn.poll(TIMEOUT):
        conn.recv()


# ---------------------------------------------------------------- family child targets

def _write_on_go(conn, go, w, writer, count):
    """Say ready, wait for `go`, write `count` messages through `w` (every
    eighth through reserve/finish), report ("done", sequences, rotations,
    takeovers) and close it: the body of the family writer children."""
    conn.send(("ready",))
    if not go.wait(TIMEOUT):
        raise RuntimeError("no go signal")
    seqs = [write_message(w, writer, i, via_reserve=(i % 8 == 7)) for i in range(count)]
    conn.send(("done", seqs, w.rotations, w.takeovers))
    w.close()


def child_family_write(conn, directory, family, writer, count, go, options):
    """Open a family writer (open_writer(directory, family, **options)), say
    ready, wait for `go`, write `count` messages (every eighth through
    reserve/finish), then report ("done", sequences, rotations, takeovers)."""
    import logkit
    w = logkit.open_writer(directory, family=family, **options)
    _write_on_go(conn, go, w, writer, count)


def child_family_follow(conn, directory, family, total, poll_interval, idle_timeout):
    """Follow a family from its very start: report ("waiting",) once follow()
    finds no segment and starts waiting for the first one, then collect
    (sequence, text) of every message followed until `total` have come (or
    follow() ends after `idle_timeout` idle seconds) and report
    ("followed", messages, reader problems)."""
    import logkit
    from logkit.family import FamilyReader
    wait_first = FamilyReader._wait_first_segment

    def reporting_wait_first(self, *args):
        conn.send(("waiting",))
        return wait_first(self, *args)

    FamilyReader._wait_first_segment = reporting_wait_first
    r = logkit.open_reader(directory, family)
    conn.send(("ready",))
    got = []
    for m in r.follow(poll_interval=poll_interval, idle_timeout=idle_timeout):
        got.append((m.sequence, m.text))
        if len(got) == total:
            break
    conn.send(("followed", got, list(r.problems)))


def child_family_rotation_victim(conn, directory, family, writer, stage, go, options):
    """Write messages into a family until this process rotates it and reaches
    `stage` of the rotation (logkit.family._rotation_hook); there report
    ("stalled", stage, number of messages finished, uuid and sequence base of
    the segment being rotated, rotations finished before) and block until the
    parent kills it."""
    import logkit
    import logkit.family
    w = logkit.open_writer(directory, family=family, **options)
    finished = [0]

    def hook(at):
        if at == stage:
            seg = w.segment                 # the segment being rotated
            conn.send(("stalled", at, finished[0], str(seg.uuid), seg.sequence_base, w.rotations))
            conn.poll(TIMEOUT)              # the parent SIGKILLs us here
            raise RuntimeError(f"not killed while stalled at {at}")

    logkit.family._rotation_hook = hook
    conn.send(("ready",))
    if not go.wait(TIMEOUT):
        raise RuntimeError("no go signal")
    i = 0
    while True:
        write_message(w, writer, i, via_reserve=(i % 8 == 7))
        i += 1
        finished[0] = i


def child_family_rotation_resuming_victim(conn, directory, family, writer, stage, go, options, after):
    """child_family_rotation_victim, except that it stays alive where it
    stalls and goes on when the parent sends anything: then it finishes
    that rotation (whatever others did meanwhile), writes `after` more
    messages and reports ("done", sequences, rotations, takeovers) of all
    it wrote."""
    import logkit
    import logkit.family
    w = logkit.open_writer(directory, family=family, **options)
    finished, seqs = [0], []

    def hook(at):
        if at == stage and not finished[1:]:
            finished.append("stalled")
            seg = w.segment
            conn.send(("stalled", at, finished[0], str(seg.uuid), seg.sequence_base, w.rotations))
            if not conn.poll(TIMEOUT):
                raise RuntimeError(f"no word to go on from {at}")
            conn.recv()

    logkit.family._rotation_hook = hook
    conn.send(("ready",))
    if not go.wait(TIMEOUT):
        raise RuntimeError("no go signal")
    i = 0
    while len(finished) == 1 or i < finished[0] + after:
        seqs.append(write_message(w, writer, i, via_reserve=(i % 8 == 7)))
        i += 1
        if len(finished) == 1:
            finished[0] = i
    conn.send(("done", seqs, w.rotations, w.takeovers))


def child_family_write_pausing_takeover(conn, directory, family, writer, count, go, options):
    """child_family_write, except that when this process takes over a stalled
    rotation it stops right after linking the old segment into history,
    reports ("taking-over", takeovers so far) and goes on only when the
    parent sends anything: a live, slow taker."""
    import logkit
    import logkit.family
    w = logkit.open_writer(directory, family=family, **options)
    reported = [0]

    def hook(at):
        if at == "linked" and w.takeovers > reported[0]:
            reported[0] = w.takeovers
            conn.send(("taking-over", w.takeovers))
            if not conn.poll(TIMEOUT):
                raise RuntimeError("no word from the parent while taking over")
            conn.recv()

    logkit.family._rotation_hook = hook
    _write_on_go(conn, go, w, writer, count)


# ---------------------------------------------------------------- handler child targets

HANDLER_LEVELS = (10, 20, 30, 40, 50)


def handler_text(proc, thread, i):
    return f"p{proc} t{thread} i{i} user %s"


def child_handler_threads(conn, handler_kwargs, proc, threads, count, go):
    """Attach logkit.Handler(**handler_kwargs) to a logger; say ("ready",);
    wait for `go`; log `count` records from each of `threads` threads at once
    (level HANDLER_LEVELS[i % 5], text handler_text(...) % "alice"); report
    ("done", pid, {thread index: native thread id}); close the handler."""
    import logging
    import logkit
    handler = logkit.Handler(**handler_kwargs)
    logger = logging.getLogger(f"handler-child-{proc}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    conn.send(("ready",))
    if not go.wait(TIMEOUT):
        raise RuntimeError("no go signal")
    tids = {}
    errors = []
    barrier = threading.Barrier(threads)

    def work(t):
        try:
            tids[t] = threading.get_native_id()
            barrier.wait(TIMEOUT)
            for i in range(count):
                logger.log(HANDLER_LEVELS[i % 5], handler_text(proc, t, i), "alice")
        except BaseException:
            errors.append(traceback.format_exc())

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(TIMEOUT)
    if errors:
        raise RuntimeError(errors[0])
    handler.close()
    conn.send(("done", os.getpid(), tids))


def stop_after_appends(storage, n: int) -> None:
    """Make storage.append raise KeyboardInterrupt right after its n-th
    append returns: a drain stopped between storing a record and recording
    that it did, its state left exactly as a SIGKILL there leaves it (no
    cleanup runs).  del storage.append gives the real method back."""
    real, count = storage.append, [0]

    def append(m):
        r = real(m)
        count[0] += 1
        if count[0] == n:
            raise KeyboardInterrupt
        return r
    storage.append = append


def install_offline(tmp_path_factory, package_dir, dist_prefix: str) -> str:
    """pip-install a tiny package of tests/thirdparty into a scratch directory
    (no network: no dependencies, no build isolation, no index) and return a
    PYTHONPATH that puts it first.  Asserts the install worked and left the
    distribution's metadata (`dist_prefix`*.dist-info: what entry points need)."""
    import shutil
    import subprocess
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / os.path.basename(os.fspath(package_dir))
    shutil.copytree(package_dir, source, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--no-index", "--target", str(target), str(source)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert any(n.startswith(dist_prefix) and n.endswith(".dist-info") for n in os.listdir(target))
    return os.pathsep.join([str(target)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
