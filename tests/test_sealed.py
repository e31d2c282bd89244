"""Sealed messages end to end (issue 6, test 5): format version 2 segments,
FamilyWriter/FamilyReader with a key file, logkit.Handler with a config
file's key_file, wrong and missing keys, key-file permissions, tampering,
two writing processes (no (segment, nonce) pair twice), key rotation,
salvage, and version 1 segments unchanged.  docs/security.md describes the
construction; docs/format.md, "Version 2: sealed segments", the bytes."""
from __future__ import annotations

import logging
import multiprocessing
import os
import struct
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logkit
from logkit import FamilyReader, FamilyWriter, Segment, crc32c, open_reader, salvage
from logkit import config as lkconfig
from logkit._crypto import open_message
from logkit.crypto import (
    KeyFileNotFound,
    KeyFilePermissions,
    MessageTampered,
    MissingKey,
    WrongKey,
    add_key,
    generate_key_file,
    key_check,
    load_key_file,
    message_nonce,
    segment_key,
)

SEGMENT = 8192


@pytest.fixture
def keyfile(tmp_path):
    p = tmp_path / "log.keys"
    generate_key_file(p)
    return str(p)


def _texts(reader):
    return [(m.sequence, m.text, bytes(m.data), m.data_class) for m in reader]


# ------------------------------------------------------------------ segment level

def test_a_sealed_segment_is_version_2_and_its_messages_verify_against_the_primitives(tmp_path, keyfile):
    ring = load_key_file(keyfile)
    seg = Segment.create(tmp_path / "s", size=65536, key=(ring.current, ring.current_key))
    assert seg.sealed and seg.has_key and seg.key_id == 1
    seg.write("secret text", severity=30, data=b"\x00\x01binary", data_class="raw", time=123)
    with seg.reserve(5, 3, data_class="c") as r:
        r.text[:] = b"12345"
        r.data[:] = b"xyz"
    h = seg.header()
    assert h["version"] == logkit._segment.FORMAT_VERSION_SEALED == 4 and h["flags"] == 1
    assert h["key_id"] == 1
    sk = segment_key(ring.current_key, seg.uuid)
    assert h["key_check"] == key_check(sk)
    region = bytearray((tmp_path / "s").read_bytes())
    assert b"secret" not in region and b"binary" not in region and b"12345" not in region
    recs = seg.records()
    assert [r.kind for r in recs] == ["committed", "committed"]
    m0 = recs[0].offset
    total, sev, flags, seq = struct.unpack_from("<IhHQ", region, m0 + 8)
    tl, dl, cl, kid = struct.unpack_from("<IIHH", region, m0 + 40)
    assert (sev, flags, seq, kid) == (30, 0x0002, 1, 1)
    assert total == (64 + tl + cl + dl + 16 + 7) & ~7            # the tag counted in total
    # The CRC-32C covers the stored (sealed) bytes, tag included.
    assert struct.unpack_from("<I", region, m0 + 60)[0] == crc32c(
        region[m0 + 8:m0 + 60] + region[m0 + 64:m0 + 64 + tl + cl + dl + 16])
    # The independent primitive opens it: RFC 8439 under the segment key, nonce = sequence.
    copy = bytearray(region[m0:m0 + total])
    open_message(sk, copy)
    assert copy[64:64 + tl] == b"secret text" and copy[64 + tl:64 + tl + cl] == b"raw"
    seg.close()
    with Segment.open(tmp_path / "s", readonly=True, key=ring) as seg:
        assert [(m.sequence, m.text, bytes(m.data), m.data_class, m.severity, m.time if m.sequence == 1 else 0)
                for m in seg] == [(1, "secret text", b"\x00\x01binary", "raw", 30, 123), (2, "12345", b"xyz", "c", 20, 0)]
        m = seg.find(sequence=2)
        assert m.sealed and bytes(m.text_bytes) == b"12345" and m.checksum_ok()


def test_sealed_segment_refuses_a_given_uuid_and_bad_keys(tmp_path):
    import uuid
    with pytest.raises(logkit.InvalidArgument, match="segment_uuid"):
        Segment.create(tmp_path / "a", key=(1, bytes(32)), segment_uuid=uuid.uuid4())
    with pytest.raises(logkit.InvalidArgument, match="32 bytes"):
        Segment.create(tmp_path / "a", key=(1, b"short"))
    with pytest.raises(logkit.InvalidArgument, match="1..65535"):
        Segment.create(tmp_path / "a", key=(0, bytes(32)))
    assert not (tmp_path / "a").exists()


