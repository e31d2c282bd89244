"""Our ChaCha20-Poly1305 (pyx/include/lk_seal.h, through logkit.crypto.seal
and open_) checked the way a cryptographic library is checked: every vector
of the published sets (the `cryptography-vectors` package's files and Project
Wycheproof's, tests/vectors/), an independent implementation (pycryptodome)
at every length from 0 to 4,096 bytes, and every tag byte tampered; and, so
that passing means something, seven known kinds of Poly1305 and AEAD mistake
put into a copy of the header, each of which the published vectors must
catch.  The constant-time checks of Poly1305 are in tests/test_cipher_ct.py; what all of
this proves and what it does not is in docs/security.md."""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys

import pytest
from Crypto.Cipher import ChaCha20_Poly1305

from logkit import InvalidArgument, _crypto
from logkit.crypto import MessageTampered, open_, seal

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
WYCHEPROOF = os.path.join(HERE, "vectors", "wycheproof_chacha20_poly1305_test.json")
WYCHEPROOF_BLOB = "1ad9ff254d1f26f0812a27135fe95769f34adba5"   # tests/vectors/README.md


# ------------------------------------------------------------ loading vectors

def _vectors_dir() -> str:
    """The installed cryptography_vectors package (`pip install
    cryptography-vectors`, on the Makefile's install line)."""
    try:
        import cryptography_vectors
    except ImportError:
        pytest.fail("the cryptography-vectors package is not installed: "
                    "`.venv/bin/pip install cryptography-vectors` (make installs it)")
    return os.path.dirname(cryptography_vectors.__file__)


def _value(raw: str) -> bytes | str:
    """A value of the NIST-style files: hex, or a "quoted" ASCII string."""
    raw = raw.strip()
    if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
        return raw[1:-1].encode("ascii")
    if re.fullmatch(r"(?:[0-9a-fA-F]{2})*", raw):
        return bytes.fromhex(raw)
    return raw   # a word such as CIPHERFINAL_ERROR


INTEGER_FIELDS = {"INITIAL_BLOCK_COUNTER"}   # decimal, not hex


def load_nist_file(relpath: str) -> list[dict]:
    """The vectors of one NIST-style file: `COUNT = n` starts a vector, then
    `NAME = value` lines (names upper-cased; `KEY= x` and `Key = x` alike)."""
    path = os.path.join(_vectors_dir(), relpath)
    vectors: list[dict] = []
    with open(path, encoding="ascii") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = re.fullmatch(r"(\w+)\s*=\s*(.*)", line)
            assert m, f"{path}:{lineno}: not a NAME = value line: {line!r}"
            name = m.group(1).upper()
            value = int(m.group(2)) if name in INTEGER_FIELDS else _value(m.group(2))
            if name == "COUNT":
                vectors.append({"_where": f"{os.path.basename(os.path.dirname(path))}/"
                                          f"{os.path.basename(path)} COUNT {m.group(2).strip()}"})
            else:
                assert vectors, f"{path}:{lineno}: a value before the first COUNT"
                vectors[-1][name] = value
    return vectors


def aead_vectors_from_cryptography_vectors() -> list[dict]:
    """Both ChaCha20-Poly1305 files, in one shape: key, nonce, aad, pt, ct,
    tag, and `reject` (OpenSSL's `Result = CIPHERFINAL_ERROR`: the tag is
    wrong, opening must fail)."""
    out = []
    for v in load_nist_file("ciphers/ChaCha20Poly1305/boringssl.txt"):
        out.append(dict(where=v["_where"], key=v["KEY"], nonce=v["NONCE"], aad=v["AD"],
                        pt=v["IN"], ct=v["CT"], tag=v["TAG"], reject=False))
    for v in load_nist_file("ciphers/ChaCha20Poly1305/openssl.txt"):
        result = v.get("RESULT")
        assert result in (None, "CIPHERFINAL_ERROR"), f"{v['_where']}: unknown Result {result!r}"
        out.append(dict(where=v["_where"], key=v["KEY"], nonce=v["IV"], aad=v["AAD"],
                        pt=v["PLAINTEXT"], ct=v["CIPHERTEXT"], tag=v["TAG"],
                        reject=result is not None))
    return out


