"""Structured mutations (hypothesis): valid segments, partitions, pipe
journals and frame streams made by the library, with header words and
message fields set to boundary values, flipped or zeroed.

Checked for every mutated file: the fuzzing rule (no crash, no exception
but a LogkitError with a message; tests/fuzz/targets.py), that nothing is
invented (every message read equals an original one), and that every
message lying wholly outside the mutated bytes is still read: directly when
only message bytes were changed, and after salvage in every case (a header
word such as the reservation word may legitimately make the reader stop
early; salvage walks the whole region).  derandomize=True: a failure here
is the same failure on every machine.
"""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logkit import Segment, salvage
from logkit.errors import LogkitError

from tests.fuzz import seeds
from tests.fuzz.targets import ListStorage, check

SETTINGS = settings(max_examples=int(os.environ.get("LOGKIT_STRUCTURED_EXAMPLES", "40")), deadline=None,
                    derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                             HealthCheck.too_slow])

# (offset, size) of the segment header's words (docs/format.md, "Complete map")
SEG_HEADER = [(8, 4), (12, 4), (16, 8), (24, 8), (40, 8), (48, 4), (52, 4), (56, 8), (384, 4), (392, 8),
              (400, 8), (408, 8), (416, 8), (424, 8), (432, 8), (440, 8), (448, 8), (456, 8), (464, 8),
              (480, 2), (512, 8), (576, 8), (584, 8), (592, 8), (600, 8), (640, 4), (644, 4), (768, 8),
              (832, 8), (2048, 4), (2052, 4), (2112, 8), (2120, 8)]
# (offset, size) of a message's fields (docs/format.md, "Messages")
MSG_FIELDS = [(0, 4), (4, 4), (8, 4), (12, 2), (14, 2), (16, 8), (24, 8), (32, 4), (36, 4), (40, 4),
              (44, 4), (48, 2), (50, 2), (52, 4), (56, 4), (60, 4), (64, 8)]
# the partition header's words (docs/partition-format.md)
PART_HEADER = [(8, 4), (12, 4), (16, 8), (24, 8), (32, 8), (40, 8), (112, 4)] + \
              [(o, 8) for o in range(128, 240, 8)]
# the pipe journal's header words (backends/pipejournal.py, docs/pipe-format.md)
JOURNAL_HEADER = [(4, 4), (8, 4), (12, 4)] + [(o, 8) for o in range(16, 88, 8)]
# a pipe frame's fields (backends/pipe.py HEADER + RECORD / FRAGMENT)
FRAME_FIELDS = [(0, 4), (4, 1), (5, 1), (6, 2), (8, 4), (12, 4), (16, 8), (24, 2), (26, 2), (28, 4),
                (32, 4), (36, 4)]


def value_for(kind: str, size: int, current: int, file_size: int, raw: int) -> int:
    top = (1 << (8 * size)) - 1
    v = {"zero": 0, "one": 1, "max": top, "u32max": 0xFFFFFFFF, "u64max": 2 ** 64 - 1,
         "size+8": file_size + 8, "size-8": file_size - 8, "size": file_size, "flip": current ^ (1 << (raw % (8 * size))),
         "raw": raw, "half": 1 << (8 * size - 1)}[kind]
    return v & top


KINDS = st.sampled_from(["zero", "one", "max", "u32max", "u64max", "size+8", "size-8", "size", "flip", "raw", "half"])


def mutation(where: list[tuple[int, int]]):
    return st.tuples(st.integers(0, 10 ** 6), st.sampled_from(where), KINDS, st.integers(0, 2 ** 64 - 1))


def apply(buf: bytearray, base: int, field: tuple[int, int], kind: str, raw: int) -> tuple[int, int] | None:
    off, size = field
    at = base + off
    if at + size > len(buf):
        return None
    cur = int.from_bytes(buf[at:at + size], "little")
    buf[at:at + size] = value_for(kind, size, cur, len(buf), raw).to_bytes(size, "little")
    return (at, at + size)


def outside(rng: tuple[int, int], damaged: list[tuple[int, int]]) -> bool:
    return all(rng[1] <= a or rng[0] >= b for a, b in damaged)


