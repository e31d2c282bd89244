"""Fuzz targets: one per parser of bytes or text that logkit reads.

Each target takes arbitrary bytes and drives one parser the way a reader
does; `check(name, data)` runs it and enforces the rule every parser keeps:
no crash, no hang (the runner bounds each input's time), and no exception
other than a LogkitError whose message is not empty.  A broken rule raises
RuleBroken (or the offending exception itself), which the runner (run.py)
and atheris report as a failing input.

The targets are plain functions so that atheris (coverage-guided, `run.py
--engine atheris`), the built-in mutator (`--engine builtin`, no extra
package) and pytest (tests/test_fuzz_targets.py) all run the same code.
"""
from __future__ import annotations

import os
import tempfile

from logkit.errors import LogkitError

__all__ = ["TARGETS", "check", "RuleBroken", "scratch_dir"]

_SCRATCH: str | None = None
NOW_NS = 1_764_720_000_000_000_000      # a fixed "now" (2025-12-03) so time expressions are repeatable


class RuleBroken(AssertionError):
    """A parser broke the fuzzing rule (not a LogkitError, or an empty message,
    or an inconsistent result)."""


def scratch_dir() -> str:
    """A private directory for the files the targets write (one per process)."""
    global _SCRATCH
    if _SCRATCH is None or not os.path.isdir(_SCRATCH):
        _SCRATCH = tempfile.mkdtemp(prefix="logkit-fuzz-")
    return _SCRATCH


def _put(name: str, data: bytes) -> str:
    path = os.path.join(scratch_dir(), name)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    with open(path, "wb") as f:
        f.write(data)
    return path


def _touch_message(m) -> None:
    """Read every field of a message the way a formatter would."""
    m.sequence, m.time, m.severity, m.process_id, m.thread_id, m.offset, m.size
    m.key_id, m.sealed
    str(m.text)
    bytes(m.text_bytes)
    str(m.data_class)
    bytes(m.data)
    m.checksum_ok()
    m.to_dict()


# ---------------------------------------------------------------- checksums

# Most mutated inputs fail a checksum at once, and a fuzzer cannot learn to
# forge CRC-32C.  So for half of the inputs (chosen by a hash of the input,
# so each input is treated the same way every time) the targets first put
# right the checksums a careless or hostile writer could also compute: the
# segment and partition identity CRCs, the stub and message checksums of
# every record that looks like one, and pipe frame CRCs.  What lies behind
# the checksums gets fuzzed too.

SENTINEL = b"\xff\xfeLK"


def _wants_fixups(data: bytes) -> bool:
    import zlib
    return bool(zlib.crc32(data) & 1)


def _u32(b, at):
    return int.from_bytes(b[at:at + 4], "little")


def fix_segment_checksums(b: bytearray, base: int = 0, size: int | None = None) -> None:
    """Recompute the identity CRC of the segment region at `base` and the two
    checksums of every record in it whose lengths fit (docs/format.md)."""
    from logkit import crc32c
    end = len(b) if size is None else min(len(b), base + size)
    if base + 388 <= end:
        b[base + 384:base + 388] = crc32c(bytes(b[base:base + 384])).to_bytes(4, "little")
    at = b.find(SENTINEL, base + 4096, end)
    while 0 <= at and at + 64 <= end:
        total, tl, dl = _u32(b, at + 8), _u32(b, at + 40), _u32(b, at + 44)
        cl = int.from_bytes(b[at + 48:at + 50], "little")
        if 64 <= total <= end - at and 64 + tl + cl + dl <= total:
            stub = crc32c(bytes(b[at + 32:at + 56]), crc32c(bytes(b[at + 16:at + 24]), crc32c(bytes(b[at + 8:at + 12]))))
            b[at + 56:at + 60] = stub.to_bytes(4, "little")
            full = crc32c(bytes(b[at + 64:at + 64 + tl + cl + dl]), crc32c(bytes(b[at + 8:at + 60])))
            b[at + 60:at + 64] = full.to_bytes(4, "little")
        at = b.find(SENTINEL, at + 8, end)


def fix_partition_checksums(b: bytearray) -> None:
    from logkit import crc32c
    if len(b) >= 116:
        b[112:116] = crc32c(bytes(b[:112])).to_bytes(4, "little")
    half = int.from_bytes(b[16:24], "little") if len(b) >= 24 else 0
    for k in (24, 32):
        off = int.from_bytes(b[k:k + 8], "little") if len(b) >= k + 8 else 0
        if 0 < off < len(b) and 0 < half <= len(b):
            fix_segment_checksums(b, off, half)


