"""The inspection library of the reading tools: a segment file's bytes as
docs/format.md names them.

Opening a possibly damaged segment (SegmentView, a private rebuilt copy of a
headerless one), its header fields with their offsets, the counters and the
listener table, and every record a walk finds, damaged ones included
(walk, account_for_allocation, describe_segment).  `logkit display` prints
what these return; `verify`, `stats` and `salvage` judge by them.
Partition files and pipe journals: logkit.cli.inspection_files.
"""
from __future__ import annotations

import mmap
import os
import struct
from typing import Any

from logkit import safefs
from logkit._segment import (HEADER_SIZE, MIN_SEGMENT_SIZE, Segment, crc32c, token_attempt, token_pid,
                             token_state)
from logkit.errors import InvalidArgument, LogkitError, SegmentDamaged, UnsupportedFormat
from logkit.salvager import process_alive

SEGMENT_MAGIC = b"LOGKITSG"
PARTITION_MAGIC = b"LKPART\x00\x01"
SENTINEL = b"\xff\xfeLK"                 # 0x4B4CFEFF, little-endian
STATES = {1: "reserved", 2: "committed", 3: "abandoned"}
MSG_FLAG_FILLER = 0x0001
MSG_FLAG_SEALED = 0x0002
_MSG = struct.Struct("<IIIhHQqIIIIHHIII")   # the 64-byte message header, format.md "Messages"
PREVIEW = 48                             # characters of text shown per record
CANDIDATES = 16                          # message headers examined inside one damaged range

# (offset, struct format, Segment.header() key, C name): docs/format.md, "Complete map".
HEADER_FIELDS = (
    (0, "8s", "magic", "LK_H_MAGIC"),
    (8, "<I", "version", "LK_H_VERSION"),
    (12, "<I", "header_size", "LK_H_HEADER_SIZE"),
    (16, "<Q", "region_size", "LK_H_REGION_SIZE"),
    (24, "16s", "uuid", "LK_H_UUID"),
    (40, "<Q", "sequence_base", "LK_H_SEQUENCE_BASE"),
    (48, "<I", "checksum_algorithm", "LK_H_CHECKSUM_ALG"),
    (52, "<I", "flags", "LK_H_FLAGS"),
    (56, "<q", "created", "LK_H_CREATED"),
    (64, "64s", "family", "LK_H_FAMILY"),
    (128, "256s", "previous", "LK_H_PREVIOUS"),
    (384, "<I", "identity_crc", "LK_H_IDENTITY_CRC"),
    (392, "<Q", "first_sequence_hint", "LK_H_FIRST_SEQUENCE"),
    (400, "<q", "first_time_hint", "LK_H_FIRST_TIME"),
    (408, "<Q", "last_sequence_hint", "LK_H_LAST_SEQUENCE"),
    (416, "<q", "last_time_hint", "LK_H_LAST_TIME"),
    (424, "<Q", "last_offset_hint", "LK_H_LAST_OFFSET"),
    (432, "<q", "out_of_service_time", "LK_H_OUT_OF_SERVICE_TIME"),
    (440, "<Q", "salvage_count", "LK_H_SALVAGE_COUNT"),
    (448, "<q", "salvage_time", "LK_H_SALVAGE_TIME"),
    (456, "<Q", "rotator", "LK_H_ROTATOR"),
    (464, "16s", "key_check", "LK_H_KEY_CHECK"),
    (480, "<H", "key_id", "LK_H_KEY_ID"),
    (512, "<Q", "reservation_word", "LK_H_RESERVATION"),
    (640, "<I", "wake_word", "LK_H_WAKE_WORD"),
    (644, "<I", "waiters", "LK_H_WAITERS"),
    (2048, "<I", "listener_count", "LK_H_LISTENER_COUNT"),
    (2052, "<I", "listener_slot_size", "LK_H_LISTENER_SLOT_SIZE"),
    (3712, "16s", "uuid_copy", "LK_H_UUID_COPY"),
)
# header() keys computed from the fields above, shown at the field they come from.
DERIVED_FIELDS = {"identity_crc_ok": 384, "in_service": 512, "reserved_count": 512, "next_offset": 512}
# (offset, stats() key, C name); the written counter is the sum of 16 shards, 64 bytes apart.
COUNTER_FIELDS = (
    (576, "refused_full", "LK_H_REFUSED_FULL"),
    (584, "refused_too_big", "LK_H_REFUSED_TOO_BIG"),
    (592, "refused_out_of_service", "LK_H_REFUSED_OOS"),
    (600, "abandoned", "LK_H_ABANDONED"),
    (768, "written", "LK_H_WRITTEN_SHARDS"),
)
LISTENERS_AT, LISTENER_SLOTS, LISTENER_SLOT_SIZE = 2112, 25, 64
_TIME_KEYS = {"created", "first_time_hint", "last_time_hint", "out_of_service_time", "salvage_time"}


