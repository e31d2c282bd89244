"""The `plainfile` storage backend: append-only UTF-8 text or JSON lines.

Sits beside `family` for users who want a file that `tail`, `grep` and `jq`
read: no mapping and no core, one os.write of one whole line per record onto
an O_APPEND descriptor, rotation by size, and a reader (PlainFileReader) with
the same API as the family reader, so every logkit tool reads it too.
docs/backend-plainfile.md describes the bytes of both line formats.  The
line formats live in plainfile_lines.py, the reader and the naming and
numbering of files in plainfile_reader.py; this module re-exports both.

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

import fcntl
import operator
import os
import threading
import time as _time
from typing import Any

from logkit import safefs
from logkit._segment import parse_size
from logkit.backends.plainfile_lines import (
    SEVERITY_MAX, SEVERITY_MIN, TIME_MAX, IsoCache, encode_json_line, encode_text_line, header_line)
from logkit.backends.plainfile_reader import (
    PlainFileReader, backup_name, backups, count_lines, derived_base, file_ident, next_base,
    read_header)
from logkit.errors import DiskFull, InvalidArgument, LogkitError, SegmentNotFound
from logkit.registry import Option, StorageBackend

# Re-exported, so every name importable from here before the split still is
# (logkit.cli imports iso_time and open_reader from here, the tests parse_line, ...).
from logkit.backends.plainfile_lines import (  # noqa: F401
    VERSION, PlainMessage, iso_time, parse_header, parse_line)
from logkit.backends.plainfile_reader import BASE_DIGITS, LATE_LINE_ROOM, open_reader  # noqa: F401

__all__ = ["PlainFileStorage", "PlainFileReader", "PlainMessage", "open_reader",
           "encode_text_line", "encode_json_line", "parse_line", "LATE_LINE_ROOM"]

FORMATS = ("text", "json")
SYNC_CHOICES = ("never", "close", "always")
ROTATION_WAIT = 30.0              # seconds a writer waits for the rotation lock

_get_tid = threading.get_native_id
_time_ns = _time.time_ns
_ENCODERS = {"text": encode_text_line, "json": encode_json_line}


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
        if file_ident(os.fstat(fd)) != ident:
            return False
        for attempt in range(12):
            size = os.fstat(fd).st_size
            if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
                return False
            _time.sleep(0.0002 * attempt)    # at most ~13 ms, on a rare path
        return True
    finally:
        os.close(fd)


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
        self._iso = IsoCache()
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
                if st is None or file_ident(st) != self._cur:
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
        self._cur = file_ident(os.fstat(self._fd))

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
                    os.write(fd, header_line(self.format, derived_base(self.path, file_ident(st))))
            finally:
                if not locked:
                    self._funlock()
        elif first and _ends_in_partial_line(self.path, file_ident(st)):
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
                    self._create_live(derived_base(self.path))
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
            if file_ident(st) != self._cur or st.st_size < self.max_size:
                return True                    # another writer rotated it first
            base = read_header(self.path)
            if base is None:
                base = derived_base(self.path, skip=self._cur)
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
            self._create_live(next_base(base, count_lines(target)))
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
