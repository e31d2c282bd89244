"""The `plainfile` storage backend: append-only UTF-8 text or JSON lines.

Sits beside `family` for users who want a file that `tail`, `grep` and `jq`
read: no mapping and no core, one os.write of one whole line per record onto
an O_APPEND descriptor, rotation by size, and a reader (PlainFileReader) with
the same API as the family reader, so every logkit tool reads it too.
docs/backend-plainfile.md describes the bytes of both line formats.

Invariants (the reasons are in the doc):

* Every file this backend creates starts with a header line giving its
  ``base``; the line at index i (0 = the header) of a file has sequence
  ``base + i - 1``.  A rotated file is renamed ``PATH.<base, 12 digits>``, so
  numbering a file never needs another file, and deleting old ones changes
  nothing.
* A writer checks before every write (one stat of the path) that its
  descriptor is still the live file; so after a rotation each writing thread
  can put at most one more line into the rotated file.  The next file's base
  leaves LATE_LINE_ROOM numbers for such late lines.
* Creating the live file, rotating it and deleting old files happen only under
  an flock on ``PATH.lock``; the normal write path takes no lock.
"""
from __future__ import annotations

import base64
import binascii
import calendar
import fcntl
import json
import operator
import os
import re
import threading
import time as _time
from datetime import datetime
from typing import Any, Iterator

from logkit import safefs
from logkit._segment import Limits, crc32c, parse_size
from logkit.errors import DiskFull, InvalidArgument, LogkitError, NoSuchMessage, SegmentNotFound
from logkit.registry import Option, Reader, StorageBackend

__all__ = ["PlainFileStorage", "PlainFileReader", "PlainMessage", "open_reader",
           "encode_text_line", "encode_json_line", "parse_line", "LATE_LINE_ROOM"]

FORMATS = ("text", "json")
SYNC_CHOICES = ("never", "close", "always")
SEVERITY_MIN, SEVERITY_MAX = -250, 250
TIME_MAX = (1 << 64) - 1          # as in a segment: an unsigned 64-bit count of ns
VERSION = 1
# Numbers left unused after a rotated file's last line, for lines that writers
# which had already checked the path put into it after the rename (at most
# one per writing thread and storage instance).
LATE_LINE_ROOM = 10_000
BASE_DIGITS = 12                  # zero padding of rotated names, so they sort
ROTATION_WAIT = 30.0              # seconds a writer waits for the rotation lock

_get_tid = threading.get_native_id
_time_ns = _time.time_ns

# ------------------------------------------------------------------ escaping

# Text format: a backslash, the C0 controls and DEL are escaped; everything
# else is written as UTF-8.  The data class also escapes ']' (it ends the class).
_ESC = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}
_ESC.update({ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
_CLASS_ESC = dict(_ESC)
_CLASS_ESC[ord("]")] = "\\x5d"
_needs_esc = re.compile(r"[\x00-\x1f\x7f\\]").search
_class_needs_esc = re.compile(r"[\x00-\x1f\x7f\\\]]").search
_UNESC_RE = re.compile(r"\\(x[0-9a-fA-F]{2}|.?)", re.S)
_UNESC = {"\\": "\\", "n": "\n", "r": "\r", "t": "\t"}
_RAW_CONTROL = re.compile(r"[\x00-\x1f\x7f]").search     # never raw in a text record


def _escape(s: str) -> str:
    return s.translate(_ESC) if _needs_esc(s) else s


def _escape_class(s: str) -> str:
    return s.translate(_CLASS_ESC) if _class_needs_esc(s) else s


def _unesc_one(m: re.Match) -> str:
    g = m.group(1)
    if len(g) == 3:
        return chr(int(g[1:], 16))
    try:
        return _UNESC[g]
    except KeyError:
        raise ValueError(f"bad escape '\\{g}'") from None


def _unescape(s: str) -> str:
    return _UNESC_RE.sub(_unesc_one, s) if "\\" in s else s


# ------------------------------------------------------------------ line formats

_HEADER_TEXT_RE = re.compile(rb"#logkit plainfile version=(\d+) base=(\d+)\n?")
_HEADER_JSON_RE = re.compile(rb'\{"logkit": "plainfile", "version": (\d+), "base": (\d+)\}\n?')
_TEXT_RE = re.compile(
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{9})Z (-?\d{1,3}) pid=(\d{1,10}) tid=(\d{1,20}) ")
_encode_string = json.encoder.encode_basestring      # the C one: '"...\\n..."', non-ASCII kept


def header_line(fmt: str, base: int) -> bytes:
    """The first line of a file whose line 1 has sequence `base`."""
    if fmt == "json":
        return b'{"logkit": "plainfile", "version": %d, "base": %d}\n' % (VERSION, base)
    return b"#logkit plainfile version=%d base=%d\n" % (VERSION, base)


def parse_header(line: bytes) -> int | None:
    """The base of a header line, or None if `line` is not one."""
    m = _HEADER_TEXT_RE.fullmatch(line) or _HEADER_JSON_RE.fullmatch(line)
    return int(m.group(2)) if m is not None and int(m.group(1)) == VERSION else None


class _IsoCache:
    """ISO-8601 seconds prefix of the last second seen (one strftime a second)."""
    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = (-1, "")        # one tuple, so threads never see a torn pair

    def __call__(self, t: int) -> str:
        sec, frac = divmod(t, 1_000_000_000)
        last = self.last
        if sec != last[0]:
            last = (sec, _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(sec)))
            self.last = last
        return f"{last[1]}.{frac:09d}Z"


def iso_time(t: int) -> str:
    """'2026-12-01T08:30:00.123456789Z' for `t` ns since the epoch (UTC)."""
    sec, frac = divmod(t, 1_000_000_000)
    return _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(sec)) + f".{frac:09d}Z"


