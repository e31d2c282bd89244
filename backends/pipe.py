"""The `pipe` transport: framed records through a named FIFO to a reader.

The logging process encodes each record as a frame (docs/pipe-format.md) and
writes it to the FIFO with one non-blocking write, which the kernel makes
atomic up to PIPE_BUF bytes; a larger record goes as PIPE_BUF-sized fragments
that the reader reassembles.  When no reader holds the FIFO, or the pipe is
full, the record goes to a spill partition (backends/partition.py) instead,
so nothing is lost and the logger never blocks.  `drain_pipe` is the reader
(`logkit drain --pipe`): it stores the records it reads, and those the spill
holds, into a storage backend.
"""
from __future__ import annotations

import errno
import fcntl
import itertools
import os
import select
import stat
import struct
import threading
import time as _time
from typing import Any

from logkit import forking, safefs
from logkit.family import parse_duration
from logkit._segment import crc32c
from logkit.errors import InvalidArgument, LogkitError, MessageTooBig, UnsafePath
from logkit.registry import Option, StorageBackend, TransportBackend
from logkit.salvager import process_alive

from logkit.backends import pipekeeper
from logkit.backends.partition import PartitionStorage

__all__ = ["PipeTransport", "drain_pipe", "FrameDecoder", "PipeRecord", "encode_record",
           "encode_frames", "PIPE_BUF", "MAGIC", "FORMAT_VERSION"]

PIPE_BUF = select.PIPE_BUF              # 4096 on Linux: writes up to this size are atomic
MAGIC = b"LKPF"
FORMAT_VERSION = 1
FLAG_FRAGMENT = 1

HEADER = struct.Struct("<4sBBHII")      # magic, version, flags, reserved, total length, crc
RECORD = struct.Struct("<qhHIII")       # time, severity, class length, pid, tid, text length
FRAGMENT = struct.Struct("<IIQHHI")     # pid, tid, record id, index, count, whole record length
HEADER_SIZE = HEADER.size               # 16
BODY_OFFSET = HEADER_SIZE + RECORD.size  # 40 (== HEADER_SIZE + FRAGMENT.size)
CHUNK = PIPE_BUF - BODY_OFFSET          # payload bytes in one fragment
MAX_FRAGMENTS = 0xFFFF
MAX_RECORD = min(MAX_FRAGMENTS * CHUNK, 0xFFFFFFFF)

REOPEN_INTERVAL = 0.05                  # try a reader-less FIFO at most this often
FRAGMENT_TIMEOUT = 30.0                 # an incomplete fragment set is given up after this long
_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)

assert HEADER_SIZE + FRAGMENT.size == BODY_OFFSET


# ====================================================================== frames

def _crc(frame) -> int:
    """CRC-32C of bytes 0..11 then bytes 16..end: the frame without its CRC field."""
    mv = memoryview(frame)
    return crc32c(mv[HEADER_SIZE:], crc32c(mv[:12]))


# What check_frame() says of the bytes at a position.
FRAME_OK = "ok"               # a whole, sound frame of `total` bytes
FRAME_SHORT = "short"         # a sound header, but fewer than `total` bytes have arrived
FRAME_BAD_LENGTH = "length"   # the magic, but a length no frame has
FRAME_BAD = "bad"             # `total` bytes are there, but version, flags or CRC is wrong
FRAME_NO_MAGIC = "magic"      # no frame starts here (or too few bytes to tell)


def check_frame(buf, pos: int) -> tuple[str, int]:
    """(verdict, total length) of the frame that would start at buf[pos]:
    the one judgement of a frame, used by FrameDecoder and by `logkit
    display` of a journal (docs/pipe-format.md gives the rules)."""
    n = len(buf)
    if n - pos < HEADER_SIZE or buf[pos:pos + 4] != MAGIC:
        return FRAME_NO_MAGIC, 0
    _magic, version, flags, _r, total, crc = HEADER.unpack_from(buf, pos)
    if total < BODY_OFFSET or total > PIPE_BUF:
        return FRAME_BAD_LENGTH, 0
    if n - pos < total:
        return FRAME_SHORT, total
    if version != FORMAT_VERSION or flags & ~FLAG_FRAGMENT or _crc(memoryview(buf)[pos:pos + total]) != crc:
        return FRAME_BAD, total
    return FRAME_OK, total


