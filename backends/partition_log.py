"""A partition log read whole: its destination family's messages, then the
messages still in the partition that no drain has copied yet, as one
sequence numbered as the family numbers them (`PartitionLogReader`).  What
`logkit print`, `monitor` and `stats` get from sources.resolve() for a
config log whose storage is a partition with a drain `directory`.

How the two parts meet without a duplicate or a gap while a drain runs:
the drain (backends/partition_drain.py) appends each message to the family
first and records it afterwards (the progress word, then the mark: the
family sequence after its copy), so the family can be one message ahead of
the progress, never behind it.  A reader takes the partition's undrained
messages with the progress they were taken under, then the family's last
sequence, then the mark and the progress again.  If the progress moved, a
drain recorded something meanwhile and the reader looks again.  If it did
not, the family holds every message up to the progress and, at most, the
one in flight: that one is in the family exactly when the family's last
sequence is the mark and its last message is a copy of the first undrained
message (the same test the drain's own recovery makes,
destination.find_copy), and it is then read from the family.  The family is
read up to that last sequence only, whatever a drain adds later.
"""
from __future__ import annotations

import json
import os
import time as _time
from dataclasses import dataclass
from typing import Iterator

from logkit._segment import Limits
from logkit.errors import InvalidArgument, LogkitError, NoSuchMessage, SegmentNotFound
from logkit import inject
from logkit.registry import Reader
from logkit.backends.destination import copy_identity
from logkit.backends.partition_file import H_MARK, H_PROGRESS, Partition
from logkit.backends.partition_reader import PartitionMessage, PartitionReader

__all__ = ["PartitionLogReader", "FamilyNumbered", "open_log_reader", "LOSS_KEYS"]

SETTLE_PATIENCE = 10.0     # how long a reader retries while a drain keeps recording progress
LOSS_KEYS = ("lost", "first_sequence", "last_sequence")    # the data of a partition's loss report


class FamilyNumbered(PartitionMessage):
    """An undrained message of a partition, numbered as the destination
    family will number it (`sequence`); `partition_sequence` is its number
    in the partition.  Otherwise a PartitionMessage (a private copy)."""
    __slots__ = ("partition_sequence",)

    @classmethod
    def of(cls, m: PartitionMessage, sequence: int, text: str | None = None,
           data: bytes | None = None) -> "FamilyNumbered":
        out = cls(sequence, m.time, m.severity, m.process_id, m.thread_id,
                  m.text if text is None else text, m.data_class, m.data if data is None else data,
                  m.checksum_ok())
        out.partition_sequence = m.sequence
        return out

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["partition_sequence"] = self.partition_sequence
        return d


@dataclass
class Snapshot:
    """One consistent look at a partition log: the family up to `last`
    (`limits` its limits, None when it holds nothing), then `pending`, the
    undrained messages numbered from last + 1 on; `progress` is the drain
    progress they were taken under (`in_flight`: the first message above it
    was found already in the family)."""
    last: int
    limits: Limits | None
    pending: list
    progress: int
    in_flight: bool = False


def loss_report(m) -> dict | None:
    """The data of a partition's loss report (a message the partition wrote
    when an overflow lost messages: severity 40, class json, {"lost",
    "first_sequence", "last_sequence"}), or None for any other message."""
    if m.data_class != "json" or m.severity != 40:
        return None
    try:
        d = json.loads(bytes(m.data))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(d, dict) or not all(isinstance(d.get(k), int) for k in LOSS_KEYS):
        return None
    return d


