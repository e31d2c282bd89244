"""Sealed messages: the C ChaCha20-Poly1305 of logkit._crypto against RFC 8439
and pycryptodome, logkit's construction (segment key, nonce, message layout),
key files (logkit.crypto), and nonce uniqueness across two writing processes.

Issue 6, test 5 at the level of the primitives: round trip, wrong key,
missing key, a key file with loose permissions, a flipped bit anywhere in a
sealed message, and two processes sealing into one segment at once.
"""
from __future__ import annotations

import base64
import multiprocessing as mp
import os
import shutil
import stat
import struct
import subprocess
import sys
import uuid

import blake3
import pytest
from Crypto.Cipher import ChaCha20, ChaCha20_Poly1305
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logkit import InvalidArgument, LogkitError, Segment
from logkit import _crypto
from logkit.crypto import (
    KeyFileError,
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
    open_,
    open_message,
    open_segment_messages,
    seal,
    seal_message,
    segment_key,
)

INCLUDE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyx", "include")


def ref_seal(key, nonce, aad, pt):
    c = ChaCha20_Poly1305.new(key=key, nonce=nonce)
    c.update(aad)
    return c.encrypt_and_digest(pt)


def ref_poly1305(key: bytes, msg: bytes) -> bytes:
    """Poly1305 straight from RFC 8439 2.5.1, with Python integers."""
    r = int.from_bytes(key[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    s = int.from_bytes(key[16:], "little")
    p = (1 << 130) - 5
    acc = 0
    for i in range(0, len(msg), 16):
        block = msg[i:i + 16] + b"\x01"
        acc = (acc + int.from_bytes(block, "little")) * r % p
    return ((acc + s) % (1 << 128)).to_bytes(16, "little")


# ---------------------------------------------------------------- RFC 8439

def test_chacha20_block_matches_rfc8439_2_3_2():
    out = _crypto.chacha20_block(bytes(range(32)), 1, bytes.fromhex("000000090000004a00000000"))
    assert out == bytes.fromhex(
        "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
        "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e")


def test_chacha20_keystream_matches_rfc8439_2_4_2_through_the_aead():
    # the AEAD encrypts from block 1, as the RFC's 2.4.2 example does
    key, nonce = bytes(range(32)), bytes.fromhex("000000000000004a00000000")
    pt = (b"Ladies and Gentlemen of the class of '99: If I could offer you only one "
          b"tip for the future, sunscreen would be it.")
    data = bytearray(pt)
    seal(key, nonce, b"", data)
    assert bytes(data[:16]) == bytes.fromhex("6e2e359a2568f98041ba0728dd0d6981")
    assert bytes(data) == ChaCha20.new(key=key, nonce=nonce).encrypt(b"\0" * 64 + pt)[64:]


def test_poly1305_matches_rfc8439_2_5_2():
    key = bytes.fromhex("85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b")
    assert _crypto.poly1305(key, b"Cryptographic Forum Research Group").hex() == \
        "a8061dc1305136c6c22b8baf0c0127a9"


def test_poly1305_key_generation_matches_rfc8439_2_6_2():
    key = bytes(range(0x80, 0xA0))
    nonce = bytes.fromhex("000000000001020304050607")
    assert _crypto.chacha20_block(key, 0, nonce)[:32].hex() == \
        "8ad5a08b905f81cc815040274ab29471a833b637e3fd0da508dbb8e2fdd1a646"


# Appendix A.3 vectors that exercise the final reduction modulo 2^130 - 5.
R2 = bytes([2]) + bytes(15)
R1 = bytes([1]) + bytes(15)
FF = b"\xff" * 16
POLY_EDGE = [
    (bytes(32), bytes(64), bytes(16)),
    (R2 + bytes(16), FF, bytes([3]) + bytes(15)),
    (R2 + FF, bytes([2]) + bytes(15), bytes([3]) + bytes(15)),
    (R1 + bytes(16), FF + b"\xf0" + b"\xff" * 15 + b"\x11" + bytes(15), bytes([5]) + bytes(15)),
    (R1 + bytes(16), FF + b"\xfb" + b"\xfe" * 15 + b"\x01" * 16, bytes(16)),
    (R2 + bytes(16), b"\xfd" + b"\xff" * 15, b"\xfa" + b"\xff" * 15),
]


@pytest.mark.parametrize("key,msg,tag", POLY_EDGE)
def test_poly1305_reduction_edge_cases_of_rfc8439_appendix_a3(key, msg, tag):
    assert ref_poly1305(key, msg) == tag          # the vector itself, by the RFC's formula
    assert _crypto.poly1305(key, msg) == tag


RFC_AEAD = dict(
    key=bytes(range(0x80, 0xA0)),
    nonce=bytes.fromhex("070000004041424344454647"),
    aad=bytes.fromhex("50515253c0c1c2c3c4c5c6c7"),
    pt=(b"Ladies and Gentlemen of the class of '99: If I could offer you only one "
        b"tip for the future, sunscreen would be it."),
    ct=bytes.fromhex(
        "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
        "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
        "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
        "3ff4def08e4b7a9de576d26586cec64b6116"),
    tag=bytes.fromhex("1ae10b594f09e26a7e902ecbd0600691"),
)


def test_aead_seal_and_open_match_rfc8439_2_8_2():
    v = RFC_AEAD
    data = bytearray(v["pt"])
    assert seal(v["key"], v["nonce"], v["aad"], data) == v["tag"]
    assert bytes(data) == v["ct"]
    open_(v["key"], v["nonce"], v["aad"], data, v["tag"])
    assert bytes(data) == v["pt"]


# ------------------------------------------------- against pycryptodome

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.binary(min_size=32, max_size=32), nonce=st.binary(min_size=12, max_size=12),
       aad=st.binary(max_size=300), n=st.integers(0, 5000), seed=st.binary(min_size=8, max_size=8))
def test_seal_and_open_equal_pycryptodome_for_any_key_nonce_aad_and_length(key, nonce, aad, n, seed):
    pt = blake3.blake3(seed).digest(length=n)
    ct, tag = ref_seal(key, nonce, aad, pt)
    data = bytearray(pt)
    assert seal(key, nonce, aad, data) == tag
    assert bytes(data) == ct
    open_(key, nonce, aad, data, tag)
    assert bytes(data) == pt


def test_seal_equals_pycryptodome_at_every_block_and_batch_boundary():
    # 64-byte blocks, the 256-byte four-block batches, Poly1305's 16-byte blocks
    key, nonce = os.urandom(32), os.urandom(12)
    for n in list(range(0, 600)) + [1023, 1024, 1025, 4095, 4096, 4097]:
        aad = os.urandom(n % 37)
        pt = os.urandom(n)
        data = bytearray(pt)
        tag = seal(key, nonce, aad, data)
        assert (bytes(data), tag) == ref_seal(key, nonce, aad, pt), n


@settings(max_examples=200, deadline=None)
@given(key=st.binary(min_size=32, max_size=32), msg=st.binary(max_size=700))
def test_poly1305_equals_the_rfc_formula(key, msg):
    assert _crypto.poly1305(key, msg) == ref_poly1305(key, msg)


def test_open_refuses_a_bad_tag_and_leaves_the_data_as_it_was():
    v = RFC_AEAD
    for what in ("tag", "aad", "ct", "nonce", "key"):
        k, nonce, aad, tag = v["key"], v["nonce"], v["aad"], v["tag"]
        data = bytearray(v["ct"])
        if what == "tag":
            tag = bytes([tag[0] ^ 1]) + tag[1:]
        elif what == "aad":
            aad = aad[:-1] + bytes([aad[-1] ^ 0x80])
        elif what == "ct":
            data[50] ^= 4
        elif what == "nonce":
            nonce = nonce[:-1] + b"\x48"
        else:
            k = bytes([k[0] ^ 1]) + k[1:]
        before = bytes(data)
        with pytest.raises(MessageTampered, match="authentication failed"):
            open_(k, nonce, aad, data, tag)
        assert bytes(data) == before, what


def test_wrappers_check_lengths_and_writability():
    with pytest.raises(InvalidArgument, match="key must be 32 bytes, not 31"):
        seal(bytes(31), bytes(12), b"", bytearray(1))
    with pytest.raises(InvalidArgument, match="nonce must be 12 bytes, not 8"):
        seal(bytes(32), bytes(8), b"", bytearray(1))
    with pytest.raises(InvalidArgument, match="writable"):
        seal(bytes(32), bytes(12), b"", b"read-only")
    with pytest.raises(InvalidArgument, match="tag must be 16 bytes"):
        open_(bytes(32), bytes(12), b"", bytearray(1), bytes(15))
    with pytest.raises(InvalidArgument, match="bytes-like"):
        seal(bytes(32), bytes(12), "text", bytearray(1))
    assert issubclass(MessageTampered, LogkitError)


def test_seal_works_on_an_mmap_and_a_memoryview_slice():
    import mmap
    key, nonce = os.urandom(32), os.urandom(12)
    m = mmap.mmap(-1, 4096)
    m[100:200] = b"y" * 100
    tag = seal(key, nonce, b"hdr", memoryview(m)[100:200])
    assert (bytes(m[100:200]), tag) == ref_seal(key, nonce, b"hdr", b"y" * 100)
    m.close()


# The header's other configurations (no vector extensions; 26-bit Poly1305
# limbs for compilers without 128-bit integers) never run in the built module,
# so a small C driver compiles each one and is checked against pycryptodome,
# with the additional data and the text each split across two spans.
C_DRIVER = r"""
#include "lk_seal.h"
#include <stdio.h>
#include <stdlib.h>
static size_t unhex(const char *s, uint8_t *out) {
    size_t n = 0;
    if (s[0] == '-') return 0;
    for (; s[0] && s[1]; s += 2) { unsigned v; sscanf(s, "%2x", &v); out[n++] = (uint8_t)v; }
    return n;
}
static uint8_t key[32], nonce[12], aad[512], pt[6000], ct[6000], tag[16];
static char a[20000], b[20000], c[20000], d[20000];
int main(void) {
    size_t as, ps;
    while (scanf("%s %s %s %s %zu %zu", a, b, c, d, &as, &ps) == 6) {
        unhex(a, key); unhex(b, nonce);
        size_t na = unhex(c, aad), np = unhex(d, pt);
        memcpy(ct, pt, np);
        lk_span av[2] = {{aad, as}, {aad + as, na - as}}, tv[2] = {{ct, ps}, {ct + ps, np - ps}};
        lk_aead_seal_v(key, nonce, av, 2, tv, 2, tag);
        for (size_t i = 0; i < np; i++) printf("%02x", ct[i]);
        printf(" ");
        for (int i = 0; i < 16; i++) printf("%02x", tag[i]);
        int ok = lk_aead_open_v(key, nonce, av, 2, tv, 2, tag) == LK_SEAL_OK && memcmp(ct, pt, np) == 0;
        tag[15] ^= 1;
        int bad = lk_aead_open_v(key, nonce, av, 2, tv, 2, tag) == LK_SEAL_BAD_TAG;
        printf(" %d\n", ok && bad);
    }
    return 0;
}
"""


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
@pytest.mark.parametrize("defines", [[], ["-DLK_SEAL_NO_VECTORS"], ["-DLK_SEAL_POLY32"],
                                     ["-DLK_SEAL_NO_VECTORS", "-DLK_SEAL_POLY32"]])
def test_every_configuration_of_the_header_equals_pycryptodome(tmp_path, defines):
    src = tmp_path / "drv.c"
    src.write_text(C_DRIVER)
    exe = tmp_path / "drv"
    subprocess.run(["cc", "-O1", "-std=gnu11", "-Wall", "-Werror", "-Wno-unused-function",
                    *defines, "-I", INCLUDE, str(src), "-o", str(exe)], check=True)
    rnd = __import__("random").Random(len(defines) * 7 + ("-DLK_SEAL_POLY32" in defines))
    cases, lines = [], []
    for n in list(range(0, 70)) + [127, 128, 255, 256, 257, 511, 512, 513, 1024, 1100, 4999]:
        key, nonce = rnd.randbytes(32), rnd.randbytes(12)
        aad, pt = rnd.randbytes(rnd.randrange(0, 100)), rnd.randbytes(n)
        asplit, psplit = rnd.randint(0, len(aad)), rnd.randint(0, n)
        cases.append((key, nonce, aad, pt))
        lines.append(" ".join(x.hex() or "-" for x in (key, nonce, aad, pt)) + f" {asplit} {psplit}")
    out = subprocess.run([str(exe)], input="\n".join(lines) + "\n", capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert len(out) == len(cases)
    for (key, nonce, aad, pt), line in zip(cases, out):
        ct_hex, tag_hex, ok = (line.split() + [""])[:3] if pt else ["", *line.split()]
        ct, tag = ref_seal(key, nonce, aad, pt)
        assert (ct_hex, tag_hex, ok) == (ct.hex(), tag.hex(), "1"), len(pt)


# ------------------------------------------------- logkit's construction

def test_segment_key_is_blake3_derive_key_of_log_key_and_uuid():
    log_key, u = os.urandom(32), uuid.uuid4()
    want = blake3.blake3(log_key + u.bytes, derive_key_context=_crypto.SEGMENT_KEY_CONTEXT).digest()
    assert segment_key(log_key, u) == segment_key(log_key, u.bytes) == want
    assert segment_key(log_key, uuid.uuid4()) != want
    with pytest.raises(InvalidArgument, match="16 bytes"):
        segment_key(log_key, b"short")
    with pytest.raises(InvalidArgument, match="32 bytes"):
        segment_key(b"k" * 16, u)


def test_message_nonce_is_four_zero_bytes_then_the_sequence_little_endian():
    assert message_nonce(1) == bytes(4) + (1).to_bytes(8, "little")
    assert message_nonce(2**64 - 1) == bytes(4) + b"\xff" * 8
    assert len({message_nonce(s) for s in range(1000)}) == 1000
    with pytest.raises(OverflowError):
        message_nonce(2**64)


def make_message(seq, text, data=b"", cls=b"", key_id=1, severity=20, t=1_700_000_000_000_000_000,
                 pid=1234, tid=5678):
    """A message in the proposed version 2 layout (docs/security.md), unsealed."""
    tl, dl, cl = len(text), len(data), len(cls)
    total = (64 + tl + cl + dl + 16 + 7) & ~7
    m = bytearray(total)
    struct.pack_into("<IIIhHQqIIIIHHI", m, 0, 0x4B4CFEFF, 2, total, severity, _crypto.FLAG_SEALED,
                     seq, t, pid, tid, tl, dl, cl, key_id, 1)
    m[64:64 + tl] = text
    m[64 + tl:64 + tl + cl] = cls
    m[64 + tl + cl:64 + tl + cl + dl] = data
    return m


@settings(max_examples=150, deadline=None)
@given(text=st.binary(max_size=400), data=st.binary(max_size=400), cls=st.binary(max_size=40),
       seq=st.integers(1, 2**62))
def test_seal_message_is_the_rfc_aead_over_header_class_name_text_and_data(text, data, cls, seq):
    sk = os.urandom(32)
    m = make_message(seq, text, data, cls)
    plain = bytes(m)
    seal_message(sk, m)
    tl, cl, dl = len(text), len(cls), len(data)
    ct, tag = ref_seal(sk, message_nonce(seq), plain[8:56] + cls, text + data)
    assert bytes(m[64:64 + tl]) == ct[:tl]
    assert bytes(m[64 + tl:64 + tl + cl]) == cls                   # class name stays readable
    assert bytes(m[64 + tl + cl:64 + tl + cl + dl]) == ct[tl:]
    assert bytes(m[64 + tl + cl + dl:64 + tl + cl + dl + 16]) == tag
    assert m[:64] == plain[:64]                                    # the header is untouched
    open_message(sk, m)
    assert bytes(m) == plain[:64 + tl + cl + dl] + tag + plain[64 + tl + cl + dl + 16:]


def test_a_flipped_bit_in_any_authenticated_byte_of_a_sealed_message_is_detected():
    sk = os.urandom(32)
    m = make_message(77, b"the quick brown fox " * 3, data=b"\x00\x01binary", cls=b"json")
    seal_message(sk, m)
    end = 64 + 60 + 4 + 8 + 16
    covered = list(range(8, 56)) + list(range(64, end))
    for off in covered:
        for bit in (0, 7):
            t = bytearray(m)
            t[off] ^= 1 << bit
            if off < 56 and off in (8, 9, 10, 11, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49):
                # a length or the total: either it no longer fits, or the tag is wrong
                with pytest.raises((MessageTampered, InvalidArgument)):
                    open_message(sk, t)
            else:
                before = bytes(t)
                with pytest.raises(MessageTampered, match=f"offset 0"):
                    open_message(sk, t)
                assert bytes(t) == before, off
    good = bytearray(m)
    open_message(sk, good)
    assert bytes(good[64:124]) == b"the quick brown fox " * 3


def test_the_state_word_and_the_checksums_are_outside_the_seal():
    # bytes 0..7 change at commit and 56..63 are computed after sealing, so
    # they are not authenticated (the CRC-32C at 60 still covers 8..59 + payload)
    sk = os.urandom(32)
    m = make_message(5, b"hello")
    seal_message(sk, m)
    assert bytes(m[64:69]) != b"hello"                  # sealed: the text is ciphertext now
    for off in (0, 4, 56, 60, 63):
        t = bytearray(m)
        t[off] ^= 0xFF
        open_message(sk, t)                             # not MessageTampered ...
        assert bytes(t[64:69]) == b"hello", off         # ... and the text decrypts to what was written


def test_seal_message_refuses_lengths_that_leave_no_room_for_the_tag():
    m = make_message(1, b"abc")
    struct.pack_into("<I", m, 8, 64 + 3 + 8)          # total too small for the tag
    with pytest.raises(InvalidArgument, match="16-byte tag"):
        seal_message(os.urandom(32), m)
    m = make_message(1, b"abc")
    with pytest.raises(InvalidArgument, match="16-byte tag"):
        seal_message(os.urandom(32), m[:-8])          # total runs past the buffer
    with pytest.raises(InvalidArgument, match="outside"):
        seal_message(os.urandom(32), m, 10_000)


def test_a_message_opened_at_another_sequence_or_under_another_segment_key_fails():
    log_key = os.urandom(32)
    u1, u2 = uuid.uuid4(), uuid.uuid4()
    m = make_message(9, b"secret")
    seal_message(segment_key(log_key, u1), m)
    with pytest.raises(MessageTampered):
        open_message(segment_key(log_key, u2), bytearray(m))       # copied to another segment
    moved = bytearray(m)
    struct.pack_into("<Q", moved, 16, 10)                          # renumbered
    with pytest.raises(MessageTampered):
        open_message(segment_key(log_key, u1), moved)


# ------------------------------------------------------------ key files

def test_generate_key_file_makes_a_0600_file_that_loads(tmp_path):
    p = tmp_path / "log.keys"
    ring = generate_key_file(p)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    loaded = load_key_file(p)
    assert loaded.current == ring.current == 1
    assert loaded.keys == ring.keys and len(loaded.current_key) == 32
    assert [f for f in os.listdir(tmp_path)] == ["log.keys"]       # no temporary left
    with pytest.raises(KeyFileError, match="already exists"):
        generate_key_file(p)
    assert load_key_file(p).keys == ring.keys                       # not overwritten


def test_generate_key_file_ignores_a_loose_umask(tmp_path):
    old = os.umask(0)
    try:
        generate_key_file(tmp_path / "k")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "k").st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602, 0o700 | 0o020])