def _seal(buf: bytearray) -> bytes:
    struct.pack_into("<I", buf, 12, _crc(buf))
    return bytes(buf)


def encode_record(text: bytes, severity: int, data: bytes, data_class: bytes, time: int,
                  pid: int, tid: int) -> bytes:
    """One record frame (flags 0), whatever its size."""
    total = BODY_OFFSET + len(text) + len(data_class) + len(data)
    if total > MAX_RECORD:
        raise MessageTooBig(f"a record of {total} bytes is larger than the pipe transport carries "
                            f"({MAX_RECORD} bytes: {MAX_FRAGMENTS} fragments)")
    buf = bytearray(total)
    HEADER.pack_into(buf, 0, MAGIC, FORMAT_VERSION, 0, 0, total, 0)
    RECORD.pack_into(buf, HEADER_SIZE, time, severity, len(data_class), pid, tid, len(text))
    at = BODY_OFFSET
    buf[at:at + len(text)] = text
    at += len(text)
    buf[at:at + len(data_class)] = data_class
    at += len(data_class)
    buf[at:] = data
    return _seal(buf)


def encode_frames(record: bytes, pid: int, tid: int, record_id: int) -> list[bytes]:
    """The frames that carry one record frame: itself if it fits in PIPE_BUF,
    else fragments of at most PIPE_BUF bytes each."""
    if len(record) <= PIPE_BUF:
        return [record]
    count = -(-len(record) // CHUNK)
    out = []
    for i in range(count):
        chunk = record[i * CHUNK:(i + 1) * CHUNK]
        buf = bytearray(BODY_OFFSET + len(chunk))
        HEADER.pack_into(buf, 0, MAGIC, FORMAT_VERSION, FLAG_FRAGMENT, 0, len(buf), 0)
        FRAGMENT.pack_into(buf, HEADER_SIZE, pid, tid, record_id & 0xFFFFFFFFFFFFFFFF, i, count, len(record))
        buf[BODY_OFFSET:] = chunk
        out.append(_seal(buf))
    return out


class PipeRecord:
    """A record read from the pipe: the fields storage.append() copies."""
    __slots__ = ("text", "severity", "data", "data_class", "time", "process_id", "thread_id")

    def __init__(self, text, severity, data, data_class, time, process_id, thread_id):
        self.text, self.severity, self.data, self.data_class = text, severity, data, data_class
        self.time, self.process_id, self.thread_id = time, process_id, thread_id

    def __repr__(self) -> str:
        return f"PipeRecord(pid={self.process_id}, tid={self.thread_id}, text={self.text!r:.60})"


class _Set:
    __slots__ = ("rid", "count", "total", "chunks", "since", "first")

    def __init__(self, rid, count, total, first=0):
        self.rid, self.count, self.total = rid, count, total
        self.chunks: dict[int, bytes] = {}
        self.since = _time.monotonic()
        self.first = first                   # stream position of its first fragment frame


class FrameDecoder:
    """Turns the byte stream read from the FIFO into records.

    Never raises on bad input: a frame with a bad magic, length, version or
    CRC is counted in .damaged and passed over (the decoder resynchronises on
    the next magic).  Fragments are reassembled per (pid, tid, record id); a
    set that can no longer complete (its writer died, moved on to another
    record, or it is older than FRAGMENT_TIMEOUT) is dropped and counted in
    .incomplete.
    """

    def __init__(self):
        self.buf = bytearray()
        self.base = 0                        # stream position of buf[0]: bytes fed before it
        self._at = 0
        self.partial: dict[tuple[int, int], _Set] = {}
        self.records = 0
        self.fragments = 0
        self.damaged = 0
        self.incomplete = 0
        self.skipped_bytes = 0
        self._next_expire = 0.0

    def counters(self) -> dict[str, int]:
        return {"records": self.records, "fragments": self.fragments, "damaged": self.damaged,
                "incomplete": self.incomplete, "skipped_bytes": self.skipped_bytes,
                "pending_sets": len(self.partial)}

    def feed(self, data) -> list[PipeRecord]:
        return [rec for rec, _end in self.feed_at(data)]

    def unresolved(self) -> int:
        """The stream position of the first byte still needed: the start of
        the oldest incomplete fragment set, or of the bytes not yet decoded.
        A reader that must rebuild this decoder's state (the journal,
        backends/pipejournal.py) decodes again from here."""
        if not self.partial:
            return self.base
        return min(self.base, min(st.first for st in self.partial.values()))

    def feed_at(self, data) -> list[tuple[PipeRecord, int]]:
        """feed(), with each record's end: the stream position just past the
        frame that completed it (records come in the order of their ends)."""
        buf = self.buf
        buf += data
        out: list[tuple[PipeRecord, int]] = []
        pos = 0
        n = len(buf)
        while n - pos >= HEADER_SIZE:
            verdict, total = check_frame(buf, pos)
            if verdict == FRAME_NO_MAGIC:
                pos = self._resync(buf, pos)
                continue
            if verdict == FRAME_BAD_LENGTH:
                self.damaged += 1
                pos = self._resync(buf, pos + 1)
                continue
            if verdict == FRAME_SHORT:
                break                        # the rest of this frame has not arrived yet
            if verdict == FRAME_BAD:
                self.damaged += 1
                nxt = pos + total
                # Skip the frame by its length when no frame can start inside it
                # (no magic there) or a frame starts right after it; otherwise the
                # length itself may be what is damaged: rescan from inside.  The
                # choice must not depend on where a read() happened to end (the
                # bytes after the frame may not have arrived yet), or the same
                # stream would be counted differently from run to run.
                if buf.find(MAGIC, pos + 1, nxt) < 0 or buf[nxt:nxt + 4] == MAGIC:
                    pos = nxt
                else:
                    pos = self._resync(buf, pos + 1)
                continue
            frame = bytes(buf[pos:pos + total])
            self._at = self.base + pos
            pos += total
            if frame[5] & FLAG_FRAGMENT:
                rec = self._fragment(frame)
            else:
                rec = self._record(frame)
                if rec is not None and self.partial.pop((rec.process_id, rec.thread_id), None) is not None:
                    self.incomplete += 1     # that thread gave up its fragmented record
            if rec is not None:
                self.records += 1
                out.append((rec, self.base + pos))
        del buf[:pos]
        self.base += pos
        return out

    def _resync(self, buf: bytearray, start: int) -> int:
        j = buf.find(MAGIC, start)
        end = j if j >= 0 else max(start, len(buf) - 3)
        self.skipped_bytes += end - start
        return end

    def _record(self, frame: bytes) -> PipeRecord | None:
        """A record frame whose CRC is already checked (or a reassembled one: checked here)."""
        total = len(frame)
        if total < BODY_OFFSET:
            self.damaged += 1
            return None
        time_ns, sev, cls_len, pid, tid, text_len = RECORD.unpack_from(frame, HEADER_SIZE)
        end_text = BODY_OFFSET + text_len
        end_cls = end_text + cls_len
        if end_cls > total or not -250 <= sev <= 250:
            self.damaged += 1
            return None
        text = frame[BODY_OFFSET:end_text].decode("utf-8", "surrogateescape")
        cls = frame[end_text:end_cls].decode("utf-8", "replace")
        return PipeRecord(text, sev, frame[end_cls:], cls, time_ns, pid, tid)

    def _fragment(self, frame: bytes) -> PipeRecord | None:
        self.fragments += 1
        pid, tid, rid, idx, count, total = FRAGMENT.unpack_from(frame, HEADER_SIZE)
        key = (pid, tid)
        st = self.partial.get(key)
        if st is not None and st.rid != rid:
            del self.partial[key]            # the writer thread moved on: that set cannot complete
            self.incomplete += 1
            st = None
        if st is None:
            if count < 2 or total <= PIPE_BUF or total > MAX_RECORD or -(-total // CHUNK) != count:
                self.damaged += 1
                return None
            st = self.partial[key] = _Set(rid, count, total, self._at)
        if count != st.count or total != st.total or idx >= count or idx in st.chunks:
            self.damaged += 1
            return None
        st.chunks[idx] = frame[BODY_OFFSET:]
        if len(st.chunks) < count:
            return None
        del self.partial[key]
        whole = b"".join(st.chunks[i] for i in range(count))
        ok = len(whole) == total and whole[:4] == MAGIC
        if ok:
            magic, version, flags, _r, wtotal, crc = HEADER.unpack_from(whole, 0)
            ok = version == FORMAT_VERSION and flags == 0 and wtotal == total and _crc(whole) == crc
        if not ok:
            self.damaged += 1
            return None
        return self._record(whole)

    def expire(self, force: bool = False, now_: bool = False, max_age: float = FRAGMENT_TIMEOUT) -> None:
        """Drop fragment sets that can no longer complete: their writer died,
        or they are older than `max_age` seconds (FRAGMENT_TIMEOUT; checked at
        most twice a second unless now_); force drops every pending set."""
        now = _time.monotonic()
        if not (force or now_) and now < self._next_expire:
            return
        self._next_expire = now + 0.5
        for key, st in list(self.partial.items()):
            if force or not process_alive(key[0]) or now - st.since > max_age:
                del self.partial[key]
                self.incomplete += 1


# ====================================================================== the transport

def _ensure_fifo(path: str, mode: int) -> None:
    """Create the FIFO `path` with exactly `mode` if it is missing; refuse a
    name that is a link or anything but a FIFO (logkit.safefs: the name is
    made and checked relative to its directory, never through a link)."""
    d, name = os.path.split(path)
    if not os.path.isdir(d):
        raise InvalidArgument(f"fifo {path}: directory {d} does not exist")
    dfd = safefs.open_directory(d)
    try:
        made = False
        try:
            os.mkfifo(name, mode, dir_fd=dfd)
            made = True
        except FileExistsError:
            pass
        except OSError as e:
            raise safefs.translate_error(e, path, "create the fifo") from None
        try:
            fd = safefs.open_in(dfd, name, os.O_RDONLY | os.O_NONBLOCK, kind=safefs.FIFO, path=path)
        except UnsafePath:
            if os.path.islink(path):
                raise                         # a planted link: UnsafePath says so
            raise InvalidArgument(f"fifo {path} exists and is not a named pipe") from None
        try:
            if made:
                os.fchmod(fd, mode)          # exactly, no umask; on what we opened, not a name
        finally:
            os.close(fd)
    finally:
        os.close(dfd)


KEEP_UNREAD = 86400.0          # seconds a keeper holds a FIFO with unread records (option keep_unread)


class PipeTransport(TransportBackend):
    """Send records through a named FIFO; spill to a partition when nobody reads."""

    options = (
        Option("fifo", "path", required=True, help="the named pipe (created if missing)"),
        Option("spill", "path", None, help="spill partition file (default: the fifo path + '.spill')"),
        Option("spill_size", "size", "1MiB", help="bytes in each half of the spill partition"),
        Option("mode", "mode", 0o640, help="permissions of a new fifo and spill file"),
        Option("journal", "path", None, help="the reader's journal of records in flight "
                                             "(default: the fifo path + '.journal'; mode 0600)"),
        Option("keep_unread", "duration", KEEP_UNREAD,
               help="when the last writer closes while records wait in the FIFO and no reader holds "
                    "it, a keeper process holds the FIFO open this long so they are not dropped "
                    "(0: no keeper)"),
    )

    def __init__(self, storage: StorageBackend, log: str, **options: Any):
        super().__init__(storage, log, **options)
        o = self.config
        if not o.get("fifo"):
            raise InvalidArgument(f"pipe transport for log {log}: the `fifo` option is required")
        self.fifo = os.path.abspath(os.fspath(o["fifo"]))
        self.spill_path = os.path.abspath(os.fspath(o.get("spill") or self.fifo + ".spill"))
        self.mode = o.get("mode") if o.get("mode") is not None else 0o640
        keep = o.get("keep_unread")
        self.keep_unread = KEEP_UNREAD if keep is None else parse_duration(keep, f"log {log}: keep_unread")
        self.keeper = None            # the keeper close() started, if any
        _ensure_fifo(self.fifo, self.mode)
        # A sealed log (its storage has a key_file) spills sealed: the spill
        # file is on disk like the log itself.  (Records in the FIFO are in
        # kernel memory only, as with a Unix socket: docs/security.md.)
        self.spill = PartitionStorage(log, path=self.spill_path, size=o.get("spill_size") or "1MiB",
                                      mode=self.mode, key_file=getattr(storage, "key_file", None))
        self.sent = 0                 # records written to the pipe
        self.fragmented = 0           # of which went as fragments
        self.spilled = 0              # records that went to the spill partition
        self.opens = 0                # successful opens of the FIFO
        self.reader_gone = 0          # writes refused with EPIPE (the reader went away)
        self.pipe_full = 0            # writes refused with EAGAIN
        self._closed = False
        self._fd: int | None = None
        self._reader_absent = False   # the fd is open but its last write met EPIPE
        self._retry_at = 0.0
        self._forked()
        forking.track(self, PipeTransport._forked)
        self._open()

    def _forked(self) -> None:
        """State of this process alone: a forked child starts it afresh (its
        own pid, tids, record ids, lock and fd)."""
        fd = getattr(self, "_fd", None)
        if getattr(self, "_pid", os.getpid()) != os.getpid():
            if fd is not None:
                try:
                    os.close(fd)             # the child's copy only
                except OSError:
                    pass
                self._fd = None
            # the counters describe this process's records
            self.sent = self.fragmented = self.spilled = self.opens = 0
            self.reader_gone = self.pipe_full = 0
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._ids = itertools.count(1)
        self._retry_at = 0.0
        self._reader_absent = False

    def after_fork(self) -> None:
        if self._pid != os.getpid():
            self._forked()
        self.spill.after_fork()
        self.storage.after_fork()

    # ------------------------------------------------------------ the FIFO

    def _open(self) -> int | None:
        """Open the FIFO for writing if a reader holds it (at most once per
        REOPEN_INTERVAL); None when there is none."""
        if _time.monotonic() < self._retry_at:
            return None                      # the fast refusal: no lock, no system call
        with self._lock:
            if self._fd is not None:
                return self._fd
            now = _time.monotonic()
            if now < self._retry_at or self._closed:
                return None
            self._retry_at = now + REOPEN_INTERVAL
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
            except OSError:                  # ENXIO: no reader; ENOENT: the FIFO was removed
                return None
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.close(fd)
                return None
            self._fd = fd
            self._reader_absent = False
            self.opens += 1
            return fd

    def _tid(self) -> int:
        try:
            return self._local.tid
        except AttributeError:
            tid = self._local.tid = threading.get_native_id()
            return tid

    # ------------------------------------------------------------ writing

    def write(self, text, severity=20, data=b"", data_class="", time=None):
        if not isinstance(severity, int):
            raise InvalidArgument(f"severity must be an int, not {type(severity).__name__}")
        if not -250 <= severity <= 250:
            raise InvalidArgument(f"severity {severity} is outside -250..250")
        if isinstance(text, str):
            tb = text.encode("utf-8", "surrogatepass")
        elif isinstance(text, (bytes, bytearray, memoryview)):
            tb = bytes(text)
        else:
            raise InvalidArgument(f"text must be str or bytes, not {type(text).__name__}")
        if data_class and not isinstance(data_class, str):
            raise InvalidArgument(f"data_class must be str, not {type(data_class).__name__}")
        db = bytes(data) if data else b""
        cb = data_class.encode("utf-8") if data_class else b""
        t = _time.time_ns() if time is None else int(time)
        if self._closed:
            raise LogkitError(f"pipe transport for {self.fifo} is closed")
        pid, tid = self._pid, self._tid()
        fd = self._fd
        if fd is None:
            fd = self._open()                # no reader yet: at most one open() per REOPEN_INTERVAL
        elif self._reader_absent:
            now = _time.monotonic()
            if now < self._retry_at:
                fd = None                    # the reader went away: spill until the next retry
            else:
                self._retry_at = now + REOPEN_INTERVAL
        if fd is not None:
            record = encode_record(tb, severity, db, cb, t, pid, tid)
            if self._send(fd, record, pid, tid):
                return None
        self.spill.write(text, severity, db, data_class or "", t)
        self.spilled += 1
        return None

    def _send(self, fd: int, record: bytes, pid: int, tid: int) -> bool:
        """Write the record's frames; False if it must go to the spill."""
        if len(record) > PIPE_BUF:
            frames = encode_frames(record, pid, tid, next(self._ids))
            if not self._room_for(fd, sum(map(len, frames))):
                self.pipe_full += 1
                return False
        else:
            frames = [record]
        for f in frames:
            try:
                os.write(fd, f)              # <= PIPE_BUF bytes: all or nothing (EAGAIN)
            except BlockingIOError:
                # Pipe full.  A fragment set cut short is abandoned: the reader
                # drops it (its writer moves on) and the record goes to the spill.
                self.pipe_full += 1
                return False
            except BrokenPipeError:
                # The reader went away.  Keep the fd: the pipe (and what it still
                # holds) lives while we hold it, and the next reader to open the
                # FIFO gets it; retry it at most every REOPEN_INTERVAL.
                self.reader_gone += 1
                self._reader_absent = True
                self._retry_at = _time.monotonic() + REOPEN_INTERVAL
                return False
            except OSError as e:
                if e.errno == errno.EBADF:
                    return False
                raise
        self._reader_absent = False
        self.sent += 1
        if len(frames) > 1:
            self.fragmented += 1
        return True

    @staticmethod
    def _room_for(fd: int, n: int) -> bool:
        """Probably room for n more bytes in the pipe now (capacity minus what it holds)."""
        try:
            cap = fcntl.fcntl(fd, _F_GETPIPE_SZ)
        except OSError:
            return True
        return cap - pipekeeper.held(fd) >= n

    def flush(self) -> None:
        self.spill.flush()
        self.storage.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            # Records acknowledged into the FIFO die with its last holder: if
            # nobody reads now (the server was killed, or restarts), a keeper
            # holds the FIFO open until they are read (backends/pipekeeper.py).
            self.keeper = pipekeeper.hand_over(fd, self.keep_unread, self.fifo)
            os.close(fd)
        self.spill.close()
        self.storage.close()

    def stats(self) -> dict[str, int]:
        return {"sent": self.sent, "fragmented": self.fragmented, "spilled": self.spilled,
                "opens": self.opens, "reader_gone": self.reader_gone, "pipe_full": self.pipe_full,
                "connected": int(self._fd is not None and not self._reader_absent)}

    @classmethod
    def check_options(cls, log, options, writing=True):
        """What opening would refuse, named by option, found without opening
        (logkit.config runs it for `logkit config check` and the Handler
        alike): a fifo path that is not a named pipe or has no directory,
        and the spill partition's problems."""
        from logkit.registry import NAMED_PIPE, path_problem
        o = options
        fifo = os.path.abspath(os.fspath(o["fifo"]))
        out = [("fifo", path_problem(fifo, NAMED_PIPE, writing))]
        spill = {"path": o.get("spill") or fifo + ".spill", "size": o.get("spill_size") or "1MiB"}
        for key, problem in PartitionStorage.check_options(log, spill, writing):
            out.append(({"path": "spill", "size": "spill_size"}.get(key, key), problem))
        return [(key, problem) for key, problem in out if problem]


# ====================================================================== the reader

def drain_pipe(fifo, storage, *, stop: threading.Event | None = None, idle_timeout: float | None = None,
               spill=None, stats: dict | None = None, spill_interval: float = 0.25, journal=None) -> int:
    """Read records from the FIFO `fifo` (created if missing) and
    storage.append() each; also copy the spill partition (`spill`, a path;
    default the fifo path + '.spill'; False for none) into `storage` every
    `spill_interval` seconds and at the end.  Runs until `stop` is set, or
    `idle_timeout` seconds pass with no record from either.

    Exactly once, however the reader stops: no byte is consumed from the
    FIFO before it is in the reader's journal (`journal`, a path; default
    the fifo path + '.journal'; backends/pipejournal.py), and the progress
    of the copy is recorded there after each record, so a reader killed
    anywhere (SIGKILL included) and started again neither loses a record
    nor stores one twice.  One reader per FIFO: a second is refused.

    Damaged frames are skipped and counted, never raised.  `stats`, if
    given, is updated with the decoder's counters (records, fragments,
    damaged, incomplete, skipped_bytes), the journal's, and spilled.
    Returns the number of records stored."""
    from logkit.backends.pipejournal import PipeJournal

    fifo = os.path.abspath(os.fspath(fifo))
    _ensure_fifo(fifo, 0o640)
    spill_path = None if spill is False else os.path.abspath(os.fspath(spill or fifo + ".spill"))
    journal_path = os.path.abspath(os.fspath(journal or fifo + ".journal"))
    rfd = safefs.open_file(fifo, os.O_RDONLY | os.O_NONBLOCK, kind=safefs.FIFO)
    # A writer end of our own: without it the read end reports EOF (and poll
    # POLLHUP, at once, forever) whenever no logging process holds the FIFO.
    try:
        wfd = safefs.open_file(fifo, os.O_WRONLY | os.O_NONBLOCK, kind=safefs.FIFO)
    except BaseException:
        os.close(rfd)
        raise
    dec = FrameDecoder()
    try:
        # Mode 0600: it holds records in flight in plain text.  For a sealed
        # log its bytes are cut off as soon as they are stored (scrub).
        jr = PipeJournal(journal_path, rfd, storage, dec, mode=0o600,
                         scrub=getattr(storage, "key_file", None) is not None)
    except BaseException:
        os.close(rfd)
        os.close(wfd)
        raise
    spill_store: list[PartitionStorage | None] = [None]
    counts = {"spilled": 0}

    def read_all() -> int:
        before = jr.session_stored
        while jr.pump():
            pass
        return jr.session_stored - before

    def drain_spill() -> int:
        if spill_path is None:
            return 0
        s = spill_store[0]
        if s is None:
            if not os.path.exists(spill_path):
                return 0
            s = spill_store[0] = PartitionStorage("spill", path=spill_path,
                                                  key_file=getattr(storage, "key_file", None))
        n = s.drain(storage, everything=True)
        counts["spilled"] += n
        return n

    poller = select.poll()
    poller.register(rfd, select.POLLIN)
    try:
        jr.recover()
        last = _time.monotonic()
        next_spill = 0.0
        while not (stop is not None and stop.is_set()):
            now = _time.monotonic()
            if now >= next_spill:
                if drain_spill():
                    last = _time.monotonic()
                next_spill = _time.monotonic() + spill_interval
            wait = min(next_spill - now, 0.05)
            if idle_timeout is not None:
                wait = min(wait, idle_timeout - (now - last))
            if poller.poll(max(0, int(wait * 1000) + 1)):
                if read_all():
                    last = _time.monotonic()
            jr.expire()
            if idle_timeout is not None and _time.monotonic() - last >= idle_timeout:
                break
        read_all()                            # what the pipe still holds
        drain_spill()
        read_all()
        jr.expire(now_=True)
    finally:
        stored = jr.session_stored + counts["spilled"]
        if stats is not None:
            stats.update(dec.counters())
            stats.update(jr.counters())
            stats["spilled"] = counts["spilled"]
            stats["stored"] = stored
        jr.close()
        os.close(rfd)
        os.close(wfd)
        if spill_store[0] is not None:
            spill_store[0].close()
    return stored