def test_a_sealed_segment_without_its_key_reads_metadata_and_refuses_writes(tmp_path, keyfile):
    ring = load_key_file(keyfile)
    with Segment.create(tmp_path / "s", size=65536, key=(1, ring.key(1))) as seg:
        seg.write("hello", severity=40, data=b"d", data_class="json", time=5_000)
    with Segment.open(tmp_path / "s") as seg:
        assert seg.sealed and not seg.has_key
        (m,) = list(seg)
        assert (m.text, bytes(m.data), m.data.tobytes(), m.data_class) == ("[encrypted]", b"", b"", "json")
        assert (m.sequence, m.time, m.severity, m.process_id, m.key_id) == (1, 5_000, 40, os.getpid(), 1)
        assert m.to_dict()["text"] == "[encrypted]"
        assert seg.find(time=5_000).sequence == 1
        for attempt in (lambda: seg.write("x"), lambda: seg.reserve(1),
                        lambda: seg.write_as("x", 20, b"", "", 0, 1, 1)):
            with pytest.raises(MissingKey, match="key id 1"):
                attempt()
    # A key ring lacking id 1 leaves it without a key too; a tuple with another id as well.
    other = generate_key_file(tmp_path / "other.keys", key_id=7)
    with Segment.open(tmp_path / "s", readonly=True, key=other) as seg:
        assert not seg.has_key and next(iter(seg)).text == "[encrypted]"
    with Segment.open(tmp_path / "s", readonly=True, key=(7, other.key(7))) as seg:
        assert not seg.has_key


def test_a_wrong_key_is_a_clear_error_naming_segment_and_key_id(tmp_path, keyfile):
    ring = load_key_file(keyfile)
    with Segment.create(tmp_path / "s", size=65536, key=(1, ring.key(1))) as seg:
        seg.write("hello")
    wrong = generate_key_file(tmp_path / "wrong.keys")        # also id 1, other bytes
    with pytest.raises(WrongKey) as e:
        Segment.open(tmp_path / "s", readonly=True, key=wrong)
    assert str(tmp_path / "s") in str(e.value) and "key id 1" in str(e.value) and "wrong.keys" in str(e.value)


# ------------------------------------------------------------------ families

def test_family_round_trip_with_a_key_file(tmp_path, keyfile):
    d = tmp_path / "fam"
    w = FamilyWriter(d, "app", segment_size=SEGMENT, key_file=keyfile)
    for i in range(200):                                       # several rotations
        w.write(f"message {i}", severity=i % 50, data=f"data {i}".encode(), data_class="raw")
    w.close()
    r = open_reader(d, "app", key_file=keyfile)
    got = _texts(r)
    assert got == [(i + 1, f"message {i}", f"data {i}".encode(), "raw") for i in range(200)]
    paths = r.segment_paths()
    assert len(paths) > 3
    for p in paths:
        raw = open(p, "rb").read()
        assert b"message" not in raw and b"data 1" not in raw
        with Segment.open(p, readonly=True) as s:
            assert s.sealed and s.key_id == 1
    # Without the key: metadata, "[encrypted]", and seeking by sequence and time.
    plain = FamilyReader(d, "app")
    assert [(m.sequence, m.text, bytes(m.data), m.severity) for m in plain] == [
        (i + 1, "[encrypted]", b"", i % 50) for i in range(200)]
    m = plain.seek(sequence=150)
    assert m.sequence == 150 and m.text == "[encrypted]"
    t = m.time
    assert plain.seek(time=t).sequence == 150
    # A wrong key file: a clear error naming the segment and the key id.
    wrong = generate_key_file(tmp_path / "wrong.keys")
    with pytest.raises(WrongKey, match="key id 1"):
        list(FamilyReader(d, "app", key_file=str(tmp_path / "wrong.keys")))
    del wrong


def test_a_key_file_with_loose_permissions_or_missing_refuses_the_log(tmp_path, keyfile):
    os.chmod(keyfile, 0o644)
    with pytest.raises(KeyFilePermissions, match="0644.*chmod 600"):
        FamilyWriter(tmp_path, "app", key_file=keyfile)
    with pytest.raises(KeyFilePermissions):
        FamilyReader(tmp_path, "app", key_file=keyfile)
    with pytest.raises(KeyFileNotFound, match="does not exist"):
        FamilyWriter(tmp_path, "app", key_file=tmp_path / "nope.keys")
    assert not (tmp_path / "app").exists()                    # nothing was created
    cfg = tmp_path / "logkit.toml"
    cfg.write_text(f'[log.app]\ndirectory = "{tmp_path}"\nkey_file = "{keyfile}"\n')
    # The config's one validation (check_options) refuses it first, naming
    # the file, the table and the key, with the key file's own message.
    with pytest.raises(logkit.ConfigError, match=r"\[log\.app\]: key_file: .*0644.*chmod 600"):
        logkit.Handler(config=str(cfg))