# ---------------------------------------------------------------- small formatting

def iso(ns: int) -> str:
    """'2026-12-01T08:30:00.123456789Z', or a note for a value no clock gives."""
    from logkit.backends.plainfile import iso_time
    try:
        return iso_time(ns)
    except (OverflowError, OSError, ValueError):
        return "not a valid time"


def preview(text: str, width: int = PREVIEW) -> str:
    """A one-line, quoted excerpt: control characters escaped, cut at `width`."""
    out = []
    for ch in text:
        if ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
        if len(out) > width:
            return "'" + "".join(out[:width]) + "'..."
    return "'" + "".join(out) + "'"


def cstring(b: bytes) -> str:
    return bytes(b).split(b"\0", 1)[0].decode("utf-8", "replace")


# ---------------------------------------------------------------- opening

class NotASegment(InvalidArgument):
    """A file that is neither a segment nor a partition file."""


def file_kind(path: str) -> str:
    """'segment' or 'partition' for a file `display`, `verify` and `salvage`
    may treat as one; NotASegment, or LogkitError if it cannot be read.  A file
    whose magic is damaged still counts as a segment when the rest of its
    identity says so (header size 4096 at offset 12, region size = file size)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InvalidArgument(f"{path}: no such file") from None
    except OSError as e:
        raise LogkitError(f"{path}: {e.strerror}") from None
    if os.path.isdir(path):
        raise InvalidArgument(f"{path} is a directory, not a segment or partition file")
    try:
        # No link followed, a regular file only (a FIFO would block the open):
        # logkit.safefs raises UnsafePath naming it.
        with os.fdopen(safefs.open_file(path, os.O_RDONLY), "rb") as f:
            head = f.read(24)
    except LogkitError:
        raise
    except OSError as e:
        raise LogkitError(f"{path}: cannot read the file: {e.strerror}") from None
    if head[:8] == PARTITION_MAGIC:
        return "partition"
    if head[:8] == SEGMENT_MAGIC:
        return "segment"
    if len(head) == 24:
        hs, = struct.unpack_from("<I", head, 12)
        region, = struct.unpack_from("<Q", head, 16)
        if hs == HEADER_SIZE and region == st.st_size:
            return "segment"
    raise NotASegment(f"{path}: not a segment or partition file (no LOGKITSG or LKPART magic at "
                          f"offset 0, and no segment identity after it)")


PROBE_BYTES = 1 << 20                    # how far after the header headerless_segment() looks


def headerless_segment(path: str) -> bool:
    """Is `path`, which file_kind() refused, a segment whose header was lost
    (a crash without write-back left its first page zeros)?  True when its
    first 24 bytes are zeros, its size is a segment's, a message sentinel
    lies in the first MiB after the header, and messages with valid stubs
    follow the header.  verify and display then report the lost
    header and walk the messages; salvage still wants --force to rewrite it."""
    try:
        st = os.stat(path)
        if st.st_size < MIN_SEGMENT_SIZE or st.st_size % 8:
            return False
        with os.fdopen(safefs.open_file(path, os.O_RDONLY), "rb") as f:
            head = f.read(HEADER_SIZE + PROBE_BYTES)
    except (OSError, LogkitError):
        return False
    if any(head[:24]):
        return False
    # A message sentinel (an 8-aligned state word) early in the region, found
    # cheaply before anything walks the file: a large file of zeros or of
    # something else is refused at once, not scanned.
    at = head.find(SENTINEL, HEADER_SIZE)
    while at >= 0 and at % 8:
        at = head.find(SENTINEL, at + 1)
    if at < 0:
        return False
    seg = _rebuilt_copy(path)
    if seg is None:
        return False
    try:
        return any(r.kind == "committed" for r in seg.records(whole_region=True))
    finally:
        seg.close()


def map_file(path: str, private: bool = False) -> mmap.mmap:
    """The whole file mapped read-only (private=True: copy-on-write, so writes
    through it never reach the file).  LogkitError naming the file otherwise."""
    try:
        fd = safefs.open_file(path, os.O_RDONLY)       # no link followed, a regular file only
    except LogkitError:
        raise
    except OSError as e:
        raise LogkitError(f"{path}: cannot read the file: {e.strerror}") from None
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            raise SegmentDamaged(f"{path}: the file is empty")
        if private:
            return mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        return mmap.mmap(fd, size, prot=mmap.PROT_READ)
    except OSError as e:
        raise LogkitError(f"{path}: cannot map the file: {e.strerror}") from None
    finally:
        os.close(fd)


class SegmentView:
    """One segment region open for inspection: `seg` (None when not even an
    unchecked attach works), its raw bytes `region`, `problem` (what is wrong
    with the header, or None) and `key_problem` (a wrong or missing key)."""

    def __init__(self, name: str, region: memoryview, seg: Segment | None, problem: str | None = None,
                 key_problem: str | None = None, key_wrong: bool = False, owner: Any = None):
        self.name = name
        self.region = region
        self.seg = seg
        self.problem = problem
        self.key_problem = key_problem
        self.key_wrong = key_wrong
        self._owner = owner
        # seg walks a private copy whose damaged identity salvage's rebuild
        # replaced: its header and counters are not the file's.
        self.rebuilt = False

    @classmethod
    def open_file(cls, path: str, ring=None) -> "SegmentView":
        """Open a segment file read-only with key ring `ring` (or None); a
        damaged header is noted in .problem and the region attached without
        checks.  LogkitError (naming the file) if it cannot be read."""
        mm = map_file(path)
        region = memoryview(mm)
        try:
            seg, problem, rebuilt = None, None, None
            try:
                seg = Segment.open(path, readonly=True) if ring is None else Segment.open(path, readonly=True, key=ring)
            except SegmentDamaged as e:
                problem = str(e)
                seg = _attach_unchecked(mm, 0, len(mm), path)
                if seg is None or not identity_sound(seg):
                    # The identity itself is damaged (a lost header page):
                    # walk a private copy with salvage's rebuild.
                    if seg is not None:
                        seg.close()
                    seg = rebuilt = _rebuilt_copy(path)
            except UnsupportedFormat as e:
                problem = str(e)
            except OSError as e:
                raise LogkitError(f"{path}: cannot read the file: {e.strerror}") from None
            except LogkitError as e:          # WrongKey: walk it without the key
                from logkit.crypto import WrongKey
                if not isinstance(e, WrongKey):
                    raise
                seg = Segment.open(path, readonly=True)
                return cls(path, region, seg, None, str(e), True, mm)
            if seg is None:                   # a damaged header: walk the region all the same
                seg = _attach_unchecked(mm, 0, len(mm), path)
            view = cls(path, region, seg, problem, None, False, mm)
            view.rebuilt = seg is not None and seg is rebuilt
            if seg is not None and problem is not None and ring is not None:
                view._use_key(ring)
            elif seg is not None and seg.sealed and ring is not None and not seg.has_key:
                view.key_problem = (f"{path} is sealed under key id {seg.key_id}, which key file "
                                    f"{ring.path} does not hold: its messages are not opened")
            return view
        except BaseException:
            region.release()
            mm.close()
            raise

    @classmethod
    def attach(cls, mm, offset: int, length: int, name: str, ring=None) -> "SegmentView":
        """A region of a mapping (a partition half), attached without checks."""
        region = memoryview(mm)[offset:offset + length]
        seg = _attach_unchecked(mm, offset, length, name)
        problem = None
        if seg is not None:
            try:
                problem = seg.header_problem()
            except UnsupportedFormat as e:
                problem = str(e)
        view = cls(name, region, seg, problem)
        if seg is not None and ring is not None and seg.sealed:
            view._use_key(ring)
        return view

    def _use_key(self, ring) -> None:
        from logkit.crypto import WrongKey
        try:
            err = self.seg.rekey(ring)
        except WrongKey as e:
            self.key_problem, self.key_wrong = str(e), True
            return
        except LogkitError as e:
            self.key_problem = str(e)
            return
        if err is not None:
            self.key_problem = str(err)

    def close(self) -> None:
        if self.seg is not None:
            self.seg.close()
            self.seg = None
        self.region.release()
        if isinstance(self._owner, mmap.mmap):
            try:
                self._owner.close()
            except BufferError:
                pass                              # a view still alive; the mapping goes with it

    def __enter__(self) -> "SegmentView":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def identity_sound(seg: Segment) -> bool:
    """Does the header's identity block (magic, version, sizes, UUID, base:
    covered by the identity CRC) hold?  A segment cut short, or whose words
    were scribbled, can have a sound identity and still fail Segment.open."""
    try:
        return bool(seg.header().get("identity_crc_ok"))
    except LogkitError:
        return False


def _rebuilt_copy(path: str) -> Segment | None:
    """A segment file whose header identity is damaged, attached through a
    private copy-on-write mapping in which salvage's rebuild of the identity
    has run (logkit.salvager.rebuild_identity): the walk then judges its
    messages against the sequence base they carry, as salvage would.  The
    file itself is never written.  None if even that fails."""
    from logkit.salvager import rebuild_identity
    try:
        mm = map_file(path, private=True)
    except LogkitError:
        return None
    try:
        seg = Segment.from_buffer(mm, 0, len(mm), False, path=path, close_buffer=True, check_header=False)
    except (LogkitError, ValueError):
        mm.close()
        return None
    try:
        rebuild_identity(seg)
    except LogkitError:
        seg.close()
        return None
    return seg


def _attach_unchecked(mm, offset: int, length: int, name: str) -> Segment | None:
    try:
        return Segment.from_buffer(mm, offset, length, True, path=name, check_header=False)
    except (LogkitError, ValueError):
        return None


# ---------------------------------------------------------------- the header

def raw_header(region) -> dict:
    """The header fields decoded from the bytes alone, keyed as Segment.header()
    (used when the segment cannot be attached, and for fields header() lacks)."""
    out: dict[str, Any] = {}
    n = len(region)
    for off, fmt, key, _ in HEADER_FIELDS:
        size = struct.calcsize(fmt)
        if off + size > n:
            continue
        v = struct.unpack_from(fmt, region, off)[0]
        if key in ("uuid", "uuid_copy"):
            import uuid as _uuid
            v = str(_uuid.UUID(bytes=bytes(v)))
        elif key in ("family", "previous"):
            v = cstring(v)
        out[key] = v
    if n >= 388:
        out["identity_crc_ok"] = crc32c(bytes(region[0:384])) == out["identity_crc"]
    if "reservation_word" in out:
        w = out["reservation_word"]
        out["in_service"] = bool(w >> 63)
        out["reserved_count"] = (w >> 32) & 0x7FFFFFFF
        out["next_offset"] = (w & 0xFFFFFFFF) * 8
    if n >= LISTENERS_AT + LISTENER_SLOTS * LISTENER_SLOT_SIZE:
        out["listeners"] = raw_listeners(region)
    return out


def raw_listeners(region) -> list[dict]:
    out = []
    for i in range(LISTENER_SLOTS):
        pid, flags, interval, last = struct.unpack_from("<IIQQ", region, LISTENERS_AT + LISTENER_SLOT_SIZE * i)
        if pid:
            out.append({"slot": i, "pid": pid, "flags": flags, "min_interval_ns": interval, "last_wake_ns": last})
    return out


def raw_counters(region) -> dict:
    out: dict[str, Any] = {}
    if len(region) < HEADER_SIZE:
        return out
    for off, key, _ in COUNTER_FIELDS[:-1]:
        out[key] = struct.unpack_from("<Q", region, off)[0]
    out["written"] = sum(struct.unpack_from("<Q", region, 768 + 64 * i)[0] for i in range(16)) & (2 ** 64 - 1)
    w, = struct.unpack_from("<Q", region, 512)
    out["reserved"] = (w >> 32) & 0x7FFFFFFF
    out["in_service"] = bool(w >> 63)
    out["bytes_used"] = (w & 0xFFFFFFFF) * 8
    out["bytes_total"] = len(region)
    out["salvages"] = struct.unpack_from("<Q", region, 440)[0]
    return out


def header_of(view: SegmentView) -> dict:
    """Segment.header() when the segment is attached (plus the fields it does
    not give, from the bytes), else what the bytes alone say."""
    raw = raw_header(view.region)
    if view.seg is None or view.rebuilt:
        return raw
    try:
        h = dict(view.seg.header())
    except LogkitError:
        return raw
    for key in ("salvage_count", "salvage_time", "listener_count", "listener_slot_size", "uuid_copy"):
        if key in raw and key not in h:
            h[key] = raw[key]
    return h


def counters_of(view: SegmentView) -> dict:
    if view.seg is not None and not view.rebuilt:
        try:
            return dict(view.seg.stats())
        except LogkitError:
            pass
    return raw_counters(view.region)


def token_words(tok: int, partition: bool) -> str:
    """The rotation token (family segment) or half token (partition half) at 456, in words."""
    if tok == 0:
        return "0 (unclaimed: never rotated)" if not partition else "0 (live, never swapped)"
    if partition:
        from logkit.backends.partition import PHASE_NAMES as names
    else:
        from logkit.family import ROTATION_PHASES as names
    phase, attempt, pid = token_state(tok), token_attempt(tok), token_pid(tok)
    name = names.get(phase, f"unknown phase {phase}")
    return f"0x{tok:016X} (phase {phase}: {name}; attempt {attempt}; pid {pid})"


def field_value(key: str, v: Any, h: dict, partition_half: bool = False) -> str:
    """One header field's value in words."""
    if isinstance(v, (bytes, bytearray)):
        if key == "magic":
            ok = bytes(v) == SEGMENT_MAGIC
            return repr(bytes(v))[1:] + ("" if ok else "  (NOT the segment magic LOGKITSG)")
        return bytes(v).hex(" ") if any(v) else "zero"
    if key in _TIME_KEYS:
        return f"{v} ({iso(v)})" if v else "0 (none)"
    if key == "identity_crc":
        ok = h.get("identity_crc_ok")
        return f"0x{v:08X}" + ("" if ok is None else " (matches bytes 0..383)" if ok else
                                " (MISMATCH: bytes 0..383 do not give this checksum)")
    if key == "identity_crc_ok":
        return "yes" if v else "NO"
    if key == "flags":
        return f"{v}" + (" (SEALED)" if v & 1 else "")
    if key == "checksum_algorithm":
        return f"{v}" + (" (CRC-32C)" if v in (1, "crc32c") else "  (unknown algorithm)")
    if key == "rotator":
        return token_words(v, partition_half)
    if key == "reservation_word":
        return (f"0x{v:016X} ({'in service' if v >> 63 else 'OUT OF SERVICE'}, COUNT "
                f"{(v >> 32) & 0x7FFFFFFF}, NEXT {v & 0xFFFFFFFF} = offset {(v & 0xFFFFFFFF) * 8})")
    if key == "next_offset":
        size = h.get("region_size")
        bad = size is not None and not HEADER_SIZE <= v <= size
        return f"{v}" + ("  (implausible: outside the region; the word is damaged)" if bad else "")
    if key in ("family", "previous"):
        return repr(v) if v else "'' (none)"
    if key in ("in_service",):
        return "yes" if v else "no"
    return str(v)


