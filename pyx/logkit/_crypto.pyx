# Sealed messages: ChaCha20-Poly1305 (RFC 8439) in C, pyx/include/lk_seal.h.
# This module is the thin layer over that header: the exported c_* functions
# of _crypto.pxd for other Cython modules (the segment write path), Python
# wrappers that tests and tools use on bytearrays, the per-segment key and the
# per-message nonce of docs/security.md, and the benchmark loops of
# bench/bench_crypto.py.  Key files live in logkit/crypto.py.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING

from logkit.errors import InvalidArgument

cdef extern from "lk_crc32c.h" nogil:
    uint32_t lk_crc32c(uint32_t crc, const void *buf, size_t n)

KEY_BYTES = LK_SEAL_KEY_BYTES
NONCE_BYTES = LK_SEAL_NONCE_BYTES
TAG_BYTES = LK_SEAL_TAG_BYTES
FLAG_SEALED = LK_SEAL_FLAG_SEALED
AAD_START = LK_SEAL_AAD_START
AAD_END = LK_SEAL_AAD_END

# BLAKE3 derive_key contexts ("application, date, purpose", as BLAKE3 asks):
# changing either string changes every key, so they are part of the format.
SEGMENT_KEY_CONTEXT = "logkit 2025-01 sealed messages: segment key"
KEY_CHECK_CONTEXT = "logkit 2025-01 sealed messages: key check"

cdef uint8_t _EMPTY[1]
cdef enum:
    _NOGIL_BYTES = 65536   # below this, releasing the GIL costs more than it frees


# ---- the C-level API (declared in _crypto.pxd) ----

cdef int c_seal(const uint8_t *key, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                uint8_t *data, size_t n, uint8_t *tag) noexcept nogil:
    return lk_aead_seal(key, nonce, aad, aad_len, data, n, tag)


cdef int c_open(const uint8_t *key, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                uint8_t *data, size_t n, const uint8_t *tag) noexcept nogil:
    return lk_aead_open(key, nonce, aad, aad_len, data, n, tag)


cdef int c_seal_message(const uint8_t *seg_key, uint8_t *msg, uint64_t room) noexcept nogil:
    return lk_seal_message(seg_key, msg, room)


cdef int c_open_message(const uint8_t *seg_key, uint8_t *msg, uint64_t room) noexcept nogil:
    return lk_open_message(seg_key, msg, room)


# ---- buffers ----

cdef int _get(object obj, Py_buffer *view, bint writable, Py_ssize_t want, str what) except -1:
    """Acquire obj's buffer (C-contiguous bytes); `want` >= 0 demands that length."""
    try:
        PyObject_GetBuffer(obj, view, PyBUF_WRITABLE if writable else PyBUF_SIMPLE)
    except BufferError:
        raise InvalidArgument(f"{what} must be a writable bytes-like object (a bytearray, "
                              f"memoryview or mmap), not a read-only {type(obj).__name__}") from None
    except TypeError:
        raise InvalidArgument(f"{what} must be a bytes-like object, not {type(obj).__name__}") from None
    if want >= 0 and view.len != want:
        n = view.len
        PyBuffer_Release(view)
        raise InvalidArgument(f"{what} must be {want} bytes, not {n}")
    return 0


cdef inline uint8_t *_ptr(Py_buffer *view) noexcept nogil:
    return <uint8_t *>view.buf if view.len else _EMPTY


cdef str _status(int rc):
    return {LK_SEAL_BAD_TAG: "bad tag", LK_SEAL_BAD_SIZE: "bad size"}.get(rc, f"status {rc}")


def _tampered(str what):
    from logkit.errors import MessageTampered
    return MessageTampered(what)


# ---- RFC 8439 primitives, for tests and tools ----

def chacha20_block(key, unsigned int counter, nonce) -> bytes:
    """The 64-byte ChaCha20 block (RFC 8439 2.3) for a 32-byte key, a 32-bit
    block counter and a 12-byte nonce.  InvalidArgument for wrong lengths."""
    cdef Py_buffer k, nb
    cdef uint8_t out[64]
    _get(key, &k, False, 32, "key")
    try:
        _get(nonce, &nb, False, 12, "nonce")
        lk_chacha20_block(<uint8_t *>k.buf, counter, <uint8_t *>nb.buf, out)
        PyBuffer_Release(&nb)
    finally:
        PyBuffer_Release(&k)
    return PyBytes_FromStringAndSize(<char *>out, 64)


