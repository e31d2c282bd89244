"""Tests of logkit.salvage: healthy segments, damaged headers, reservations left
open, claims that left no stub (fillers), and the promise that salvage never
rewrites a finished message."""
import mmap
import os
import struct
import subprocess
import sys
import time

import pytest

from logkit import (
    HEADER_SIZE,
    Limits,
    LogkitError,
    MessageLost,
    ReadOnlySegment,
    Segment,
    SegmentDamaged,
    SegmentNotFound,
    UnsupportedFormat,
    crc32c,
    salvage,
)
from waiting import wait_until

T0 = 1_700_000_000_000_000_000
FILLER_FLAG = 0x0001


# ---------------------------------------------------------------- helpers

def patch(path, offset, data):
    """Overwrite bytes of the file through a separate writable shared mapping
    (what another process or a stray write would do)."""
    with open(path, "r+b") as f:
        mm = mmap.mmap(f.fileno(), 0)
        try:
            mm[offset:offset + len(data)] = data
            mm.flush()
        finally:
            mm.close()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def snapshot(seg):
    """(offset, size, sequence, to_dict) of every message iteration returns."""
    return [(m.offset, m.size, m.sequence, m.to_dict()) for m in seg]


def committed_bytes(path, snap):
    data = read(path)
    return {off: data[off:off + size] for off, size, _, _ in snap}


def fill(seg, n, start=0):
    for i in range(start, start + n):
        seg.write(f"message {i} " + "x" * (i % 37), severity=i % 50, data=bytes([i % 256]) * (i % 11),
                  data_class="cls" if i % 3 == 0 else "", time=T0 + i)


def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ---------------------------------------------------------------- healthy

def test_salvage_healthy_segment_by_path(segment):
    fill(segment, 100)
    path = segment.path
    snap = snapshot(segment)
    before = read(path)
    segment.close()
    rep = salvage(path)
    assert rep.clean
    assert rep.kept == 100
    assert rep.abandoned == rep.abandoned_before == 0
    assert rep.open == [] and rep.gaps == [] and rep.filled == [] and rep.damaged == []
    assert not rep.header_rebuilt and not rep.word_repaired and not rep.taken_out_of_service
    assert rep.path == path
    assert "kept 100 finished messages" in str(rep)
    after = read(path)
    assert after[HEADER_SIZE:] == before[HEADER_SIZE:]      # not one message byte changed
    with Segment.open(path) as seg:
        assert seg.in_service
        assert snapshot(seg) == snap
        assert seg.stats()["salvages"] == 1
        h = seg.header()
        # salvage refreshed the limit hints to the exact values
        assert (h["first_sequence_hint"], h["last_sequence_hint"]) == (1, 100)
        assert h["last_offset_hint"] == snap[-1][0]
        assert seg.limits() == Limits(1, T0, 100, T0 + 99)
        assert seg.write("still writable") == 101


def test_salvage_healthy_open_segment_object(segment):
    fill(segment, 10)
    rep = salvage(segment)
    assert rep.clean and rep.kept == 10
    assert segment.in_service and not segment.closed       # salvage does not close a Segment it was given
    rep = salvage(segment)
    assert rep.clean and rep.kept == 10
    assert segment.stats()["salvages"] == 2


def test_salvage_empty_segment(segment):
    rep = salvage(segment)
    assert rep.clean and rep.kept == 0
    assert segment.limits() is None and segment.in_service


def test_salvage_counts_already_abandoned(segment):
    fill(segment, 3)
    segment.reserve(5).abandon()
    with pytest.raises(ZeroDivisionError):
        with segment.reserve(5):
            1 / 0
    fill(segment, 2, start=3)
    rep = salvage(segment)
    assert rep.clean
    assert rep.kept == 5 and rep.abandoned == 0 and rep.abandoned_before == 2
    assert segment.stats()["abandoned"] == 2


def test_other_format_version_is_refused_not_repaired(segment):
    """A sound header of another version (its identity CRC matches) is not
    damage: open and salvage refuse it with UnsupportedFormat and change nothing."""
    fill(segment, 3)
    path = segment.path
    segment.close()
    head = bytearray(read(path)[:384])
    head[8:12] = struct.pack("<I", 5)      # 1 to 4 are this logkit's versions
    patch(path, 0, bytes(head) + struct.pack("<I", crc32c(bytes(head))))
    before = read(path)
    with pytest.raises(UnsupportedFormat, match="version 5"):
        Segment.open(path)
    with pytest.raises(UnsupportedFormat):
        salvage(path)
    assert read(path) == before
    assert issubclass(UnsupportedFormat, LogkitError)