def wycheproof_vectors() -> list[dict]:
    with open(WYCHEPROOF, "rb") as f:
        raw = f.read()
    doc = json.loads(raw)
    out = []
    for group in doc["testGroups"]:
        assert group["type"] == "AeadTest" and group["keySize"] == 256 and group["tagSize"] == 128
        for t in group["tests"]:
            assert t["result"] in ("valid", "invalid"), t   # no "acceptable" in this set
            out.append(dict(where=f"wycheproof tcId {t['tcId']} ({', '.join(t['flags'])}: "
                                  f"{t['comment']})",
                            flags=t["flags"], key=bytes.fromhex(t["key"]),
                            nonce=bytes.fromhex(t["iv"]), aad=bytes.fromhex(t["aad"]),
                            pt=bytes.fromhex(t["msg"]), ct=bytes.fromhex(t["ct"]),
                            tag=bytes.fromhex(t["tag"]), reject=t["result"] == "invalid"))
    assert len(out) == doc["numberOfTests"]
    return out


def flip(b: bytes, i: int, mask: int = 1) -> bytes:
    return b[:i] + bytes([b[i] ^ mask]) + b[i + 1:]


def check_vector(v: dict) -> None:
    """A valid vector: seal gives exactly its ciphertext and tag, open gives
    back its plaintext, and a flip of any bit of any tag byte is refused with
    the data left as it was.  A vector to reject: open refuses it (data left
    as it was), and sealing its plaintext does not give its tag."""
    if len(v["nonce"]) != _crypto.NONCE_BYTES:
        # Only the 96-bit nonce of RFC 8439 exists; any other size is refused
        # by both directions, never truncated or padded.
        assert v["reject"], v["where"]
        with pytest.raises(InvalidArgument, match="nonce must be 12 bytes"):
            seal(v["key"], v["nonce"], v["aad"], bytearray(v["pt"]))
        with pytest.raises(InvalidArgument, match="nonce must be 12 bytes"):
            open_(v["key"], v["nonce"], v["aad"], bytearray(v["ct"]), v["tag"])
        return
    if v["reject"]:
        data = bytearray(v["ct"])
        with pytest.raises(MessageTampered):
            open_(v["key"], v["nonce"], v["aad"], data, v["tag"])
        assert bytes(data) == v["ct"], f"{v['where']}: a refused open changed the data"
        sealed = bytearray(v["pt"])
        assert seal(v["key"], v["nonce"], v["aad"], sealed) != v["tag"], v["where"]
        return
    data = bytearray(v["pt"])
    tag = seal(v["key"], v["nonce"], v["aad"], data)
    assert (bytes(data).hex(), tag.hex()) == (v["ct"].hex(), v["tag"].hex()), v["where"]
    open_(v["key"], v["nonce"], v["aad"], data, tag)
    assert bytes(data) == v["pt"], v["where"]
    for i in range(16):
        for bit in range(8):
            data = bytearray(v["ct"])
            with pytest.raises(MessageTampered):
                open_(v["key"], v["nonce"], v["aad"], data, flip(v["tag"], i, 1 << bit))
            assert bytes(data) == v["ct"], v["where"]


# ------------------------------------------------------ cryptography-vectors

def test_every_chacha20_poly1305_vector_of_cryptography_vectors_seals_opens_or_is_refused():
    vectors = aead_vectors_from_cryptography_vectors()
    # 66 from BoringSSL's file, 5 from OpenSSL's; one of OpenSSL's must be refused.
    assert len(vectors) == 71
    assert sum(v["reject"] for v in vectors) == 1
    for v in vectors:
        check_vector(v)


