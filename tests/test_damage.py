"""Property tests: random byte damage to a segment file.

A segment is built with a known set of messages, then hypothesis overwrites
bytes anywhere in the used part of the file (header included).  Whatever the
damage, the reader API and salvage raise nothing but LogkitError subclasses,
always terminate, never return damaged content as good, and lose no message
whose bytes were not touched.  See pyx/include/lk_segment.h ("Reader").
"""
import faulthandler
import os
import struct
import tempfile

import pytest
from hypothesis import HealthCheck, assume, event, given, note, settings
from hypothesis import strategies as st

from logkit import (
    HEADER_SIZE,
    Limits,
    LogkitError,
    NoSuchMessage,
    Segment,
    SegmentDamaged,
    salvage,
)

SIZE = 1 << 15
T0 = 1_700_000_000_000_000_000
IDENTITY_END = 388          # bytes 0..383 and the identity CRC at 384..387
WORD = 512                  # the reservation word, 8 bytes
FIELDS = ("sequence", "time", "severity", "process_id", "thread_id", "text", "data_class", "data")

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                     HealthCheck.filter_too_much])
# LOGKIT_DAMAGE_SCALE=10 runs ten times as many examples (a deeper, slower search).
SCALE = max(1, int(os.environ.get("LOGKIT_DAMAGE_SCALE", "1")))


