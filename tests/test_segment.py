"""Unit tests of the single-process Segment API (pyx/logkit/_segment.pyx) and of
the on-disk format described in pyx/include/lk_segment.h."""
import mmap
import os
import stat
import struct
import threading

import pytest

import logkit
from logkit import (
    HEADER_SIZE,
    MAX_SEGMENT_SIZE,
    MIN_SEGMENT_SIZE,
    InvalidArgument,
    Limits,
    LogkitError,
    MessageTooBig,
    NoSuchMessage,
    OutOfService,
    ReadOnlySegment,
    Segment,
    SegmentClosed,
    SegmentDamaged,
    SegmentExists,
    SegmentFull,
    SegmentNotFound,
    crc32c,
    parse_size,
)
from logkit import _segment

SENTINEL = 0x4B4CFEFF
COMMITTED, RESERVED, ABANDONED = 2, 1, 3
MSG = struct.Struct("<IIIhHQqIIIIHHIII")   # the 64-byte message header
assert MSG.size == 64


# ---------------------------------------------------------------- helpers

def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def py_crc32c(data, crc=0):
    """Independent bitwise-table CRC-32C (Castagnoli, reflected 0x82F63B78)."""
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def parse_message(buf, off):
    (sentinel, state, total, severity, flags, sequence, time, pid, tid,
     text_len, data_len, cls_len, key_id, span, reserved, checksum) = MSG.unpack_from(buf, off)
    p = off + 64
    text = bytes(buf[p:p + text_len])
    cls = bytes(buf[p + text_len:p + text_len + cls_len])
    data = bytes(buf[p + text_len + cls_len:p + text_len + cls_len + data_len])
    return dict(sentinel=sentinel, state=state, total=total, severity=severity, flags=flags,
                sequence=sequence, time=time, pid=pid, tid=tid, text_len=text_len,
                data_len=data_len, cls_len=cls_len, key_id=key_id, span=span,
                reserved=reserved, checksum=checksum, text=text, cls=cls, data=data)


def file_bytes(path):
    with open(path, "rb") as f:
        return f.read()


# ---------------------------------------------------------------- create / open

def test_create_makes_file_of_size_and_mode(segment_path):
    old = os.umask(0o077)       # the mode must not depend on the umask
    try:
        seg = Segment.create(segment_path, size=1 << 16, family="app")
    finally:
        os.umask(old)
    try:
        st = os.stat(segment_path)
        assert st.st_size == 1 << 16
        assert stat.S_IMODE(st.st_mode) == 0o640
        assert seg.size == 1 << 16
        assert seg.family == "app"
        assert seg.in_service
        assert seg.sequence_base == 1
        assert seg.readonly is False
        assert seg.path == os.fspath(segment_path)
        h = seg.header()
        assert h["magic"] == b"LOGKITSG"
        assert h["version"] == logkit.FORMAT_VERSION == 3
        assert h["header_size"] == HEADER_SIZE == 4096
        assert h["region_size"] == 1 << 16
        assert h["identity_crc_ok"]
        assert h["next_offset"] == HEADER_SIZE
        assert h["reserved_count"] == 0
        assert list(seg) == []
        # no temporary files left behind in the directory
        assert sorted(os.listdir(segment_path.parent)) == [segment_path.name]
    finally:
        seg.close()


def test_create_accepts_size_strings(tmp_path):
    for i, (spec, expected) in enumerate([("64KiB", 65536), ("1MiB", 1 << 20), ("8192", 8192),
                                          (" 16 kib ", 16384), ("1M", 1 << 20)]):
        with Segment.create(tmp_path / f"s{i}.seg", size=spec) as seg:
            assert seg.size == expected
            assert os.path.getsize(tmp_path / f"s{i}.seg") == expected


@pytest.mark.parametrize("value, expected", [
    (1048576, 1048576), ("1MiB", 1 << 20), ("64KiB", 64 << 10), ("8M", 8 << 20),
    ("2GiB", 2 << 30), ("1kb", 1000), ("3MB", 3_000_000), ("12", 12), ("5b", 5), ("1g", 1 << 30),
])
def test_parse_size_valid(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", ["", "MiB", "abc", "1.5MiB", "12XB", "-1MiB", "1e6", "8 Mi B",
                                   True, False, 1.5, None, b"8MiB", [8]])
def test_parse_size_invalid(value):
    with pytest.raises(InvalidArgument):
        parse_size(value)


def test_parse_size_non_ascii_digit_is_invalid_argument():
    # str.isdigit() accepts superscripts that int() rejects; the caller must
    # still get InvalidArgument (a LogkitError), not a bare ValueError.
    with pytest.raises(InvalidArgument):
        parse_size("\u00b2MiB")