def test_config_key_file_is_a_family_and_partition_option_refused_elsewhere(tmp_path, keyfile):
    cfg = tmp_path / "logkit.toml"
    cfg.write_text(textwrap.dedent(f"""
        [log.app]
        directory = "{tmp_path}"
        key_file = "log.keys"
    """))
    lc = lkconfig.load(cfg).get("app")
    assert lc.storage_options["key_file"] == keyfile             # relative to the config file
    cfg.write_text(textwrap.dedent(f"""
        [log.buf]
        storage = "partition"
        path = "{tmp_path / 'buf.part'}"
        key_file = "log.keys"
    """))
    assert lkconfig.load(cfg).get("buf").storage_options["key_file"] == keyfile
    cfg.write_text(textwrap.dedent(f"""
        [log.txt]
        storage = "plainfile"
        path = "{tmp_path / 'app.log'}"
        key_file = "log.keys"
    """))
    with pytest.raises(lkconfig.ConfigError) as e:
        lkconfig.load(cfg)
    (p,) = [str(p) for p in e.value.problems]
    assert p.startswith(f"{cfg} [log.txt]: key_file: storage backend 'plainfile' cannot encrypt"), p
    assert "'family' or 'partition'" in p, p


def test_handler_round_trip_with_a_config_key_file(tmp_path, keyfile):
    d = tmp_path / "logs"
    d.mkdir()
    cfg = tmp_path / "logkit.toml"
    cfg.write_text(f'[log.app]\ndirectory = "{d}"\nsegment_size = {SEGMENT}\nkey_file = "{keyfile}"\n')
    h = logkit.Handler(config=str(cfg))
    assert h._emitters[0].sink is not None                     # the C path (FamilySink.put)
    log = logging.getLogger("sealed-handler-test")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(h)
    try:
        for i in range(120):
            log.info("record %d", i, extra={"n": i} if i % 10 == 0 else None)
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(h)
        h.close()
    got = list(open_reader(d, "app", key_file=keyfile))
    assert [m.text for m in got] == [f"record {i}" for i in range(120)] + ["failed"]
    assert got[0].data_class == "record" and got[0].fields == {"n": 0} and got[0].logger == "sealed-handler-test"
    assert "ValueError: boom" in got[-1].traceback and got[-1].fields["exc_type"] == "ValueError"
    for p in open_reader(d, "app").segment_paths():
        assert b"record 1" not in open(p, "rb").read()       # the texts (the class name is not secret)
    assert [m.text for m in open_reader(d, "app")][:2] == ["[encrypted]"] * 2


def test_key_rotation_new_segments_use_the_new_id_old_ones_still_read(tmp_path, keyfile):
    d = tmp_path / "fam"
    w = FamilyWriter(d, "app", segment_size=SEGMENT, key_file=keyfile)
    for i in range(60):
        w.write(f"old {i}")
    add_key(keyfile)
    for i in range(120):
        w.write(f"new {i}")
    w.close()
    r = FamilyReader(d, "app", key_file=keyfile)
    assert [m.text for m in r] == [f"old {i}" for i in range(60)] + [f"new {i}" for i in range(120)]
    ids = []
    for p in r.segment_paths():
        with Segment.open(p, readonly=True) as s:
            ids.append(s.key_id)
            assert {m.key_id for m in s} <= {s.key_id}
    assert ids[0] == 1 and ids[-1] == 2 and ids == sorted(ids)
    # A writer that opens the family now seals with key 2 at once (its live segment is key 2).
    w2 = FamilyWriter(d, "app", segment_size=SEGMENT, key_file=keyfile)
    assert w2.segment.key_id == 2
    w2.close()


def test_a_writer_with_a_key_file_never_writes_plain_into_an_unsealed_family(tmp_path, keyfile):
    d = tmp_path / "fam"
    with FamilyWriter(d, "app", segment_size=SEGMENT) as w:
        w.write("plain before")
    with Segment.open(d / "app", readonly=True) as s:
        assert not s.sealed and s.header()["version"] == 3
    w = FamilyWriter(d, "app", segment_size=SEGMENT, key_file=keyfile)
    assert w.segment.sealed                                    # rotated to a sealed segment first
    w.write("sealed after")
    w.close()
    r = FamilyReader(d, "app", key_file=keyfile)
    assert [m.text for m in r] == ["plain before", "sealed after"]
    assert [m.text for m in FamilyReader(d, "app")] == ["plain before", "[encrypted]"]
    # And a writer without the key file refuses the sealed live segment.
    with pytest.raises(MissingKey, match="no key_file"):
        FamilyWriter(d, "app", segment_size=SEGMENT)