def poly1305(key, message) -> bytes:
    """The 16-byte Poly1305 tag (RFC 8439 2.5) of message under a 32-byte
    one-time key."""
    cdef Py_buffer k, m
    cdef uint8_t tag[16]
    _get(key, &k, False, 32, "key")
    try:
        _get(message, &m, False, -1, "message")
        lk_poly1305(<uint8_t *>k.buf, _ptr(&m), m.len, tag)
        PyBuffer_Release(&m)
    finally:
        PyBuffer_Release(&k)
    return PyBytes_FromStringAndSize(<char *>tag, 16)


cdef inline int _aead_run(bint sealing, Py_buffer *k, Py_buffer *n, Py_buffer *a, Py_buffer *d,
                          uint8_t *tag) noexcept nogil:
    if sealing:
        return lk_aead_seal(<uint8_t *>k.buf, <uint8_t *>n.buf, _ptr(a), a.len, _ptr(d), d.len, tag)
    return lk_aead_open(<uint8_t *>k.buf, <uint8_t *>n.buf, _ptr(a), a.len, _ptr(d), d.len, tag)


cdef int _aead(bint sealing, key, nonce, aad, data, tag, uint8_t *tag_out) except -1:
    """The one body of seal() and open_(): take every buffer, run the AEAD
    (without the GIL where the data is long enough to pay for it), give every
    buffer back; returns the C status.  Sealing writes the tag to tag_out;
    opening reads it from `tag`."""
    cdef Py_buffer k, nb, a, d, t
    cdef int rc
    cdef uint8_t *tp
    _get(key, &k, False, 32, "key")
    try:
        _get(nonce, &nb, False, 12, "nonce")
        try:
            _get(aad, &a, False, -1, "aad")
            try:
                if not sealing:
                    _get(tag, &t, False, 16, "tag")
                try:
                    _get(data, &d, True, -1, "data")
                    tp = tag_out if sealing else <uint8_t *>t.buf
                    if d.len >= _NOGIL_BYTES:
                        with nogil:
                            rc = _aead_run(sealing, &k, &nb, &a, &d, tp)
                    else:
                        rc = _aead_run(sealing, &k, &nb, &a, &d, tp)
                    PyBuffer_Release(&d)
                finally:
                    if not sealing:
                        PyBuffer_Release(&t)
            finally:
                PyBuffer_Release(&a)
        finally:
            PyBuffer_Release(&nb)
    finally:
        PyBuffer_Release(&k)
    return rc


def seal(key, nonce, aad, data) -> bytes:
    """ChaCha20-Poly1305 (RFC 8439 2.8): encrypt `data` (a writable buffer,
    e.g. a bytearray) in place and return the 16-byte tag.

    key is 32 bytes, nonce 12 bytes, aad any bytes-like object (authenticated,
    not encrypted).  The result equals pycryptodome's
    ChaCha20_Poly1305.new(key=key, nonce=nonce).update(aad).encrypt_and_digest(data).
    Never seal twice under one (key, nonce).  InvalidArgument for wrong
    lengths or a read-only data buffer.
    """
    cdef uint8_t tag[16]
    cdef int rc = _aead(True, key, nonce, aad, data, None, tag)
    if rc != LK_SEAL_OK:
        raise InvalidArgument(f"data is too long to seal ({_status(rc)})")
    return PyBytes_FromStringAndSize(<char *>tag, 16)


def open_(key, nonce, aad, data, tag) -> None:
    """Verify the 16-byte tag over aad and the ciphertext in `data` (a writable
    buffer), then decrypt `data` in place.

    Raises logkit.crypto.MessageTampered, leaving `data` unchanged, when the
    tag does not match: the ciphertext, the aad or the tag was changed, or the
    key or nonce is not the one it was sealed with.  The tag is compared in
    constant time.  InvalidArgument for wrong lengths.
    """
    cdef int rc = _aead(False, key, nonce, aad, data, tag, NULL)
    if rc == LK_SEAL_BAD_TAG:
        raise _tampered("authentication failed: the sealed data, its additional data or its "
                        "tag was changed, or it was sealed under another key or nonce")
    if rc != LK_SEAL_OK:
        raise InvalidArgument(f"data is too long to open ({_status(rc)})")