@pytest.mark.parametrize("size, why", [
    (MIN_SEGMENT_SIZE - 8, "below the minimum"),
    (0, "below the minimum"),
    (-8192, "below the minimum"),
    (MAX_SEGMENT_SIZE + 8, "above the maximum"),
    (MIN_SEGMENT_SIZE + 4, "not a multiple of 8"),
    (MIN_SEGMENT_SIZE + 1, "not a multiple of 8"),
    ("4KiB", "below the minimum"),
    ("33GiB", "above the maximum"),
    ("lots", "not a size"),
])
def test_create_rejects_bad_sizes(segment_path, size, why):
    with pytest.raises(InvalidArgument, match=why):
        Segment.create(segment_path, size=size)
    assert not segment_path.exists()


def test_create_minimum_size_works(segment_path):
    with Segment.create(segment_path, size=MIN_SEGMENT_SIZE) as seg:
        assert seg.write("x") == 1


def test_create_over_existing_file_raises_segment_exists(segment_path):
    segment_path.write_bytes(b"not a segment")
    with pytest.raises(SegmentExists):
        Segment.create(segment_path)
    assert segment_path.read_bytes() == b"not a segment"
    assert isinstance(SegmentExists("x"), FileExistsError)


def test_create_over_existing_segment_raises_segment_exists(segment):
    with pytest.raises(SegmentExists):
        Segment.create(segment.path)


def test_create_in_missing_directory(tmp_path):
    with pytest.raises(SegmentNotFound):
        Segment.create(tmp_path / "nope" / "x.seg")


def test_open_missing_file_raises_segment_not_found(tmp_path):
    with pytest.raises(SegmentNotFound):
        Segment.open(tmp_path / "missing.seg")
    with pytest.raises(SegmentNotFound):
        Segment.open(tmp_path / "missing.seg", readonly=True)
    assert issubclass(SegmentNotFound, FileNotFoundError)


def test_open_non_segment_raises_segment_damaged(tmp_path):
    p = tmp_path / "junk.seg"
    p.write_bytes(b"\x01" * 8192)
    with pytest.raises(SegmentDamaged, match="magic"):
        Segment.open(p)
    small = tmp_path / "small.seg"
    small.write_bytes(b"LOGKITSG" + b"\0" * 100)
    with pytest.raises(SegmentDamaged, match="too small"):
        Segment.open(small)


def test_open_detects_identity_damage(segment):
    segment.write("x")
    path = segment.path
    segment.close()
    data = bytearray(file_bytes(path))
    data[70] ^= 0x01        # inside the family name: covered by the identity CRC
    with open(path, "r+b") as f:
        f.write(data)
    with pytest.raises(SegmentDamaged, match="identity"):
        Segment.open(path)


def test_create_rejects_bad_names_and_bases(tmp_path):
    with pytest.raises(InvalidArgument):
        Segment.create(tmp_path / "a.seg", family="x" * 64)
    with pytest.raises(InvalidArgument):
        Segment.create(tmp_path / "a.seg", family="a\0b")
    with pytest.raises(InvalidArgument):
        Segment.create(tmp_path / "a.seg", previous="p" * 256)
    with pytest.raises(InvalidArgument):
        Segment.create(tmp_path / "a.seg", sequence_base=0)
    assert not (tmp_path / "a.seg").exists()
    with Segment.create(tmp_path / "a.seg", family="f" * 63, previous="/x/prev.seg",
                        sequence_base=500) as seg:
        assert seg.family == "f" * 63
        assert seg.previous == "/x/prev.seg"
        assert seg.write("first") == 500
        assert seg.write("second") == 501


def test_reopen_sees_messages_and_identity(segment):
    uid, created = segment.uuid, segment.created
    segment.write("persisted", severity=30, data=b"\x00\x01", data_class="raw", time=123)
    path = segment.path
    segment.close()
    with Segment.open(path) as seg:
        assert seg.uuid == uid and seg.created == created and seg.family == "test"
        (m,) = list(seg)
        assert (m.text, m.severity, bytes(m.data), m.data_class, m.time) == \
            ("persisted", 30, b"\x00\x01", "raw", 123)
        assert seg.write("more") == 2


# ---------------------------------------------------------------- readonly

def test_readonly_segment_refuses_writes(segment):
    segment.write("before")
    with Segment.open(segment.path, readonly=True) as ro:
        assert ro.readonly
        assert [m.text for m in ro] == ["before"]
        with pytest.raises(ReadOnlySegment):
            ro.write("nope")
        with pytest.raises(ReadOnlySegment):
            ro.reserve(4)
        with pytest.raises(ReadOnlySegment):
            ro.take_out_of_service()
        with pytest.raises(ReadOnlySegment):
            ro.put_in_service()
        # the refusals changed nothing, and the reader still sees new messages
        segment.write("after")
        assert [m.text for m in ro] == ["before", "after"]
        assert ro.stats()["written"] == 2
    assert segment.stats()["reserved"] == 2


def test_readonly_file_permissions(segment):
    segment.write("x")
    path = segment.path
    segment.close()
    os.chmod(path, 0o440)
    try:
        with Segment.open(path, readonly=True) as ro:
            assert [m.text for m in ro] == ["x"]
    finally:
        os.chmod(path, 0o640)