def test_the_openssl_vector_with_a_wrong_tag_is_refused():
    # Named on its own so that a failure says which case it is: COUNT 2 of
    # openssl.txt is COUNT 1 with the last tag bit flipped (0x38 -> 0x39).
    v = [v for v in aead_vectors_from_cryptography_vectors() if v["reject"]]
    assert [x["where"] for x in v] == ["ChaCha20Poly1305/openssl.txt COUNT 2"]
    data = bytearray(v[0]["ct"])
    with pytest.raises(MessageTampered, match="authentication failed"):
        open_(v[0]["key"], v[0]["nonce"], v[0]["aad"], data, v[0]["tag"])
    assert bytes(data) == v[0]["ct"]


def test_every_poly1305_vector_of_cryptography_vectors():
    vectors = load_nist_file("poly1305/rfc7539.txt")
    assert len(vectors) == 11
    for v in vectors:
        assert _crypto.poly1305(v["KEY"], v["MSG"]).hex() == v["TAG"].hex(), v["_where"]


def test_every_chacha20_vector_of_cryptography_vectors():
    # The keystream from block INITIAL_BLOCK_COUNTER on, one 64-byte block at a time.
    vectors = load_nist_file("ciphers/ChaCha20/rfc7539.txt")
    assert len(vectors) == 3
    for v in vectors:
        pt, counter = v["PLAINTEXT"], v["INITIAL_BLOCK_COUNTER"]
        stream = b"".join(_crypto.chacha20_block(v["KEY"], counter + i, v["NONCE"])
                          for i in range((len(pt) + 63) // 64))
        assert bytes(a ^ b for a, b in zip(pt, stream)).hex() == v["CIPHERTEXT"].hex(), v["_where"]


# ------------------------------------------------------------- Wycheproof

def test_the_wycheproof_file_is_the_published_one():
    with open(WYCHEPROOF, "rb") as f:
        raw = f.read()
    blob = hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest()
    assert blob == WYCHEPROOF_BLOB, "tests/vectors/wycheproof_chacha20_poly1305_test.json was changed"


def test_every_wycheproof_chacha20_poly1305_vector_seals_opens_or_is_refused():
    vectors = wycheproof_vectors()
    kinds: dict[str, int] = {}
    for v in vectors:
        check_vector(v)
        for flag in v["flags"]:
            kinds[flag] = kinds.get(flag, 0) + 1
    # The cases the set exists for, so that a loader that drops a group fails here.
    assert kinds == {"Ktv": 1, "Pseudorandom": 120, "EdgeCaseCiphertext": 24, "ModifiedTag": 60,
                     "EdgeCasePolyKey": 20, "EdgeCaseTag": 7, "EdgeCasePoly1305": 84,
                     "InvalidNonceSize": 9}


# ------------------------------------------------------------ pycryptodome

def test_seal_equals_pycryptodome_at_every_length_from_0_to_4096_and_every_tampered_tag_byte_is_refused():
    rnd = random.Random(0x5EA1)   # fixed: a failure names a length that reproduces
    for n in range(0, 4097):
        key, nonce = rnd.randbytes(32), rnd.randbytes(12)
        aad = rnd.randbytes(rnd.choice((0, 1, 15, 16, 17, rnd.randrange(0, 300))))
        pt = rnd.randbytes(n)
        ref = ChaCha20_Poly1305.new(key=key, nonce=nonce)
        ref.update(aad)
        want_ct, want_tag = ref.encrypt_and_digest(pt)
        data = bytearray(pt)
        tag = seal(key, nonce, aad, data)
        assert (bytes(data), tag) == (want_ct, want_tag), f"length {n}"
        for i in range(16):
            with pytest.raises(MessageTampered):
                open_(key, nonce, aad, data, flip(tag, i, rnd.randrange(1, 256)))
        if n:
            with pytest.raises(MessageTampered):
                open_(key, nonce, aad, bytearray(flip(want_ct, rnd.randrange(n), 1 << rnd.randrange(8))),
                      tag)
        if aad:
            with pytest.raises(MessageTampered):
                open_(key, nonce, flip(aad, rnd.randrange(len(aad)), 1 << rnd.randrange(8)), data, tag)
        assert bytes(data) == want_ct, f"length {n}: a refused open changed the data"
        open_(key, nonce, aad, data, tag)
        assert bytes(data) == pt, f"length {n}"
        # pycryptodome opens what we sealed (the other direction of the check)
        ref = ChaCha20_Poly1305.new(key=key, nonce=nonce)
        ref.update(aad)
        assert ref.decrypt_and_verify(want_ct, tag) == pt


# ------------------------------------------- would the vectors catch a bug?

# Mistakes a hand-written Poly1305 or AEAD is known to make, each put into a
# copy of lk_seal.h (built configuration: 64-bit limbs).  Each must make at
# least one published vector fail.  "h not reduced mod p" shows only when
# h >= 2^130 - 5 (about 2^-128 of random inputs): only the RFC's Poly1305
# edge case in cryptography-vectors' poly1305 file reaches it.  (Not a
# mutant: dropping lk_poly1305_final's second carry pass.  lk_poly1305_blocks
# leaves h0 < 2^44, h2 < 2^42 and h1 < 2^44 + 2^7; then the first pass either
# finds no carry in h1 and so none anywhere, or masks h1 below 2^7 and adds at
# most 1 to it: h1 cannot carry again, so no input tells the difference.)
MUTANTS = {
    "init: r not clamped": ("0xffc0fffffffull", "0xfffffffffffull"),
    "blocks: the last carry of a block (h1 += cy) dropped":
        ("        h0 += cy * 5; cy = h0 >> 44; h0 &= M44;\n        h1 += cy;\n",
         "        h0 += cy * 5; cy = h0 >> 44; h0 &= M44;\n"),
    "blocks: reduced by 2^130 - 4 instead of 2^130 - 5":
        ("        h0 += cy * 5; cy = h0 >> 44; h0 &= M44;\n        h1 += cy;\n",
         "        h0 += cy * 4; cy = h0 >> 44; h0 &= M44;\n        h1 += cy;\n"),
    "final: h not reduced mod p when h >= p":
        ("    g0 &= cy; g1 &= cy; g2 &= cy; cy = ~cy;\n"
         "    h0 = (h0 & cy) | g0; h1 = (h1 & cy) | g1; h2 = (h2 & cy) | g2;\n", ""),
    "final: the carry of h + s dropped":
        ("& M44) + cy; cy = h1 >> 44; h1 &= M44;", "& M44); cy = h1 >> 44; h1 &= M44;"),
    "aead: the length block carries the aad length twice":
        ("lk_seal_st64(lens + 8, ct_len);", "lk_seal_st64(lens + 8, aad_len);"),
    "open: the last tag byte not compared":
        ("    uint32_t d = 0;\n    for (int i = 0; i < 16; i++)",
         "    uint32_t d = 0;\n    for (int i = 0; i < 15; i++)"),
}

# Reads "A key nonce aad pt ct tag valid" lines (hex, "-" for empty); prints 1
# where the header behaves as the vector says (valid: seal gives ct and tag,
# open accepts; invalid: open refuses), else 0.  "P key msg tag - - - 1" lines
# are Poly1305 vectors (lk_poly1305 gives tag).
VECTOR_DRIVER = r"""
#include "lk_seal.h"
#include <stdio.h>
static size_t unhex(const char *s, uint8_t *out) {
    size_t n = 0;
    if (s[0] == '-') return 0;
    for (; s[0] && s[1]; s += 2) { unsigned v; sscanf(s, "%2x", &v); out[n++] = (uint8_t)v; }
    return n;
}
static uint8_t key[32], nonce[12], aad[70000], pt[70000], ct[70000], tag[16], buf[70000], got[16];
static char a[140000], b[140000], c[140000], d[140000], e[140000], f[140000], kind[2];
int main(void) {
    int valid;
    while (scanf("%1s %s %s %s %s %s %s %d", kind, a, b, c, d, e, f, &valid) == 8) {
        if (kind[0] == 'P') {
            size_t nm = unhex(b, pt);
            unhex(a, key); unhex(c, tag);
            lk_poly1305(key, pt, nm, got);
            printf("%d\n", memcmp(got, tag, 16) == 0);
            continue;
        }
        unhex(a, key); unhex(b, nonce);
        size_t na = unhex(c, aad), np = unhex(d, pt);
        unhex(e, ct); unhex(f, tag);
        int ok;
        if (valid) {
            memcpy(buf, pt, np);
            lk_aead_seal(key, nonce, aad, na, buf, np, got);
            ok = memcmp(buf, ct, np) == 0 && memcmp(got, tag, 16) == 0;
            memcpy(buf, ct, np);
            ok = ok && lk_aead_open(key, nonce, aad, na, buf, np, tag) == LK_SEAL_OK
                    && memcmp(buf, pt, np) == 0;
        } else {
            memcpy(buf, ct, np);
            ok = lk_aead_open(key, nonce, aad, na, buf, np, tag) == LK_SEAL_BAD_TAG;
        }
        printf("%d\n", ok);
    }
    return 0;
}
"""


def _failing_vectors(exe: str, vectors: list[dict]) -> list[str]:
    usable = [v for v in vectors if "msg" in v or len(v["nonce"]) == 12]
    lines = [f"P {v['key'].hex()} {v['msg'].hex() or '-'} {v['tag'].hex()} - - - 1" if "msg" in v
             else "A " + " ".join(x.hex() or "-" for x in (v["key"], v["nonce"], v["aad"], v["pt"],
                                                           v["ct"], v["tag"]))
             + f" {0 if v['reject'] else 1}"
             for v in usable]
    out = subprocess.run([exe], input="\n".join(lines) + "\n", capture_output=True, text=True,
                         check=True).stdout.split()
    assert len(out) == len(usable)
    return [v["where"] for v, ok in zip(usable, out) if ok != "1"]


@pytest.mark.skipif(subprocess.run(["sh", "-c", "command -v cc"], capture_output=True).returncode,
                    reason="needs a C compiler")
def test_the_published_vectors_catch_each_known_kind_of_poly1305_and_aead_mistake(tmp_path):
    import cipher_ct_check as ct   # the build's compiler
    sets = {"cryptography-vectors": aead_vectors_from_cryptography_vectors()
            + [dict(where=v["_where"], key=v["KEY"], msg=v["MSG"], tag=v["TAG"])
               for v in load_nist_file("poly1305/rfc7539.txt")],
            "wycheproof": wycheproof_vectors()}
    with open(os.path.join(ct.INCLUDE, "lk_seal.h")) as f:
        header = f.read()
    (tmp_path / "drv.c").write_text(VECTOR_DRIVER)
    caught_by = {}
    for name, (old, new) in [("unchanged", ("", ""))] + list(MUTANTS.items()):
        d = tmp_path / str(len(caught_by))
        d.mkdir()
        if old:
            assert header.count(old) >= 1, f"mutant {name!r}: lk_seal.h changed; update the mutant"
        (d / "lk_seal.h").write_text(header.replace(old, new, 1) if old else header)
        exe = str(d / "drv")
        # -O1: a third of -O2's compile time; what is computed does not change
        subprocess.run([ct.compiler(), "-O1", "-std=gnu11", "-w", "-I", str(d),
                        str(tmp_path / "drv.c"), "-o", exe], check=True, capture_output=True)
        caught_by[name] = {s: len(_failing_vectors(exe, vs)) for s, vs in sets.items()}
    assert caught_by.pop("unchanged") == {"cryptography-vectors": 0, "wycheproof": 0}
    missed = [name for name, by in caught_by.items() if not any(by.values())]
    assert missed == [], f"mutants no published vector catches: {missed}; failures per set: {caught_by}"