def test_a_key_file_readable_or_writable_by_others_is_refused_with_the_fix(tmp_path, mode):
    p = tmp_path / "log.keys"
    generate_key_file(p)
    os.chmod(p, mode)
    with pytest.raises(KeyFilePermissions) as e:
        load_key_file(p)
    msg = str(e.value)
    assert str(p) in msg and f"{mode:04o}" in msg and f"chmod 600 {p}" in msg


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_key_file_of_mode_0600_or_stricter_loads(tmp_path, mode):
    p = tmp_path / "log.keys"
    generate_key_file(p)
    os.chmod(p, mode)
    assert load_key_file(p).current == 1


def test_a_missing_key_file_is_named(tmp_path):
    with pytest.raises(KeyFileNotFound, match=str(tmp_path / "nope.keys")):
        load_key_file(tmp_path / "nope.keys")
    assert issubclass(KeyFileNotFound, FileNotFoundError)


GOOD = base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize("body,line,what", [
    (f"logkit-keys 1\n1 {GOOD} extra\n", 2, "expected 'KEYID BASE64KEY'"),
    (f"logkit-keys 1\n# c\n\nx1 {GOOD}\n", 4, "is not a number"),
    (f"logkit-keys 1\n0 {GOOD}\n", 2, "outside 1..65535"),
    (f"logkit-keys 1\n65536 {GOOD}\n", 2, "outside 1..65535"),
    (f"logkit-keys 1\n1 {GOOD}\n1 {GOOD}\n", 3, "appears twice"),
    ("logkit-keys 1\n1 not*base64!\n", 2, "not valid base64"),
    (f"logkit-keys 1\n1 {base64.b64encode(bytes(31)).decode()}\n", 2, "is 31 bytes"),
    (f"some other file\n1 {GOOD}\n", 1, "not a logkit key file"),
])
def test_a_malformed_key_file_is_refused_naming_file_and_line(tmp_path, body, line, what):
    p = tmp_path / "log.keys"
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, body.encode())
    os.close(fd)
    with pytest.raises(KeyFileError) as e:
        load_key_file(p)
    assert f"key file {p}, line {line}: " in str(e.value) and what in str(e.value)


