"""Reading a partition (backends/partition_file.py): `PartitionReader` over the
undrained messages of both halves, each a `PartitionMessage` (a private copy:
a half is reused under readers), and `open_reader` for tools.
"""
from __future__ import annotations

import struct
import time as _time
from typing import Iterator

from logkit._segment import Limits, SegmentIterator, crc32c
from logkit.errors import InvalidArgument, NoSuchMessage, SegmentDamaged
from logkit import inject
from logkit.records import RecordParts
from logkit.registry import Reader
from logkit.backends.partition_file import EMPTY, H_PROGRESS, Partition

READ_PATIENCE = 2.0       # how long a reader waits for a half being formatted


class PartitionMessage(RecordParts):
    """A message read from a partition: a private copy (a half is reused, so
    readers never hold views into it).  Has the fields of a logkit.Message.
    checksum_ok() is real: the source message's checksum as verified when the
    copy was taken, and a CRC-32C of the copied fields taken then, checked
    again now."""
    __slots__ = ("sequence", "time", "severity", "process_id", "thread_id", "text", "data_class", "data",
                 "_source_ok", "_crc")

    def __init__(self, sequence, time, severity, process_id, thread_id, text, data_class, data,
                 source_ok: bool = True):
        self.sequence, self.time, self.severity = sequence, time, severity
        self.process_id, self.thread_id = process_id, thread_id
        self.text, self.data_class, self.data = text, data_class, data
        self._source_ok = bool(source_ok)
        self._crc = self._fields_crc()

    @classmethod
    def copy_of(cls, m, sequence: int | None = None) -> "PartitionMessage":
        """Copy every field of `m` (a Message in a half) now.  `sequence`: the
        sequence the caller already read from it (read once, never again)."""
        text, data_class, data = m.text, m.data_class, bytes(m.data)
        return cls(m.sequence if sequence is None else sequence, m.time, m.severity, m.process_id,
                   m.thread_id, text, data_class, data, m.checksum_ok())

    def _fields_crc(self) -> int:
        head = struct.pack("<QQQQQ", *(int(v) & 0xFFFFFFFFFFFFFFFF for v in (
            self.sequence, self.time, self.severity, self.process_id, self.thread_id)))
        return crc32c(bytes(self.data), crc32c((self.data_class or "").encode("utf-8", "surrogatepass") + b"\0",
                                               crc32c(str(self.text).encode("utf-8", "surrogatepass") + b"\0",
                                                      crc32c(head))))

    def checksum_ok(self) -> bool:
        """The source's checksum was good when copied, and no field of this
        copy changed since."""
        return self._source_ok and self._crc == self._fields_crc()

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__ if not k.startswith("_")}

    def __repr__(self) -> str:
        return f"PartitionMessage(sequence={self.sequence}, severity={self.severity}, text={self.text!r:.60})"



class _Reformatted(Exception):
    """A half was reformatted while a reader copied it (internal)."""