def test_salvage_errors(tmp_path):
    with pytest.raises(SegmentNotFound):
        salvage(tmp_path / "missing.seg")
    small = tmp_path / "small.seg"
    small.write_bytes(b"\0" * 100)
    with pytest.raises(SegmentDamaged):
        salvage(small)


def test_salvage_readonly_segment_refuses(segment):
    fill(segment, 3)
    with Segment.open(segment.path, readonly=True) as ro:
        with pytest.raises(ReadOnlySegment):
            salvage(ro)
    assert [m.sequence for m in segment] == [1, 2, 3]


# ---------------------------------------------------------------- damaged header

@pytest.mark.parametrize("offset, data, problem", [
    (0, b"XXXXXXXX", "magic"),
    (8, b"\x07", "identity"),             # version, identity CRC no longer matches
    (12, b"\x00\x20", "header size"),
    (16, b"\x01", "bytes"),                 # region size
    (48, b"\x09", "checksum algorithm"),
    (70, b"!", "identity"),                 # family name byte
    (200, b"/", "identity"),                # previous-path byte
    (384, b"\x00\x00\x00\x00", "identity"), # the identity CRC itself
])
def test_salvage_rebuilds_damaged_header(segment, offset, data, problem):
    fill(segment, 150)
    path, uid, family = segment.path, segment.uuid, segment.family
    snap = snapshot(segment)
    segment.close()
    before = committed_bytes(path, snap)
    patch(path, offset, data)
    with pytest.raises(SegmentDamaged, match=problem):
        Segment.open(path)
    rep = salvage(path)
    assert rep.header_rebuilt
    assert rep.kept == 150
    assert rep.taken_out_of_service
    assert not rep.clean
    assert any("sequence base set to 1" in n for n in rep.notes)
    assert committed_bytes(path, snap) == before
    with Segment.open(path) as seg:
        assert snapshot(seg) == snap
        assert seg.sequence_base == 1
        assert not seg.in_service
        assert seg.family == family
        assert seg.uuid == uid
        assert seg.header()["identity_crc_ok"]
        assert seg.limits() == Limits(1, T0, 150, T0 + 149)
    rep2 = salvage(path)
    assert not rep2.header_rebuilt and rep2.kept == 150 and rep2.clean


def test_rebuild_with_sequence_base_above_64(tmp_path):
    """Regression (Segment._probe_sequence_base at c61f6ba called
    lk_plausible(..., min_seq=0, min_pos=0), which rejects any message whose
    sequence exceeds offset/64: in a segment whose sequence_base is above about
    64 -- every segment after the first of a family -- no message was found,
    the base fell back to 1 and every message became implausible)."""
    path = tmp_path / "b.seg"
    with Segment.create(path, size=1 << 16, sequence_base=1000) as seg:
        fill(seg, 5)
        snap = snapshot(seg)
    assert [s for _, _, s, _ in snap] == [1000, 1001, 1002, 1003, 1004]
    patch(path, 0, b"XXXXXXXX")
    rep = salvage(path)
    assert rep.header_rebuilt
    with Segment.open(path) as seg:
        assert seg.sequence_base == 1000
        assert snapshot(seg) == snap
    assert rep.kept == 5


def test_rebuild_when_first_record_is_not_a_message(segment):
    """Regression (at c61f6ba `seq - (q - HEADER_SIZE) // 64` was computed in
    uint64: when the first valid message follows records averaging more than
    64 bytes -- a large abandoned or open reservation, or a damaged first
    message -- it wrapped around and the rebuilt header got sequence_base
    2**64-1, so every message was rejected)."""
    r = segment.reserve(300)          # sequence 1, 368 bytes, abandoned
    r.abandon()
    fill(segment, 5)                  # sequences 2..6
    path = segment.path
    snap = snapshot(segment)
    segment.close()
    patch(path, 0, b"XXXXXXXX")
    rep = salvage(path)
    assert rep.header_rebuilt
    with Segment.open(path) as seg:
        assert seg.sequence_base == 1, f"rebuilt sequence base {seg.sequence_base}"
        assert snapshot(seg) == snap
    assert rep.kept == 5