def key(m) -> tuple:
    return (m.sequence, m.time, m.severity, str(m.text), str(m.data_class), bytes(m.data))


def read_plain(path: str) -> list[tuple]:
    with Segment.open(path, readonly=True) as seg:
        return [key(m) for m in seg]


def read_sealed(path: str) -> list[tuple]:
    """Every message of a sealed segment opened with its key; one that fails
    authentication raises (a LogkitError), so it is never taken as read."""
    with Segment.open(path, readonly=True, key=seeds.SEAL_KEY) as seg:
        return [key(m) for m in seg]


def keyfile(tmp_path) -> str:
    """A key file holding SEAL_KEY (mode 0600, as load_key_file wants)."""
    from logkit.crypto import KEY_FILE_MAGIC
    kid, k = seeds.SEAL_KEY
    path = str(tmp_path / "seal.key")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{KEY_FILE_MAGIC}\n{kid} {base64.b64encode(k).decode()}\n")
    return path


# ---------------------------------------------------------------- segments

# The key id (480..481) of a sealed segment: a damaged key id names another
# key.  A damaged UUID (24..39; the segment key derives from it) is
# restored by salvage from its copy (versions 3 and 4).  A damaged key check (464..479)
# is read: the key is taken when a message authenticates under it.
SEALED_HEADER = [f for f in SEG_HEADER if f[0] != 480]


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
@SETTINGS
@given(data=st.data())
def test_mutated_segment_keeps_the_rule_and_every_intact_message(tmp_path_factory, data, sealed):
    muts = data.draw(st.lists(st.one_of(st.tuples(st.just("h"), mutation(SEALED_HEADER if sealed else SEG_HEADER)),
                                        st.tuples(st.just("m"), mutation(MSG_FIELDS))), min_size=1, max_size=3))
    d = tmp_path_factory.mktemp("seg")
    orig = str(d / "orig.seg")
    recs = seeds.make_segment(orig, n=8, open_reservation=True, sealed=sealed)
    read_segment = read_sealed if sealed else read_plain
    originals = read_segment(orig)
    by_seq = {k[0]: k for k in originals}
    with open(orig, "rb") as f:
        buf = bytearray(f.read())
    damaged = []
    for where, (pick, field, kind, raw) in muts:
        base = 0 if where == "h" else recs[pick % len(recs)][1]
        r = apply(buf, base, field, kind, raw)
        if r:
            damaged.append(r)
    data = bytes(buf)
    check("segment", data)
    check("salvage", data)
    intact = {seq for seq, off, ln in recs if outside((off, off + ln), damaged)}
    path = str(d / "mut.seg")
    with open(path, "wb") as f:
        f.write(data)
    header_hit = any(a < 4096 for a, _ in damaged)
    try:
        got = read_segment(path)
    except LogkitError as e:
        assert str(e).strip()
        assert header_hit, f"the reader refused a segment whose header was not touched: {e}"
        got = None
    if got is not None:
        for k in got:
            assert by_seq.get(k[0]) == k, f"read a message that was never written: {k} (damaged {damaged})"
        if not header_hit:
            missing = intact - {k[0] for k in got}
            assert not missing, f"messages {sorted(missing)} lie outside the damaged bytes {damaged} but were not read"
    salvage(path, grace=0.0, settle=0.0)
    after = read_segment(path)
    for k in after:
        assert by_seq.get(k[0]) == k, f"after salvage, a message that was never written: {k} (damaged {damaged})"
    missing = intact - {k[0] for k in after}
    assert not missing, (f"after salvage, messages {sorted(missing)} lie outside the damaged bytes {damaged} "
                         f"but were not read")


def sealed_with_damaged_header(tmp_path, at: int, n: int) -> tuple[str, list[tuple]]:
    """A sealed segment of 8 messages whose header bytes at..at+n are zeroed; (path, its messages)."""
    path = str(tmp_path / "sealed.seg")
    seeds.make_segment(path, n=8, sealed=True)
    originals = read_sealed(path)
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(bytes(n))
    return path, originals


def test_sealed_segment_with_a_damaged_key_check_is_read_after_salvage(tmp_path):
    path, originals = sealed_with_damaged_header(tmp_path, 464, 16)
    salvage(path, grace=0.0, settle=0.0)
    assert read_sealed(path) == originals