def test_an_empty_key_list_is_refused(tmp_path):
    p = tmp_path / "log.keys"
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"logkit-keys 1\n# nothing\n")
    os.close(fd)
    with pytest.raises(KeyFileError, match="holds no keys"):
        load_key_file(p)


def test_add_key_rotates_and_old_messages_stay_readable(tmp_path):
    p = tmp_path / "log.keys"
    ring1 = generate_key_file(p)
    u_old, u_new = uuid.uuid4(), uuid.uuid4()
    old = make_message(1, b"sealed under key 1", key_id=1)
    seal_message(ring1.segment_key(1, u_old), old)
    ring2 = add_key(p)
    assert ring2.current == 2 and ring2.keys[1] == ring1.keys[1]
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    loaded = load_key_file(p)
    assert loaded.current == 2 and sorted(loaded) == [1, 2]
    new = make_message(1, b"sealed under key 2", key_id=2)
    seal_message(loaded.segment_key(loaded.current, u_new), new)
    open_message(loaded.segment_key(1, u_old), old)
    open_message(loaded.segment_key(2, u_new), new)
    assert bytes(old[64:82]) == b"sealed under key 1" and bytes(new[64:82]) == b"sealed under key 2"


def test_a_key_id_the_file_does_not_hold_is_a_missing_key(tmp_path):
    ring = generate_key_file(tmp_path / "k")
    with pytest.raises(MissingKey, match=r"no key with id 7 \(it holds ids 1\)"):
        ring.segment_key(7, uuid.uuid4())