def encode_text_line(t: int, severity: int, pid: int, tid: int, text: str,
                     data_class: str, data, iso=iso_time) -> bytes:
    """One record in the text format, newline included (checked arguments)."""
    body = f"{iso(t)} {severity} pid={pid} tid={tid} {_escape(text)}"
    if data or data_class:
        body += f"\t[{_escape_class(data_class)}]"
        if data:
            body += " " + binascii.b2a_base64(data, newline=False).decode("ascii")
    b = body.encode("utf-8")
    return b + b"\t%08x\n" % crc32c(b)


def encode_json_line(t: int, severity: int, pid: int, tid: int, text: str,
                     data_class: str, data, iso=iso_time) -> bytes:
    """One record in the JSON format, newline included (checked arguments)."""
    b64 = binascii.b2a_base64(data, newline=False).decode("ascii") if data else ""
    b = (f'{{"time": {t}, "iso": "{iso(t)}", "severity": {severity}, "pid": {pid}, '
         f'"tid": {tid}, "text": {_encode_string(text)}, '
         f'"data_class": {_encode_string(data_class)}, "data": "{b64}"').encode("utf-8")
    return b + b', "crc": "%08x"}\n' % crc32c(b)


_ENCODERS = {"text": encode_text_line, "json": encode_json_line}


class PlainMessage:
    """A message read back from a plain file (the fields of logkit.Message)."""
    __slots__ = ("sequence", "time", "severity", "process_id", "thread_id",
                 "text", "data_class", "data", "path")

    def __init__(self, sequence, time, severity, process_id, thread_id, text, data_class, data,
                 path=""):
        self.sequence = sequence
        self.time = time
        self.severity = severity
        self.process_id = process_id
        self.thread_id = thread_id
        self.text = text
        self.data_class = data_class
        self.data = data
        self.path = path

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if k != "path"}

    def __repr__(self) -> str:
        return (f"PlainMessage(sequence={self.sequence}, time={self.time}, "
                f"severity={self.severity}, text={self.text!r})")


_seconds_cache: dict[str, int] = {}


def _seconds(stamp: str) -> int:
    """Seconds since the epoch of 'YYYY-MM-DDTHH:MM:SS' (ValueError if no such time)."""
    s = _seconds_cache.get(stamp)
    if s is None:
        d = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S")
        s = calendar.timegm(d.timetuple())
        if len(_seconds_cache) > 4096:
            _seconds_cache.clear()
        _seconds_cache[stamp] = s
    return s


def _parse_text(s: str) -> tuple:
    m = _TEXT_RE.match(s)
    if m is None:
        raise ValueError("not a text record (time, severity, pid=, tid= expected)")
    stamp, frac, sev, pid, tid = m.groups()
    rest = s[m.end():]
    text, tab, tail = rest.partition("\t")
    if _RAW_CONTROL(text) or _RAW_CONTROL(tail):
        raise ValueError("raw control character in the record")
    data_class, data = "", b""
    if tab:
        end = tail.find("]")
        if not tail.startswith("[") or end < 0:
            raise ValueError("data part is not '[class]' or '[class] base64'")
        data_class = _unescape(tail[1:end])
        after = tail[end + 1:]
        if after:
            if after[0] != " " or len(after) < 2:
                raise ValueError("data part is not '[class]' or '[class] base64'")
            data = base64.b64decode(after[1:], validate=True)
    return (_seconds(stamp) * 1_000_000_000 + int(frac), int(sev), int(pid), int(tid),
            _unescape(text), data_class, data)