@pytest.mark.parametrize("case", ["sequence_base_1000", "large_first_record"])
def test_failed_rebuild_must_not_overwrite_messages(tmp_path, case):
    """Regression (at c61f6ba _salvage took the range between the last record
    the walk recognised and NEXT for claims with no stub and covered it with a
    filler even where the walk had reported *damaged* (non-zero) bytes; with a
    wrong sequence base that zeroed every committed message).  settle=0 so
    that only the first-word-is-zero guard can prevent it."""
    path = tmp_path / "c.seg"
    with Segment.create(path, size=1 << 16, sequence_base=1000 if case == "sequence_base_1000" else 1) as seg:
        if case == "large_first_record":
            seg.reserve(300).abandon()
        fill(seg, 5)
        snap = snapshot(seg)
    before = committed_bytes(path, snap)
    patch(path, 0, b"XXXXXXXX")
    rep = salvage(path, settle=0)
    assert rep.filled == [], f"salvage wrote a filler over {rep.filled}"
    assert committed_bytes(path, snap) == before


def test_filler_never_written_over_unrecognised_message(tmp_path):
    """Regression of the same kind without header damage: two consistent
    changes to an abandoned stub's length fields (stubs carry no checksum) make
    the walk step over an intact message and report the next one as damaged;
    at c61f6ba salvage then wrote a filler over that intact message.  (That
    the reader loses them at all is test_damage.py::
    test_stub_length_damage_hides_following_message.)"""
    path = tmp_path / "d.seg"
    with Segment.create(path, size=1 << 16) as seg:
        seg.write("before")
        r = seg.reserve(8)
        r.abandon()
        seg.write("victim")
        seg.write("after " + "y" * 120)       # >= 128 bytes: room for a 2-sequence filler
        snap = snapshot(seg)
        stub, (vo, vs) = r.offset, (snap[1][0], snap[1][1])
    before = committed_bytes(path, snap)
    patch(path, stub + 8, struct.pack("<I", 72 + vs))          # total length
    patch(path, stub + 40, struct.pack("<I", 8 + vs))          # text length, consistent
    rep = salvage(path, settle=0)
    assert committed_bytes(path, snap) == before, f"salvage overwrote committed messages: filled={rep.filled}"


# ---------------------------------------------------------------- open reservations

def test_salvage_abandons_own_reservation_with_zero_grace(segment):
    fill(segment, 2)
    r = segment.reserve(10, 4, data_class="c")
    fill(segment, 2, start=2)
    rep = salvage(segment, grace=0)
    assert rep.abandoned == 1 and rep.open == []
    assert rep.kept == 4
    recs = segment.records()
    assert [(x.kind, x.sequence) for x in recs] == \
        [("committed", 1), ("committed", 2), ("abandoned", 3), ("committed", 4), ("committed", 5)]
    assert recs[2].offset == r.offset
    r.text[:] = b"too late!!"
    with pytest.raises(MessageLost):
        r.finish()
    assert [m.sequence for m in segment] == [1, 2, 4, 5]
    assert segment.stats()["abandoned"] == 1
    assert segment.scan()["abandoned"] == 1
    rep2 = salvage(segment, grace=0)
    assert rep2.clean and rep2.abandoned == 0 and rep2.abandoned_before == 1


def test_salvage_by_path_abandons_reservation_held_in_this_process(segment):
    r = segment.reserve(3)
    segment.write("after")
    rep = salvage(segment.path, grace=0)            # a second mapping of the file
    assert rep.abandoned == 1
    with pytest.raises(MessageLost):
        r.finish()
    assert [m.text for m in segment] == ["after"]


def test_salvage_leaves_live_writer_within_grace(segment):
    fill(segment, 2)
    r = segment.reserve(5)
    segment.write("later")
    rep = salvage(segment, grace=60.0)
    assert rep.open == [(r.offset, r.sequence, os.getpid())]
    assert rep.abandoned == 0
    assert not rep.clean
    assert segment.in_service
    assert "still alive" in str(rep)
    assert [x.kind for x in segment.records()][2] == "reserved"
    r.text[:] = b"done!"
    assert r.finish() == 3
    assert [m.text for m in segment][2] == "done!"
    rep = salvage(segment, grace=60.0)
    assert rep.clean and rep.kept == 4


def restamp_stub(path, offset):
    """Recompute a stub's checksum (offset 56: CRC-32C of bytes 8..11, 16..23,
    32..55) after a test rewrote one of its fields on purpose."""
    with open(path, "rb") as f:
        b = f.read()[offset:offset + 64]
    patch(path, offset + 56, struct.pack("<I", crc32c(b[8:12] + b[16:24] + b[32:56])))