# ---- logkit's construction (docs/security.md) ----

def message_nonce(uint64_t sequence) -> bytes:
    """The 12-byte nonce of the message numbered `sequence` (0 .. 2**64-1):
    four zero bytes, then the sequence number little-endian."""
    cdef uint8_t n[12]
    lk_seal_nonce(n, sequence)
    return PyBytes_FromStringAndSize(<char *>n, 12)


def segment_key(log_key, segment_uuid) -> bytes:
    """The 32-byte key of one segment: BLAKE3 derive_key with context
    SEGMENT_KEY_CONTEXT over log_key (32 bytes) || segment_uuid (the 16 bytes at
    header offset 24, or a uuid.UUID).  Computed once per segment."""
    import blake3
    if hasattr(segment_uuid, "bytes") and not isinstance(segment_uuid, (bytes, bytearray, memoryview)):
        segment_uuid = segment_uuid.bytes
    lk = bytes(log_key)
    su = bytes(segment_uuid)
    if len(lk) != 32:
        raise InvalidArgument(f"log key must be 32 bytes, not {len(lk)}")
    if len(su) != 16:
        raise InvalidArgument(f"segment UUID must be 16 bytes, not {len(su)}")
    return blake3.blake3(lk + su, derive_key_context=SEGMENT_KEY_CONTEXT).digest()


def key_check(seg_key) -> bytes:
    """16 bytes that tell whether a reader derived the same segment key as the
    writer (header offset 464 of a sealed segment, docs/format.md), revealing nothing
    about the key: BLAKE3 derive_key with context KEY_CHECK_CONTEXT."""
    import blake3
    k = bytes(seg_key)
    if len(k) != 32:
        raise InvalidArgument(f"segment key must be 32 bytes, not {len(k)}")
    return blake3.blake3(k, derive_key_context=KEY_CHECK_CONTEXT).digest(length=16)


cdef int _message_call(seg_key, msg, Py_ssize_t offset, bint do_seal) except? -1:
    cdef Py_buffer k, m
    cdef int rc
    _get(seg_key, &k, False, 32, "segment key")
    try:
        _get(msg, &m, True, -1, "message buffer")
        try:
            if offset < 0 or offset > m.len:
                raise InvalidArgument(f"offset {offset} is outside the {m.len}-byte buffer")
            with nogil:
                if do_seal:
                    rc = lk_seal_message(<uint8_t *>k.buf, <uint8_t *>m.buf + offset, m.len - offset)
                else:
                    rc = lk_open_message(<uint8_t *>k.buf, <uint8_t *>m.buf + offset, m.len - offset)
        finally:
            PyBuffer_Release(&m)
    finally:
        PyBuffer_Release(&k)
    return rc


def seal_message(seg_key, msg, Py_ssize_t offset=0) -> None:
    """Seal the message at `offset` of the writable buffer `msg` in place, in
    the format version 2 layout (docs/format.md): text and data encrypted,
    header bytes 8..55 and the class name authenticated, the tag stored after
    the data.  Every header field must already be stored.  InvalidArgument
    when the header's lengths leave no room for the tag within its total or
    the buffer."""
    rc = _message_call(seg_key, msg, offset, True)
    if rc != LK_SEAL_OK:
        raise InvalidArgument(f"message at offset {offset}: lengths do not fit its total "
                              f"with a {LK_SEAL_TAG_BYTES}-byte tag, or run past the buffer")


def open_message(seg_key, msg, Py_ssize_t offset=0) -> None:
    """Verify and decrypt in place the sealed message at `offset` of `msg`.
    MessageTampered (message left unchanged) when its tag does not match;
    InvalidArgument when its lengths do not fit."""
    rc = _message_call(seg_key, msg, offset, False)
    if rc == LK_SEAL_BAD_TAG:
        raise _tampered(f"message at offset {offset}: authentication failed (a byte of its "
                        "header, class name, text, data or tag was changed, or the key is wrong)")
    if rc != LK_SEAL_OK:
        raise InvalidArgument(f"message at offset {offset}: lengths do not fit its total "
                              f"with a {LK_SEAL_TAG_BYTES}-byte tag, or run past the buffer")