# ---------------------------------------------------------------- severity

@pytest.mark.parametrize("sev", [-250, -1, 0, 20, 250])
def test_severity_in_range_accepted(segment, sev):
    segment.write("x", severity=sev)
    with segment.reserve(1) as r:
        r.text[:] = b"y"
    r2 = segment.reserve(1)
    r2.text[:] = b"z"
    r2.finish(severity=sev)
    assert [m.severity for m in segment] == [sev, 20, sev]


@pytest.mark.parametrize("sev", [-251, 251, 1000, -32768, 32767, 40000])
def test_severity_out_of_range_rejected(segment, sev):
    with pytest.raises(InvalidArgument, match="severity"):
        segment.write("x", severity=sev)
    r = segment.reserve(1)
    with pytest.raises(InvalidArgument, match="severity"):
        r.finish(severity=sev)
    assert not r.finished
    r.text[:] = b"k"
    r.finish(severity=1)       # the reservation is still usable after a refusal
    assert [(m.text, m.severity) for m in segment] == [("k", 1)]
    assert segment.stats()["reserved"] == 1


def test_huge_severity_is_invalid_argument(segment):
    # Documented: "InvalidArgument (severity outside -250..250)".  A value that
    # does not fit a C int must be refused the same way, not with OverflowError.
    with pytest.raises(InvalidArgument):
        segment.write("x", severity=1 << 40)


# ---------------------------------------------------------------- write / read

def test_round_trip_every_field(segment):
    text = "h\u00e9llo w\u00f6rld \u65e5\u672c\u8a9e \U0001F600 \u0000 nul"
    data = bytes(range(256)) + b"\xff\xfe\x00LK"
    seq = segment.write(text, severity=-17, data=data, data_class="my.cl\u00e4ss", time=1_234_567_890_123)
    assert seq == 1
    (m,) = list(segment)
    assert m.sequence == 1
    assert m.time == 1_234_567_890_123
    assert m.severity == -17
    assert m.process_id == os.getpid()
    assert m.thread_id == threading.get_native_id()
    assert m.text == text
    assert bytes(m.text_bytes) == text.encode("utf-8")
    assert m.data_class == "my.cl\u00e4ss"
    assert bytes(m.data) == data
    assert m.data.readonly and m.text_bytes.readonly
    with pytest.raises(TypeError):
        m.data[0] = 1
    assert m.checksum_ok()
    assert m.key_id == 0
    assert m.offset == HEADER_SIZE
    tlen, clen = len(text.encode()), len("my.cl\u00e4ss".encode())
    assert m.size == (64 + tlen + clen + len(data) + 7) // 8 * 8
    assert m.to_dict() == {"sequence": 1, "time": 1_234_567_890_123, "severity": -17,
                           "process_id": os.getpid(), "thread_id": threading.get_native_id(),
                           "text": text, "data_class": "my.cl\u00e4ss", "data": data}
    assert "seq=1" in repr(m)


def test_bytes_text_and_buffer_data(segment):
    segment.write(b"raw \xff bytes", data=bytearray(b"ba"))
    segment.write("mv", data=memoryview(b"0123456789")[2:5])
    segment.write("arr", data=memoryview(bytes(range(8))).cast("I"))
    segment.write("none", data=None)
    ms = list(segment)
    assert bytes(ms[0].text_bytes) == b"raw \xff bytes"
    assert ms[0].text == "raw \ufffd bytes"           # undecodable bytes replaced
    assert bytes(ms[0].data) == b"ba"
    assert bytes(ms[1].data) == b"234"
    assert bytes(ms[2].data) == bytes(range(8))
    assert bytes(ms[3].data) == b"" and ms[3].data_class == ""


def test_empty_message(segment):
    segment.write("")
    (m,) = list(segment)
    assert m.text == "" and bytes(m.data) == b"" and m.data_class == "" and m.size == 64


def test_write_rejects_wrong_types(segment):
    with pytest.raises(InvalidArgument):
        segment.write(123)
    with pytest.raises(InvalidArgument):
        segment.write(bytearray(b"x"))
    with pytest.raises(InvalidArgument):
        segment.write("x", data_class=b"cls")
    with pytest.raises(InvalidArgument):
        segment.reserve(1, data_class=b"cls")
    assert list(segment) == []
    assert segment.stats()["reserved"] == 0


def test_sequences_offsets_and_default_time(segment):
    import time as _t
    before = _t.time_ns()
    seqs = [segment.write(f"m{i}" * i) for i in range(10)]
    after = _t.time_ns()
    assert seqs == list(range(1, 11))
    ms = list(segment)
    assert [m.sequence for m in ms] == seqs
    assert all(before <= m.time <= after for m in ms)
    assert all(a.time <= b.time for a, b in zip(ms, ms[1:]))
    # messages are contiguous, each 8-aligned
    off = HEADER_SIZE
    for m in ms:
        assert m.offset == off and m.offset % 8 == 0
        off += m.size
    assert segment.used() == off
    assert segment.header()["next_offset"] == off