def test_salvage_abandons_reservation_of_dead_writer(segment):
    r = segment.reserve(5)
    segment.write("later")
    patch(segment.path, r.offset + 32, struct.pack("<I", dead_pid()))
    restamp_stub(segment.path, r.offset)
    rep = salvage(segment, grace=3600.0)
    assert rep.abandoned == 1 and rep.open == []
    assert [x.kind for x in segment.records()] == ["abandoned", "committed"]


def test_salvage_abandons_live_writer_past_grace(segment):
    r = segment.reserve(5)
    old = time.time_ns() - 120 * 10**9
    patch(segment.path, r.offset + 24, struct.pack("<q", old))   # reserved two minutes ago
    rep = salvage(segment, grace=60.0)
    assert rep.abandoned == 1 and rep.open == []
    with pytest.raises(MessageLost):
        r.finish()


# ---------------------------------------------------------------- gaps and fillers

def _claim_without_stub(seg, n, text_len=20):
    """Reserve n messages and zero their bytes: claims whose writer died before
    storing a stub.  Returns (start, end, first_sequence)."""
    rs = [seg.reserve(text_len) for _ in range(n)]
    sizes = {x.offset: x.length for x in seg.records() if x.kind == "reserved"}
    start, end = rs[0].offset, rs[-1].offset + sizes[rs[-1].offset]
    patch(seg.path, start, b"\0" * (end - start))
    return start, end, rs[0].sequence


@pytest.mark.parametrize("n", [1, 2, 5])
def test_filler_covers_claims_without_stub(segment, n):
    fill(segment, 3)
    a, b, first = _claim_without_stub(segment, n)
    fill(segment, 2, start=3)
    later = [x.sequence for x in segment][-2:]
    assert later == [3 + n + 1, 3 + n + 2]
    snap = snapshot(segment)
    before = committed_bytes(segment.path, snap)
    assert segment.scan()["gaps"] == [(a, b)]
    assert [m.sequence for m in segment] == [1, 2, 3] + later       # the reader resynchronises

    # in service: a writer could still be storing its stub, so no filler yet
    rep = salvage(segment)
    assert rep.gaps == [(a, b, n)] and rep.filled == []
    assert not rep.clean and rep.notes
    assert bytes(read(segment.path)[a:b]) == b"\0" * (b - a)

    assert segment.take_out_of_service()
    rep = salvage(segment)                  # just out of service: not settled (settle=1 s)
    assert rep.gaps == [(a, b, n)] and rep.filled == [] and not rep.clean
    rep = salvage(segment, settle=0)
    assert rep.gaps == [(a, b, n)]
    assert rep.filled == [(a, b, n)]
    assert rep.clean
    recs = segment.records()
    filler = [x for x in recs if x.offset == a]
    assert len(filler) == 1
    assert (filler[0].kind, filler[0].length, filler[0].sequence, filler[0].span) == ("abandoned", b - a, first, n)
    raw = read(segment.path)
    (flags,) = struct.unpack_from("<H", raw, a + 14)
    assert flags & FILLER_FLAG
    (tl,) = struct.unpack_from("<I", raw, a + 40)
    (stored,) = struct.unpack_from("<I", raw, a + 60)
    assert stored == crc32c(raw[a + 8:a + 60] + raw[a + 64:a + 64 + tl])
    # every other message still reads, unchanged
    assert snapshot(segment) == snap
    assert committed_bytes(segment.path, snap) == before
    assert segment.find(sequence=first).sequence == first + n
    it = segment.messages()
    list(it)
    assert it.abandoned == n and it.gaps == []
    assert segment.stats()["abandoned"] == n
    # a second salvage finds nothing to do
    rep2 = salvage(segment, settle=0)
    assert rep2.clean and rep2.filled == [] and rep2.gaps == []
    assert rep2.abandoned_before == n and rep2.kept == 5
    assert segment.stats()["abandoned"] == n


def test_filler_for_claims_at_the_end(segment):
    fill(segment, 4)
    a, b, first = _claim_without_stub(segment, 2)
    assert segment.used() == b
    snap = snapshot(segment)
    segment.take_out_of_service()
    rep = salvage(segment, settle=0)
    assert rep.filled == [(a, b, 2)]
    assert rep.clean
    assert [(x.kind, x.sequence, x.span) for x in segment.records()][-1] == ("abandoned", first, 2)
    assert snapshot(segment) == snap
    assert salvage(segment, settle=0).clean