def _parse_json(s: str) -> tuple:
    o = json.loads(s)
    if not isinstance(o, dict):
        raise ValueError("not a JSON object")
    try:
        t, sev, pid, tid, text = o["time"], o["severity"], o["pid"], o["tid"], o["text"]
    except KeyError as e:
        raise ValueError(f"no {e.args[0]!r} key") from None
    cls, data = o.get("data_class", ""), o.get("data", "")
    for k, v in (("time", t), ("severity", sev), ("pid", pid), ("tid", tid)):
        if type(v) is not int:
            raise ValueError(f"{k!r} is not an integer")
    if not (isinstance(text, str) and isinstance(cls, str) and isinstance(data, str)):
        raise ValueError("'text', 'data_class' and 'data' must be strings")
    return t, sev, pid, tid, text, cls, base64.b64decode(data, validate=True)


_TEXT_CRC_RE = re.compile(rb"\t([0-9a-f]{8})")
_JSON_CRC_RE = re.compile(rb', "crc": "([0-9a-f]{8})"\}')


def parse_line(line: bytes) -> tuple:
    """(time, severity, pid, tid, text, data_class, data) of one record line in
    either format (the newline optional); ValueError says why a line is not one."""
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.startswith(b"{"):
        m = _JSON_CRC_RE.fullmatch(line, len(line) - 20)
        cut, close = len(line) - 20, b"}"
    else:
        m = _TEXT_CRC_RE.fullmatch(line, len(line) - 9)
        cut, close = len(line) - 9, b""
    if m is None or cut < 0:
        raise ValueError("no checksum at the end of the line (torn or edited)")
    body = line[:cut]
    if int(m.group(1), 16) != crc32c(body):
        raise ValueError("checksum mismatch (torn or edited)")
    s = (body + close).decode("utf-8")  # UnicodeDecodeError is a ValueError
    rec = _parse_json(s) if close else _parse_text(s)
    if not SEVERITY_MIN <= rec[1] <= SEVERITY_MAX:
        raise ValueError(f"severity {rec[1]} outside {SEVERITY_MIN}..{SEVERITY_MAX}")
    if not 0 <= rec[0] <= TIME_MAX:
        raise ValueError(f"time {rec[0]} outside 0..2**64-1")
    return rec


# ------------------------------------------------------------------ files