class PartitionLogReader(Reader):
    """The whole of a partition log (registry.Reader): the destination
    family (`directory`, `family`) up to its last message, then what is
    still in the partition and not drained, numbered after it as the drain
    will number it.  No message is read twice or missed while a drain runs
    (the module docstring says how).

    A loss report still in the partition is given the family's sequence
    numbers between which the loss falls: its text ends "(between messages
    A and B of family F; partition sequences FIRST..LAST)" and its data
    gains "family" and "family_between": [A, B].  B is A + 1 when the
    message after the loss is still in the partition; when a drain already
    copied it, A and B bound it (the drain counted every partition sequence
    between the loss and its progress at most once).  A report a drain has
    already copied is read as the family holds it.

    Raises SegmentDamaged for a damaged partition (as PartitionReader), and
    LogkitError naming the partition when drains record progress under
    every look for SETTLE_PATIENCE seconds.
    """

    def __init__(self, partition: Partition, directory: str, family: str, key_file=None):
        self.partition_reader = PartitionReader(partition)
        self.partition = partition
        self.directory = os.path.abspath(os.fspath(directory))
        self.family = family
        self.key_file = key_file
        self._family_reader = None
        self._start: tuple[str, int] | None = None      # ("sequence"|"time", value) set by seek()

    # ------------------------------------------------------------ the family

    def family_reader(self):
        """The destination family's FamilyReader, or None while its directory
        does not exist (nothing drained yet)."""
        if self._family_reader is None:
            from logkit.family import FamilyReader
            try:
                self._family_reader = FamilyReader(self.directory, self.family, key_file=self.key_file)
            except SegmentNotFound:
                return None
        return self._family_reader

    def _fresh_family_reader(self):
        from logkit.family import FamilyReader
        return FamilyReader(self.directory, self.family, key_file=self.key_file)

    def _family_next(self, fr) -> tuple[int, Limits | None]:
        """(last, limits): the family's last finished sequence (for an empty
        family, one below the sequence its first message will get)."""
        if fr is None:
            return 0, None
        lim = fr.limits()
        if lim is not None:
            return lim.last_sequence, lim
        from logkit import Segment
        live = os.path.join(self.directory, self.family)
        try:
            seg = Segment.open(live, readonly=True)
        except LogkitError:
            return 0, None
        try:
            return max(0, seg.sequence_base - 1), None
        finally:
            seg.close()

    def _family_at(self, sequence: int):
        fr = self._fresh_family_reader()
        try:
            m = fr.seek(sequence=sequence)
        except NoSuchMessage:
            return None
        return m if m.sequence == sequence else None

    # ------------------------------------------------------------ one look

    def snapshot(self) -> Snapshot:
        """One consistent look at the family and the partition (see the
        module docstring); pending messages are FamilyNumbered."""
        p = self.partition
        deadline = _time.monotonic() + SETTLE_PATIENCE
        pause = 0.0005
        looks = 0
        while True:
            looks += 1
            progress, msgs = self.partition_reader.snapshot()
            inject.point("partition.log.taken")      # the undrained copied, the family not yet read
            fr = self.family_reader()
            last, lim = self._family_next(fr)
            mark = p.header_word(H_MARK)
            if p.header_word(H_PROGRESS) == progress:
                in_flight = False
                anchor = mark - 1 if 0 < mark <= last + 1 else last
                if msgs and lim is not None and last == mark:
                    fm = self._family_at(last)
                    if fm is not None and copy_identity(fm) == copy_identity(msgs[0]):
                        # Appended, not yet recorded: the family holds it.
                        progress, anchor, msgs, in_flight = msgs[0].sequence, last, msgs[1:], True
                return Snapshot(last, lim, self._number(msgs, last, progress, anchor), progress, in_flight)
            if _time.monotonic() >= deadline:
                raise LogkitError(f"partition {p.path}: a drain recorded progress under each of {looks} "
                                  f"looks in {SETTLE_PATIENCE:g} s; cannot read it with family "
                                  f"'{self.family}' in {self.directory} consistently")
            _time.sleep(pause)         # a drain is recording: look again once it has
            pause = min(pause * 2, 0.02)

    def _number(self, msgs: list, last: int, progress: int, anchor: int) -> list:
        out = []
        for k, m in enumerate(msgs, start=last + 1):
            rep = loss_report(m)
            if rep is None:
                out.append(FamilyNumbered.of(m, k))
            else:
                out.append(self._translated(m, k, rep, msgs, last, progress, anchor))
        return out

    def _translated(self, m, number: int, rep: dict, msgs: list, last: int, progress: int, anchor: int):
        """The loss report m (numbered `number`) naming the family messages
        between which its loss falls.  anchor: the family's copy of the
        message at `progress`."""
        lo_seq = rep["last_sequence"]
        if progress <= lo_seq:
            # Nothing after the loss was drained: the message after it is
            # the first pending one above it, the one before it the message
            # numbered just below.
            b = next((k for k, x in enumerate(msgs, start=last + 1) if x.sequence > lo_seq), number)
            a = b - 1
        else:
            # A drain copied the message after the loss, and at most
            # progress - lo_seq messages from it to `progress`, whose copy is
            # `anchor`: the loss falls somewhere between these two.
            a, b = max(0, anchor - (progress - lo_seq)), anchor
        text = m.text
        where = (f"between messages {a} and {b} of family {self.family}" if a > 0
                 else f"before message {b} of family {self.family}")
        tail = f" (sequences {rep['first_sequence']}..{rep['last_sequence']})"
        base = text[:-len(tail)] if text.endswith(tail) else text
        text = f"{base} ({where}; partition sequences {rep['first_sequence']}..{rep['last_sequence']})"
        data = dict(rep, family=self.family, family_between=[a, b])
        return FamilyNumbered.of(m, number, text=text, data=json.dumps(data).encode())

    # ------------------------------------------------------------ Reader

    @property
    def problems(self) -> list[str]:
        fr = self._family_reader
        return list(self.partition_reader.problems) + (list(fr.problems) if fr is not None else [])

    def _family_from(self, snap: Snapshot, how: str | None, value: int | None) -> Iterator:
        """The family's messages up to snap.last, from the seek position."""
        fr = self.family_reader()
        if fr is None or snap.limits is None:
            return
        if how is None:
            fr.rewind()
        else:
            try:
                fr.seek(**{how: value})
            except NoSuchMessage:
                return
        for m in fr:
            if m.sequence > snap.last:
                return
            yield m

    def __iter__(self) -> Iterator:
        snap = self.snapshot()
        how, value = self._start if self._start is not None else (None, None)
        yield from self._family_from(snap, how, value)
        for m in snap.pending:
            if how is None or (m.sequence if how == "sequence" else m.time) >= value:
                if how == "time":
                    how = None           # from the first at or after the time on: all of them
                yield m

    def reverse(self) -> Iterator:
        snap = self.snapshot()
        yield from reversed(snap.pending)
        fr = self.family_reader()
        if fr is None or snap.limits is None:
            return
        for m in fr.reverse():
            if m.sequence <= snap.last:
                yield m

    def seek(self, sequence: int | None = None, time: int | None = None):
        if (sequence is None) == (time is None):
            raise InvalidArgument("seek() takes exactly one of sequence= or time=")
        how, value = ("sequence", sequence) if sequence is not None else ("time", time)
        snap = self.snapshot()
        fr = self.family_reader()
        if fr is not None and snap.limits is not None:
            try:
                m = fr.seek(**{how: value})
            except NoSuchMessage:
                m = None
            if m is not None and m.sequence <= snap.last:
                self._start = ("sequence", m.sequence)
                return m
        for m in snap.pending:
            if (m.sequence if how == "sequence" else m.time) >= value:
                self._start = ("sequence", m.sequence)
                return m
        raise NoSuchMessage(f"partition log {self.partition.path} with family '{self.family}' in "
                            f"{self.directory}: no message with {how} >= {value}")

    def rewind(self) -> None:
        self._start = None

    def limits(self) -> Limits | None:
        snap = self.snapshot()
        lim, pending = snap.limits, snap.pending
        if lim is None and not pending:
            return None
        first = (lim.first_sequence, lim.first_time) if lim is not None else \
            (pending[0].sequence, pending[0].time)
        last = (pending[-1].sequence, pending[-1].time) if pending else (lim.last_sequence, lim.last_time)
        return Limits(first[0], first[1], last[0], last[1])

    def count(self) -> int:
        return sum(1 for _ in self)

    def pending_count(self) -> int:
        """How many messages are in the partition and not drained (one look)."""
        return len(self.snapshot().pending)


def open_log_reader(path, directory, family: str, key_file=None) -> PartitionLogReader:
    """A PartitionLogReader over an existing partition file (mapped
    read-only) and its destination family; key_file decrypts both.  Raises
    as backends.partition.open_reader."""
    return PartitionLogReader(Partition(path, create=False, readonly=True, key_file=key_file),
                              directory, family, key_file=key_file)