def test_two_separate_gaps(segment):
    fill(segment, 2)
    g1 = _claim_without_stub(segment, 1)
    fill(segment, 1, start=2)
    g2 = _claim_without_stub(segment, 3)
    fill(segment, 1, start=3)
    snap = snapshot(segment)
    segment.take_out_of_service()
    rep = salvage(segment, settle=0)
    assert rep.filled == [(g1[0], g1[1], 1), (g2[0], g2[1], 3)]
    assert rep.clean and rep.kept == 4
    assert snapshot(segment) == snap
    assert segment.stats()["abandoned"] == 4


def test_fillers_wait_until_out_of_service_has_settled(segment):
    fill(segment, 2)
    a, b, _ = _claim_without_stub(segment, 1)
    fill(segment, 1, start=2)
    segment.take_out_of_service()
    rep = salvage(segment, settle=0.3)
    assert rep.filled == [] and any("out of service" in n for n in rep.notes)
    # salvage calls the segment settled once its wall clock (time.time_ns)
    # is `settle` past the out-of-service time in the header: wait for that.
    oos = segment.out_of_service_time
    assert oos is not None
    wait_until(lambda: time.time_ns() - oos >= 0.3e9, "the clock to pass the out-of-service time + 0.3 s")
    rep = salvage(segment, settle=0.3)
    assert rep.filled == [(a, b, 1)]
    segment.put_in_service()                # back in service: no more fillers
    g = _claim_without_stub(segment, 1)
    fill(segment, 1, start=3)
    rep = salvage(segment, settle=0)
    assert rep.filled == [] and rep.gaps == [(g[0], g[1], 1)]


# ---------------------------------------------------------------- the reservation word

def test_salvage_repairs_lowered_count(segment):
    fill(segment, 10)
    (w,) = struct.unpack_from("<Q", read(segment.path), 512)
    patch(segment.path, 512, struct.pack("<Q", w & ~(((1 << 31) - 1) << 32)))   # COUNT := 0
    assert segment.stats()["reserved"] == 0
    rep = salvage(segment)
    assert rep.word_repaired and rep.taken_out_of_service
    assert segment.stats()["reserved"] == 10
    segment.put_in_service()
    assert segment.write("next") == 11              # no sequence number handed out twice


def test_salvage_repairs_lowered_next(segment):
    fill(segment, 10)
    snap = snapshot(segment)
    (w,) = struct.unpack_from("<Q", read(segment.path), 512)
    patch(segment.path, 512, struct.pack("<Q", (w & ~0xFFFFFFFF) | (snap[3][0] // 8)))
    rep = salvage(segment)
    assert rep.word_repaired
    assert segment.used() == snap[-1][0] + snap[-1][1]
    segment.put_in_service()
    segment.write("next")
    assert [s for _, _, s, _ in snapshot(segment)] == list(range(1, 12))   # nothing overwritten


# ---------------------------------------------------------------- never rewrites a finished message

def test_salvage_never_changes_committed_bytes(segment):
    fill(segment, 20)
    segment.reserve(7)                              # open, this process (abandoned with grace 0)
    fill(segment, 5, start=20)
    segment.reserve(30).abandon()                   # abandoned
    _claim_without_stub(segment, 2)                 # gap
    fill(segment, 5, start=25)
    victim = snapshot(segment)[22]
    patch(segment.path, victim[0] + 64, b"\x00")    # damage one message's text
    fill(segment, 3, start=30)
    snap = snapshot(segment)
    assert len(snap) == 32 and victim[2] not in [s for _, _, s, _ in snap]
    before = committed_bytes(segment.path, snap)
    raw_before = read(segment.path)
    rep = salvage(segment, grace=0)
    assert rep.kept == 32 and rep.abandoned == 1 and rep.damaged
    assert rep.taken_out_of_service
    assert committed_bytes(segment.path, snap) == before
    assert snapshot(segment) == snap
    rep2 = salvage(segment, grace=0)
    assert committed_bytes(segment.path, snap) == before
    assert rep2.kept == 32
    # the damaged message's bytes were not "repaired" into something else either
    raw = read(segment.path)
    assert raw[victim[0]:victim[0] + victim[1]] == raw_before[victim[0]:victim[0] + victim[1]]