def header_rows(h: dict, partition_half: bool = False) -> list[tuple[int | None, str, str, str]]:
    """(offset, C name, key, value) for every header field, in offset order."""
    rows: list[tuple[int | None, str, str, str]] = []
    known = set()
    for off, _, key, cname in HEADER_FIELDS:
        known.add(key)
        if key in h:
            rows.append((off, cname, key, field_value(key, h[key], h, partition_half)))
        for dkey, doff in DERIVED_FIELDS.items():
            if doff == off and dkey in h:
                known.add(dkey)
                rows.append((off, "", dkey, field_value(dkey, h[dkey], h, partition_half)))
    known.add("listeners")
    for key in sorted(set(h) - known):       # a field a newer logkit adds: shown all the same
        rows.append((None, "", key, str(h[key])))
    return rows


def listener_rows(h: dict) -> list[dict]:
    out = []
    for slot in h.get("listeners", []):
        d = dict(slot)
        d["alive"] = process_alive(int(d["pid"]))
        d["waiting"] = bool(d["flags"] & 1)
        out.append(d)
    return out


# ---------------------------------------------------------------- records

def decode_message(region, off: int) -> dict | None:
    """The 64-byte message header at `off`, decoded (None if it does not fit)."""
    if off < 0 or off + 64 > len(region):
        return None
    (sentinel, state, total, severity, flags, seq, t, pid, tid, tl, dl, cl, key_id, span,
     stub, checksum) = _MSG.unpack_from(region, off)
    return {"sentinel_ok": sentinel == 0x4B4CFEFF, "state_word": state, "total": total,
            "severity": severity, "flags": flags, "sequence": seq, "time": t, "pid": pid, "tid": tid,
            "text_length": tl, "data_length": dl, "class_length": cl, "key_id": key_id, "span": span,
            "stub_checksum": stub, "checksum": checksum}


