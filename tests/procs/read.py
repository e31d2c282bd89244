"""Child processes for tests/test_readers_hostile.py: readers and a hostile
co-writer of the same file, each in its own interpreter so that a reader that
crashes (SIGSEGV, SIGBUS) shows as a signal in the parent, not a dead test run.

Run as ``python tests/procs/read.py CASE ARGS...``; every case prints one
result line ``OK <value>`` or ``ERR <ExceptionName>: <message>`` per step and
exits 0; anything else (a signal, a traceback) fails the test.

The co-writer is a second, writable mmap of the file (what any process that
can write the log can do): it rewrites a field of a committed message AFTER
the reader's walk validated the message and BEFORE an accessor reads it, so
the window is deterministic, with no timing involved.
"""
from __future__ import annotations

import mmap
import os
import struct
import sys

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TESTS_DIR not in sys.path:           # run by path: for `waiting`
    sys.path.insert(0, TESTS_DIR)

from logkit import Segment  # noqa: E402
from logkit import inject  # noqa: E402
from logkit.errors import LogkitError  # noqa: E402
from waiting import wait_until  # noqa: E402

KEY = (7, bytes(range(32)))


def _scribble(path: str, at: int, fmt: str, value: int) -> None:
    """Write `value` (struct `fmt`) at byte `at` of `path` through a second,
    writable shared mapping: the reader's own mapping sees it at once."""
    with open(path, "r+b") as f:
        mm = mmap.mmap(f.fileno(), 0)
        struct.pack_into(fmt, mm, at, value)
        mm.close()


FIELDS = {"12": "<h", "40": "<I", "44": "<I", "48": "<H", "8": "<I"}


def _say(fn) -> None:
    try:
        v = fn()
        if isinstance(v, memoryview):
            v = bytes(v)
        print("OK", repr(v), flush=True)
    except LogkitError as e:
        print(f"ERR {type(e).__name__}: {e}", flush=True)


def case_message(path: str, field: str, value: str, accessor: str, sealed: str) -> None:
    """Walk to the last message, scribble +field, then read `accessor`."""
    seg = Segment.open(path, readonly=True, key=KEY if sealed == "1" else None)
    msgs = list(seg)
    m = msgs[-1]
    if sealed == "1":
        _say(lambda: m.text)           # opened once: the private copy is made
    _scribble(path, m.offset + int(field), FIELDS[field], int(value))
    _say(lambda: getattr(m, accessor))
    _say(lambda: m.to_dict())


def case_print(path: str, field: str, value: str) -> None:
    """logkit print's C path: walk (validates), scribble, then format."""
    from logkit import _scan
    from logkit.cli import print_cmd
    from logkit.select import Selection
    seg = Segment.open(path, readonly=True)
    scan = _scan.Scan(Selection())
    scan.walk(seg)
    offs = scan.offsets()
    warned = []
    print_cmd._warn = warned.append     # the fallback's warnings, to print below

    class Disp:
        def line(self, m, prev):
            return f"{m.sequence} {m.severity} {m.text}"

    fallback_calls = []

    def fallback(s, off, prev):
        fallback_calls.append(off)
        m = _scan.message_at(s, off)
        try:
            return Disp().line(m, prev), m.text
        except LogkitError as e:
            warned.append(str(e))
            return None

    printer = _scan.Printer("text", False, False, False, fallback)
    _scribble(path, offs[-1] + int(field), FIELDS[field], int(value))
    printer.emit(seg, scan)
    out = printer.take().decode("utf-8", "replace")
    print("OK", repr(out.count("\n")), flush=True)
    for w in warned:
        print("WARN", w, flush=True)


def _truncate_elsewhere(path: str, size: int) -> None:
    """ftruncate `path` from another process (what any process that can
    write the log can do), and wait until it has."""
    import subprocess
    subprocess.run([sys.executable, "-c", f"import os; os.truncate({path!r}, {size})"], check=True,
                   timeout=60)
    assert os.stat(path).st_size == size


def case_sigbus_read(path: str, keep: str) -> None:
    """Read a segment, have another process truncate it to `keep` bytes,
    read again: the messages still in the file, then SegmentDamaged naming
    it; a Message taken before the cut whose page is gone reads as damage."""
    try:
        from logkit._segment import sigbus_counts
    except ImportError:                       # a build without it: let the truncate show what happens
        def sigbus_counts():
            return (0, 0)
    seg = Segment.open(path, readonly=True)
    before = list(seg)
    print("OK", len(before), flush=True)
    _truncate_elsewhere(path, int(keep))
    got = []
    try:
        for m in seg:
            got.append((m.sequence, m.text))
        print("OK no error after", len(got), flush=True)
    except LogkitError as e:
        print("OK", len(got), flush=True)
        print(f"ERR {type(e).__name__}: {e}", flush=True)
    _say(lambda: before[-1].text)
    print("OK counts", sigbus_counts()[0] > 0, sigbus_counts()[1], flush=True)