def _ident(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def backup_name(path: str, base: int) -> str:
    return f"{path}.{base:0{BASE_DIGITS}d}"


def backups(path: str) -> list[tuple[int, str]]:
    """(base, path) of every rotated file of the live file `path`, oldest first."""
    d, name = os.path.split(os.path.abspath(path))
    pat = re.compile(re.escape(name) + r"\.(\d+)")
    out = []
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return []
    for n in names:
        m = pat.fullmatch(n)
        if m:
            out.append((int(m.group(1)), os.path.join(d, n)))
    out.sort()
    return out


def _open_read(path: str, buffering: int = -1):
    """A binary file object on `path`, opened without following a link and
    checked to be a regular file (logkit.safefs); FileNotFoundError if absent."""
    return os.fdopen(safefs.open_file(path, os.O_RDONLY), "rb", buffering=buffering)


def _count_lines(path: str) -> int:
    """Newline-terminated lines in the file (a partial last line is not one)."""
    n = 0
    with _open_read(path, buffering=0) as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                return n
            n += chunk.count(b"\n")


def _next_base(base: int, lines: int) -> int:
    """Base of the file after one whose base is `base` and that had `lines`
    lines (header included) when it was rotated."""
    return base + max(lines - 1, 0) + LATE_LINE_ROOM


def _derived_base(path: str, skip: tuple | None = None) -> int:
    """Base of a live file without a (valid) header: after the newest rotated
    file, or 1 when there is none."""
    for base, p in reversed(backups(path)):
        try:
            if skip is not None and _ident(os.stat(p)) == skip:
                continue
            return _next_base(base, _count_lines(p))
        except FileNotFoundError:
            continue
    return 1


def _ends_in_partial_line(path: str, ident: tuple) -> bool:
    """True if the file at `path` (still `ident`) ends in a line without its
    newline, and stays so for a while: another writer's write in progress can
    be visible in part (the kernel extends the size page by page), so a
    missing newline only counts once it persists."""
    try:
        fd = safefs.open_file(path, os.O_RDONLY)
    except (OSError, LogkitError):
        return False
    try:
        if _ident(os.fstat(fd)) != ident:
            return False
        for attempt in range(12):
            size = os.fstat(fd).st_size
            if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
                return False
            _time.sleep(0.0002 * attempt)    # at most ~13 ms, on a rare path
        return True
    finally:
        os.close(fd)


def _read_header(path: str | None = None, fd: int | None = None) -> int | None:
    """The base in the header of the file at `path` (or open as `fd`)."""
    if fd is None:
        try:
            fd2 = safefs.open_file(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            first = os.pread(fd2, 256, 0)
        finally:
            os.close(fd2)
    else:
        first = os.pread(fd, 256, 0)
    nl = first.find(b"\n")
    return parse_header(first[:nl + 1]) if nl >= 0 else None


# ------------------------------------------------------------------ the backend

class PlainFileStorage(StorageBackend):
    """Records appended to `path` as lines, one os.write each; see the module docstring."""

    options = (
        Option("path", "path", required=True, help="the live file"),
        Option("format", "choice", "text", choices=FORMATS,
               help="line format: 'text' (for people) or 'json' (one object a line)"),
        Option("max_size", "size", "64MiB",
               help="rotate when the live file reaches this size (0 or none: never)"),
        Option("backups", "int", None,
               help="keep at most this many rotated files (none: keep all)"),
        Option("mode", "mode", 0o640, help="permissions of new files (directories created get 0750)"),
        Option("create_directory", "bool", False,
               help="create the file's directory if it does not exist"),
        Option("sync", "choice", "close", choices=SYNC_CHOICES,
               help="fsync: never, on flush/close, or after every record"),
    )

    def __init__(self, log: str, **options: Any) -> None:
        for opt in self.options:               # defaults, when constructed without the config layer
            options.setdefault(opt.name, opt.default)
        super().__init__(log, **options)
        o = self.config
        if o["path"] is None:
            raise InvalidArgument(f"plainfile storage for log '{log}': option 'path' is required")
        self.path = os.path.abspath(os.fspath(o["path"]))
        self.format = o["format"]
        if self.format not in FORMATS:
            raise InvalidArgument(f"plainfile option 'format': {self.format!r} is not one of {FORMATS}")
        self.sync = o["sync"]
        if self.sync not in SYNC_CHOICES:
            raise InvalidArgument(f"plainfile option 'sync': {self.sync!r} is not one of {SYNC_CHOICES}")
        ms = o["max_size"]
        self.max_size = None if ms is None else parse_size(ms, "max_size") or None   # 0: never
        self.backups = None if o["backups"] is None else operator.index(o["backups"])
        if self.backups is not None and self.backups < 0:
            raise InvalidArgument(f"plainfile option 'backups': {self.backups} is negative")
        mode = o["mode"]
        self.mode = int(mode, 8) if isinstance(mode, str) else operator.index(mode)
        self._encode = _ENCODERS[self.format]
        self._iso = _IsoCache()
        self._lock_path = self.path + ".lock"

        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            if os.path.exists(directory):
                raise InvalidArgument(f"plainfile log '{log}': {directory} (the directory of "
                                      f"{self.path}) is not a directory")
            if not o["create_directory"]:
                raise SegmentNotFound(f"plainfile log '{log}': directory {directory} does not "
                                      f"exist (for {self.path}; set create_directory = true "
                                      "to create it)")
            safefs.make_directories(directory)        # 0750 each, whatever the umask
        if os.path.isdir(self.path):
            raise InvalidArgument(f"plainfile log '{log}': path {self.path} is a directory")

        self.written = 0          # records written by this instance
        self.bytes_written = 0
        self.rotations = 0        # rotations this instance did
        self.reopens = 0          # times it followed another writer's rotation
        self.deleted = 0          # rotated files it deleted (backups)
        self.lock_busy = 0        # rotations left to a writer that held the lock
        self._closed = False
        self._pid = os.getpid()
        self._lock = threading.Lock()    # the slow path of this instance's threads
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._cur: tuple[int, int] | None = None    # (st_dev, st_ino) of what _fd is
        self._partial = False     # a short write left a line that our next write must end
        with self._lock:
            self._reopen()

    # -------------------------------------------------------------- writing

    def write(self, text, severity=20, data=b"", data_class="", time=None):
        """Append one record; returns None (plain files number lines when read).
        InvalidArgument for a severity outside -250..250, a time outside
        0..2**64-1 ns, or text that is not valid Unicode."""
        if time is None:
            time = _time_ns()
        return self._put(time, severity, os.getpid(), _get_tid(), text, data_class, data)

    def append(self, message) -> None:
        """Append a copy of `message` keeping its time, severity, pid and tid."""
        return self._put(message.time, message.severity, message.process_id, message.thread_id,
                         message.text, message.data_class, message.data)

    def _put(self, t, severity, pid, tid, text, data_class, data) -> None:
        if severity.__class__ is not int:
            severity = operator.index(severity)
        if not SEVERITY_MIN <= severity <= SEVERITY_MAX:
            raise InvalidArgument(f"severity {severity} outside {SEVERITY_MIN}..{SEVERITY_MAX}")
        if t.__class__ is not int:
            t = operator.index(t)
        if not 0 <= t <= TIME_MAX:
            raise InvalidArgument(f"time {t} ns outside 0..2**64-1")
        if text.__class__ is not str:
            text = _as_str(text, "text")
        if data_class.__class__ is not str:
            data_class = _as_str(data_class, "data_class")
        try:
            line = self._encode(t, severity, operator.index(pid), operator.index(tid), text,
                                data_class, data, self._iso)
        except UnicodeEncodeError as e:
            raise InvalidArgument(f"plainfile {self.path}: text or data class is not valid "
                                  f"Unicode ({e.reason} at position {e.start})") from None
        self._write_line(line)

    def _write_line(self, line: bytes) -> None:
        if self._closed:
            raise LogkitError(f"plainfile {self.path}: storage is closed")
        if os.getpid() != self._pid:
            self.after_fork()
        cur = self._cur
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        # The one check of the write path: the path is still what our fd is, and not full.
        if st is None or (st.st_dev, st.st_ino) != cur or (
                self.max_size is not None and st.st_size >= self.max_size):
            self._slow_path()
        if self._partial:
            # An earlier record's write was cut short and its line could not
            # be ended then (a full disk): end it now, in the same write, so
            # this record does not run into it.
            line = b"\n" + line
        try:
            n = os.write(self._fd, line)
        except OSError as e:
            raise safefs.translate_error(e, self.path, "append to") from None
        self._partial = False
        if n != len(line):
            # A short write (disk full, file size limit) leaves a partial line:
            # end it, so the next record does not run into it; if even that
            # fails, the next write ends it (_partial).
            try:
                self._partial = os.write(self._fd, b"\n") != 1
            except OSError:
                self._partial = True
            err = f"plainfile {self.path}: short write ({n} of {len(line)} bytes); the record is damaged"
            if self._disk_full():
                raise DiskFull(err + " (no space left on the device; writing resumes when space returns)")
            raise LogkitError(err)
        self.written += 1
        self.bytes_written += n
        if self.sync == "always":
            try:
                os.fsync(self._fd)
            except OSError as e:
                raise safefs.translate_error(e, self.path, "sync") from None

    def _disk_full(self) -> bool:
        """True when the live file's file system has no free block left (why a write was short)."""
        try:
            return os.fstatvfs(self._fd).f_bavail == 0
        except OSError:
            return False

    def _slow_path(self) -> None:
        """Reopen after another writer's rotation, create a missing live file,
        or rotate a full one.  Returns when _fd may be written."""
        if not self._lock.acquire(timeout=ROTATION_WAIT):
            raise LogkitError(f"plainfile {self.path}: timed out after {ROTATION_WAIT} s "
                              "waiting for another thread's rotation")
        try:
            for _ in range(8):                 # each pass makes progress; bounded anyway
                try:
                    st = os.stat(self.path)
                except FileNotFoundError:
                    st = None
                if st is None or _ident(st) != self._cur:
                    self._reopen()
                    self.reopens += 1
                    continue
                if self.max_size is not None and st.st_size >= self.max_size:
                    if self._rotate():
                        continue
                return
        finally:
            self._lock.release()

    # -------------------------------------------------------------- files and locks

    def _flock(self, wait: bool) -> bool:
        """Take the sidecar lock; with wait, for up to ROTATION_WAIT s (else LogkitError)."""
        if self._lock_fd is None:
            self._lock_fd = safefs.open_file(self._lock_path, os.O_RDWR | os.O_CREAT, self.mode)
        deadline = None
        pause = 0.00005
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if not wait:
                    return False
            now = _time.monotonic()
            if deadline is None:
                deadline = now + ROTATION_WAIT
            elif now > deadline:
                raise LogkitError(f"plainfile {self.path}: lock {self._lock_path} held for more "
                                  f"than {ROTATION_WAIT} s by another writer")
            _time.sleep(pause)       # a back-off while another process rotates, not an ordering
            pause = min(pause * 2, 0.005)

    def _funlock(self) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _install(self, fd: int) -> None:
        """Make `fd` (open on the live file) this instance's descriptor."""
        if self._fd is None:
            self._fd = fd
        else:
            # dup2 swaps what our fd number means in one step: a thread that
            # already fetched the number writes to the old or the new file,
            # never to a descriptor that was closed and reused.
            os.dup2(fd, self._fd, inheritable=False)
            os.close(fd)
        self._cur = _ident(os.fstat(self._fd))

    def _open_existing(self, locked: bool = False, first: bool = False) -> int | None:
        """An O_APPEND descriptor on the live file, or None if there is none.
        `first`: this instance's first open (the only time it looks for a
        partial last line left by a truncation)."""
        try:
            # No link followed, a regular file only: a name planted here by
            # someone who can write the directory is refused (safefs).
            fd = safefs.open_file(self.path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            return None
        try:
            return self._prepare(fd, locked, first)
        except OSError as e:
            os.close(fd)
            raise safefs.translate_error(e, self.path, "write the header of") from None
        except BaseException:
            os.close(fd)
            raise

    def _prepare(self, fd: int, locked: bool, first: bool) -> int:
        st = os.fstat(fd)
        if st.st_size == 0:
            # Created by someone else (an administrator's `touch`): give it its header.
            if not locked:
                self._flock(wait=True)
            try:
                if os.fstat(fd).st_size == 0:
                    os.write(fd, header_line(self.format, _derived_base(self.path, _ident(st))))
            finally:
                if not locked:
                    self._funlock()
        elif first and _ends_in_partial_line(self.path, _ident(st)):
            # A truncated file ends in a partial line: end it (at worst this
            # adds an empty line), so our first record does not run into it.
            os.write(fd, b"\n")
        return fd

    def _reopen(self) -> None:
        """Point _fd at the live file, creating it (under the lock) if missing."""
        fd = self._open_existing(first=self._fd is None)
        if fd is None:
            self._flock(wait=True)
            try:
                fd = self._open_existing(locked=True)
                if fd is None:
                    self._create_live(_derived_base(self.path))
                    fd = self._open_existing(locked=True)
            finally:
                self._funlock()
            if fd is None:
                raise LogkitError(f"plainfile {self.path}: the live file vanished as it was created")
        self._install(fd)

    def _create_live(self, base: int) -> None:
        """Install a new live file holding only its header (caller holds the lock).
        Written aside and linked into place, so no record can precede the header."""
        d, name = os.path.split(self.path)
        dfd = safefs.open_directory(d)
        try:
            # An unpredictable name, O_EXCL, exactly `mode` (safefs); removed
            # whatever happens, so a full disk leaves nothing behind.
            fd, tmp = safefs.create_temporary(dfd, name, self.mode, path_dir=d)
            try:
                try:
                    os.write(fd, header_line(self.format, base))
                    if self.sync != "never":
                        os.fsync(fd)
                finally:
                    os.close(fd)
                os.link(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
            except FileExistsError:
                pass                           # someone did (cannot happen under the lock)
            except OSError as e:
                raise safefs.translate_error(e, self.path, "create") from None
            finally:
                safefs.unlink_in(dfd, tmp)
        finally:
            os.close(dfd)

    def _rotate(self) -> bool:
        """Rotate the live file if it is still ours and full; False when another
        writer holds the lock (it is rotating: keep writing meanwhile)."""
        if not self._flock(wait=False):
            self.lock_busy += 1
            return False
        try:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                return True                    # rotated and not yet replaced: reopen waits
            if _ident(st) != self._cur or st.st_size < self.max_size:
                return True                    # another writer rotated it first
            base = _read_header(self.path)
            if base is None:
                base = _derived_base(self.path, skip=self._cur)
            target = backup_name(self.path, base)
            if os.path.lexists(target):
                # Cannot happen with files only this backend names; never overwrite one.
                raise LogkitError(f"plainfile {self.path}: cannot rotate, {target} exists")
            try:
                os.rename(self.path, target)
            except OSError as e:
                raise safefs.translate_error(e, self.path, "rotate") from None
            # Count after the rename: only late lines can follow, and the next
            # base leaves LATE_LINE_ROOM numbers for them.
            self._create_live(_next_base(base, _count_lines(target)))
            self.rotations += 1
            self._reopen()
            self._retain()
            return True
        finally:
            self._funlock()

    def _retain(self) -> None:
        if self.backups is None:
            return
        old = backups(self.path)
        for _, p in old[:max(len(old) - self.backups, 0)]:
            try:
                os.unlink(p)
                self.deleted += 1
            except FileNotFoundError:
                pass

    # -------------------------------------------------------------- the rest

    def flush(self) -> None:
        """fsync the live file (unless sync = 'never')."""
        if self.sync != "never" and not self._closed and self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._closed = True
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fd = self._lock_fd = None

    def after_fork(self) -> None:
        """In a forked child: a fresh thread lock and lock descriptor (an flock
        belongs to the open file, which the parent shares); the O_APPEND data
        descriptor stays shared, which is safe."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        if self._lock_fd is not None:
            try:
                os.close(self._lock_fd)
            except OSError:
                pass
            self._lock_fd = None

    def reader(self) -> "PlainFileReader":
        return PlainFileReader(self.path)

    def stats(self) -> dict[str, int]:
        try:
            live = os.stat(self.path).st_size
        except FileNotFoundError:
            live = 0
        return {"written": self.written, "bytes_written": self.bytes_written,
                "rotations": self.rotations, "reopens": self.reopens,
                "deleted": self.deleted, "lock_busy": self.lock_busy, "live_bytes": live,
                "backups": len(backups(self.path))}

    def describe(self) -> str:
        rot = "never rotated" if self.max_size is None else f"rotated at {self.max_size} bytes"
        keep = "all" if self.backups is None else str(self.backups)
        return f"plain {self.format} lines in {self.path} ({rot}, keeping {keep} rotated files)"

    @classmethod
    def check_options(cls, log, options, writing=True):
        """What opening would refuse, named by option, found without opening
        (logkit.config runs it for `logkit config check` and the Handler
        alike): a path that is not a regular file, or whose directory is
        missing (without create_directory) or not writable."""
        from logkit.registry import REGULAR_FILE, path_problem
        problem = path_problem(os.fspath(options["path"]), REGULAR_FILE, writing,
                               create_directory=bool(options.get("create_directory")))
        return [("path", problem)] if problem else []


def _as_str(value, what: str) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidArgument(f"{what} is not UTF-8: {e}") from None
    if value is None:
        return ""
    raise InvalidArgument(f"{what} must be str, not {type(value).__name__}")


# ------------------------------------------------------------------ reading

class _Source:
    __slots__ = ("path", "base", "fh", "ident")

    def __init__(self, path, base, fh=None, ident=None):
        self.path, self.base, self.fh, self.ident = path, base, fh, ident


class PlainFileReader(Reader):
    """Reads a plain file and its rotated files in sequence order.

    A line that does not parse is skipped, counted in .damaged, described
    in .problems and its bytes named in .damaged_ranges (each once); a
    partial last line is ignored until complete (one holding NULs is damage).
    """

    def __init__(self, path) -> None:
        self.path = os.path.abspath(os.fspath(path))
        if not os.path.isdir(os.path.dirname(self.path)):
            raise SegmentNotFound(f"plainfile: directory {os.path.dirname(self.path)} does not exist")
        self.problems: list[str] = []
        self.damaged_ranges: list[tuple[str, int, int]] = []   # (file, start, end) of each damaged line
        self.damaged = 0
        self._reported: set = set()
        self._start: tuple | None = None      # (ident, offset, line index, sequence) after seek()

    # -------------------------------------------------------------- sources

    def _sources(self) -> list[_Source]:
        """Rotated files oldest first, then the live file (opened first: a file
        rotated after that open is read once, as the live one, by its inode)."""
        live = None
        try:
            fh = _open_read(self.path)
        except FileNotFoundError:
            fh = None
        if fh is not None:
            ident = _ident(os.fstat(fh.fileno()))
            base = _read_header(fd=fh.fileno())
            if base is None:
                base = _derived_base(self.path, skip=ident)
            live = _Source(self.path, base, fh, ident)
        out = []
        for base, p in backups(self.path):
            if live is not None:
                try:
                    if _ident(os.stat(p)) == live.ident:
                        continue
                except FileNotFoundError:
                    continue
            out.append(_Source(p, base))
        if live is not None:
            out.append(live)
        return out

    def _problem(self, key, msg: str, where: tuple[str, int, int] | None = None) -> None:
        if key not in self._reported:
            self._reported.add(key)
            self.damaged += 1
            self.problems.append(msg)
            if where is not None:
                self.damaged_ranges.append(where)

    def _lines(self, src: _Source, limit: int | None, min_seq: int = 0,
               offset: int = 0, index: int = 0) -> Iterator[tuple[int, int, int, bytes]]:
        """(sequence, line index, offset, raw line) of each complete line after
        the header (lines numbered below min_seq are passed over unparsed)."""
        fh = src.fh
        if fh is None:
            try:
                fh = _open_read(src.path)
            except FileNotFoundError:
                return                          # deleted by retention meanwhile
        try:
            if src.ident is None:
                src.ident = _ident(os.fstat(fh.fileno()))
            fh.seek(offset)
            pos, i, base = offset, index, src.base
            for raw in fh:
                start, pos = pos, pos + len(raw)
                if not raw.endswith(b"\n"):
                    # A partial last line: a record still being appended --
                    # unless it holds NULs, which no line does (a crash
                    # without write-back left the file's last pages zeros).
                    if b"\0" in raw:
                        self._problem((src.ident, "tail"),
                                      f"{src.path}: offset {start}..{pos}: {pos - start} bytes after the last "
                                      "complete line hold zeros and no line end: lines lost there (a crash "
                                      "without write-back?), skipped", (src.path, start, pos))
                    return
                seq = base + i - 1
                i += 1
                if seq < min_seq or (i == 1 and parse_header(raw) is not None):
                    continue
                if limit is not None and seq >= limit:
                    self._problem((src.ident, i - 1),
                                  f"{src.path}: line {i - 1} would have sequence {seq}, but the "
                                  f"next file starts at {limit}; more late lines than "
                                  f"{LATE_LINE_ROOM}: skipped")
                    continue
                yield seq, i - 1, start, raw
        finally:
            if fh is not src.fh:
                fh.close()

    def _message(self, src: _Source, seq: int, index: int, raw: bytes, offset: int) -> PlainMessage | None:
        if raw == b"\n":
            return None                         # an empty line ends a partial one; no record
        try:
            t, sev, pid, tid, text, cls, data = parse_line(raw)
        except (ValueError, binascii.Error) as e:
            if parse_header(raw) is not None:
                return None
            self._problem((src.ident, index),
                          f"{src.path}: line {index} (sequence {seq}) is damaged, skipped: {e}",
                          (src.path, offset, offset + len(raw)))
            return None
        return PlainMessage(seq, t, sev, pid, tid, text, cls, data, src.path)

    def _forward(self, start: tuple | None = None) -> Iterator[PlainMessage]:
        srcs = self._sources()
        try:
            min_seq = start[3] if start is not None else 0
            for k, src in enumerate(srcs):
                limit = srcs[k + 1].base if k + 1 < len(srcs) else None
                if limit is not None and limit <= min_seq:
                    continue
                offset = index = 0
                if start is not None and src.ident is None:
                    try:
                        src.ident = _ident(os.stat(src.path))
                    except FileNotFoundError:
                        continue
                if start is not None and src.ident == start[0]:
                    offset, index = start[1], start[2]
                for seq, i, off, raw in self._lines(src, limit, min_seq, offset, index):
                    m = self._message(src, seq, i, raw, off)
                    if m is not None:
                        yield m
        finally:
            for s in srcs:
                if s.fh is not None:
                    s.fh.close()

    # -------------------------------------------------------------- the Reader API

    def __iter__(self) -> Iterator[PlainMessage]:
        """Messages oldest first, from where seek() put the reader."""
        return self._forward(self._start)

    def reverse(self) -> Iterator[PlainMessage]:
        """Messages newest first (the forward order reversed)."""
        srcs = self._sources()
        try:
            for k in range(len(srcs) - 1, -1, -1):
                src = srcs[k]
                limit = srcs[k + 1].base if k + 1 < len(srcs) else None
                msgs = []
                for seq, i, off, raw in self._lines(src, limit):
                    m = self._message(src, seq, i, raw, off)
                    if m is not None:
                        msgs.append(m)
                yield from reversed(msgs)
        finally:
            for s in srcs:
                if s.fh is not None:
                    s.fh.close()

    def rewind(self) -> None:
        """Undo seek(): iterate from the oldest message again."""
        self._start = None

    def seek(self, sequence: int | None = None, time: int | None = None) -> PlainMessage:
        """Position the reader at the first message with sequence >= `sequence`
        (or, from the file whose first message is the last at or before `time`,
        the first with time >= `time` ns) and return it; NoSuchMessage if none."""
        if (sequence is None) == (time is None):
            raise InvalidArgument("seek() takes exactly one of sequence= or time=")
        srcs = self._sources()
        try:
            if sequence is not None:
                first = 0
                for k, s in enumerate(srcs):    # the last file starting at or before it
                    if s.base <= sequence:
                        first = k
                found = self._find(srcs, first, lambda m: m.sequence >= sequence, sequence)
            else:
                first = self._first_file_by_time(srcs, time)
                found = self._find(srcs, first, lambda m: m.time >= time, 0)
        finally:
            for s in srcs:
                if s.fh is not None:
                    s.fh.close()
        if found is None:
            what = f"sequence >= {sequence}" if sequence is not None else f"time >= {time}"
            raise NoSuchMessage(f"plainfile {self.path}: no message with {what}")
        m, src, index, offset = found
        self._start = (src.ident, offset, index, m.sequence)
        return m

    def _find(self, srcs, first, pred, min_seq):
        for k in range(first, len(srcs)):
            src = srcs[k]
            limit = srcs[k + 1].base if k + 1 < len(srcs) else None
            if limit is not None and limit <= min_seq:
                continue
            for seq, i, off, raw in self._lines(src, limit, min_seq):
                m = self._message(src, seq, i, raw, off)
                if m is not None and pred(m):
                    return m, src, i, off
        return None

    def _first_time(self, srcs, k) -> int | None:
        src = srcs[k]
        limit = srcs[k + 1].base if k + 1 < len(srcs) else None
        for seq, i, off, raw in self._lines(src, limit):
            m = self._message(src, seq, i, raw, off)
            if m is not None:
                return m.time
        return None

    def _first_file_by_time(self, srcs, t) -> int:
        """Binary search: the last file whose first message has time <= t."""
        lo, hi, best = 0, len(srcs) - 1, 0
        while lo <= hi:
            mid = (lo + hi) // 2
            probe, key = mid, self._first_time(srcs, mid)
            while key is None and probe < hi:   # empty or all damaged: look right
                probe += 1
                key = self._first_time(srcs, probe)
            if key is None:
                hi = mid - 1
            elif key <= t:
                best, lo = probe, probe + 1
            else:
                hi = mid - 1
        return best

    def limits(self) -> Limits | None:
        """First and last sequence and time of all files, or None if there is no message."""
        first = next(self._forward(), None)
        if first is None:
            return None
        last = next(self.reverse(), first)
        return Limits(first.sequence, first.time, last.sequence, last.time)

    def count(self) -> int:
        n = 0
        for _ in self:
            n += 1
        return n


def open_reader(path) -> PlainFileReader:
    """A reader of the plain file `path` and its rotated files."""
    return PlainFileReader(path)
