"""Segment format versions (docs/format.md, Versioning): logkit creates 3
(unsealed) and 4 (sealed), and reads and appends to 1 and 2, their forms
without the holder identity and the UUID copy.  A writer appending to a
version 1 or 2 segment leaves the version 3 fields zero; salvage never
changes a segment's version family; versions 3 and 4 keep a copy of the
UUID that salvage restores a damaged UUID from."""
from __future__ import annotations

import pathlib
import struct

import pytest

import logkit
from logkit import Segment, crc32c, salvage
from logkit._segment import FORMAT_VERSION, FORMAT_VERSION_SEALED

KEY = (1, bytes(range(32)))
UUID_AT, COPY_AT = 24, 3712


def make(path: pathlib.Path, version: int | None = None, key=None, n: int = 5) -> None:
    """A segment with n messages, then (version given) rewritten as that older
    version: version word, no UUID copy, identity CRC again."""
    with Segment.create(path, size=65536, family="v", key=key) as seg:
        for i in range(n):
            seg.write(f"m{i}", 20, b"d", "c")
    if version is not None:
        b = bytearray(path.read_bytes())
        b[8:12] = struct.pack("<I", version)
        b[COPY_AT:COPY_AT + 16] = bytes(16)
        b[384:388] = struct.pack("<I", crc32c(bytes(b[:384])))
        path.write_bytes(bytes(b))


def stub_start(path: pathlib.Path, key=None) -> int:
    """Bytes 60..63 of a stub a writer of this logkit leaves open in `path`."""
    with Segment.open(path, key=key) as seg:
        r = seg.reserve(4, 20)
        try:
            (rec,) = [x for x in seg.records() if x.kind == "reserved"]
            return struct.unpack_from("<I", path.read_bytes(), rec.offset + 60)[0]
        finally:
            r.abandon()


def test_new_segments_are_version_3_and_4_with_a_uuid_copy(tmp_path):
    make(tmp_path / "p")
    make(tmp_path / "s", key=KEY)
    for name, want in (("p", FORMAT_VERSION), ("s", FORMAT_VERSION_SEALED)):
        raw = (tmp_path / name).read_bytes()
        assert struct.unpack_from("<I", raw, 8)[0] == want
        assert raw[COPY_AT:COPY_AT + 16] == raw[UUID_AT:UUID_AT + 16] != bytes(16)
    assert (FORMAT_VERSION, FORMAT_VERSION_SEALED) == (3, 4)
    assert stub_start(tmp_path / "p") != 0                       # the holder's start time


@pytest.mark.parametrize("version, key", [(1, None), (2, KEY)])
def test_older_versions_are_read_and_appended_to_without_the_new_fields(tmp_path, version, key):
    path = tmp_path / "old"
    make(path, version, key)
    with Segment.open(path, key=key) as seg:
        assert seg.header()["version"] == version and seg.sealed == (version == 2)
        seg.write("appended", 20)
        assert [m.text for m in seg] == ["m0", "m1", "m2", "m3", "m4", "appended"]
    assert stub_start(path, key) == 0                            # version 1/2 layout: zero there
    raw = path.read_bytes()
    assert struct.unpack_from("<I", raw, 8)[0] == version and raw[COPY_AT:COPY_AT + 16] == bytes(16)


@pytest.mark.parametrize("version, key", [(1, None), (2, KEY), (3, None), (4, KEY)])
def test_salvage_keeps_the_version_it_found(tmp_path, version, key):
    path = tmp_path / "s"
    make(path, None if version >= 3 else version, key)
    b = bytearray(path.read_bytes())
    b[100] ^= 0xFF                                             # the family name: identity CRC fails
    path.write_bytes(bytes(b))
    with pytest.raises(logkit.SegmentDamaged):
        Segment.open(path)
    assert salvage(path, grace=0).header_rebuilt
    with Segment.open(path, readonly=True, key=key) as seg:
        assert seg.header()["version"] == version
        assert [m.text for m in seg] == [f"m{i}" for i in range(5)]


@pytest.mark.parametrize("key", [None, KEY])
@pytest.mark.parametrize("how", ["scribbled", "zeroed"])
def test_salvage_restores_a_damaged_uuid_from_its_copy(tmp_path, key, how):
    path = tmp_path / "s"
    make(path, key=key)
    b = bytearray(path.read_bytes())
    original = bytes(b[UUID_AT:UUID_AT + 16])
    if how == "scribbled":
        b[UUID_AT + 3] ^= 0x5A                                 # only the UUID: the CRC takes the copy's side
    else:
        b[UUID_AT:UUID_AT + 16] = bytes(16)                    # zeros, and the family name hit too
        b[70] ^= 0xFF
    path.write_bytes(bytes(b))
    rep = salvage(path, grace=0)
    assert rep.header_rebuilt
    raw = path.read_bytes()
    assert raw[UUID_AT:UUID_AT + 16] == raw[COPY_AT:COPY_AT + 16] == original
    with Segment.open(path, readonly=True, key=key) as seg:
        assert [m.text for m in seg] == [f"m{i}" for i in range(5)]


def test_a_damaged_copy_with_a_sound_uuid_is_left_to_the_uuid(tmp_path):
    path = tmp_path / "s"
    make(path, key=KEY)
    b = bytearray(path.read_bytes())
    original = bytes(b[UUID_AT:UUID_AT + 16])
    b[COPY_AT + 1] ^= 0x01                                     # the copy is outside the CRC: no damage seen
    b[100] ^= 0xFF                                             # ...until the identity is damaged elsewhere
    path.write_bytes(bytes(b))
    salvage(path, grace=0)
    raw = path.read_bytes()
    assert raw[UUID_AT:UUID_AT + 16] == raw[COPY_AT:COPY_AT + 16] == original
    with Segment.open(path, readonly=True, key=KEY) as seg:
        assert len(list(seg)) == 5