def fix_frame_checksums(b: bytearray, start: int = 0) -> None:
    """Recompute the CRC of every pipe frame found by its magic (docs/pipe-format.md)."""
    from logkit import crc32c
    at = b.find(b"LKPF", start)
    while at >= 0 and at + 16 <= len(b):
        total = _u32(b, at + 8)
        if 40 <= total <= len(b) - at:
            crc = crc32c(bytes(b[at + 16:at + total]), crc32c(bytes(b[at:at + 12])))
            b[at + 12:at + 16] = crc.to_bytes(4, "little")
            at = b.find(b"LKPF", at + total)     # not a record's own header inside a fragment
            continue
        at = b.find(b"LKPF", at + 4)


def _fixed(data: bytes, fix) -> bytes:
    if not _wants_fixups(data):
        return data
    b = bytearray(data)
    fix(b)
    return bytes(b)


# ---------------------------------------------------------------- segments

def fuzz_segment(data: bytes) -> None:
    """Segment.open read-only, iterate, touch every field; records(), scan(),
    limits(), find(), header(), a strict iterator; display/verify's walk."""
    from logkit import Segment, SegmentIterator
    path = _put("f.seg", _fixed(data, fix_segment_checksums))
    try:
        seg = Segment.open(path, readonly=True)
    except LogkitError:
        seg = None
    if seg is not None:
        with seg:
            for m in seg:
                _touch_message(m)
            seg.header()
            seg.stats()
            seg.limits()
            seg.scan()
            recs = seg.records(whole_region=True)
            for r in recs:
                if r.offset < 0 or r.length <= 0 or r.offset + r.length > seg.size:
                    raise RuleBroken(f"record {r} lies outside the region of {seg.size} bytes")
            try:
                seg.find(sequence=0)
            except LogkitError:
                pass
            it = SegmentIterator(seg, strict=True)
            for _ in range(10_000):
                try:
                    m = next(it)
                    _touch_message(m)
                except StopIteration:
                    if it.pending is None or not it.skip_pending():
                        break
            else:
                raise RuleBroken("a strict iterator did not end within 10,000 steps")
    _walk_view(path)
    _read_sealed(path)


def _read_sealed(path: str) -> None:
    """A sealed segment read with its key: every message opened (decrypted,
    authenticated) or refused with a LogkitError."""
    from logkit import Segment
    from tests.fuzz.seeds import SEAL_KEY
    try:
        seg = Segment.open(path, readonly=True, key=SEAL_KEY)
    except LogkitError:
        return
    with seg:
        if not seg.sealed:
            return
        for m in seg:
            try:
                _touch_message(m)
            except LogkitError as e:
                _message_of(e)


def _walk_view(path: str) -> None:
    from logkit.cli import inspection as insp
    from logkit.cli.inspectors import Report, verify_view
    try:
        view = insp.SegmentView.open_file(path, None)
    except LogkitError:
        return
    with view:
        if view.seg is not None:
            insp.walk(view, texts=True, authenticate=True)
            verify_view(view, Report(path))


# ---------------------------------------------------------------- salvage

def fuzz_salvage(data: bytes) -> None:
    """salvage() a copy of the bytes; what it leaves must open and read."""
    from logkit import Segment, salvage
    path = _put("s.seg", _fixed(data, fix_segment_checksums))
    try:
        rep = salvage(path, grace=0.0, settle=0.0)
    except LogkitError:
        return
    str(rep)
    try:
        seg = Segment.open(path, readonly=True)
    except LogkitError as e:
        if len(data) >= 8192 and len(data) % 8 == 0:
            raise RuleBroken(f"salvage returned ({rep.header_rebuilt=}) but the segment it left "
                             f"does not open: {e}") from None
        return
    with seg:
        n = 0
        for m in seg:
            _touch_message(m)
            n += 1


# ---------------------------------------------------------------- identity ledger

_LEDGER_SEGMENTS: list[bytes] = []