def case_sigbus_write(directory: str, keep: str, follow: str) -> None:
    """A FamilyWriter (and, with follow=1, a follower thread) while another
    process truncates the live segment to `keep` bytes: every write
    acknowledged after the cut is read back (and followed), nothing crashes."""
    import threading
    from logkit import open_reader, open_writer
    w = open_writer(directory, "log", segment_size="64KiB")
    for i in range(40):
        w.write(f"before {i}")
    followed: list[str] = []
    reader = open_reader(directory, "log")
    t = None
    if follow == "1":
        t = threading.Thread(target=lambda: followed.extend(
            m.text for m in reader.follow(poll_interval=0.01, idle_timeout=20.0)), daemon=True)
        t.start()
        # the follower caught up: it holds the mapping
        wait_until(lambda: len(followed) >= 40, "the follower to read the 40 messages", interval=0.01)
    live = os.path.join(directory, "log")
    _truncate_elsewhere(live, int(keep))
    after = []
    for i in range(300):
        text = f"after {i}"
        w.write(text)
        after.append(text)
    print("OK retired", w.damaged_retired, flush=True)
    if os.environ.get("READPROCS_SALVAGE") == "1":
        from logkit.salvager import salvage
        for p in sorted(os.listdir(directory)):
            if p.startswith("log.") and os.path.getsize(os.path.join(directory, p)) >= 8192:
                salvage(os.path.join(directory, p))      # (a bare header holds no message)
    texts = [m.text for m in open_reader(directory, "log")]
    missing = [x for x in after if x not in texts]
    print("OK missing", len(missing), missing[:3], flush=True)
    if t is not None:
        reader.stop()
        t.join(60)
        fmissing = [x for x in after if x not in followed]
        print("OK followed-missing", len(fmissing), fmissing[:3], flush=True)
        print("OK problems", any("shrank" in p for p in reader.problems), flush=True)
    w.close()


def case_stub_copy(path: str, dead_pid: str, notify: str) -> None:
    """A copy (write_as, as a drain or the pipe reader makes) of a message
    whose writer, `dead_pid`, has exited: reserved and copied, then held at
    the injection point core.write.copied until `notify`.go exists."""
    seg = Segment.open(path)
    seq = inject.write_stepwise(seg, "copied message", 20, process_id=int(dead_pid), thread_id=1,
                             stop_at="copied", action="wait", notify=notify)
    print("OK", seq, flush=True)


def case_rotate_writer(directory: str, count: str, tag: str) -> None:
    """Write `count` messages into family "log" (8 KiB segments); the
    environment may arm family.rotate.* injection points (stop there).
    Prints every acknowledged text, then the rotations and takeovers."""
    import json
    from logkit import open_writer
    w = open_writer(directory, "log", segment_size=8192, rotation_timeout=0.5, wait_timeout=30)
    acked = []
    for i in range(int(count)):
        text = f"{tag} {i:05d}"
        w.write(text)
        acked.append(text)
    print("ACK", json.dumps(acked), flush=True)
    print("OK", w.rotations, w.takeovers, flush=True)
    w.close()


def case_sigbus_foreign(path: str, how: str) -> None:
    """With logkit's SIGBUS handler installed (and a segment open), a SIGBUS
    that is not logkit's must still end the process: a truncated file mapped
    by someone else (how=mmap), or a SIGBUS sent with kill (how=kill)."""
    import signal
    seg = Segment.create(path + ".seg", size=8192)
    seg.write("a logkit mapping is registered")
    if how == "kill":
        os.kill(os.getpid(), signal.SIGBUS)
    else:
        with open(path, "wb") as f:
            f.write(b"x" * 16384)
        f = open(path, "r+b")
        mm = mmap.mmap(f.fileno(), 16384)
        _truncate_elsewhere(path, 0)
        print("OK touching", flush=True)
        mm[8192]                                # past the end of a file that is not a segment
    print("OK survived", flush=True)


def case_sigbus_limits(directory: str) -> None:
    """limits() and seek() of a family whose live segment another process
    truncated: the reader opens it again, finds it shorter than its header
    says and skips it, saying salvage reads it; no crash."""
    from logkit import open_reader, open_writer
    from logkit.errors import NoSuchMessage
    with open_writer(directory, "log", segment_size="64KiB") as w:
        for i in range(400):
            w.write(f"message {i:04d} " + "y" * 40)
    r = open_reader(directory, "log")
    print("OK", r.limits().last_sequence, flush=True)
    _truncate_elsewhere(os.path.join(directory, "log"), 8192)
    lim = r.limits()
    print("OK", None if lim is None else lim.first_sequence, flush=True)
    try:
        print("OK", r.seek(sequence=390).sequence, flush=True)
    except NoSuchMessage:
        print("OK no such message", flush=True)
    print("OK problems", any("logkit salvage" in p for p in r.problems), flush=True)


def main(argv: list[str]) -> int:
    case = globals()["case_" + argv[0]]
    case(*argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