def test_message_bytes_match_the_format(segment):
    """Every field sits where lk_segment.h says, the stub checksum (offset 56)
    covers the fields fixed at reservation, and the checksum is CRC-32C of
    bytes 8..59 followed by the payload (text, data-class name, data)."""
    specs = [("", b"", ""), ("abc", b"", ""), ("t\u00fcxt", b"\x00\xff" * 13, "cls"),
             ("x" * 100, bytes(range(200)), "a.b.c"), ("", b"d", "")]
    for i, (t, d, c) in enumerate(specs):
        segment.write(t, severity=i * 7 - 10, data=d, data_class=c, time=1000 + i)
    segment.sync()
    buf = file_bytes(segment.path)
    ms = list(segment)
    assert len(ms) == len(specs)
    for i, (m, (t, d, c)) in enumerate(zip(ms, specs)):
        f = parse_message(buf, m.offset)
        assert f["sentinel"] == SENTINEL
        assert buf[m.offset:m.offset + 4] == b"\xff\xfeLK"
        assert f["state"] == COMMITTED
        assert f["total"] == m.size == (64 + len(t.encode()) + len(d) + len(c) + 7) // 8 * 8
        assert f["severity"] == i * 7 - 10
        assert f["flags"] == 0 and f["key_id"] == 0 and f["span"] == 1
        o = m.offset       # stub checksum: bytes 8..11, 16..23, 32..55
        assert f["reserved"] == py_crc32c(buf[o + 8:o + 12] + buf[o + 16:o + 24] + buf[o + 32:o + 56])
        assert f["sequence"] == i + 1
        assert f["time"] == 1000 + i
        assert f["pid"] == os.getpid()
        assert f["tid"] == threading.get_native_id()
        assert (f["text"], f["cls"], f["data"]) == (t.encode(), c.encode(), d)
        payload_len = f["text_len"] + f["data_len"] + f["cls_len"]
        payload = buf[m.offset + 64:m.offset + 64 + payload_len]
        expected = py_crc32c(buf[m.offset + 8:m.offset + 60] + payload)
        assert f["checksum"] == expected
        assert crc32c(buf[m.offset + 8:m.offset + 60] + payload) == expected
        # zero padding to the 8-byte boundary
        assert buf[m.offset + 64 + payload_len:m.offset + f["total"]] == \
            b"\0" * (f["total"] - 64 - payload_len)
    # header identity CRC covers bytes 0..383
    (ident,) = struct.unpack_from("<I", buf, 384)
    assert ident == py_crc32c(buf[:384])
    assert buf[:8] == b"LOGKITSG"
    (word,) = struct.unpack_from("<Q", buf, 512)
    assert word >> 63 == 1                                  # in service
    assert (word >> 32) & ((1 << 31) - 1) == len(specs)    # COUNT
    assert (word & 0xFFFFFFFF) * 8 == segment.used()        # NEXT


def test_damaged_checksum_hides_message(segment):
    for i in range(3):
        segment.write(f"message {i}")
    ms = list(segment)
    victim = ms[1].offset
    segment.close()
    path = segment_path = ms[1].segment.path
    data = bytearray(file_bytes(path))
    data[victim + 64] ^= 0x20            # one bit of the text
    with open(segment_path, "r+b") as f:
        f.write(data)
    with Segment.open(path) as seg:
        assert [m.text for m in seg] == ["message 0", "message 2"]
        assert [r.kind for r in seg.records()] == ["committed", "damaged", "committed"]


# ---------------------------------------------------------------- reserve / finish

def test_reserve_and_finish(segment):
    r = segment.reserve(5, 3, data_class="cls")
    assert r.sequence == 1 and r.offset == HEADER_SIZE and not r.finished
    assert len(r.text) == 5 and len(r.data) == 3
    r.text[:] = b"hello"
    r.data[:] = b"\x01\x02\x03"
    # not visible until finished; the reader counts it as an open reservation
    it = segment.messages()
    assert list(it) == []
    assert it.open_reservations == [(HEADER_SIZE, 1)]
    assert segment.write("after") == 2
    assert [m.text for m in segment] == ["after"]         # readers step over the stub
    assert r.finish(severity=7, time=99) == 1
    assert r.finished
    ms = list(segment)
    assert [(m.sequence, m.text, bytes(m.data), m.data_class, m.severity, m.time) for m in ms] == \
        [(1, "hello", b"\x01\x02\x03", "cls", 7, 99), (2, "after", b"", "", 20, ms[1].time)]
    assert ms[0].checksum_ok()
    with pytest.raises(InvalidArgument):
        r.finish()
    with pytest.raises(InvalidArgument):
        r.text
    with pytest.raises(InvalidArgument):
        r.data
    st = segment.stats()
    assert st["reserved"] == 2 and st["written"] == 2