def _sealed_segment(log_key, n=5):
    u = uuid.uuid4()
    sk = segment_key(log_key, u)
    msgs = []
    for seq in range(1, n + 1):
        m = make_message(seq, f"message {seq}".encode())
        seal_message(sk, m)
        msgs.append((m, 0))
    return u, sk, msgs


def test_a_wrong_key_with_the_right_id_is_wrong_key_not_garbage(tmp_path):
    writer = generate_key_file(tmp_path / "writer.keys")
    reader = generate_key_file(tmp_path / "reader.keys")        # also id 1, other bytes
    u, sk, msgs = _sealed_segment(writer.current_key)
    before = [bytes(m) for m, _ in msgs]
    with pytest.raises(WrongKey, match="opens none of the 5"):
        open_segment_messages(reader, 1, u, msgs)
    assert [bytes(m) for m, _ in msgs] == before                 # nothing decrypted to garbage
    with pytest.raises(WrongKey, match="key check differs"):
        open_segment_messages(reader, 1, u, msgs, expected_check=key_check(sk))


def test_one_tampered_message_among_good_ones_is_reported_not_taken_for_a_wrong_key(tmp_path):
    ring = generate_key_file(tmp_path / "k")
    u, sk, msgs = _sealed_segment(ring.current_key)
    msgs[2][0][70] ^= 1
    assert open_segment_messages(ring, 1, u, msgs, expected_check=key_check(sk)) == [2]
    assert bytes(msgs[0][0][64:73]) == b"message 1"
    u, sk, msgs = _sealed_segment(ring.current_key, n=1)
    msgs[0][0][64] ^= 1
    # with a key check, even a segment whose only message was changed is tampering
    assert open_segment_messages(ring, 1, u, msgs, expected_check=key_check(sk)) == [0]