# ---- benchmark loops (bench/bench_crypto.py) ----

cdef uint8_t *_bench_message(bytearray buf, Py_ssize_t payload) except NULL:
    # a message header as a writer would have stored it: total, sequence,
    # text length, key id 1; severity, time, pid, tid arbitrary
    cdef Py_ssize_t need = (64 + payload + 16 + 7) & ~7
    if len(buf) < need:
        raise InvalidArgument(f"buffer of {len(buf)} bytes cannot hold a {payload}-byte message")
    cdef uint8_t *p = <uint8_t *><char *>buf
    cdef uint32_t total = <uint32_t>need, tl = <uint32_t>payload
    cdef uint16_t kid = 1
    memset(p, 0, need)
    memcpy(p + 8, &total, 4)
    memcpy(p + 40, &tl, 4)
    memcpy(p + 50, &kid, 2)
    return p


def _bench_seal_loop(seg_key, Py_ssize_t payload, Py_ssize_t n) -> int:
    """n times: copy a `payload`-byte text into a message, seal it (a new
    sequence number each time), CRC-32C it, as the sealed write path would.
    Returns the last checksum (so the work cannot be optimised away)."""
    cdef bytes key = bytes(seg_key)
    if len(key) != 32:
        raise InvalidArgument("segment key must be 32 bytes")
    cdef bytearray buf = bytearray((64 + payload + 16 + 7) & ~7)
    cdef bytes text = b"x" * payload
    cdef uint8_t *p = _bench_message(buf, payload)
    cdef const uint8_t *k = <const uint8_t *>PyBytes_AS_STRING(key)
    cdef const char *t = PyBytes_AS_STRING(text)
    cdef uint64_t room = len(buf), seq
    cdef uint32_t crc = 0
    cdef Py_ssize_t i
    with nogil:
        for i in range(n):
            seq = <uint64_t>i + 1
            memcpy(p + 16, &seq, 8)
            memcpy(p + 64, t, payload)
            lk_seal_message(k, p, room)
            crc = lk_crc32c(0, p + 8, 52)
            crc = lk_crc32c(crc, p + 64, payload + 16)
    return crc


def _bench_floor_loop(Py_ssize_t payload, Py_ssize_t n) -> int:
    """The unsealed floor: n times copy the text and CRC-32C header and payload."""
    cdef bytearray buf = bytearray((64 + payload + 7) & ~7 if payload else 64)
    cdef bytes text = b"x" * payload
    cdef uint8_t *p = <uint8_t *><char *>buf
    cdef const char *t = PyBytes_AS_STRING(text)
    cdef uint64_t seq
    cdef uint32_t crc = 0
    cdef Py_ssize_t i
    with nogil:
        for i in range(n):
            seq = <uint64_t>i + 1
            memcpy(p + 16, &seq, 8)
            memcpy(p + 64, t, payload)
            crc = lk_crc32c(0, p + 8, 52)
            crc = lk_crc32c(crc, p + 64, payload)
    return crc


def _bench_aead_loop(seg_key, Py_ssize_t payload, Py_ssize_t n) -> int:
    """n seals of a `payload`-byte buffer with a 48-byte aad, nothing else."""
    cdef bytes key = bytes(seg_key)
    if len(key) != 32:
        raise InvalidArgument("segment key must be 32 bytes")
    cdef bytearray buf = bytearray(payload + 48)
    cdef uint8_t *p = <uint8_t *><char *>buf
    cdef const uint8_t *k = <const uint8_t *>PyBytes_AS_STRING(key)
    cdef uint8_t nonce[12]
    cdef uint8_t tag[16]
    cdef Py_ssize_t i
    with nogil:
        for i in range(n):
            lk_seal_nonce(nonce, <uint64_t>i + 1)
            lk_aead_seal(k, nonce, p, 48, p + 48, payload, tag)
    return tag[0]