def fuzz_ledger(data: bytes) -> None:
    """A sealed family's identity ledger (FAMILY.ids) of arbitrary bytes beside
    segments whose header page is lost: identities(), then salvage's rebuild
    of the identity (in a private copy, as verify and display do it) and a
    read with the key: a message either opens to a text that was written or
    is refused with a LogkitError."""
    import mmap
    from logkit import Segment, idledger
    from logkit.salvager import rebuild_identity
    from tests.fuzz import seeds
    d = os.path.join(scratch_dir(), "ledger")
    if not _LEDGER_SEGMENTS:
        os.makedirs(d, exist_ok=True)
        _LEDGER_SEGMENTS.extend(seeds.make_ledger(d))
    path = os.path.join(d, "fuzz" + idledger.SUFFIX)
    with open(path, "wb") as f:
        f.write(data)
    for ident in idledger.identities(path):
        if len(ident.uuid) != 16 or len(ident.key_check) != 16 or not 0 < ident.key_id < 65536:
            raise RuleBroken(f"identities() returned an unsound record: {ident}")
    written = {text for text, *_ in seeds.messages(4)}
    k = len(data) % len(_LEDGER_SEGMENTS)          # one segment per input, chosen by its length
    seg_path = os.path.join(d, f"fuzz.20250101.00000{k}")
    mm = mmap.mmap(-1, len(_LEDGER_SEGMENTS[k]))
    mm[:] = bytes(4096) + _LEDGER_SEGMENTS[k][4096:]
    try:
        seg = Segment.from_buffer(mm, 0, len(mm), False, path=seg_path, close_buffer=True, check_header=False)
    except LogkitError:
        mm.close()
        return
    with seg:
        try:
            rebuild_identity(seg)
            seg.use_key(seeds.SEAL_KEY)
        except LogkitError:
            return
        for m in seg:
            try:
                text = str(m.text)
            except LogkitError:
                continue
            if text not in written:
                raise RuleBroken(f"a message opened to text never written: {text!r:.80}")


# ---------------------------------------------------------------- partitions

def fuzz_partition(data: bytes) -> None:
    """open_reader on a partition file: iterate, reverse, limits, seek; the
    verify/display partition view."""
    from logkit.backends.partition import open_reader
    from logkit.cli.inspectors import PartitionInspector
    path = _put("f.part", _fixed(data, fix_partition_checksums))
    try:
        r = open_reader(path)
    except LogkitError:
        r = None
    if r is not None:
        try:
            try:
                for m in r:
                    _touch_partition_message(m)
                list(r.reverse())
                r.limits()
                r.count()
                r.seek(sequence=1)
            except LogkitError:
                pass
        finally:
            r.partition.close()
    for rep in PartitionInspector(path).verify():
        rep.lines()


def _touch_partition_message(m) -> None:
    m.sequence, m.time, m.severity, m.process_id, m.thread_id
    str(m.text), str(m.data_class), bytes(m.data)
    m.checksum_ok()
    m.to_dict()


# ---------------------------------------------------------------- pipe journal

class ListStorage:
    """A destination that keeps what it is given (the journal's storage)."""

    def __init__(self):
        self.records = []

    def append(self, rec) -> int:
        self.records.append(rec)
        return len(self.records)


def fuzz_journal(data: bytes) -> None:
    """read_journal_header, and a PipeJournal opened on the file (recover(),
    one pump of an empty pipe, expire, counters): what `drain --pipe` and
    the server do at start-up."""
    from logkit.backends.pipe import FrameDecoder
    from logkit.backends.pipejournal import PipeJournal, read_journal_header
    path = _put("f.journal", _fixed(data, lambda b: fix_frame_checksums(b, 4096)))
    try:
        read_journal_header(path)
    except LogkitError:
        pass
    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        try:
            j = PipeJournal(path, rfd, ListStorage(), FrameDecoder())
        except LogkitError:
            return
        try:
            j.recover()
            j.pump()
            j.expire(force=True)
            j.counters()
        except LogkitError:
            pass
        finally:
            j.close()
    finally:
        os.close(rfd)
        os.close(wfd)


def fuzz_journal_display(data: bytes) -> None:
    """`logkit display` of a pipe journal: describe_journal with its records."""
    from logkit.cli.inspection_files import describe_journal
    describe_journal(_put("d.journal", _fixed(data, lambda b: fix_frame_checksums(b, 4096))), records=True)


# ---------------------------------------------------------------- pipe frames

def fuzz_frames(data: bytes) -> None:
    """FrameDecoder.feed on the bytes, cut in two at a point the first byte
    picks (frames arrive in pieces); never raises, even LogkitError."""
    from logkit.backends.pipe import FrameDecoder
    data = _fixed(data, fix_frame_checksums)
    dec = FrameDecoder()
    cut = data[0] * 17 % (len(data) + 1) if data else 0
    out = dec.feed(data[:cut]) + dec.feed(data[cut:])
    for rec in out:
        if not isinstance(rec.text, str) or not isinstance(rec.data_class, str):
            raise RuleBroken(f"decoded record with non-str fields: {rec!r}")
        if not -250 <= rec.severity <= 250:
            raise RuleBroken(f"decoded record with severity {rec.severity}")
    if dec.unresolved() > dec.base + len(dec.buf):
        raise RuleBroken("unresolved() beyond the bytes fed")
    dec.expire(force=True)
    dec.counters()


# ---------------------------------------------------------------- config