# ------------------------------------------------------------------ tampering

def _sealed_region(ring):
    buf = bytearray(16384)
    seg = Segment.format(buf, key=(1, ring.key(1)))
    seg.write("before", data=b"b")
    seg.write("the sealed text", data=b"\x00binary\xff", data_class="cls", severity=33)
    seg.write("after")
    offs = [r.offset for r in seg.records()]
    seg.close()
    return bytes(buf), offs[1]


_RING = None


def _ring():
    global _RING
    if _RING is None:
        from logkit.crypto import KeyRing
        _RING = KeyRing(path="<test>", keys={1: bytes(range(32))}, current=1)
    return _RING


def _authenticated_positions():
    region, at = _sealed_region(_ring())
    tl, dl, cl = struct.unpack_from("<IIH", region, at + 40)
    return region, at, list(range(at + 8, at + 56)) + list(range(at + 64, at + 64 + tl + cl + dl + 16))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_flipped_bit_in_a_sealed_message_is_never_shown_as_good(data):
    """Anywhere in the payload (text, class name, data, tag) or the
    authenticated header fields (bytes 8..55): with the CRC-32C left as it is,
    the walk reports damage; with the CRC fixed up (an attacker), the message
    may be yielded, but reading it raises MessageTampered.  The neighbours
    still read."""
    region, at, positions = _authenticated_positions()
    pos = data.draw(st.sampled_from(positions), label="position")
    bit = data.draw(st.integers(0, 7), label="bit")
    fix_crc = data.draw(st.booleans(), label="fix crc")
    buf = bytearray(region)
    buf[pos] ^= 1 << bit
    if fix_crc:
        m = buf[at:]
        tl, dl, cl, kid = struct.unpack_from("<IIHH", m, 40)
        n = min(tl + cl + dl + (16 if kid else 0), len(m) - 64)
        struct.pack_into("<I", buf, at + 56, crc32c(bytes(m[8:12] + m[16:24] + m[32:56])))
        struct.pack_into("<I", buf, at + 60, crc32c(bytes(m[8:60] + m[64:64 + n])))
    seg = Segment.from_buffer(buf, readonly=True, key=_ring())
    try:
        shown = {}
        for msg in seg:
            try:
                shown[msg.offset] = (msg.text, bytes(msg.data))
            except MessageTampered:
                shown[msg.offset] = "tampered"
        assert shown.get(at, "tampered") == "tampered", (pos - at, bit, fix_crc, shown.get(at))
        good = [v for v in shown.values() if v != "tampered"]
        assert ("before", b"b") in good
        if not fix_crc:
            assert at not in shown                              # the CRC-32C catches it first
    finally:
        seg.close()


def test_an_unsealed_message_in_a_sealed_segment_is_tampered(tmp_path):
    """A writer of the file could put a plain message (key id 0, a good
    CRC-32C) where a sealed one stood: a reader of a sealed segment refuses it."""
    ring = _ring()
    buf = bytearray(16384)
    seg = Segment.format(buf, key=(1, ring.key(1)))
    seg.write("sealed one")
    seg.close()
    plain = bytearray(16384)
    p = Segment.format(plain)
    p.write("forged")
    p.write("x" * 40)             # move NEXT far enough
    p.close()
    # Replace the sealed message by the plain one (same sequence number 1).
    buf[4096:4096 + 72] = plain[4096:4096 + 72]
    seg = Segment.from_buffer(buf, readonly=True, key=ring)
    (m,) = [m for m in seg]
    with pytest.raises(MessageTampered, match="not sealed"):
        m.text
    seg.close()


# ------------------------------------------------------------------ two processes

def _writer_proc(directory, keyfile, tag, n):
    w = FamilyWriter(directory, "app", segment_size=SEGMENT, key_file=keyfile)
    for i in range(n):
        w.write(f"{tag} {i}", data=tag.encode() * 3)
    w.close()