# --------------------------------------- two processes, one segment, no reuse

LOG_KEY = bytes(range(100, 132))
PER_CHILD = 1500


def child_seal_into(path, writer, barrier, out):
    seg = Segment.open(path)
    sk = segment_key(LOG_KEY, seg.uuid)
    barrier.wait(timeout=60)
    seqs = []
    for i in range(PER_CHILD):
        text = f"writer {writer} message {i:05d}".encode()
        r = seg.reserve(len(text), 16)
        r.text[:] = text
        # aad: the sequence and the segment UUID (the header bytes of the
        # proposed layout need the v2 core; this checks the nonce source)
        r.data[:] = seal(sk, message_nonce(r.sequence), struct.pack("<Q", r.sequence) + seg.uuid.bytes,
                         r.text)
        seqs.append(r.sequence)
        r.finish()
    seg.close()
    out.put((writer, seqs))


def test_two_processes_sealing_into_one_segment_never_reuse_a_nonce(tmp_path):
    path = str(tmp_path / "shared.seg")
    Segment.create(path, size=1 << 20).close()
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=child_seal_into, args=(path, w, barrier, out)) for w in (0, 1)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    mine = [set(results[0]), set(results[1])]
    assert len(mine[0]) == len(mine[1]) == PER_CHILD and not (mine[0] & mine[1])
    written = {seq: f"writer {w} message {i:05d}".encode() for w in (0, 1) for i, seq in enumerate(results[w])}
    seg = Segment.open(path, readonly=True)
    sk = segment_key(LOG_KEY, seg.uuid)
    nonces, count = set(), 0
    for m in seg:
        nonce = message_nonce(m.sequence)
        assert nonce not in nonces
        nonces.add(nonce)
        data = bytearray(m.text_bytes)
        open_(sk, nonce, struct.pack("<Q", m.sequence) + seg.uuid.bytes, data, bytes(m.data))
        assert bytes(data) == written[m.sequence]           # decrypted: the text its writer wrote
        writer = int(data.split()[1])
        assert m.sequence in mine[writer]
        count += 1
    seg.close()
    assert count == len(nonces) == 2 * PER_CHILD
    # the same log key in another segment gives another key: no (key, nonce) repeats
    assert segment_key(LOG_KEY, uuid.uuid4()) != sk