def stub_checksum(region, off: int) -> int:
    return crc32c(bytes(region[off + 32:off + 56]), crc32c(bytes(region[off + 16:off + 24]),
                                                        crc32c(bytes(region[off + 8:off + 12]))))


def full_checksum(region, off: int, f: dict) -> int | None:
    """The checksum a message at `off` should carry (None: its lengths run past the region)."""
    n = f["text_length"] + f["class_length"] + f["data_length"] + (16 if f["key_id"] else 0)
    if off + 64 + n > len(region):
        return None
    return crc32c(bytes(region[off + 64:off + 64 + n]), crc32c(bytes(region[off + 8:off + 60])))


def _raw_fields(region, off: int, sealed_segment: bool) -> dict:
    f = decode_message(region, off) or {}
    out = {k: f[k] for k in ("severity", "flags", "time", "pid", "tid", "text_length", "data_length",
                             "key_id") if k in f}
    if f:
        a = off + 64 + f["text_length"]
        out["data_class"] = bytes(region[a:a + f["class_length"]]).decode("utf-8", "replace")
        out["sealed"] = bool(f["key_id"]) or (bool(f["flags"] & MSG_FLAG_SEALED))
    return out


def _raw_text(region, off: int, f: dict) -> str:
    if f.get("key_id"):
        return "[encrypted]"
    return bytes(region[off + 64:off + 64 + f["text_length"]]).decode("utf-8", "replace")