def fuzz_config(data: bytes) -> None:
    """logkit.config.parse on the bytes as text."""
    from logkit.config import parse
    text = data.decode("utf-8", "replace")
    parse(text, file=os.path.join(scratch_dir(), "logkit.toml"))


# ---------------------------------------------------------------- print's expressions

def fuzz_select(data: bytes) -> None:
    """print's time and selection expressions: parse_point, parse_span,
    parse_severities, compile_patterns; a Selection built from what parsed,
    applied to a few messages."""
    from logkit import select as S
    text = data.decode("utf-8", "replace")
    parts = text.split("\x00")
    a = parts[0]
    b = parts[1] if len(parts) > 1 else a
    got = {}
    for key, fn in (("from_", lambda: S.parse_point(a, "--from", NOW_NS)),
                    ("to", lambda: S.parse_point(b, "--to", NOW_NS)),
                    ("for_", lambda: S.parse_span(b, "--for", NOW_NS)),
                    ("last", lambda: S.parse_span(a, "--last", NOW_NS)),
                    ("severities", lambda: S.parse_severities(a.split(","))),
                    ("match", lambda: S.compile_patterns([b], "--match"))):
        try:
            got[key] = fn()
        except LogkitError as e:
            _message_of(e)
    for p in ("from_", "to", "for_", "last"):
        if p in got:
            got[p].describe()
    kw = {k: v for k, v in got.items() if k != "match" or not v.regexes}
    for drop in ((), ("last",), ("for_", "last"), ("from_", "last", "for_")):
        try:
            sel = S.Selection(now_ns=NOW_NS, **{k: v for k, v in kw.items() if k not in drop})
        except LogkitError as e:
            _message_of(e)
            continue
        list(sel.apply(_MESSAGES))
        list(S.Selection(now_ns=NOW_NS, reverse=True,
                         **{k: v for k, v in kw.items() if k not in drop}).apply(_MESSAGES[::-1]))
        break


class _Msg:
    def __init__(self, seq, time, sev, text):
        self.sequence, self.time, self.severity, self.text = seq, time, sev, text
        self.data, self.data_class, self.process_id, self.thread_id = b"", "", 1, 1


_MESSAGES = [_Msg(i, NOW_NS - (10 - i) * 3_600_000_000_000, (i * 10) % 60, f"message {i}")
             for i in range(1, 11)]


# ---------------------------------------------------------------- record payloads

class _RecMsg:
    """A message with arbitrary data, for the formatters."""

    def __init__(self, data_class: str, data: bytes):
        self.sequence, self.time, self.severity, self.process_id, self.thread_id = 1, NOW_NS, 20, 1, 1
        self.text, self.data_class, self.data = "text", data_class, data

    @property
    def record(self):
        from logkit import record_info
        return record_info(self.data_class, self.data)

    @property
    def logger(self):
        return self.record.logger


def fuzz_record(data: bytes) -> None:
    """A record payload (and the older json/traceback classes): the input is
    CLASS NUL DATA.  record_decode, record_info, the 'record' formatter,
    format_message in every format, and --logger/--field selection must
    answer (None, empty parts, a hex dump) and never raise."""
    from logkit import formatters as F
    from logkit import record_info
    from logkit._segment import record_decode
    from logkit.select import FieldTests, LoggerPatterns
    cls, _, payload = data.partition(b"\x00")
    cls = cls.decode("utf-8", "replace")[:32]
    got = record_decode(payload)
    info = record_info(cls, payload)
    assert got is None or isinstance(got.fields, dict)
    assert isinstance(info.fields, dict) and isinstance(info.logger, str)
    F.format_record(payload)
    m = _RecMsg(cls, payload)
    for fmt in ("text", "short", "json"):
        F.format_message(m, fmt=fmt)
    LoggerPatterns(["web.*", "!web.db"])(info.logger)
    FieldTests(["user=alice", "n~^3", "ok"])(info.fields)


# ---------------------------------------------------------------- the rule

TARGETS = {
    "segment": fuzz_segment,
    "salvage": fuzz_salvage,
    "ledger": fuzz_ledger,
    "partition": fuzz_partition,
    "journal": fuzz_journal,
    "journal_display": fuzz_journal_display,
    "frames": fuzz_frames,
    "config": fuzz_config,
    "select": fuzz_select,
    "record": fuzz_record,
}


def _message_of(e: BaseException) -> str:
    msg = str(e)
    if not msg.strip():
        raise RuleBroken(f"{type(e).__name__} with an empty message") from e
    return msg


def check(name: str, data: bytes) -> None:
    """Run target `name` on `data`; raise unless it kept the rule."""
    try:
        TARGETS[name](data)
    except LogkitError as e:
        _message_of(e)