def test_finish_releases_the_writable_views(segment):
    r = segment.reserve(4)
    view = r.text
    view[:] = b"good"
    r.finish()
    with pytest.raises(ValueError):
        view[:] = b"evil"          # writing into a committed message must be impossible
    assert [m.text for m in segment] == ["good"]


def test_reserve_default_time_is_finish_time(segment):
    import time as _t
    r = segment.reserve(1)
    r.text[:] = b"x"
    t0 = _t.time_ns()
    r.finish()
    (m,) = list(segment)
    assert m.time >= t0


def test_reserve_rejects_negative_lengths(segment):
    with pytest.raises(InvalidArgument):
        segment.reserve(-1)
    with pytest.raises(InvalidArgument):
        segment.reserve(1, -1)
    assert segment.stats()["reserved"] == 0


def test_reservation_context_manager_finishes(segment):
    with segment.reserve(2, 1) as r:
        r.text[:] = b"ok"
        r.data[:] = b"!"
    assert r.finished
    (m,) = list(segment)
    assert (m.text, bytes(m.data), m.severity) == ("ok", b"!", 20)


def test_reservation_context_manager_finish_inside_block(segment):
    with segment.reserve(2) as r:
        r.text[:] = b"ok"
        r.finish(severity=5)
    assert [(m.text, m.severity) for m in segment] == [("ok", 5)]


def test_reservation_context_manager_abandons_on_exception(segment):
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with segment.reserve(5) as r:
            r.text[:] = b"never"
            raise Boom()
    assert r.finished
    segment.write("next")
    assert [m.text for m in segment] == ["next"]
    recs = segment.records()
    assert [(x.kind, x.sequence) for x in recs] == [("abandoned", 1), ("committed", 2)]
    it = segment.messages()
    list(it)
    assert it.abandoned == 1
    st = segment.stats()
    assert st["abandoned"] == 1 and st["written"] == 1 and st["reserved"] == 2
    r.abandon()                    # idempotent
    assert segment.stats()["abandoned"] == 1


def test_abandon_explicitly(segment):
    r = segment.reserve(3)
    r.abandon()
    with pytest.raises(InvalidArgument):
        r.finish()
    assert list(segment) == []
    assert segment.scan()["abandoned"] == 1
    assert segment.stats()["abandoned"] == 1


# ---------------------------------------------------------------- find / limits

def _fill(seg, n, t0=10_000, step=10):
    for i in range(n):
        seg.write(f"m{i}", time=t0 + i * step)


def test_find_by_sequence(segment):
    _fill(segment, 20)
    for s in range(1, 21):
        m = segment.find(sequence=s)
        assert m.sequence == s and m.text == f"m{s - 1}"
    assert segment.find(sequence=0).sequence == 1
    with pytest.raises(NoSuchMessage):
        segment.find(sequence=21)
    with pytest.raises(NoSuchMessage):
        segment.find(sequence=1 << 70)
    assert issubclass(NoSuchMessage, LookupError)


def test_find_by_sequence_skips_missing(segment):
    segment.write("one")
    r = segment.reserve(1)         # sequence 2 stays open
    segment.write("three")
    assert segment.find(sequence=2).sequence == 3
    r.abandon()
    assert segment.find(sequence=2).text == "three"


def test_find_by_time(segment):
    _fill(segment, 20, t0=10_000, step=10)
    assert segment.find(time=0).sequence == 1
    assert segment.find(time=10_000).sequence == 1
    assert segment.find(time=10_001).sequence == 2
    assert segment.find(time=10_050).sequence == 6
    assert segment.find(time=10_190).sequence == 20
    assert segment.find(time=-(1 << 80)).sequence == 1
    with pytest.raises(NoSuchMessage):
        segment.find(time=10_191)
    with pytest.raises(NoSuchMessage):
        segment.find(time=1 << 80)


def test_find_argument_errors_and_empty(segment):
    with pytest.raises(InvalidArgument):
        segment.find()
    with pytest.raises(InvalidArgument):
        segment.find(sequence=1, time=1)
    with pytest.raises(NoSuchMessage):
        segment.find(sequence=1)
    with pytest.raises(NoSuchMessage):
        segment.find(time=0)


def test_limits_empty_and_small(segment):
    assert segment.limits() is None
    segment.write("a", time=5)
    assert segment.limits() == Limits(1, 5, 1, 5)
    segment.write("b", time=7)
    assert segment.limits() == Limits(1, 5, 2, 7)