def candidates(region, start: int, end: int, limit: int = CANDIDATES) -> list[dict]:
    """Message headers (a sentinel on an 8-byte boundary) inside a damaged
    range, each with what is wrong with it; at most `limit` of them."""
    out = []
    chunk = bytes(region[start:min(end, len(region))])
    pos = 0
    while len(out) < limit:
        i = chunk.find(SENTINEL, pos)
        if i < 0:
            break
        pos = i + 1
        off = start + i
        if off % 8:
            continue
        f = decode_message(region, off)
        if f is None:
            break
        state = STATES.get(f["state_word"])
        c = {"offset": off, "state": state or f"unknown state {f['state_word']}",
             "sequence": f["sequence"], "total": f["total"], "problems": []}
        sealed = bool(f["key_id"])
        need = (64 + f["text_length"] + f["class_length"] + f["data_length"] + (16 if sealed else 0) + 7) & ~7
        if state is None:
            c["problems"].append(f"state word {f['state_word']} is not 1, 2 or 3")
        if f["total"] < 64 or f["total"] % 8 or off + f["total"] > len(region):
            c["problems"].append(f"total length {f['total']} is not a multiple of 8 of at least 64 "
                                 f"that fits the region")
        elif need != f["total"]:
            c["problems"].append(f"the lengths (text {f['text_length']}, class {f['class_length']}, "
                                 f"data {f['data_length']}) give {need} bytes, not the total {f['total']}")
        if state == "committed":
            want = full_checksum(region, off, f)
            c["checksum"] = "BAD" if want is None or want != f["checksum"] else "good"
            if want is not None and want != f["checksum"]:
                c["problems"].append(f"checksum BAD: stored 0x{f['checksum']:08X}, the bytes give 0x{want:08X}")
            if not -250 <= f["severity"] <= 250:
                c["problems"].append(f"severity {f['severity']} is outside -250..250")
        elif state is not None:
            want = stub_checksum(region, off)
            c["checksum"] = "good" if want == f["stub_checksum"] else "BAD"
            if want != f["stub_checksum"]:
                c["problems"].append(f"stub checksum BAD: stored 0x{f['stub_checksum']:08X}, "
                                     f"the bytes give 0x{want:08X}")
        if not c["problems"]:
            c["problems"].append("sound in itself, but out of place: its sequence number or offset does "
                                 "not follow the record before it")
        c["text"] = _raw_text(region, off, f) if state == "committed" and off + 64 + f["text_length"] <= len(region) else ""
        out.append(c)
    return out