def test_a_damaged_key_check_is_named_refuses_a_wrong_key_and_a_writer_rewrites_it(tmp_path):
    from logkit.crypto import WrongKey
    path, originals = sealed_with_damaged_header(tmp_path, 464, 16)
    with Segment.open(path, readonly=True, key=seeds.SEAL_KEY) as seg:
        assert [key(m) for m in seg] == originals
        assert "key check at header offset 464 is damaged" in seg.key_check_problem
    other = (seeds.SEAL_KEY[0], bytes(32))                     # same key id, another key
    with pytest.raises(WrongKey, match="no message authenticates under it"):
        Segment.open(path, readonly=True, key=other)
    p = subprocess.run([sys.executable, "-m", "logkit", "verify", "--single", "--key-file", keyfile(tmp_path),
                        path], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "key check at header offset 464 is damaged" in p.stdout, p.stdout + p.stderr
    with Segment.open(path, key=seeds.SEAL_KEY) as seg:         # a writer repairs the check
        assert seg.key_check_problem.endswith("(check rewritten)")
    with Segment.open(path, readonly=True, key=seeds.SEAL_KEY) as seg:
        assert seg.key_check_problem is None and [key(m) for m in seg] == originals


def test_sealed_segment_with_a_damaged_uuid_is_read_after_salvage(tmp_path):
    path, originals = sealed_with_damaged_header(tmp_path, 24, 8)
    salvage(path, grace=0.0, settle=0.0)
    assert read_sealed(path) == originals


# ---------------------------------------------------------------- partitions

def _partition_messages(path):
    from logkit.backends.partition import open_reader
    r = open_reader(path)
    try:
        return [key(m) for m in r]
    finally:
        r.partition.close()


@SETTINGS
@given(muts=st.lists(st.one_of(st.tuples(st.just("h"), mutation(PART_HEADER)),
                               st.tuples(st.just("s"), mutation(SEG_HEADER)),
                               st.tuples(st.just("m"), mutation(MSG_FIELDS))), min_size=1, max_size=3))
def test_mutated_partition_keeps_the_rule_and_invents_nothing(tmp_path_factory, muts):
    from logkit.backends.partition import HEADER_SIZE as PH, open_reader
    d = tmp_path_factory.mktemp("part")
    orig = str(d / "orig.part")
    seeds.make_partition(orig, n=6)
    originals = _partition_messages(orig)
    by_seq = {k[0]: k for k in originals}
    r = open_reader(orig)
    try:
        halves = [(h.sequence_base, off, [(x.sequence, off + x.offset, x.length) for x in h.records()
                                          if x.kind == "committed"])
                  for h, off in zip(r.partition.halves, r.partition.offsets)]
    finally:
        r.partition.close()
    msgs = [m for _, _, ms in halves for m in ms]
    with open(orig, "rb") as f:
        buf = bytearray(f.read())
    damaged = []
    for where, (pick, field, kind, raw) in muts:
        if where == "h":
            base = 0
        elif where == "s":
            base = halves[pick % 2][1]
        else:
            base = msgs[pick % len(msgs)][1]
        got = apply(buf, base, field, kind, raw)
        if got:
            damaged.append(got)
    data = bytes(buf)
    check("partition", data)
    path = str(d / "mut.part")
    with open(path, "wb") as f:
        f.write(data)
    try:
        got = _partition_messages(path)
    except LogkitError as e:
        assert str(e).strip()
        return
    for k in got:
        assert by_seq.get(k[0]) == k, f"read a message that was never written: {k} (damaged {damaged})"
    headers_hit = any(a < PH or any(off <= a < off + 4096 for _, off, _ in halves) for a, _ in damaged)
    if not headers_hit:
        intact = {s for s, off, ln in msgs if outside((off, off + ln), damaged)} & set(by_seq)
        missing = intact - {k[0] for k in got}
        assert not missing, f"messages {sorted(missing)} lie outside the damaged bytes {damaged} but were not read"


# ---------------------------------------------------------------- pipe journals and frames

def _frame_offsets(payload: bytes) -> list[tuple[int, int]]:
    from logkit.backends.pipe import HEADER
    out, at = [], 0
    while at < len(payload):
        total = HEADER.unpack_from(payload, at)[4]
        out.append((at, total))
        at += total
    return out


def _recover(path: str) -> list:
    from logkit.backends.pipe import FrameDecoder
    from logkit.backends.pipejournal import PipeJournal
    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    store = ListStorage()
    try:
        j = PipeJournal(path, rfd, store, FrameDecoder())
        try:
            j.recover()
        finally:
            j.close()
    finally:
        os.close(rfd)
        os.close(wfd)
    return [(r.time, r.process_id, r.thread_id, r.severity, r.text, r.data_class, bytes(r.data))
            for r in store.records]


@SETTINGS
@given(muts=st.lists(st.one_of(st.tuples(st.just("h"), mutation(JOURNAL_HEADER)),
                               st.tuples(st.just("f"), mutation(FRAME_FIELDS))), min_size=1, max_size=3))
def test_mutated_journal_keeps_the_rule_and_invents_nothing(tmp_path_factory, muts):
    from logkit.backends.pipejournal import HEADER_SIZE as JH
    d = tmp_path_factory.mktemp("journal")
    orig = str(d / "orig.journal")
    payload = seeds.frames(4, big=True)
    seeds.make_journal(orig, payload)
    shutil.copy(orig, str(d / "copy.journal"))
    originals = _recover(str(d / "copy.journal"))
    assert len(originals) == 5, originals
    with open(orig, "rb") as f:
        buf = bytearray(f.read())
    start = len(buf) - len(payload)
    frames = [(start + a, start + a + n) for a, n in _frame_offsets(payload)]
    damaged = []
    for where, (pick, field, kind, raw) in muts:
        base = 0 if where == "h" else frames[pick % len(frames)][0]
        got = apply(buf, base, field, kind, raw)
        if got:
            damaged.append(got)
    data = bytes(buf)
    check("journal", data)
    check("journal_display", data)
    path = str(d / "mut.journal")
    with open(path, "wb") as f:
        f.write(data)
    try:
        got = _recover(path)
    except LogkitError as e:
        assert str(e).strip()
        assert any(a < JH for a, _ in damaged), f"a journal whose header was not touched was refused: {e}"
        return
    for rec in got:
        assert rec in originals, f"stored a record that was never sent: {rec!r:.200} (damaged {damaged})"
    if not any(a < JH for a, _ in damaged):
        # the four small records are one frame each (frames 0..3); the big one is frames 4.. (fragments)
        for i, (a, b) in enumerate(frames[:4]):
            if outside((a, b), damaged):
                assert originals[i] in got, f"record {i} (frame {a}..{b}) is outside the damaged bytes {damaged} but was not stored"
        if all(outside(fr, damaged) for fr in frames[4:]):
            assert originals[4] in got, "the fragmented record is outside the damaged bytes but was not stored"


@SETTINGS
@given(muts=st.lists(mutation(FRAME_FIELDS), min_size=1, max_size=3), cut=st.integers(0, 10 ** 6))
def test_mutated_frames_decode_every_intact_record(muts, cut):
    from logkit.backends.pipe import FrameDecoder
    payload = seeds.frames(4, big=True)
    frames = [(a, a + n) for a, n in _frame_offsets(payload)]
    dec = FrameDecoder()
    originals = [(r.time, r.text) for r in dec.feed(payload)]
    assert len(originals) == 5
    buf = bytearray(payload)
    damaged = []
    for pick, field, kind, raw in muts:
        got = apply(buf, frames[pick % len(frames)][0], field, kind, raw)
        if got:
            damaged.append(got)
    data = bytes(buf)
    check("frames", data)
    dec = FrameDecoder()
    c = cut % (len(data) + 1)
    got = [(r.time, r.text) for r in dec.feed(data[:c]) + dec.feed(data[c:])]
    for rec in got:
        assert rec in originals, f"decoded a record that was never sent (damaged {damaged})"
    for i, (a, b) in enumerate(frames[:4]):
        if outside((a, b), damaged):
            assert originals[i] in got, f"record {i} (frame {a}..{b}) is outside the damaged bytes {damaged} but was lost"