def test_two_processes_write_sealed_messages_at_once_and_no_nonce_repeats(tmp_path, keyfile):
    d = tmp_path / "fam"
    FamilyWriter(d, "app", segment_size=SEGMENT, key_file=keyfile).close()
    ctx = multiprocessing.get_context("spawn")
    n = 1500
    procs = [ctx.Process(target=_writer_proc, args=(str(d), keyfile, tag, n)) for tag in ("A", "B")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    r = FamilyReader(d, "app", key_file=keyfile)
    got = [(m.text, bytes(m.data)) for m in r]
    for tag in ("A", "B"):
        mine = [t for t, dt in got if t.startswith(tag + " ")]
        assert mine == [f"{tag} {i}" for i in range(n)]          # all decrypt, each writer in order
        assert all(dt == tag.encode() * 3 for t, dt in got if t.startswith(tag + " "))
    # Every sealed message's (segment uuid, nonce) pair, collected from the records.
    pairs = []
    uuids = set()
    for p in r.segment_paths():
        with Segment.open(p, readonly=True) as s:
            uuids.add(s.uuid)
            for rec in s.records():
                assert rec.kind == "committed"
                pairs.append((s.uuid, message_nonce(rec.sequence)))
    assert len(pairs) == 2 * n and len(set(pairs)) == len(pairs)
    assert len(uuids) == len(r.segment_paths()) > 5                # many segments, all distinct


# ------------------------------------------------------------------ salvage, and unsealed segments

def test_salvage_of_a_sealed_segment_keeps_it_sealed_and_readable(tmp_path, keyfile):
    ring = load_key_file(keyfile)
    path = tmp_path / "s"
    with Segment.create(path, size=65536, key=(1, ring.key(1))) as seg:
        for i in range(5):
            seg.write(f"m{i}", data=b"d")
        stub = seg.reserve(10, 2, data_class="k")              # a stub whose writer "died" (kept: a dropped one abandons itself)
        seg.write("last")
    region = bytearray(path.read_bytes())
    region[100] ^= 0xFF                                       # damage the identity (family name area)
    path.write_bytes(region)
    with pytest.raises(logkit.SegmentDamaged):
        Segment.open(path)
    rep = salvage(path, grace=0)
    assert rep.header_rebuilt and rep.kept == 6 and rep.abandoned == 1
    with Segment.open(path, readonly=True, key=ring) as seg:
        assert seg.sealed and seg.header()["version"] == 4 and seg.key_id == 1
        assert [m.text for m in seg] == ["m0", "m1", "m2", "m3", "m4", "last"]
        assert not seg.in_service
    # A clean salvage changes nothing about sealing either.
    rep = salvage(path)
    with Segment.open(path, readonly=True, key=ring) as seg:
        assert seg.sealed and [m.text for m in seg][-1] == "last"


def test_unsealed_segments_have_no_sealing_fields(tmp_path, keyfile):
    seg = Segment.create(tmp_path / "v1", size=65536)
    seg.write("hello", data=b"\x01", data_class="raw")
    h = seg.header()
    assert (h["version"], h["flags"], h["key_id"], h["key_check"]) == (3, 0, 0, bytes(16))
    assert not seg.sealed and seg.key_id == 0 and not seg.has_key
    seg.close()
    raw = (tmp_path / "v1").read_bytes()
    assert raw[464:512] == bytes(48) and struct.unpack_from("<HH", raw, 4096 + 14)[0] == 0
    # A key given to a reader of an unsealed segment changes nothing.
    with Segment.open(tmp_path / "v1", readonly=True, key=load_key_file(keyfile)) as seg:
        (m,) = list(seg)
        assert (m.text, bytes(m.data), m.sealed, m.key_id) == ("hello", b"\x01", False, 0)


def test_an_abandoned_sealed_reservation_leaves_no_plaintext_on_disk(tmp_path, keyfile):
    """Text is sealed only at finish: a reservation abandoned before (by its
    writer, or by salvage once the writer died) must not leave its plaintext
    in the file."""
    ring = load_key_file(keyfile)
    path = tmp_path / "s"
    with Segment.create(path, size=65536, key=(ring.current, ring.current_key)) as seg:
        seg.write("kept and sealed")
        with pytest.raises(RuntimeError):
            with seg.reserve(len(b"TOP SECRET PLAINTEXT"), 6) as r:
                r.text[:] = b"TOP SECRET PLAINTEXT"
                r.data[:] = b"PWD123"
                raise RuntimeError("the writer gives up")
        r2 = seg.reserve(len(b"ANOTHER SECRET STRING"))
        r2.text[:] = b"ANOTHER SECRET STRING"
        seg.sync()
    # r2's writer "dies": salvage with no grace abandons it and must wipe it.
    rep = salvage(str(path), grace=0, settle=0)
    assert rep.abandoned == 1
    raw = path.read_bytes()
    for secret in (b"TOP SECRET PLAINTEXT", b"PWD123", b"ANOTHER SECRET STRING", b"kept and sealed"):
        assert secret not in raw, f"{secret!r} is in the file in plain text"
    with Segment.open(path, readonly=True, key=ring) as seg:
        assert [m.text for m in seg] == ["kept and sealed"]