def walk(view: SegmentView, texts: bool = True, authenticate: bool = True) -> list[dict]:
    """Every record of the whole region, as dicts: offset, length, state
    (committed, reserved, abandoned, gap, damaged), sequence, span, the
    header fields, checksum ('good'/'BAD'), seal ('-', 'ok', 'FAILED: why',
    'no key'), text, and for a damaged range the message headers found in it."""
    seg, region = view.seg, view.region
    if seg is None:
        return []
    try:
        finished_before = seg.stats()    # before the walk: see account_for_allocation
    except LogkitError:
        finished_before = None
    msgs = {m.offset: m for m in seg}
    sealed_segment = seg.sealed
    out = []
    try:
        for rec in seg.records(whole_region=True):
            d: dict[str, Any] = {"offset": rec.offset, "length": rec.length, "state": rec.kind,
                                 "sequence": rec.sequence, "span": rec.span}
            if rec.kind in ("committed", "reserved", "abandoned"):
                d.update(_raw_fields(region, rec.offset, sealed_segment))
            if rec.kind == "committed":
                m = msgs.get(rec.offset)
                if m is not None:
                    d["checksum"] = "good" if m.checksum_ok() else "BAD"
                    d["severity"], d["time"] = m.severity, m.time
                    d["sealed"] = bool(m.sealed)
                else:                               # found past the allocation end
                    f = decode_message(region, rec.offset)
                    d["checksum"] = "good" if full_checksum(region, rec.offset, f) == f["checksum"] else "BAD"
                d["seal"], text = _open_text(seg, m, region, rec.offset, texts, authenticate, sealed_segment)
                if texts:
                    d["text"] = text
            elif rec.kind == "reserved":
                d["checksum"] = "stub good"
                alive = process_alive(int(d.get("pid", 0)))
                d["writer_alive"] = alive
                d["note"] = (f"open reservation: writer pid {d.get('pid')} "
                             f"({'alive' if alive else 'gone'}) reserved it at {iso(d.get('time', 0))}")
            elif rec.kind == "abandoned":
                d["checksum"] = "stub good"
                if d.get("flags", 0) & MSG_FLAG_FILLER:
                    d["note"] = f"salvage filler for {rec.span} sequence number(s) of claims that left no stub"
                else:
                    d["note"] = "abandoned reservation"
            elif rec.kind == "gap":
                d["note"] = "gap: claims whose writers never published a stub"
            else:
                d["candidates"] = candidates(region, rec.offset, rec.offset + rec.length)
                d["note"] = f"damaged: {rec.length} bytes that are no valid record"
            out.append(d)
        account_for_allocation(seg, region, out, counters=not view.rebuilt, finished_before=finished_before)
    finally:
        msgs.clear()
    return out