class PartitionReader(Reader):
    """The undrained messages of both halves in sequence order (registry.Reader).

    Each pass takes a fresh look at the partition, so it sees what writers
    added since.  Raises SegmentDamaged, naming the file and the offset, for
    a damaged partition header or half (a half that a swapper died while
    formatting counts as empty: its messages were already counted as lost).
    """

    def __init__(self, partition: Partition):
        self.partition = partition
        self._start: int | None = None
        self.problems: list[str] = []

    def _snapshot_once(self, last_try: bool) -> tuple[int, list[PartitionMessage]]:
        p = self.partition
        p.check()
        p.refresh_keys()
        progress = p.header_word(H_PROGRESS)
        halves = []
        top = 0
        for i in (0, 1):
            problem = p.half_problem(i)
            if problem is not None:
                if p.intent_half() == i:
                    note = f"{p.path}: half {i} at offset {p.offsets[i]} was being formatted; read as empty"
                    if note not in self.problems:
                        self.problems.append(note)
                    continue
                raise SegmentDamaged(f"{p.path}: half {i} at offset {p.offsets[i]}: {problem}")
            h = p.halves[i]
            top = max(top, h.sequence_base + h.stats()["reserved"])
            if p.phase(i) != EMPTY:
                halves.append(h)
        if progress >= top + (1 << 32):
            raise SegmentDamaged(f"{p.path}: drain progress {progress} at offset {H_PROGRESS} is beyond "
                                 f"every sequence the halves hold (below {top})")
        halves.sort(key=lambda h: h.sequence_base)
        out = []
        last = progress
        for h in halves:
            # Private copies, kept only if the half was not reformatted while
            # they were taken (a swapper sets `intent` to it before it formats
            # it, and the format gives it a new UUID): a torn or foreign
            # message never reaches the caller.  Until intent is set, a half
            # being claimed for reuse (REUSING) is intact.
            k = p.halves.index(h)
            before = h.uuid
            if p.intent_half() == k and not last_try:
                raise _Reformatted()     # being formatted right now: wait for it
            copies = []
            try:
                for m in SegmentIterator(h):
                    s = m.sequence
                    if s > last:
                        inject.point("partition.read.message")      # its sequence read, the rest not yet
                        copies.append(PartitionMessage.copy_of(m, s))
                        last = s
            except SegmentDamaged:
                if h.uuid == before and p.intent_half() != k:
                    raise                # damage, not a reuse under us
                raise _Reformatted() from None
            inject.point("partition.read.copied")
            if h.uuid != before or (p.intent_half() == k and not last_try):
                raise _Reformatted()
            if p.intent_half() == k:
                note = (f"{p.path}: half {k} at offset {p.offsets[k]} is still named by intent (a swapper "
                        "stopped or died while reusing it); read as found")
                if note not in self.problems:
                    self.problems.append(note)
            out.extend(copies)
        return progress, out

    def _snapshot(self) -> list[PartitionMessage]:
        return self.snapshot()[1]

    def snapshot(self) -> tuple[int, list[PartitionMessage]]:
        """(progress, messages): the drain progress (the last sequence a drain
        recorded as copied, 0 if none) read before the halves, and private
        copies of every finished message above it, in sequence order.  A
        drain may copy more of them meanwhile: comparing the progress word
        read afterwards with this one tells (backends/partition_log.py)."""
        # A reuse formats a half in well under a second; a half still named by
        # intent after READ_PATIENCE is read as found (its UUID stable over
        # the read), one reformatted under every read raises.
        deadline = _time.monotonic() + READ_PATIENCE
        pause = 0.001
        reformatted = 0
        while True:
            # No live swapper behind an intent: nothing to wait for.
            last_try = _time.monotonic() >= deadline or not self.partition.intent_swapper_alive()
            try:
                return self._snapshot_once(last_try)
            except _Reformatted:
                reformatted += 1         # a half was reused while we read it: look again
            if _time.monotonic() >= deadline and reformatted > 64:
                raise SegmentDamaged(f"{self.partition.path}: a half was reformatted under {reformatted} reads "
                                     "in a row (the partition overflows faster than it can be read)")
            _time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def __iter__(self) -> Iterator[PartitionMessage]:
        msgs = self._snapshot()
        start = self._start
        for m in msgs:
            if start is None or m.sequence >= start:
                yield m

    def reverse(self) -> Iterator[PartitionMessage]:
        return iter(self._snapshot()[::-1])

    def seek(self, sequence: int | None = None, time: int | None = None) -> PartitionMessage:
        if (sequence is None) == (time is None):
            raise InvalidArgument("seek() takes exactly one of sequence= or time=")
        for m in self._snapshot():
            if (m.sequence >= sequence) if sequence is not None else (m.time >= time):
                self._start = m.sequence
                return m
        what = f"sequence >= {sequence}" if sequence is not None else f"time >= {time}"
        raise NoSuchMessage(f"partition {self.partition.path}: no undrained message with {what}")

    def rewind(self) -> None:
        self._start = None

    def limits(self) -> Limits | None:
        msgs = self._snapshot()
        if not msgs:
            return None
        return Limits(msgs[0].sequence, msgs[0].time, msgs[-1].sequence, msgs[-1].time)

    def count(self) -> int:
        return sum(1 for _ in self)


def open_reader(path, key_file=None) -> PartitionReader:
    """A reader over an existing partition file, mapped read-only (for tools);
    key_file decrypts a sealed partition (without it: "[encrypted]").
    Raises SegmentNotFound, SegmentDamaged, UnsupportedFormat, WrongKey."""
    return PartitionReader(Partition(path, create=False, readonly=True, key_file=key_file))