@pytest.fixture(autouse=True)
def _watchdog():
    """'Always terminates': a walk that loops forever kills the run with a
    traceback instead of hanging it (a loop inside C cannot be interrupted)."""
    faulthandler.dump_traceback_later(300 * SCALE, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


# ---------------------------------------------------------------- building

message_st = st.tuples(
    st.just("msg"),
    st.text(max_size=40),
    st.binary(max_size=48),
    st.sampled_from(["", "j", "class.name", "d\u00e4t\u00e4"]),
    st.integers(-250, 250),
)
# A reservation left open (its writer, this process, is alive and within
# grace) or abandoned: stubs the reader must step over.
stub_st = st.tuples(st.sampled_from(["open", "abandon"]), st.integers(0, 24))
items_st = st.lists(st.one_of(message_st, message_st, message_st, stub_st), min_size=1, max_size=24) \
    .filter(lambda items: any(i[0] == "msg" for i in items))


def build(directory, items, base=1):
    """Write `items`; return (path, written, stubs, used).  written: one dict per
    committed message with its fields (to_dict) plus offset and size; stubs:
    (kind, offset, size) of every reservation left open or abandoned."""
    path = os.path.join(directory, "d.seg")
    seg = Segment.create(path, size=SIZE, family="damage", sequence_base=base)
    try:
        for i, item in enumerate(items):
            if item[0] == "msg":
                _, text, data, cls, sev = item
                assert seg.write(text, severity=sev, data=data, data_class=cls, time=T0 + i * 1000) == base + i
            else:
                r = seg.reserve(item[1], data_class="stub")
                assert r.sequence == base + i
                if item[0] == "abandon":
                    r.abandon()
        written = []
        for m in seg:
            d = m.to_dict()
            d["offset"], d["size"] = m.offset, m.size
            written.append(d)
        stubs = [("open" if r.kind == "reserved" else "abandon", r.offset, r.length)
                 for r in seg.records() if r.kind != "committed"]
        used = seg.used()
    finally:
        seg.close()
    assert [w["sequence"] for w in written] == [base + i for i, it in enumerate(items) if it[0] == "msg"]
    assert [k for k, _, _ in stubs] == [it[0] for it in items if it[0] != "msg"]
    return path, written, stubs, used


def known_bug_bytes(stubs):
    """Stub bytes whose damage triggers a bug that has its own failing test, so
    the properties stay useful for everything else (remove once fixed):
    the sequence (offset 16..23) and span (52..55) of any stub --
    test_stub_field_damage_hides_later_messages; the pid (32..35) of an open
    stub -- test_salvage_with_damaged_pid_in_open_stub."""
    out = set()
    for kind, off, _ in stubs:
        out.update(range(off + 16, off + 24))
        out.update(range(off + 52, off + 56))
        if kind == "open":
            out.update(range(off + 32, off + 36))
    return out


def payload_end(buf, off):
    tl, dl = struct.unpack_from("<II", buf, off + 40)
    (cl,) = struct.unpack_from("<H", buf, off + 48)
    return off + 64 + tl + dl + cl


# ---------------------------------------------------------------- damage

def draw_damage(data, written, stubs, used, regions):
    """A list of (offset, replacement) inside [0, used)."""
    hits = []
    if not stubs:
        regions = [r for r in regions if r != "stub_header"]
    for _ in range(data.draw(st.integers(1, 4), label="hits")):
        where = data.draw(st.sampled_from(regions), label="where")
        if where == "anywhere":
            off = data.draw(st.integers(0, used - 1))
        elif where == "msg_area":
            off = data.draw(st.integers(HEADER_SIZE, used - 1))
        elif where == "identity":
            off = data.draw(st.integers(0, IDENTITY_END - 1))
        elif where == "header":
            off = data.draw(st.integers(IDENTITY_END, HEADER_SIZE - 1))
        elif where == "word":
            off = data.draw(st.integers(WORD, WORD + 7))
        elif where == "hints":
            off = data.draw(st.integers(392, 431))
        elif where == "msg_header":
            m = data.draw(st.sampled_from(written))
            off = m["offset"] + data.draw(st.integers(0, 63))
        elif where == "stub_header":
            _, so, _ = data.draw(st.sampled_from(stubs))
            off = so + data.draw(st.integers(0, 63))
        else:   # "msg_any"
            m = data.draw(st.sampled_from(written))
            off = m["offset"] + data.draw(st.integers(0, m["size"] - 1))
        how = data.draw(st.sampled_from(["bytes", "zeros", "flip", "ones", "sentinel"]))
        if how == "bytes":
            repl = data.draw(st.binary(min_size=1, max_size=24))
        elif how == "zeros":
            repl = b"\0" * data.draw(st.integers(1, 72))
        elif how == "ones":
            repl = b"\xff" * data.draw(st.integers(1, 8))
        elif how == "sentinel":
            repl = b"\xff\xfeLK" + data.draw(st.binary(max_size=8))
        else:
            repl = ("flip", data.draw(st.integers(1, 255)))
        hits.append((off, repl))
    return hits


def apply_damage(buf, hits, used):
    for off, repl in hits:
        if isinstance(repl, tuple):
            buf[off] ^= repl[1]
        else:
            repl = repl[:used - off]
            buf[off:off + len(repl)] = repl


def write_file(path, buf):
    with open(path, "r+b") as f:
        f.write(buf)


# ---------------------------------------------------------------- checking

def guarded(fn):
    """Run fn; LogkitError is an acceptable answer, anything else fails the test."""
    try:
        return fn(), None
    except LogkitError as e:
        return None, e


def key(m):
    return {k: m[k] for k in FIELDS}


def check_returned(msgs, by_seq):
    """Every returned message is one that was written, byte for byte; sequences increase."""
    seqs = [m["sequence"] for m in msgs]
    assert seqs == sorted(set(seqs)), f"sequences not strictly increasing: {seqs}"
    for m in msgs:
        assert m["sequence"] in by_seq, f"returned a message never written: {m}"
        w = by_seq[m["sequence"]]
        assert key(m) == key(w), f"returned damaged content as good:\n{m}\nwritten:\n{w}"
        assert m["offset"] == w["offset"]
        assert m["checksum_ok"]


def read_all(seg):
    out = []
    for m in seg:
        d = m.to_dict()
        d["offset"], d["size"], d["checksum_ok"] = m.offset, m.size, m.checksum_ok()
        out.append(d)
        assert len(out) <= SIZE // 64, "iteration returned more messages than can fit"
    return out


def exercise_reader(seg, written, by_seq):
    """Iterate, find, limits, scan, records: only LogkitError may escape.
    Returns the list of messages iteration gave (or None if it raised)."""
    msgs, err = guarded(lambda: read_all(seg))
    if err is not None:
        event(f"iteration raised {type(err).__name__}")
        assert isinstance(err, SegmentDamaged), err
    else:
        check_returned(msgs, by_seq)
    # find by sequence agrees with the walk
    top = max(w["sequence"] for w in written)
    probes = sorted({0, 1, written[0]["sequence"] - 1} | {w["sequence"] for w in written} | {top + 1, top + 1000})
    for s in probes:
        got, err = guarded(lambda: seg.find(sequence=s))
        if msgs is not None:
            expect = next((m for m in msgs if m["sequence"] >= s), None)
            if expect is None:
                assert isinstance(err, NoSuchMessage), (s, got, err)
            else:
                assert err is None, (s, err)
                assert got.sequence == expect["sequence"] and got.offset == expect["offset"]
    tprobes = sorted({0, T0 - 1} | {w["time"] for w in written} | {w["time"] + 1 for w in written})
    for t in tprobes:
        got, err = guarded(lambda: seg.find(time=t))
        if msgs is not None:
            expect = next((m for m in msgs if m["time"] >= t), None)
            if expect is None:
                assert isinstance(err, NoSuchMessage), (t, got, err)
            else:
                assert err is None, (t, err)
                assert got.offset == expect["offset"]
                assert got.to_dict() == {k: expect[k] for k in got.to_dict()}
    lim, err = guarded(seg.limits)
    if msgs is not None and err is None:
        if msgs:
            assert lim == Limits(msgs[0]["sequence"], msgs[0]["time"],
                                 msgs[-1]["sequence"], msgs[-1]["time"]), (lim, msgs[0], msgs[-1])
        else:
            assert lim is None
    recs, err = guarded(seg.records)
    if recs is not None:
        pos = HEADER_SIZE
        for r in recs:
            assert r.offset == pos and r.length > 0, recs
            assert r.kind in ("committed", "reserved", "abandoned", "gap", "damaged")
            pos = r.offset + r.length
        assert pos <= SIZE
        if msgs is not None:
            assert [r.offset for r in recs if r.kind == "committed"] == [m["offset"] for m in msgs]
    sc, err = guarded(seg.scan)
    if sc is not None and msgs is not None:
        assert sc["committed"] == len(msgs)
    guarded(seg.stats)
    guarded(seg.header)
    return msgs


def untouched(written, changed):
    out = []
    for w in written:
        a, b = w["offset"], w["offset"] + w["size"]
        if not any(a <= c < b for c in changed):
            out.append(w)
    return out


def word_next(buf):
    (w,) = struct.unpack_from("<Q", buf, WORD)
    return (w & 0xFFFFFFFF) * 8


def run_damage_case(items, data, regions):
    # sequence_base > 1 is every segment after the first of a family; a rebuilt
    # header must derive a workable base from the messages themselves.
    base = data.draw(st.sampled_from([1, 1, 1000, 1 << 40]), label="sequence_base")
    with tempfile.TemporaryDirectory() as d:
        path, written, stubs, used = build(d, items, base)
        by_seq = {w["sequence"]: w for w in written}
        with open(path, "rb") as f:
            orig = f.read()
        buf = bytearray(orig)
        hits = draw_damage(data, written, stubs, used, regions)
        apply_damage(buf, hits, used)
        changed = [i for i in range(used) if orig[i] != buf[i]]
        assume(changed)
        assume(not known_bug_bytes(stubs).intersection(changed))
        write_file(path, buf)
        intact = untouched(written, changed)
        identity_hit = any(c < IDENTITY_END for c in changed)
        msg_changes = [c for c in changed if c >= HEADER_SIZE]
        nxt = word_next(buf)
        # Known limitation (see test_next_shrunk_hides_messages_after_damage):
        # NEXT lowered to a still-valid offset below the real end makes the
        # reader stop at the first damage past NEXT.
        next_shrunk = HEADER_SIZE <= nxt < used
        note(f"changed={changed[:20]}{'...' if len(changed) > 20 else ''} "
             f"identity_hit={identity_hit} next_shrunk={next_shrunk} "
             f"intact={[w['sequence'] for w in intact]}")

        # ---- the reader, before salvage
        seg, err = guarded(lambda: Segment.open(path, readonly=True))
        if identity_hit:
            assert isinstance(err, SegmentDamaged), "identity damage must be refused at open"
            event("identity damaged: open refused")
        else:
            assert err is None, f"open failed without identity damage: {err!r}"
            try:
                msgs = exercise_reader(seg, written, by_seq)
                assert msgs is not None
                got = {m["sequence"] for m in msgs}
                if next_shrunk and msg_changes:
                    event("NEXT lowered below the end, plus message damage")
                    first_bad = min(msg_changes)
                    need = [w for w in intact if w["offset"] + w["size"] <= first_bad]
                else:
                    need = intact
                missing = [w["sequence"] for w in need if w["sequence"] not in got]
                assert not missing, f"reader lost untouched messages {missing}"
            finally:
                seg.close()

        # ---- salvage
        rep, err = guarded(lambda: salvage(path, grace=60.0))
        assert err is None, f"salvage raised {err!r}"
        assert rep.header_rebuilt == identity_hit
        with open(path, "rb") as f:
            after = f.read()
        for w in intact:
            a, b = w["offset"], w["offset"] + w["size"]
            assert after[a:b] == orig[a:b], f"salvage changed the bytes of intact message {w['sequence']}"
        seg, err = guarded(lambda: Segment.open(path))
        assert err is None, f"open after salvage failed: {err!r}"
        try:
            msgs = exercise_reader(seg, written, by_seq)
            assert msgs is not None
            got = {m["sequence"] for m in msgs}
            missing = [w["sequence"] for w in intact if w["sequence"] not in got]
            assert not missing, f"after salvage, untouched messages {missing} are missing\n{rep}"
            assert rep.kept >= len(msgs)
            if identity_hit or rep.damaged:
                assert not seg.in_service
        finally:
            seg.close()

        # ---- a second salvage changes no message and loses nothing
        rep2, err = guarded(lambda: salvage(path, grace=60.0))
        assert err is None, f"second salvage raised {err!r}"
        assert not rep2.header_rebuilt
        assert rep2.kept == rep.kept
        with open(path, "rb") as f:
            after2 = f.read()
        for w in intact:
            a, b = w["offset"], w["offset"] + w["size"]
            assert after2[a:b] == orig[a:b]


# ---------------------------------------------------------------- properties

@settings(max_examples=700 * SCALE, **SETTINGS)
@given(items=items_st, data=st.data())
def test_random_damage_anywhere(items, data):
    run_damage_case(items, data, ["anywhere", "identity", "header", "header", "word", "hints",
                                  "msg_header", "msg_any", "msg_area", "stub_header"])


@settings(max_examples=600 * SCALE, **SETTINGS)
@given(items=items_st, data=st.data())
def test_random_damage_to_messages(items, data):
    """Damage confined to the message area (no header damage): the reader alone
    must keep every untouched message, with no help from salvage."""
    run_damage_case(items, data, ["msg_header", "msg_any", "msg_area", "stub_header"])


@settings(max_examples=500 * SCALE, **SETTINGS)
@given(items=items_st, data=st.data())
def test_damaged_content_is_never_returned_as_good(items, data):
    """Every returned message equals the one written with that sequence; a
    message whose checksummed bytes (0..payload end) changed is never returned,
    and one damaged only in its padding still is."""
    with tempfile.TemporaryDirectory() as d:
        path, written, stubs, used = build(d, items)
        by_seq = {w["sequence"]: w for w in written}
        with open(path, "rb") as f:
            orig = f.read()
        buf = bytearray(orig)
        apply_damage(buf, draw_damage(data, written, stubs, used, ["msg_header", "msg_any", "stub_header"]), used)
        changed = [i for i in range(HEADER_SIZE, used) if orig[i] != buf[i]]
        assume(changed)
        assume(not known_bug_bytes(stubs).intersection(changed))
        write_file(path, buf)
        with Segment.open(path, readonly=True) as seg:
            msgs = read_all(seg)
        check_returned(msgs, by_seq)
        got = {m["sequence"] for m in msgs}
        for w in written:
            a, end, b = w["offset"], payload_end(orig, w["offset"]), w["offset"] + w["size"]
            hit = [c for c in changed if a <= c < b]
            if any(c < end for c in hit):
                # any change to sentinel, state, header fields, checksum or payload
                assert w["sequence"] not in got or \
                    all(orig[c] == buf[c] for c in range(a, end)), f"message {w['sequence']} returned"
            elif hit:
                event("damage confined to padding")
                assert w["sequence"] in got, "padding damage lost a message"


# ---------------------------------------------------------------- isolated cases

def _build_n(d, n, text="message"):
    path, written, _, used = build(d, [("msg", f"{text} {i}", bytes([i]) * 5, "", 0) for i in range(n)])
    return path, written, used


@pytest.mark.xfail(strict=True, reason="known limitation: a reader trusts NEXT (header offset 512) "
                   "when it is a valid offset, and stops at the first damage past it")
def test_next_shrunk_hides_messages_after_damage():
    with tempfile.TemporaryDirectory() as d:
        path, written, used = _build_n(d, 10)
        buf = bytearray(open(path, "rb").read())
        # NEXT := start of message 3 (still a valid offset), and damage the
        # sentinel of message 5 (a checksum failure alone would be scanned past)
        struct.pack_into("<I", buf, WORD, written[2]["offset"] // 8)
        buf[written[4]["offset"]] ^= 1
        write_file(path, buf)
        with Segment.open(path, readonly=True) as seg:
            got = [m.sequence for m in seg]
        assert got == [1, 2, 3, 4, 6, 7, 8, 9, 10]


def test_next_shrunk_salvage_repairs():
    with tempfile.TemporaryDirectory() as d:
        path, written, used = _build_n(d, 10)
        buf = bytearray(open(path, "rb").read())
        struct.pack_into("<I", buf, WORD, written[2]["offset"] // 8)
        buf[written[4]["offset"]] ^= 1
        write_file(path, buf)
        with Segment.open(path, readonly=True) as seg:   # the walk itself passes NEXT
            assert [m.sequence for m in seg][:4] == [1, 2, 3, 4]
        rep = salvage(path)
        assert rep.word_repaired and rep.taken_out_of_service
        assert rep.kept == 9
        with Segment.open(path) as seg:
            assert [m.sequence for m in seg] == [1, 2, 3, 4, 6, 7, 8, 9, 10]
            assert seg.header()["next_offset"] == used


@pytest.mark.parametrize("nxt", [0, 8, HEADER_SIZE // 8 - 1, SIZE // 8 + 1, 0xFFFFFFFF])
def test_scribbled_next_reads_whole_region(nxt):
    with tempfile.TemporaryDirectory() as d:
        path, written, used = _build_n(d, 10)
        buf = bytearray(open(path, "rb").read())
        struct.pack_into("<I", buf, WORD, nxt)
        buf[written[4]["offset"] + 70] ^= 1
        write_file(path, buf)
        with Segment.open(path) as seg:
            assert [m.sequence for m in seg] == [1, 2, 3, 4, 6, 7, 8, 9, 10]
            with pytest.raises(SegmentDamaged):
                seg.write("through a scribbled word")
        salvage(path)
        with Segment.open(path) as seg:
            assert [m.sequence for m in seg] == [1, 2, 3, 4, 6, 7, 8, 9, 10]
            assert seg.header()["next_offset"] == used


def test_stub_length_damage_is_caught_and_the_following_message_kept():
    """Damage to a stub's length fields (two fields, kept consistent with each
    other) is caught by the stub checksum (offset 56): the stub is reported as
    damage, and the intact committed message that follows it is still found
    by resynchronisation, read, and kept by salvage."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.seg")
        with Segment.create(path, size=SIZE) as seg:
            seg.write("before")
            r = seg.reserve(8)
            r.abandon()                       # an abandoned stub of 72 bytes
            seg.write("victim, never touched")
            seg.write("after")
            stub = r.offset
            victim = [m for m in seg if m.text.startswith("victim")][0]
            vo, vs = victim.offset, victim.size
        buf = bytearray(open(path, "rb").read())
        orig_victim = bytes(buf[vo:vo + vs])
        struct.pack_into("<I", buf, stub + 8, 72 + vs)        # total length
        struct.pack_into("<I", buf, stub + 40, 8 + vs)        # text length, consistent
        write_file(path, buf)
        assert bytes(buf[vo:vo + vs]) == orig_victim
        with Segment.open(path) as seg:
            texts = [m.text for m in seg]
        rep = salvage(path)
        with Segment.open(path) as seg:
            texts_after = [m.text for m in seg]
        assert texts == ["before", "victim, never touched", "after"]
        assert texts_after == texts
        assert not rep.clean


# ---------------------------------------------------------------- exhaustive single bytes

def _mixed_segment(buf, base=1):
    """Committed messages of several shapes, an open reservation and an
    abandoned one, formatted in `buf`.  Returns (written, stubs, used)."""
    seg = Segment.format(buf, 0, SIZE, family="exhaustive", sequence_base=base)
    specs = [("", b"", ""), ("short", b"", ""), ("with data", bytes(range(40)), "bin"),
             ("\u00fcnic\u00f6de \u2603", b"\xff\xfeLK" * 4, "d\u00e4t\u00e4"), ("x" * 70, b"", "")]
    for i, (t, d, c) in enumerate(specs):
        seg.write(t, severity=i - 2, data=d, data_class=c, time=T0 + i)
    seg.reserve(3, 2, data_class="open")            # left open (writer alive, within grace)
    seg.write("after the open stub", time=T0 + 10)
    ab = seg.reserve(9)
    ab.abandon()
    seg.write("after the abandoned stub", data=b"\0" * 16, time=T0 + 11)
    seg.write("", data=b"last", time=T0 + 12)
    written = []
    for m in seg:
        d = m.to_dict()
        d["offset"], d["size"] = m.offset, m.size
        written.append(d)
    stubs = [("open" if r.kind == "reserved" else "abandon", r.offset, r.length)
             for r in seg.records() if r.kind != "committed"]
    used = seg.used()
    seg.close()
    assert len(written) == 8 and [k for k, _, _ in stubs] == ["open", "abandon"]
    return written, stubs, used


def test_every_single_byte_damage_in_the_message_area():
    """Exhaustive: every byte of the message area (committed messages, an open
    stub, an abandoned stub) is changed in turn, three ways.  The reader alone
    keeps every untouched message and returns nothing damaged; salvage then
    keeps them too and never changes their bytes.  (Stub sequence, span and
    pid bytes are left to their own failing tests: known_bug_bytes.)"""
    clean = bytearray(SIZE)
    written, stubs, used = _mixed_segment(clean)
    skip = known_bug_bytes(stubs)
    by_seq = {w["sequence"]: w for w in written}
    failures = []
    cases = 0
    for off in range(HEADER_SIZE, used):
        if off in skip:
            continue
        for how in ("xor01", "xorff", "zero"):
            buf = bytearray(clean)
            if how == "zero":
                if buf[off] == 0:
                    continue
                buf[off] = 0
            else:
                buf[off] ^= 0x01 if how == "xor01" else 0xFF
            cases += 1
            intact = untouched(written, [off])
            seg = Segment.from_buffer(buf, 0, SIZE)
            msgs = exercise_reader(seg, written, by_seq)
            got = {m["sequence"] for m in msgs}
            lost = [w["sequence"] for w in intact if w["sequence"] not in got]
            if lost:
                failures.append((off, how, "reader", lost))
            try:
                rep = salvage(seg, grace=60.0)
            except Exception as e:      # noqa: BLE001 - collect every case, report together
                failures.append((off, how, "salvage raised", repr(e)))
                seg.close()
                continue
            assert not rep.header_rebuilt
            msgs = read_all(seg)
            check_returned(msgs, by_seq)
            got = {m["sequence"] for m in msgs}
            lost = [w["sequence"] for w in intact if w["sequence"] not in got]
            if lost:
                failures.append((off, how, "salvage", lost))
            for w in intact:
                a, b = w["offset"], w["offset"] + w["size"]
                if buf[a:b] != clean[a:b]:
                    failures.append((off, how, "salvage changed bytes", w["sequence"]))
            seg.close()
    assert cases > 2000
    assert not failures, failures[:20]


@pytest.mark.parametrize("base", [1, 1000])
def test_every_single_byte_damage_in_the_header(tmp_path, base):
    """Exhaustive over the 4096 header bytes (bitwise complement): outside the
    identity block the reader loses nothing; inside it open() refuses with
    SegmentDamaged and salvage rebuilds the header and recovers everything."""
    clean = bytearray(SIZE)
    written, stubs, used = _mixed_segment(clean, base)
    by_seq = {w["sequence"]: w for w in written}
    all_seqs = [w["sequence"] for w in written]
    path = tmp_path / "h.seg"
    failures = []
    for off in range(HEADER_SIZE):
        buf = bytearray(clean)
        buf[off] ^= 0xFF
        if off < IDENTITY_END:
            with pytest.raises(SegmentDamaged):
                Segment.from_buffer(buf, 0, SIZE)
            path.write_bytes(buf)
            rep = salvage(path, grace=60.0)
            if not rep.header_rebuilt:
                failures.append((off, "not rebuilt"))
            with Segment.open(path) as seg:
                msgs = read_all(seg)
            after = path.read_bytes()
        else:
            seg = Segment.from_buffer(buf, 0, SIZE)
            msgs = exercise_reader(seg, written, by_seq)
            if [m["sequence"] for m in msgs] != all_seqs:
                failures.append((off, "reader", [m["sequence"] for m in msgs]))
            salvage(seg, grace=60.0)
            msgs = read_all(seg)
            seg.close()
            after = bytes(buf)
        check_returned(msgs, by_seq)
        if [m["sequence"] for m in msgs] != all_seqs:
            failures.append((off, "after salvage", [m["sequence"] for m in msgs]))
        for w in written:
            a, b = w["offset"], w["offset"] + w["size"]
            if after[a:b] != clean[a:b]:
                failures.append((off, "salvage changed committed message", w["sequence"]))
    assert not failures, failures[:20]


# ---------------------------------------------------------------- bugs found by the tests above

@pytest.mark.parametrize("stub_kind, byte, flip", [
    ("open", 17, 0x01),         # sequence + 256
    ("abandon", 16, 0x01),      # sequence + 1: only the next message is lost
    ("open", 53, 0x01),         # span 257
    ("abandon", 52, 0xFE),      # span 255
])
def test_stub_field_damage_does_not_hide_later_messages(stub_kind, byte, flip):
    """The sequence (message offset 16) and span (offset 52) of a reserved or
    abandoned stub are covered by the stub checksum (offset 56), so one damaged
    byte in either makes that stub damage; it never makes the walk expect
    sequence numbers far ahead, and every later intact message is still read,
    found, counted in the limits and kept by salvage."""
    clean = bytearray(SIZE)
    written, stubs, used = _mixed_segment(clean)
    kind, so, _ = next(s for s in stubs if s[0] == stub_kind)
    later = [w["sequence"] for w in written if w["offset"] > so]
    buf = bytearray(clean)
    buf[so + byte] ^= flip
    with Segment.from_buffer(buf, 0, SIZE) as seg:
        got = [m.sequence for m in seg]
        salvage(seg, grace=60.0)
        got_after = [m.sequence for m in seg]
        last = seg.limits().last_sequence
    assert got == [w["sequence"] for w in written], f"reader lost {sorted(set(later) - set(got))}"
    assert got_after == got
    assert last == written[-1]["sequence"]


def test_salvage_with_damaged_pid_in_open_stub():
    """One damaged byte in an open stub's process id: the stub checksum (message
    offset 56) exposes it as damage, salvage raises nothing, and every finished
    message survives; a pid beyond any pid_max is never taken for a live process."""
    from logkit.salvager import process_alive
    assert process_alive(2**31 + 5) is False and process_alive(2**32 - 1) is False
    clean = bytearray(SIZE)
    written, stubs, used = _mixed_segment(clean)
    _, so, _ = next(s for s in stubs if s[0] == "open")
    buf = bytearray(clean)
    buf[so + 35] ^= 0xFF                    # pid's top byte
    with Segment.from_buffer(buf, 0, SIZE) as seg:
        rep = salvage(seg, grace=60.0)
        assert rep.open == [] and rep.abandoned == 0
        assert any(a <= so < b for a, b in rep.damaged), rep.damaged
        assert [m.sequence for m in seg] == [w["sequence"] for w in written]