def _as_damage(region, r: dict, why: str) -> None:
    r["state"] = "damaged"
    r["candidates"] = candidates(region, r["offset"], r["offset"] + r["length"])
    r["note"] = f"damaged: {r['length']} bytes {why}"


def account_for_allocation(seg: Segment, region, out: list[dict], counters: bool = True,
                           finished_before: dict | None = None) -> None:
    """Make a walk name every allocated byte that holds no record, from the
    header's reservation word and counters (used only when the header's
    identity is sound: a damaged header's counters are not evidence).

    * The allocation's tail: records(whole_region=True) stops at the last
      non-zero byte, but everything below NEXT was handed to writers.  Zeros
      between the last record and NEXT extend a damaged range that ends
      there, or are a range of their own (below).
    * A gap is a run whose first word is zero.  A writer killed between its
      claim and its stub leaves one, and takes one sequence number with it;
      so do lost pages (a crash without write-back), which take finished
      messages.  The counters tell them apart: claims not finished are
      reserved - written - abandoned - the open stubs found.  When the
      sequence numbers missing across the gaps exceed that, or a gap misses
      none, the gaps are damage: lost messages, not claims in flight.  On a
      live segment the walk and the counters are not one instant: the
      written and abandoned counters are taken from `finished_before` (read
      before the walk) and the reservation count after it, so claims that
      finish or start meanwhile only widen the allowance (no false damage).
    * Without counters to trust (counters=False: a header rebuilt from the
      messages), a gap that is not all zeros is damage: a claim that never
      got its stub is zeros to its end, a lost page is zeros followed by the
      tail of the message that crossed out of it.
    """
    if not counters:
        for r in out:
            if r["state"] == "gap" and any(region[r["offset"]:r["offset"] + r["length"]]):
                _as_damage(region, r, "of zeros and then no valid record (a lost page, not a claim)")
        return
    try:
        h = seg.header()
    except LogkitError:
        return
    if not h.get("identity_crc_ok"):
        return
    base, nxt, size = h["sequence_base"], h["next_offset"], h["region_size"]
    if not HEADER_SIZE <= nxt <= size:
        return
    nxt = min(nxt, len(region))          # a file cut short: what is left of the allocation
    end = max((r["offset"] + r["length"] for r in out), default=HEADER_SIZE)
    if end < nxt:
        last = out[-1] if out else None
        if last is not None and last["state"] == "damaged" and last["offset"] + last["length"] == end:
            last["length"] = nxt - last["offset"]
            last["note"] = f"damaged: {last['length']} bytes that are no valid record"
        else:
            out.append({"offset": end, "length": nxt - end, "state": "gap", "sequence": None, "span": None,
                        "note": "gap: claims whose writers never published a stub"})
    top = base + h["reserved_count"]
    gaps = []
    prev = base
    for i, r in enumerate(out):
        if r["state"] in ("committed", "reserved", "abandoned") and r["sequence"] is not None:
            prev = r["sequence"] + (r["span"] or 1)
        elif r["state"] == "gap":
            after = next((x["sequence"] for x in out[i + 1:]
                          if x["state"] in ("committed", "reserved", "abandoned") and x["sequence"] is not None),
                         top)
            gaps.append((r, max(0, after - prev)))
    if not gaps:
        return
    open_stubs = sum(1 for r in out if r["state"] == "reserved")
    if finished_before is None:
        try:
            finished_before = seg.stats()
        except LogkitError:
            return
    unfinished = max(0, h["reserved_count"] - finished_before["written"] - finished_before["abandoned"]
                     - open_stubs)
    missing = sum(n for _, n in gaps)
    for r, n in gaps:
        if missing > unfinished or n == 0:
            _as_damage(region, r, f"of zeros where {n} sequence number(s) were; the counters leave "
                                  f"{unfinished} claim(s) unfinished, so these are lost messages (lost "
                                  "pages), not claims in flight")


