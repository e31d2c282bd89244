"""Reading a plainfile log: its files (the live one and the rotated
PATH.<base> ones), how each is named and numbered, and PlainFileReader, which
reads them in sequence order with the same API as the family reader.  The
storage (backends/plainfile.py) names and numbers its files through this module."""
from __future__ import annotations

import binascii
import os
import re
from typing import Iterator

from logkit import safefs
from logkit._segment import Limits
from logkit.backends.plainfile_lines import PlainMessage, parse_header, parse_line
from logkit.errors import InvalidArgument, NoSuchMessage, SegmentNotFound
from logkit.registry import Reader

__all__ = ["PlainFileReader", "open_reader", "LATE_LINE_ROOM", "BASE_DIGITS", "file_ident",
           "backup_name", "backups", "open_read", "count_lines", "next_base", "derived_base",
           "read_header"]

# Numbers left unused after a rotated file's last line, for lines that writers
# which had already checked the path put into it after the rename (at most
# one per writing thread and storage instance).
LATE_LINE_ROOM = 10_000
BASE_DIGITS = 12                  # zero padding of rotated names, so they sort

# ------------------------------------------------------------------ files

def file_ident(st: os.stat_result) -> tuple[int, int]:
    """(st_dev, st_ino) of a stat result: which file a path or descriptor is,
    across renames (a rotated file keeps it)."""
    return (st.st_dev, st.st_ino)


def backup_name(path: str, base: int) -> str:
    """The name the live file `path` is rotated to when its base is `base`:
    PATH.<base, BASE_DIGITS digits> (the names sort; backups() reads them back)."""
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


def open_read(path: str, buffering: int = -1):
    """A binary file object on `path`, opened without following a link and
    checked to be a regular file (logkit.safefs); FileNotFoundError if absent."""
    return os.fdopen(safefs.open_file(path, os.O_RDONLY), "rb", buffering=buffering)


def count_lines(path: str) -> int:
    """Newline-terminated lines in the file (a partial last line is not one)."""
    n = 0
    with open_read(path, buffering=0) as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                return n
            n += chunk.count(b"\n")


def next_base(base: int, lines: int) -> int:
    """Base of the file after one whose base is `base` and that had `lines`
    lines (header included) when it was rotated."""
    return base + max(lines - 1, 0) + LATE_LINE_ROOM


def derived_base(path: str, skip: tuple | None = None) -> int:
    """Base of a live file without a (valid) header: after the newest rotated
    file, or 1 when there is none."""
    for base, p in reversed(backups(path)):
        try:
            if skip is not None and file_ident(os.stat(p)) == skip:
                continue
            return next_base(base, count_lines(p))
        except FileNotFoundError:
            continue
    return 1


def read_header(path: str | None = None, fd: int | None = None) -> int | None:
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
            fh = open_read(self.path)
        except FileNotFoundError:
            fh = None
        if fh is not None:
            ident = file_ident(os.fstat(fh.fileno()))
            base = read_header(fd=fh.fileno())
            if base is None:
                base = derived_base(self.path, skip=ident)
            live = _Source(self.path, base, fh, ident)
        out = []
        for base, p in backups(self.path):
            if live is not None:
                try:
                    if file_ident(os.stat(p)) == live.ident:
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
                fh = open_read(src.path)
            except FileNotFoundError:
                return                          # deleted by retention meanwhile
        try:
            if src.ident is None:
                src.ident = file_ident(os.fstat(fh.fileno()))
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
                        src.ident = file_ident(os.stat(src.path))
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