@pytest.mark.parametrize("n", [63, 64, 65, 66, 100, 129, 200])
def test_limits_exact_beyond_the_hint(segment, n):
    _fill(segment, n, t0=1_000, step=3)
    h = segment.header()
    # the header hint is only refreshed every 64 messages...
    assert h["last_sequence_hint"] == 1 + 64 * ((n - 1) // 64)
    assert h["first_sequence_hint"] == 1 and h["first_time_hint"] == 1_000
    # ...but limits() is exact
    assert segment.limits() == Limits(1, 1_000, n, 1_000 + (n - 1) * 3)


def test_limits_with_open_reservation_at_end(segment):
    _fill(segment, 70)
    r = segment.reserve(3)
    assert segment.limits().last_sequence == 70
    r.text[:] = b"end"
    r.finish(time=1)
    assert segment.limits() == Limits(1, 10_000, 71, 1)


def test_limits_with_sequence_base(tmp_path):
    with Segment.create(tmp_path / "b.seg", size=1 << 16, sequence_base=1000) as seg:
        _fill(seg, 130)
        assert seg.limits() == Limits(1000, 10_000, 1129, 10_000 + 129 * 10)
        assert seg.find(sequence=1064).text == "m64"


# ---------------------------------------------------------------- refusals and stats

def test_stats_initial(segment):
    st = segment.stats()
    assert st == {"reserved": 0, "written": 0, "refused_full": 0, "refused_too_big": 0,
                  "refused_out_of_service": 0, "abandoned": 0, "in_service": True,
                  "bytes_used": HEADER_SIZE, "bytes_total": 1 << 16, "salvages": 0}


def test_segment_full(tmp_path):
    with Segment.create(tmp_path / "f.seg", size=MIN_SEGMENT_SIZE) as seg:
        for i in range(64):                  # 64 empty messages of 64 bytes fill 4096 bytes
            seg.write("")
        with pytest.raises(SegmentFull):
            seg.write("")
        with pytest.raises(SegmentFull):
            seg.reserve(0)
        st = seg.stats()
        assert st["refused_full"] == 2
        assert st["reserved"] == st["written"] == 64
        assert st["bytes_used"] == MIN_SEGMENT_SIZE
        assert st["refused_too_big"] == st["refused_out_of_service"] == 0
        assert len(list(seg)) == 64


def test_segment_full_but_smaller_fits(tmp_path):
    with Segment.create(tmp_path / "f.seg", size=MIN_SEGMENT_SIZE) as seg:
        seg.write("x" * (4096 - 64 - 64))      # leaves exactly 64 bytes
        with pytest.raises(SegmentFull):
            seg.write("y")                     # needs 72
        assert seg.write("") == 2              # 64 still fits
        assert seg.stats()["refused_full"] == 1


def test_message_too_big(tmp_path):
    with Segment.create(tmp_path / "f.seg", size=MIN_SEGMENT_SIZE) as seg:
        with pytest.raises(MessageTooBig):
            seg.write("x" * (4096 - 64 + 1))
        with pytest.raises(MessageTooBig):
            seg.write("", data=b"\0" * 5000)
        with pytest.raises(MessageTooBig):
            seg.reserve(10, 5000)
        with pytest.raises(MessageTooBig):
            seg.write("", data_class="c" * 70000)     # longer than the u16 length field
        st = seg.stats()
        assert st["refused_too_big"] == 4
        assert st["refused_full"] == 0 and st["reserved"] == 0
        # the largest possible message fits exactly
        assert seg.write("x" * (4096 - 64)) == 1
        assert seg.stats()["bytes_used"] == MIN_SEGMENT_SIZE


def test_out_of_service(segment):
    segment.write("before")
    assert segment.take_out_of_service() is True
    assert segment.take_out_of_service() is False
    assert not segment.in_service
    assert segment.out_of_service_time is not None
    with pytest.raises(OutOfService):
        segment.write("x")
    with pytest.raises(OutOfService):
        segment.reserve(1)
    st = segment.stats()
    assert st["refused_out_of_service"] == 2 and not st["in_service"]
    assert st["refused_full"] == 0 and st["refused_too_big"] == 0
    assert [m.text for m in segment] == ["before"]      # reading is unaffected
    assert segment.put_in_service() is True
    assert segment.put_in_service() is False
    assert segment.out_of_service_time is None
    assert segment.write("again") == 2


def test_take_out_of_service_from_two_handles(segment):
    with Segment.open(segment.path) as other:
        results = [segment.take_out_of_service(), other.take_out_of_service(),
                   segment.take_out_of_service()]
        assert results == [True, False, False]
        with pytest.raises(OutOfService):
            other.write("x")


def test_finish_after_out_of_service(segment):
    r = segment.reserve(2)
    segment.take_out_of_service()
    r.text[:] = b"ok"
    r.finish()                  # a reservation made in service may still finish
    assert [m.text for m in segment] == ["ok"]


def test_stats_counts(segment):
    for i in range(5):
        segment.write("x")
    r = segment.reserve(1)
    r.abandon()
    segment.reserve(1)          # left open
    st = segment.stats()
    assert st["reserved"] == 7 and st["written"] == 5 and st["abandoned"] == 1
    assert segment.scan() == {"committed": 5, "reserved": [(st["bytes_used"] - 72, 7, os.getpid())],
                              "abandoned": 1, "gaps": [], "damaged": []}


# ---------------------------------------------------------------- closed segments

def test_closed_segment_refuses_everything(segment):
    segment.write("x")
    m = next(iter(segment))
    it = iter(segment)
    segment.close()
    assert segment.closed
    segment.close()                         # idempotent
    for call in (lambda: segment.write("x"), lambda: segment.reserve(1), lambda: list(segment),
                 lambda: segment.find(sequence=1), lambda: segment.limits(), lambda: segment.stats(),
                 lambda: segment.header(), lambda: segment.records(), lambda: segment.scan(),
                 lambda: segment.sync(), lambda: segment.take_out_of_service(),
                 lambda: segment.family, lambda: next(it)):
        with pytest.raises(SegmentClosed):
            call()
    assert "closed" in repr(segment)


def test_closed_segment_message_raises_segment_closed(segment):
    segment.write("hello", data=b"abc", data_class="c")
    m = next(iter(segment))
    segment.close()
    for attr in ("sequence", "time", "severity", "process_id", "thread_id", "text", "text_bytes",
                 "data_class", "data", "size", "key_id"):
        with pytest.raises(SegmentClosed):
            getattr(m, attr)
    with pytest.raises(SegmentClosed):
        m.checksum_ok()
    with pytest.raises(SegmentClosed):
        m.to_dict()
    assert "closed" in repr(m)
    assert m.offset == HEADER_SIZE


def test_unattached_message_and_reservation_are_inert():
    m = logkit.Message()
    for attr in ("sequence", "text", "data", "time"):
        with pytest.raises(SegmentClosed):
            getattr(m, attr)
    assert "closed" in repr(m)
    r = logkit.Reservation()
    with pytest.raises(InvalidArgument):
        r.finish()
    with pytest.raises(InvalidArgument):
        r.text
    r.abandon()
    with pytest.raises(TypeError):
        logkit.SegmentIterator(None)


def test_view_held_after_close_stays_readable(segment):
    segment.write("hello", data=b"\x01\x02\x03" * 100, data_class="c")
    m = next(iter(segment))
    data, text = m.data, m.text_bytes
    segment.close()
    assert segment.closed
    assert bytes(data) == b"\x01\x02\x03" * 100
    assert bytes(text) == b"hello"
    import gc
    gc.collect()
    assert bytes(data[:3]) == b"\x01\x02\x03"
    del m
    gc.collect()
    assert bytes(text) == b"hello"


def test_reservation_of_closed_segment_raises_segment_closed(segment):
    r = segment.reserve(3, 2)
    segment.close()
    with pytest.raises(SegmentClosed):
        r.finish()
    with pytest.raises(SegmentClosed):
        r.text
    with pytest.raises(SegmentClosed):
        r.data


def test_context_manager_closes(segment_path):
    with Segment.create(segment_path) as seg:
        seg.write("x")
    assert seg.closed
    with Segment.open(segment_path) as seg:
        assert [m.text for m in seg] == ["x"]
    assert seg.closed


# ---------------------------------------------------------------- regions of a bigger buffer

def test_two_segments_side_by_side_in_one_file(tmp_path):
    S = 1 << 14
    p = tmp_path / "pair.bin"
    with open(p, "wb") as f:
        f.truncate(2 * S + 4096)               # a trailer that must stay untouched
    with open(p, "r+b") as f:
        mm = mmap.mmap(f.fileno(), 0)
    mm[2 * S:] = b"\xab" * 4096
    a = Segment.format(mm, 0, S, family="left")
    b = Segment.format(mm, S, S, family="right", sequence_base=100)
    assert (a.size, b.size, a.family, b.family) == (S, S, "left", "right")
    for i in range(20):
        a.write(f"a{i}", data=bytes([i]) * i, data_class="A")
        b.write(f"b{i}" * 3, data=bytes([255 - i]) * (2 * i), data_class="B")
    with b.reserve(4, 2, data_class="B") as r:
        r.text[:] = b"bres"
        r.data[:] = b"\x07\x08"
    assert [(m.sequence, m.text, bytes(m.data), m.data_class) for m in a] == \
        [(i + 1, f"a{i}", bytes([i]) * i, "A") for i in range(20)]
    bm = list(b)
    assert [(m.sequence, m.text, bytes(m.data)) for m in bm[:20]] == \
        [(100 + i, f"b{i}" * 3, bytes([255 - i]) * (2 * i)) for i in range(20)]
    assert (bm[20].text, bytes(bm[20].text_bytes), bytes(bm[20].data)) == ("bres", b"bres", b"\x07\x08")
    # b's header lives at file offset S; a's messages never reached into it
    assert mm[S:S + 8] == b"LOGKITSG"
    assert mm[2 * S:] == b"\xab" * 4096
    # checksums are right at the absolute positions as well
    for m in bm:
        o = S + m.offset
        f = parse_message(mm, o)
        assert f["checksum"] == py_crc32c(mm[o + 8:o + 60] + mm[o + 64:o + 64 + f["text_len"] + f["cls_len"] + f["data_len"]])
    # filling one to the brim leaves the other intact
    with pytest.raises(SegmentFull):
        while True:
            a.write("x" * 200)
    assert [m.text for m in b][:2] == ["b0" * 3, "b1" * 3]
    assert len(list(b)) == 21
    assert mm[S:S + 8] == b"LOGKITSG" and b.header()["identity_crc_ok"]
    a_limits, b_limits = a.limits(), b.limits()
    a.close()
    b.close()
    # re-attach from the buffer and from a new mapping of the same file
    a2 = Segment.from_buffer(mm, 0, S)
    b2 = Segment.from_buffer(mm, S, S)
    assert (a2.limits(), b2.limits()) == (a_limits, b_limits)
    assert b2.find(sequence=110).text == "b10" * 3
    a2.close()
    b2.close()
    mm.flush()
    mm.close()
    with open(p, "rb") as f:
        mm2 = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    b3 = Segment.from_buffer(mm2, S, S, readonly=True)
    assert b3.limits() == b_limits
    with pytest.raises(ReadOnlySegment):
        b3.write("x")
    b3.close()
    mm2.close()


def test_region_in_bytearray_and_bad_regions():
    buf = bytearray(40000)
    seg = Segment.format(buf, 8, 16384, family="ba")
    seg.write("in a bytearray", data=b"d")
    assert buf[:8] == b"\0" * 8 and buf[8:16] == b"LOGKITSG"
    assert all(x == 0 for x in buf[8 + 16384:])
    again = Segment.from_buffer(buf, 8, 16384)
    assert [m.text for m in again] == ["in a bytearray"]
    again.close()
    seg.close()
    with pytest.raises(InvalidArgument):
        Segment.format(bytearray(20000), 4, 8192)       # not 8-aligned
    with pytest.raises(InvalidArgument):
        Segment.format(bytearray(20000), 16000, 8192)   # outside the buffer
    with pytest.raises(InvalidArgument):
        Segment.format(bytearray(20000), 0, 8196)       # not a multiple of 8
    with pytest.raises(InvalidArgument):
        Segment.format(bytearray(20000), 0, 4096)       # smaller than a segment
    with pytest.raises(SegmentDamaged):
        Segment.from_buffer(bytearray(20000), 0, 8192)  # never formatted
    with pytest.raises(SegmentDamaged):
        Segment.from_buffer(buf, 8, 16392)              # wrong region size


# ---------------------------------------------------------------- CRC-32C

def test_crc32c_known_vector():
    assert crc32c(b"123456789") == 0xE3069283
    assert py_crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    assert crc32c(b"", 0x1234) == 0x1234
    assert crc32c(b"\0" * 32) == 0x8A9136AA          # RFC 3720 B.4 test vector
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E


def test_crc32c_continuation_and_buffers():
    data = os.urandom(1000)
    for cut in (0, 1, 7, 8, 9, 500, 999, 1000):
        assert crc32c(data[cut:], crc32c(data[:cut])) == crc32c(data)
    assert crc32c(bytearray(data)) == crc32c(memoryview(data)) == crc32c(data) == py_crc32c(data)


def test_crc32c_software_fallback_identical():
    import random
    rnd = random.Random(1234)
    samples = [b"", b"1", b"123456789", bytes(range(256))] + \
        [rnd.randbytes(rnd.randrange(0, 300)) for _ in range(50)] + [rnd.randbytes(100_000)]
    hw = [crc32c(s) for s in samples]
    hw_cont = [crc32c(s, 0xDEADBEEF) for s in samples]
    # unaligned starts
    blob = rnd.randbytes(4096)
    hw_unaligned = [crc32c(memoryview(blob)[i:i + 777]) for i in range(16)]
    was_hw = _segment.crc32c_uses_hardware()
    _segment._crc32c_force_software(True)
    try:
        assert not _segment.crc32c_uses_hardware()
        assert crc32c(b"123456789") == 0xE3069283
        assert [crc32c(s) for s in samples] == hw
        assert [crc32c(s, 0xDEADBEEF) for s in samples] == hw_cont
        assert [crc32c(memoryview(blob)[i:i + 777]) for i in range(16)] == hw_unaligned
    finally:
        _segment._crc32c_force_software(False)
    assert _segment.crc32c_uses_hardware() == was_hw
    assert [py_crc32c(s) for s in samples[:54]] == hw[:54]


def test_software_checksums_readable_by_hardware(segment):
    """Messages written under the software CRC verify under the detected one."""
    _segment._crc32c_force_software(True)
    try:
        for i in range(5):
            segment.write(f"soft {i}", data=os.urandom(37))
    finally:
        _segment._crc32c_force_software(False)
    segment.write("hard")
    ms = list(segment)
    assert [m.text for m in ms] == [f"soft {i}" for i in range(5)] + ["hard"]
    assert all(m.checksum_ok() for m in ms)
    _segment._crc32c_force_software(True)
    try:
        assert len(list(segment)) == 6
    finally:
        _segment._crc32c_force_software(False)


def test_all_errors_are_logkit_errors():
    for name in logkit.errors.__all__:
        assert issubclass(getattr(logkit, name), LogkitError)