def _open_text(seg, m, region, off, texts, authenticate, sealed_segment):
    """(seal status, text) of a committed message: the seal is '-' (not
    sealed), 'ok', 'FAILED: why' or 'no key'."""
    sealed = (m.sealed if m is not None else bool(decode_message(region, off)["key_id"])) or sealed_segment
    if not sealed:
        if not texts:
            return "-", ""
        return "-", (m.text if m is not None else _raw_text(region, off, decode_message(region, off)))
    if not seg.has_key or m is None:
        return "no key", "[encrypted]"
    if not authenticate:
        return "-", ""
    try:
        text = m.text
        m.data                                      # opening authenticates text and data together
        return "ok", text
    except LogkitError as e:
        return f"FAILED: {e}", "[failed authentication]"


def summary_of(records: list[dict]) -> dict:
    s = {"committed": 0, "reserved": 0, "abandoned": 0, "gaps": 0, "gap_bytes": 0,
         "damaged": 0, "damaged_bytes": 0}
    for r in records:
        k = r["state"]
        if k == "gap":
            s["gaps"] += 1
            s["gap_bytes"] += r["length"]
        elif k == "damaged":
            s["damaged"] += 1
            s["damaged_bytes"] += r["length"]
        else:
            s[k] += 1
    return s


# ---------------------------------------------------------------- one segment, described

def describe_segment(view: SegmentView, partition_half: bool = False, records: bool = True) -> dict:
    """Everything `display` shows of one segment region, as plain data (the
    --json output, and what the text is printed from)."""
    h = header_of(view)
    out: dict[str, Any] = {
        "name": view.name,
        "problems": [p for p in (view.problem, view.key_problem,
                                 view.seg.key_check_problem if view.seg is not None else None) if p],
        "header": [{"offset": off, "c_name": c, "field": k, "value": jsonable(h.get(k)), "shown": v}
                   for off, c, k, v in header_rows(h, partition_half)],
        "counters": _counter_rows(counters_of(view)),
        "listeners": listener_rows(h),
    }
    if view.seg is None:
        out["problems"].append(f"{view.name}: the region cannot be walked (too small, or not a segment)")
    if records:
        recs = walk(view)
        out["records"] = recs
        out["summary"] = summary_of(recs)
    return out


def _counter_rows(c: dict) -> list[dict]:
    offsets = {k: (off, cname) for off, k, cname in COUNTER_FIELDS}
    offsets.update({"reserved": (512, "LK_H_RESERVATION"), "in_service": (512, "LK_H_RESERVATION"),
                    "bytes_used": (512, "LK_H_RESERVATION"), "bytes_total": (16, "LK_H_REGION_SIZE"),
                    "salvages": (440, "LK_H_SALVAGE_COUNT")})
    return [{"offset": offsets.get(k, (None, ""))[0], "c_name": offsets.get(k, (None, ""))[1],
             "counter": k, "value": v} for k, v in c.items()]


def jsonable(v):
    """`v` in a form json.dumps takes (bytes as hex, through lists and dicts), for --json."""
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    return v
