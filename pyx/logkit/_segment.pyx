# The segment core's object layer: Segment, Reservation, Message and the
# record walk, over the C primitives of pyx/include/lk_segment.h (which
# explains the reservation word, the message states and every ordering).
# Everything above this module (families, handler, tools) goes through it.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int16_t, int64_t, uintptr_t, UINT64_MAX
from libc.string cimport memcmp, memcpy, memset
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_WRITABLE, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from cpython.long cimport PyLong_FromUnsignedLongLong
from cpython.exc cimport PyErr_CheckSignals

import mmap as _mmap_mod
import os
import time as _time_mod
import uuid as _uuid_mod
import re
from collections import namedtuple

_SIZE_RE = re.compile(r"\s*([0-9]+)\s*([A-Za-z]*)\s*", re.ASCII)

from logkit._crypto cimport lk_open_message, LK_SEAL_OK, LK_SEAL_BAD_TAG
from logkit.errors import (
    DiskFull, InvalidArgument, MessageLost, MessageTooBig, NoSuchMessage, OutOfService,
    ReadOnlySegment, SegmentClosed, SegmentDamaged, SegmentExists, SegmentFull,
    SegmentNotFound, UnsupportedFormat,
)

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL
    # The same without Cython's exception check: NULL (UnicodeEncodeError set)
    # for a str holding a lone surrogate; write() then takes utf8_text().
    const char *_utf8_or_null "PyUnicode_AsUTF8AndSize" (object, Py_ssize_t *)
    void PyErr_Clear()


def utf8_text(text, what="text"):
    """The bytes every write stores for `text`: its UTF-8.  One rule for
    write(), write_as(), write_stepwise() and the data-class name.  A str
    decoded with "surrogateescape" (bytes that were not UTF-8: a pipe
    record, a plain-file line) gets its original bytes back; any other
    lone surrogate is InvalidArgument naming its position.  bytes pass."""
    if type(text) is bytes:
        return text
    if not isinstance(text, str):
        raise InvalidArgument(f"{what} must be str or bytes, not {type(text).__name__}")
    try:
        return (<str>text).encode("utf-8")
    except UnicodeEncodeError as e:
        try:
            return (<str>text).encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raise InvalidArgument(f"{what} is not valid Unicode: a lone surrogate "
                                  f"U+{ord(text[e.start]):04X} at position {e.start}") from None

cdef extern from "sys/mman.h" nogil:
    int madvise(void *addr, size_t length, int advice)
    int msync(void *addr, size_t length, int flags)
    int MS_SYNC

cdef extern from "errno.h":
    int errno

# A file truncated under its mapping (pyx/include/lk_sigbus.h): included here
# only, since it keeps the process's table of mappings in static variables.
cdef extern from "lk_sigbus.h" nogil:
    int lk_sigbus_install()
    int lk_sigbus_watch(const void *start, uint64_t length, uintptr_t tag)
    void lk_sigbus_unwatch(uintptr_t tag)
    uint64_t lk_sigbus_hits(uintptr_t tag, uintptr_t *first, uintptr_t *mstart)
    uint64_t lk_sigbus_events
    uint64_t lk_sigbus_chained

lk_crc32c_setup()
lk_sys_setup()
lk_sigbus_install()

MAGIC = b"LOGKITSG"
FORMAT_VERSION = LK_FORMAT_VERSION
FORMAT_VERSION_SEALED = LK_FORMAT_VERSION_SEALED
TAG_SIZE = LK_TAG_SIZE
HEADER_SIZE = LK_HEADER_SIZE
MESSAGE_HEADER_SIZE = LK_MSG_HEADER
MIN_SEGMENT_SIZE = LK_MIN_REGION
MAX_SEGMENT_SIZE = LK_MAX_REGION
SEVERITY_MIN = LK_SEVERITY_MIN
SEVERITY_MAX = LK_SEVERITY_MAX
CHECKSUM_CRC32C = LK_CHECKSUM_CRC32C
LISTENER_SLOTS = LK_LISTENER_SLOTS
WAIT_FUTEX = bool(LK_HAVE_FUTEX)    # wait() sleeps on a futex (Linux); False: it polls
_MADV_POPULATE_WRITE = 23   # Linux >= 5.14; older kernels answer EINVAL

Limits = namedtuple("Limits", "first_sequence first_time last_sequence last_time", module="logkit._segment")
Record = namedtuple("Record", "kind offset length sequence span state", module="logkit._segment")

RECORD_KINDS = {
    LK_REC_COMMITTED: "committed",
    LK_REC_RESERVED: "reserved",
    LK_REC_ABANDONED: "abandoned",
    LK_REC_GAP: "gap",
    LK_REC_DAMAGED: "damaged",
}


# Tokens (header offset 456; lk_segment.h "Tokens", docs/format.md): one
# layout for a family's rotation token and a partition half's state token.
TOKEN_STATE_SHIFT = LK_TOKEN_STATE_SHIFT
TOKEN_ATTEMPT_MASK = LK_TOKEN_ATTEMPT_MASK


def token_make(uint32_t state, uint64_t attempt, uint64_t pid):
    """The token word of `state` (0..7), claim `attempt` (kept modulo 2**29)
    and process `pid`."""
    if state > 7:
        raise InvalidArgument(f"token state {state} outside 0..7")
    return lk_token_make(state, attempt, pid)


def token_state(uint64_t token):
    """The STATE field (bits 61..63) of a token."""
    return lk_token_state(token)


def token_attempt(uint64_t token):
    """The ATTEMPT field (bits 32..60) of a token."""
    return lk_token_attempt(token)


def token_pid(uint64_t token):
    """The PID field (bits 0..31) of a token."""
    return lk_token_pid(token)


def crc32c(data, unsigned int crc=0):
    """CRC-32C (Castagnoli) of a bytes-like object, continuing from `crc`."""
    cdef const uint8_t[::1] v = memoryview(data).cast("B")
    if v.shape[0] == 0:
        return crc
    return lk_crc32c(crc, &v[0], v.shape[0])


def load_word(buffer, Py_ssize_t offset):
    """The 8-byte little-endian word at `offset` of a shared buffer (an mmap),
    read with one atomic load (acquire): never a mixture of two stores."""
    cdef const uint8_t[::1] v = memoryview(buffer).cast("B")
    if offset < 0 or offset % 8 or offset + 8 > v.shape[0]:
        raise InvalidArgument(f"word offset {offset} is not an 8-aligned offset inside the {v.shape[0]}-byte buffer")
    if (<size_t>&v[offset]) % 8:
        raise InvalidArgument("the buffer is not 8-byte aligned")
    return lk_word_load_acquire(<const uint64_t *>&v[offset])


def store_word(buffer, Py_ssize_t offset, uint64_t value):
    """Store the 8-byte word at `offset` of a shared buffer with one atomic
    store (release): a process killed at any instant leaves the old value or
    the new one (struct.pack_into zeroes the field first and then writes it
    byte by byte)."""
    cdef uint8_t[::1] v = memoryview(buffer).cast("B")
    if offset < 0 or offset % 8 or offset + 8 > v.shape[0]:
        raise InvalidArgument(f"word offset {offset} is not an 8-aligned offset inside the {v.shape[0]}-byte buffer")
    if (<size_t>&v[offset]) % 8:
        raise InvalidArgument("the buffer is not 8-byte aligned")
    lk_word_store_release(<uint64_t *>&v[offset], value)


def process_start(uint32_t pid):
    """The start time of process `pid` as logkit records it next to a pid
    (low 32 bits of /proc/PID/stat field 22, 0 mapped to 1), or 0 if it
    cannot be read.  logkit.salvager.process_identity() is the public face."""
    return lk_proc_start(pid)


def identity_gone(uint32_t pid, uint32_t start):
    """True only if the process recorded as (pid, start) certainly runs no
    more (lk_identity_gone in lk_sys.h).  logkit.salvager.identity_alive()
    is the public face."""
    return bool(lk_identity_gone(pid, start))


def crc32c_uses_hardware():
    """True when the SSE4.2 instruction computes the checksum on this machine."""
    return bool(lk_crc32c_using_hardware())


def _crc32c_force_software(bint force):
    """For tests: use the portable table-driven checksum (True) or detect again (False)."""
    lk_crc32c_force_software(force)


cdef bint _force_poll = False


def _wait_force_poll(bint force):
    """For tests and benchmarks: make wait() use the polling fallback (True),
    as a build without futex does, or the futex again (False)."""
    global _force_poll
    _force_poll = force


def _wake_syscalls():
    """For tests: FUTEX_WAKE calls this module made so far (writes through
    Segment.write and friends; other extension modules count their own)."""
    return lk_wake_syscalls


cdef inline uint64_t _u64(const uint8_t *p, uint64_t off) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p + off, 8)
    return v

cdef inline uint32_t _u32(const uint8_t *p, uint64_t off) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p + off, 4)
    return v

cdef inline uint16_t _u16(const uint8_t *p, uint64_t off) noexcept nogil:
    cdef uint16_t v
    memcpy(&v, p + off, 2)
    return v

cdef inline void _put64(uint8_t *p, uint64_t off, uint64_t v) noexcept nogil:
    memcpy(p + off, &v, 8)

cdef inline void _put32(uint8_t *p, uint64_t off, uint32_t v) noexcept nogil:
    memcpy(p + off, &v, 4)


cdef inline long _severity(object severity) except? -1000000:
    """A severity as a C long, or InvalidArgument naming it."""
    cdef long sev
    if not isinstance(severity, int):
        raise InvalidArgument(f"severity {severity!r} is not an integer in {LK_SEVERITY_MIN}..{LK_SEVERITY_MAX}")
    try:
        sev = severity
    except (OverflowError, TypeError):
        raise InvalidArgument(f"severity {severity!r} is not an integer in {LK_SEVERITY_MIN}..{LK_SEVERITY_MAX}") from None
    if sev < LK_SEVERITY_MIN or sev > LK_SEVERITY_MAX:
        raise InvalidArgument(f"severity {severity} is outside {LK_SEVERITY_MIN}..{LK_SEVERITY_MAX}")
    return sev


def parse_size(value, what="size"):
    """Turn 1048576, "1MiB", "64KiB", "8M" or "2GiB" into bytes; InvalidArgument otherwise."""
    if isinstance(value, bool):
        raise InvalidArgument(f"{what}: expected a number of bytes or a string like '8MiB', got {value!r}")
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        raise InvalidArgument(f"{what}: expected a number of bytes or a string like '8MiB', got {value!r}")
    units = {"": 1, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20,
             "mb": 1000 ** 2, "mib": 1 << 20, "g": 1 << 30, "gb": 1000 ** 3, "gib": 1 << 30}
    m = _SIZE_RE.fullmatch(value)
    if m is None or m.group(2).lower() not in units:
        raise InvalidArgument(
            f"{what}: {value!r} is not a size; use bytes or a number with KiB, MiB or GiB (e.g. '8MiB')")
    num, unit = m.group(1), m.group(2).lower()
    return int(num) * units[unit]


def _identity_args(family, previous, sequence_base):
    """Validated (family, previous) bytes for a new segment's header."""
    fam = _encode_field(family, LK_H_FAMILY_MAX, "family name")
    prev = _encode_field(previous, LK_H_PREVIOUS_MAX, "previous segment path")
    if not isinstance(sequence_base, int) or not 1 <= sequence_base < (1 << 62):
        raise InvalidArgument(f"sequence_base {sequence_base!r} must be an integer in 1..2**62-1")
    return fam, prev


def _validate_size(size):
    size = parse_size(size)
    if size < LK_MIN_REGION:
        raise InvalidArgument(f"segment size {size} is below the minimum of {LK_MIN_REGION} bytes")
    if size > LK_MAX_REGION:
        raise InvalidArgument(f"segment size {size} is above the maximum of {LK_MAX_REGION} bytes (32 GiB)")
    if size % 8:
        raise InvalidArgument(f"segment size {size} is not a multiple of 8 bytes")
    return size


def _encode_field(value, int limit, what):
    if value is None:
        value = ""
    b = os.fsencode(value) if not isinstance(value, bytes) else value
    if b"\0" in b:
        raise InvalidArgument(f"{what} {value!r} contains a NUL byte")
    if len(b) >= limit:
        raise InvalidArgument(f"{what} {value!r} is {len(b)} bytes; the format holds at most {limit - 1}")
    return b


cdef void _put_fixed_identity(uint8_t *b, uint64_t size, uint64_t seq_base,
                              uint32_t version=LK_FORMAT_VERSION) noexcept:
    """The identity fields a region itself determines (format, sizes, base);
    shared by formatting and by salvage's rebuild of a damaged header."""
    memcpy(b, b"LOGKITSG", 8)
    _put32(b, LK_H_VERSION, version)
    _put32(b, LK_H_HEADER_SIZE, LK_HEADER_SIZE)
    _put64(b, LK_H_REGION_SIZE, size)
    _put64(b, LK_H_SEQUENCE_BASE, seq_base)
    _put32(b, LK_H_CHECKSUM_ALG, LK_CHECKSUM_CRC32C)


cdef void _format_region(uint8_t *b, uint64_t size, bytes family, bytes previous,
                         uint64_t seq_base, bytes uuid_bytes, int64_t created,
                         bytes key_check=None, uint16_t key_id=0) noexcept:
    memset(b, 0, LK_HEADER_SIZE)
    if key_id:
        # Sealed: format version 4 (2 with the holder identity and the UUID
        # copy), the SEALED segment flag (both under the identity CRC), key
        # check and key id in the hint area.
        _put_fixed_identity(b, size, seq_base, LK_FORMAT_VERSION_SEALED)
        _put32(b, LK_H_FLAGS, LK_SEG_FLAG_SEALED)
        memcpy(b + LK_H_KEY_CHECK, <const char *>key_check, 16)
        memcpy(b + LK_H_KEY_ID, &key_id, 2)
    else:
        _put_fixed_identity(b, size, seq_base)
    memcpy(b + LK_H_UUID, <const char *>uuid_bytes, 16)
    memcpy(b + LK_H_UUID_COPY, <const char *>uuid_bytes, 16)     # versions 3 and 4
    _put64(b, LK_H_CREATED, <uint64_t>created)
    memcpy(b + LK_H_FAMILY, <const char *>family, len(family))
    memcpy(b + LK_H_PREVIOUS, <const char *>previous, len(previous))
    _put32(b, LK_H_IDENTITY_CRC, lk_identity_crc(b))
    _put32(b, LK_H_LISTENER_COUNT, LK_LISTENER_SLOTS)
    _put32(b, LK_H_LISTENER_SLOT_SIZE, LK_LISTENER_SLOT_BYTES)
    # The word goes last, with release: a reader that sees the segment in
    # service sees the header above (pairs with lk_read_bound's acquire).
    lk_reserve_word_store_release(<uint64_t *>(b + LK_H_RESERVATION),
                                  LK_IN_SERVICE | (LK_HEADER_SIZE // 8))


cdef str _header_problem(const uint8_t *b, uint64_t size):
    """None if the header identity is sound, else what is wrong with it."""
    if b[0:8] != MAGIC:
        return "bad magic (not a logkit segment)"
    cdef uint32_t v = _u32(b, LK_H_VERSION)
    if _u32(b, LK_H_HEADER_SIZE) != LK_HEADER_SIZE:
        return f"header size {_u32(b, LK_H_HEADER_SIZE)} (expected {LK_HEADER_SIZE})"
    if _u64(b, LK_H_REGION_SIZE) != size:
        return f"header says {_u64(b, LK_H_REGION_SIZE)} bytes, region has {size}"
    if _u32(b, LK_H_CHECKSUM_ALG) != LK_CHECKSUM_CRC32C:
        return f"unknown checksum algorithm {_u32(b, LK_H_CHECKSUM_ALG)}"
    if _u32(b, LK_H_IDENTITY_CRC) != lk_identity_crc(b):
        return "header identity checksum mismatch (bytes 0..383)"
    return None


cdef _check_version(const uint8_t *b, where):
    """A sound header of another format version is not damage: refuse it as such."""
    cdef uint32_t v = _u32(b, LK_H_VERSION)
    if b[0:8] == MAGIC and not LK_FORMAT_VERSION_1 <= v <= LK_FORMAT_VERSION_SEALED \
            and _u32(b, LK_H_IDENTITY_CRC) == lk_identity_crc(b):
        raise UnsupportedFormat(f"{where}: segment format version {v}; this logkit reads versions "
                                f"{LK_FORMAT_VERSION_1} to {LK_FORMAT_VERSION_SEALED} only "
                                f"(upgrade logkit to read it)")


cdef bint _header_sealed(const uint8_t *b) noexcept:
    """The header (identity already checked) says: a sealed segment."""
    cdef uint32_t v = _u32(b, LK_H_VERSION)
    return (v == LK_FORMAT_VERSION_SEALED or v == LK_FORMAT_VERSION_2) and (_u32(b, LK_H_FLAGS) & LK_SEG_FLAG_SEALED) != 0


def _log_key_arg(key, what="key"):
    """(key_id, log_key bytes) from a writer's key=(key_id, log_key)."""
    try:
        kid, log_key = key
        kid = int(kid)
        log_key = bytes(log_key)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{what} must be a (key_id, 32-byte log key) pair, not {type(key).__name__}") from None
    if not 1 <= kid <= 65535:
        raise InvalidArgument(f"{what}: key id {kid} is outside 1..65535 (0 means 'not sealed')")
    if len(log_key) != 32:
        raise InvalidArgument(f"{what}: a log key is 32 bytes, not {len(log_key)}")
    return kid, log_key


def _key_source(key):
    """A description of where a key came from, for error messages."""
    path = getattr(key, "path", None)
    return f"key file {path}" if path else "the key given"


def _sealing_args(key, segment_uuid):
    """Validated (key_id, log_key) for a new sealed segment, or None."""
    if key is None:
        return None
    if segment_uuid is not None:
        raise InvalidArgument("a sealed segment gets a fresh random UUID: segment_uuid cannot be "
                              "given with key (a repeated UUID would repeat nonces, docs/security.md)")
    return _log_key_arg(key)


cdef _format_sealed(Segment seg, bytes fam, bytes prev, uint64_t sequence_base, bytes uid, sealing):
    """Format seg's region, sealed under `sealing` = (key_id, log_key) or not."""
    cdef uint16_t kid = 0
    check = None
    if sealing is not None:
        from logkit._crypto import key_check, segment_key
        kid = sealing[0]
        sk = segment_key(sealing[1], uid)
        check = key_check(sk)
    _format_region(seg.base, seg.size, fam, prev, sequence_base, uid, lk_now_ns(), check, kid)
    if kid:
        seg.sealed = True
        memcpy(seg.seal_key, <const char *>sk, 32)
        memcpy(seg.seal_uuid, <const char *>uid, 16)
        seg.seal_key_id = kid
        seg.has_key = True
        seg._key_given = sealing


cdef object _unmap(object mm):
    """Close an mmap now, or, while someone still holds a view into it (a
    BufferError), leave it to unmap itself when that view is freed.  None."""
    if mm is not None:
        try:
            mm.close()
        except BufferError:
            pass
    return None


cdef class Segment:
    """A log segment: a header plus sequentially allocated messages in a shared mapping.

    Create one with Segment.create(path, ...), open one with Segment.open(path), or
    place one in a region of any writable buffer with Segment.format()/from_buffer().
    """

    def __cinit__(self):
        self.base = NULL
        self._has_view = False
        self._mmap = None
        self._owner = None
        self._mv = None
        self.path = None
        self._hdr = NULL
        self._hdr_tried = False
        self._wake_mmap = None
        self._has_wake_view = False
        self._slot = -1
        self._slot_waits = 0
        self.sealed = False
        self.has_key = False
        self.seal_key_id = 0

    def __dealloc__(self):
        _sigbus_unwatch(self)
        memset(self.seal_key, 0, 32)
        if self.base != NULL and self._slot >= 0 and self._slot_waits == 0:
            self._release_slot(self._hdr)
        if self._has_wake_view:
            PyBuffer_Release(&self._wake_view)
            self._has_wake_view = False
        if self._has_view:
            PyBuffer_Release(&self._view)
            self._has_view = False

    # ------------------------------------------------------------ opening

    @staticmethod
    def _attach(owner, Py_ssize_t offset, length, bint readonly, path, mm, bint check=True):
        cdef Segment seg = Segment.__new__(Segment)
        PyObject_GetBuffer(owner, &seg._view, PyBUF_SIMPLE if readonly else PyBUF_WRITABLE)
        seg._has_view = True
        seg._owner = owner
        seg._mmap = mm
        seg.readonly = readonly
        seg.path = path
        cdef Py_ssize_t total = seg._view.len
        if length is None:
            length = total - offset
        cdef Py_ssize_t n = length
        where = path if path is not None else f"region at offset {offset}"
        if offset < 0 or n < 0 or offset + n > total:
            seg.close()
            raise InvalidArgument(f"{where}: region {offset}+{n} lies outside the {total}-byte buffer")
        if offset % 8 or (<size_t>seg._view.buf) % 8:
            seg.close()
            raise InvalidArgument(f"{where}: region offset {offset} is not 8-byte aligned")
        if n < LK_MIN_REGION:
            seg.close()
            err = SegmentDamaged if check else InvalidArgument
            raise err(f"{where}: {n} bytes is too small for a segment (minimum {LK_MIN_REGION})")
        if <uint64_t>n > LK_MAX_REGION:
            seg.close()
            raise InvalidArgument(f"{where}: {n} bytes is larger than the largest segment ({LK_MAX_REGION} bytes)")
        seg.base = <uint8_t *>seg._view.buf + offset
        seg.size = n
        seg._region_offset = offset
        _sigbus_watch(seg, seg._view.buf, total)     # the whole buffer: SIGBUS, see lk_sigbus.h
        if check:
            try:
                _check_version(seg.base, where)
            except UnsupportedFormat:
                seg.close()
                raise
            problem = _header_problem(seg.base, seg.size)
            for _ in range(3):
                # set_previous() (migration) rewrites the identity block of a
                # live segment in place; a reader may catch it half-written.
                if problem is None or not problem.startswith("header identity checksum"):
                    break
                _time_mod.sleep(0.001)
                problem = _header_problem(seg.base, seg.size)
            if problem is not None:
                seg.close()
                raise SegmentDamaged(f"{where}: {problem}; logkit.salvage() can recover its messages")
            seg.sealed = _header_sealed(seg.base)
        return seg

    def use_key(self, key):
        """Give a sealed segment its key: `key` is a (key_id, log_key) pair or
        a KeyRing (anything with .key(key_id)).  Derives the segment key once
        and checks it against the header's key check: WrongKey (naming the
        segment and the key id) when it differs.  A key that does not have the
        segment's key id leaves the segment without a key (readers show
        "[encrypted]"; writes are refused) and returns the MissingKey error
        instead of raising it.  Unsealed segments ignore the key."""
        from logkit._crypto import key_check, segment_key
        from logkit.errors import MissingKey, WrongKey
        self._check_open()
        if key is None or not self.sealed:
            return None
        cdef uint16_t kid = _u16(self.base, LK_H_KEY_ID)
        where = self.path or "segment"
        if kid == 0:
            raise SegmentDamaged(f"{where}: sealed segment with key id 0 in its header (offset {LK_H_KEY_ID})")
        if isinstance(key, tuple):
            given, log_key = _log_key_arg(key)
            if given != kid:
                return MissingKey(f"{where} is sealed under key id {kid}; the key given has id {given}")
        else:
            try:
                log_key = key.key(kid)
            except MissingKey as e:
                return MissingKey(f"{where} is sealed under key id {kid}: {e}")
        sk = segment_key(log_key, bytes(self.base[LK_H_UUID:LK_H_UUID + 16]))
        self.key_check_problem = None
        memcpy(self.seal_key, <const char *>sk, 32)
        memcpy(self.seal_uuid, self.base + LK_H_UUID, 16)
        self.seal_key_id = kid
        self.has_key = True
        if key_check(sk) != bytes(self.base[LK_H_KEY_CHECK:LK_H_KEY_CHECK + 16]):
            # The key check is a quick answer, outside the identity CRC; the
            # messages' own authentication is the proof.  A key under which a
            # sealed message of this segment authenticates is its key, and
            # the check is what is damaged (a lost page, a scribble).
            if not self._some_message_opens():
                self.has_key = False
                self.seal_key_id = 0
                memset(self.seal_key, 0, 32)
                memset(self.seal_uuid, 0, 16)
                raise WrongKey(f"{where}: key id {kid} of {_key_source(key)} is not the key this segment "
                               f"({self.uuid}) was sealed with: its key check (header offset "
                               f"{LK_H_KEY_CHECK}) differs and no message authenticates under it")
            self.key_check_problem = (f"{where}: the key check at header offset {LK_H_KEY_CHECK} is damaged; "
                                      f"key id {kid} of {_key_source(key)} opens its messages")
            if not self.readonly:
                check = key_check(sk)
                memcpy(self.base + LK_H_KEY_CHECK, <const char *>check, 16)
                self.key_check_problem += " (check rewritten)"
        self._key_given = key
        return None

    cdef bint _some_message_opens(self) except -1:
        """With the segment key set: does one of the first 16 sealed committed
        messages authenticate under it?"""
        from logkit.errors import MessageTampered
        cdef int tried = 0
        for m in SegmentIterator(self):
            if not m.sealed:
                continue
            try:
                m.text
                m.data
                return True
            except (MessageTampered, UnicodeDecodeError):
                pass
            tried += 1
            if tried >= 16:
                break
        return False

    def rekey(self, key=None):
        """Read the header's sealing again and derive the segment key anew,
        from `key` or else the key given before: for a region formatted again
        in place (a partition half reused, with a new UUID and perhaps a new
        key id) since this object derived its key.  Raises WrongKey; returns
        the MissingKey error (not raised) as use_key() does, else None."""
        self._check_open()
        if key is None:
            key = self._key_given
        self.sealed = _header_sealed(self.base)
        self.has_key = False
        self.seal_key_id = 0
        memset(self.seal_key, 0, 32)
        memset(self.seal_uuid, 0, 16)
        if not self.sealed or key is None:
            self._key_given = key
            return None
        return self.use_key(key)

    def key_stale(self):
        """True if the header's sealing no longer matches what this object
        derived its key from (the region was formatted again in place)."""
        self._check_open()
        cdef bint hs = _header_sealed(self.base)
        return hs != self.sealed or (hs and memcmp(self.base + LK_H_UUID, self.seal_uuid, 16) != 0)

    cdef int _write_sealed(self, const void *tp, Py_ssize_t tn, const void *dp, Py_ssize_t dn,
                           const char *cp, Py_ssize_t cn, int16_t sev, int64_t t, int64_t now,
                           uint32_t pid, uint32_t tid, uint64_t *seq) except -1:
        """lk_write_sealed, deriving the key again and retrying while the
        region was formatted again under us (LK_REKEY, [K1]).  The status."""
        cdef int rc
        while True:
            rc = lk_write_sealed(self.base, self.size, tp, tn, dp, dn, cp, cn, sev, t, now, pid, tid,
                                 self.seal_key_id, self.seal_key, self.seal_uuid, seq)
            if rc != LK_REKEY:
                return rc
            self._seal_ready()

    cdef int _seal_ready(self) except -1:
        """Before a sealed write: re-derive the key if the region's UUID
        changed since it was derived ([K1] catches a change after the
        reservation too); refuse without the key."""
        if memcmp(self.base + LK_H_UUID, self.seal_uuid, 16) != 0:
            err = self.rekey()
            if err is not None:
                raise err
            if not self.sealed:
                return 0
        if not self.has_key:
            self._refuse_unkeyed()
        return 0

    @staticmethod
    def create(path, size=1 << 20, family="", previous="", sequence_base=1,
               mode=0o640, segment_uuid=None, key=None):
        """Create a new segment file of `size` bytes and open it for writing.

        The file is prepared under a temporary name, fully allocated on disk
        (so a full disk is a DiskFull error now, never a SIGBUS later),
        formatted, then linked into place: nobody sees a half-made segment.
        key=(key_id, log_key): a sealed segment (format version 2) whose
        messages are encrypted and authenticated under a key derived from
        log_key and the segment's fresh UUID (segment_uuid is refused then).
        Raises SegmentExists if `path` exists, DiskFull, InvalidArgument.
        """
        size = _validate_size(size)
        fam, prev = _identity_args(family, previous, sequence_base)
        sealing = _sealing_args(key, segment_uuid)
        uid = (segment_uuid or _uuid_mod.uuid4()).bytes
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise SegmentNotFound(f"cannot create segment {path}: directory {directory} does not exist")
        if os.path.exists(path):
            raise SegmentExists(f"cannot create segment {path}: a file is already there")
        tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{_uuid_mod.uuid4().hex[:8]}.new")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            os.fchmod(fd, mode)
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as e:
                if e.errno in (28, 122):   # ENOSPC, EDQUOT
                    raise DiskFull(e.errno, f"no space to create segment {path} of {size} bytes: {e.strerror}") from None
                if e.errno in (95, 22):    # file system without fallocate: fall back
                    os.ftruncate(fd, size)
                else:
                    raise
            mm = _mmap_mod.mmap(fd, size, _mmap_mod.MAP_SHARED, _mmap_mod.PROT_READ | _mmap_mod.PROT_WRITE)
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        cdef Segment seg = None
        try:
            seg = Segment._attach(mm, 0, size, False, path, mm, check=False)
            seg.file_id = (st.st_dev, st.st_ino)
            seg._prefault()
            _format_sealed(seg, fam, prev, sequence_base, uid, sealing)
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise SegmentExists(f"cannot create segment {path}: another process created it first") from None
        except BaseException:
            os.unlink(tmp)
            if seg is not None:
                seg.close()
            else:
                mm.close()
            raise
        os.unlink(tmp)
        return seg

    @staticmethod
    def open(path, readonly=False, key=None, *, check_header=True):
        """Open an existing segment file (writable unless readonly=True).

        key: for a sealed segment, a KeyRing (logkit.crypto.load_key_file) or
        a (key_id, log_key) pair; with it, messages read decrypted and writes
        are sealed.  Without the right key id, the segment opens without a key
        (text reads "[encrypted]", writes are refused).
        Raises SegmentNotFound, SegmentDamaged naming what is wrong with the
        header, UnsupportedFormat for a sound segment of another format
        version, WrongKey when the key's key check differs from the header's.
        check_header=False: attach whatever the header holds (salvage and the
        inspection tools, which judge it themselves with header_problem());
        such a segment takes no key.
        """
        if not check_header:
            if key is not None:
                raise InvalidArgument("open(check_header=False) takes no key: judge the header first")
            return Segment._open_file(path, readonly, False)
        cdef Segment seg = Segment._open_file(path, readonly, True)
        try:
            seg.use_key(key)
        except BaseException:
            seg.close()
            raise
        return seg

    @staticmethod
    def _open_file(path, bint readonly, bint check):
        path = os.fspath(path)
        try:
            fd = os.open(path, (os.O_RDONLY if readonly else os.O_RDWR) | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SegmentNotFound(f"no segment at {path}") from None
        try:
            st = os.fstat(fd)
            size = st.st_size
            if size < LK_MIN_REGION:
                raise SegmentDamaged(f"{path}: {size} bytes is too small for a segment (minimum {LK_MIN_REGION})")
            if readonly:
                mm = _mmap_mod.mmap(fd, size, _mmap_mod.MAP_SHARED, _mmap_mod.PROT_READ)
            else:
                mm = _mmap_mod.mmap(fd, size, _mmap_mod.MAP_SHARED, _mmap_mod.PROT_READ | _mmap_mod.PROT_WRITE)
        finally:
            os.close(fd)
        cdef Segment seg = Segment._attach(mm, 0, size, readonly, path, mm, check=check)
        seg.file_id = (st.st_dev, st.st_ino)
        if not readonly:
            seg._prefault()
        return seg

    @staticmethod
    def format(buffer, offset=0, length=None, family="", previous="", sequence_base=1,
               segment_uuid=None, key=None):
        """Format a region of a writable buffer (e.g. an mmap) as an empty
        segment; key=(key_id, log_key) makes it sealed, as for create()."""
        fam, prev = _identity_args(family, previous, sequence_base)
        sealing = _sealing_args(key, segment_uuid)
        cdef Segment seg = Segment._attach(buffer, offset, length, False, None, None, check=False)
        if seg.size > LK_MAX_REGION or seg.size % 8:
            seg.close()
            raise InvalidArgument(f"region of {seg.size} bytes: size must be a multiple of 8 and at most 32 GiB")
        memset(seg.base + LK_HEADER_SIZE, 0, seg.size - LK_HEADER_SIZE)
        _format_sealed(seg, fam, prev, sequence_base, (segment_uuid or _uuid_mod.uuid4()).bytes, sealing)
        return seg

    @staticmethod
    def from_buffer(buffer, offset=0, length=None, readonly=False, key=None, *, path=None,
                    close_buffer=False, check_header=True):
        """Attach to a segment already formatted in a region of `buffer`
        (key as for open()).  path: the name errors and repr use (e.g.
        "FILE@OFFSET").  close_buffer: the buffer is an mmap this segment
        owns and closes when it is closed.  check_header=False: attach
        whatever the header holds, as open(check_header=False) does (then no
        key)."""
        if not check_header:
            if key is not None:
                raise InvalidArgument("from_buffer(check_header=False) takes no key: judge the header first")
            return Segment._attach(buffer, offset, length, readonly, path,
                                   buffer if close_buffer else None, check=False)
        cdef Segment seg = Segment._attach(buffer, offset, length, readonly, path,
                                           buffer if close_buffer else None, check=True)
        try:
            seg.use_key(key)
        except BaseException:
            seg.close()
            raise
        return seg

    cdef int _check_open(self) except -1:
        if self.base == NULL:
            raise SegmentClosed(f"segment {self.path or ''} is closed".replace("  ", " "))
        return 0

    cdef int _check_writable(self) except -1:
        self._check_open()
        if self.readonly:
            raise ReadOnlySegment(f"segment {self.path} was opened read-only")
        return 0

    def _prefault(self):
        """Fault the mapping in now so writers never take a page fault (about
        2 us per 4 KiB page here, more than ten writes).  MADV_POPULATE_WRITE
        where the kernel has it (5.14+); older kernels skip it."""
        if self.base != NULL and not self.readonly:
            madvise(<void *>((<size_t>self.base) & ~(<size_t>4095)),
                    self.size + ((<size_t>self.base) & 4095), _MADV_POPULATE_WRITE)

    def close(self):
        """Release the mapping.  Views still held elsewhere keep the memory
        mapped until they are released; reads through Messages fail cleanly.
        Gives back this segment's listener slot (see listen())."""
        if self.base != NULL and self._slot >= 0:
            if self._slot_waits:
                self._release_after_wait = True     # the waiting thread gives it back
            else:
                self._release_slot(self._hdr)
        _sigbus_unwatch(self)
        self.base = NULL
        self._hdr = NULL
        memset(self.seal_key, 0, 32)
        self.has_key = False
        self._key_given = None
        if self._has_wake_view:
            PyBuffer_Release(&self._wake_view)
            self._has_wake_view = False
        self._wake_mmap = _unmap(self._wake_mmap)    # a wait() in progress keeps it until it ends
        if self._has_view:
            PyBuffer_Release(&self._view)
            self._has_view = False
        if self._mv is not None:
            try:
                self._mv.release()
            except BufferError:
                pass
            self._mv = None
        self._mmap = _unmap(self._mmap)              # a user's view keeps it until freed
        self._owner = None

    @property
    def closed(self):
        return self.base == NULL

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        if self.base == NULL:
            return f"<logkit.Segment {self.path!r} closed>"
        return (f"<logkit.Segment {self.path!r} family={self.family!r} size={self.size} "
                f"in_service={self.in_service}>")

    # ------------------------------------------------------------ header

    @property
    def size(self):
        return self.size

    @property
    def family(self):
        self._check_open()
        return (<bytes>self.base[LK_H_FAMILY:LK_H_FAMILY + LK_H_FAMILY_MAX]).split(b"\0", 1)[0].decode("utf-8", "replace")

    @property
    def previous(self):
        self._check_open()
        return os.fsdecode((<bytes>self.base[LK_H_PREVIOUS:LK_H_PREVIOUS + LK_H_PREVIOUS_MAX]).split(b"\0", 1)[0])

    def set_previous(self, previous):
        """Rewrite the previous-segment path (migration) and the identity checksum."""
        self._check_writable()
        prev = _encode_field(previous, LK_H_PREVIOUS_MAX, "previous segment path")
        memset(self.base + LK_H_PREVIOUS, 0, LK_H_PREVIOUS_MAX)
        memcpy(self.base + LK_H_PREVIOUS, <const char *>prev, len(prev))
        _put32(self.base, LK_H_IDENTITY_CRC, lk_identity_crc(self.base))

    @property
    def uuid(self):
        self._check_open()
        return _uuid_mod.UUID(bytes=bytes(self.base[LK_H_UUID:LK_H_UUID + 16]))

    @property
    def sequence_base(self):
        self._check_open()
        return _u64(self.base, LK_H_SEQUENCE_BASE)

    @property
    def key_id(self):
        """The key id a sealed segment is sealed under (header offset 480); 0 if not sealed."""
        self._check_open()
        return _u16(self.base, LK_H_KEY_ID) if self.sealed else 0

    @property
    def created(self):
        self._check_open()
        return <int64_t>_u64(self.base, LK_H_CREATED)

    @property
    def in_service(self):
        self._check_open()
        return bool(lk_reserve_word_load_acquire(<uint64_t *>(self.base + LK_H_RESERVATION)) & LK_IN_SERVICE)

    @property
    def out_of_service_time(self):
        """When the segment was taken out of service (ns), or None."""
        self._check_open()
        cdef int64_t t = <int64_t>lk_hint_load_relaxed(<uint64_t *>(self.base + LK_H_OUT_OF_SERVICE_TIME))
        return t if t else None

    def take_out_of_service(self):
        """Stop all new reservations.  Returns True if this call did it, False if
        the segment was already out of service: of several racing callers
        exactly one gets True."""
        self._check_writable()
        if lk_set_in_service(self.base, 0):
            lk_hint_store_relaxed(<uint64_t *>(self.base + LK_H_OUT_OF_SERVICE_TIME), <uint64_t>lk_now_ns())
            return True
        return False

    def put_in_service(self):
        """Accept reservations again.  Returns True if this call changed the flag."""
        self._check_writable()
        if lk_set_in_service(self.base, 1):
            lk_hint_store_relaxed(<uint64_t *>(self.base + LK_H_OUT_OF_SERVICE_TIME), 0)
            return True
        return False

    def used(self):
        """Bytes allocated so far, header included."""
        self._check_open()
        return lk_read_bound(self.base, self.size)

    def stats(self):
        """Every counter of the segment as a dict (cheap: reads the header only).

        reserved: reservations made (the count in the reservation word);
        written: messages finished; refused_*: refusals by reason;
        abandoned: reservations given up (by their writer or by salvage).
        """
        self._check_open()
        cdef uint64_t w = lk_reserve_word_load_acquire(<uint64_t *>(self.base + LK_H_RESERVATION))
        cdef uint64_t written = 0
        cdef int i
        for i in range(LK_WRITTEN_SHARDS):
            written += lk_counter_load_relaxed(<uint64_t *>(self.base + LK_H_WRITTEN_SHARDS + 64 * i))
        return {
            "reserved": (w >> 32) & LK_COUNT_MASK,
            "written": written,
            "refused_full": lk_counter_load_relaxed(<uint64_t *>(self.base + LK_H_REFUSED_FULL)),
            "refused_too_big": lk_counter_load_relaxed(<uint64_t *>(self.base + LK_H_REFUSED_TOO_BIG)),
            "refused_out_of_service": lk_counter_load_relaxed(<uint64_t *>(self.base + LK_H_REFUSED_OOS)),
            "abandoned": lk_counter_load_relaxed(<uint64_t *>(self.base + LK_H_ABANDONED)),
            "in_service": bool(w & LK_IN_SERVICE),
            "bytes_used": lk_read_bound(self.base, self.size),
            "bytes_total": self.size,
            "salvages": _u64(self.base, LK_H_SALVAGE_COUNT),
        }

    def header(self):
        """Every header field as a dict, for display and debugging."""
        self._check_open()
        cdef const uint8_t *b = self.base
        cdef uint64_t w = lk_reserve_word_load_acquire(<uint64_t *>(self.base + LK_H_RESERVATION))
        listeners = []
        cdef uint32_t i
        cdef uint64_t at
        for i in range(<uint32_t>LK_LISTENER_SLOTS):
            at = LK_H_LISTENERS + i * LK_LISTENER_SLOT_BYTES
            if _u32(b, at):
                listeners.append({"slot": i, "pid": _u32(b, at), "flags": _u32(b, at + 4),
                                  "min_interval_ns": _u64(b, at + 8), "last_wake_ns": _u64(b, at + 16)})
        return {
            "magic": bytes(b[0:8]),
            "version": _u32(b, LK_H_VERSION),
            "flags": _u32(b, LK_H_FLAGS),
            "key_check": bytes(b[LK_H_KEY_CHECK:LK_H_KEY_CHECK + 16]),
            "key_id": _u16(b, LK_H_KEY_ID),
            "header_size": _u32(b, LK_H_HEADER_SIZE),
            "region_size": _u64(b, LK_H_REGION_SIZE),
            "uuid": str(self.uuid),
            "sequence_base": _u64(b, LK_H_SEQUENCE_BASE),
            "checksum_algorithm": "crc32c" if _u32(b, LK_H_CHECKSUM_ALG) == LK_CHECKSUM_CRC32C else _u32(b, LK_H_CHECKSUM_ALG),
            "created": <int64_t>_u64(b, LK_H_CREATED),
            "family": self.family,
            "previous": self.previous,
            "identity_crc": _u32(b, LK_H_IDENTITY_CRC),
            "identity_crc_ok": _u32(b, LK_H_IDENTITY_CRC) == lk_identity_crc(b),
            "first_sequence_hint": _u64(b, LK_H_FIRST_SEQUENCE),
            "first_time_hint": <int64_t>_u64(b, LK_H_FIRST_TIME),
            "last_sequence_hint": _u64(b, LK_H_LAST_SEQUENCE),
            "last_time_hint": <int64_t>_u64(b, LK_H_LAST_TIME),
            "last_offset_hint": _u64(b, LK_H_LAST_OFFSET),
            "out_of_service_time": <int64_t>_u64(b, LK_H_OUT_OF_SERVICE_TIME),
            "rotator": _u64(b, LK_H_ROTATOR),
            "reservation_word": w,
            "in_service": bool(w & LK_IN_SERVICE),
            "reserved_count": (w >> 32) & LK_COUNT_MASK,
            "next_offset": (w & LK_NEXT_MASK) * 8,
            "wake_word": _u32(b, LK_H_WAKE_WORD),
            "waiters": _u32(b, LK_H_WAITERS),
            "listeners": listeners,
        }

    # ------------------------------------------------------------ writing

    cdef int raise_status(self, int rc, uint64_t need) except -1:
        """Raise the error a write status of lk_segment.h stands for (LK_FULL:
        SegmentFull, ...; `need` the message's size in bytes).  The C-level
        call for a Cython module that writes with lk_reserve/lk_finish."""
        where = self.path or "segment"
        if rc == LK_FULL:
            raise SegmentFull(f"{where}: full ({lk_read_bound(self.base, self.size)} of {self.size} bytes used, "
                              f"message needs {need})")
        if rc == LK_TOO_BIG:
            raise MessageTooBig(f"{where}: a message of {need} bytes can never fit "
                                f"(at most {self.size - LK_HEADER_SIZE} bytes per message in this segment)")
        if rc == LK_OUT_OF_SERVICE:
            raise OutOfService(f"{where}: segment is out of service")
        if rc == LK_DAMAGED:
            from logkit.errors import ReservationWordDamaged
            raise ReservationWordDamaged(f"{where}: reservation word at offset {LK_H_RESERVATION} is damaged; "
                                         "nothing was written and the segment is now out of service "
                                         "(a family rotates; salvage repairs the word)")
        if rc == LK_LOST:
            raise MessageLost(f"{where}: the reservation was abandoned by salvage before it was finished")
        raise SegmentDamaged(f"{where}: unexpected status {rc}")

    def _refuse_unkeyed(self):
        from logkit.errors import MissingKey
        raise MissingKey(f"{self.path or 'segment'} is sealed under key id {_u16(self.base, LK_H_KEY_ID)} "
                         "and was opened without that key: it cannot be written (open it with key=...)")

    def write(self, text, severity=20, data=b"", data_class="", time=None):
        """Append one message and return its sequence number.

        text: str (stored as UTF-8) or bytes; data: bytes-like binary data;
        data_class: the name of the formatter for `data`; time: ns since the
        epoch (default: now).  Raises SegmentFull, MessageTooBig, OutOfService,
        InvalidArgument (severity outside -250..250).
        """
        cdef const char *tp
        cdef Py_ssize_t tn
        cdef const char *cp = NULL
        cdef Py_ssize_t cn = 0
        cdef const uint8_t[::1] dv
        cdef const void *dp = NULL
        cdef Py_ssize_t dn = 0
        cdef int64_t t, now
        cdef uint64_t seq
        cdef int rc
        cdef long sev = _severity(severity)
        if self.base == NULL or self.readonly:
            self._check_writable()
        if type(text) is str:
            tp = _utf8_or_null(text, &tn)
            if tp == NULL:
                PyErr_Clear()
                text = utf8_text(text)         # a surrogate: one rule for every write
                tp = PyBytes_AS_STRING(text)
                tn = PyBytes_GET_SIZE(text)
        elif type(text) is bytes:
            tp = PyBytes_AS_STRING(text)
            tn = PyBytes_GET_SIZE(text)
        else:
            raise InvalidArgument(f"text must be str or bytes, not {type(text).__name__}")
        if type(data) is bytes:
            dp = PyBytes_AS_STRING(data)
            dn = PyBytes_GET_SIZE(data)
        elif data is not None:
            dv = memoryview(data).cast("B")
            dn = dv.shape[0]
            if dn:
                dp = &dv[0]
        if data_class:
            if type(data_class) is not str:
                raise InvalidArgument(f"data_class must be str, not {type(data_class).__name__}")
            cp = _utf8_or_null(data_class, &cn)
            if cp == NULL:
                PyErr_Clear()
                data_class = utf8_text(data_class, "data_class")
                cp = PyBytes_AS_STRING(data_class)
                cn = PyBytes_GET_SIZE(data_class)
        now = lk_now_ns()
        t = now if time is None else time
        if self.sealed:
            self._seal_ready()
        if not self.sealed:
            rc = lk_write(self.base, self.size, tp, tn, dp, dn, cp, cn, <int16_t>sev, t, now, &seq)
        else:
            rc = self._write_sealed(tp, tn, dp, dn, cp, cn, <int16_t>sev, t, now,
                                    lk_process_id(), lk_thread_id(), &seq)
        if rc != LK_OK:
            self.raise_status(rc, lk_message_size(tn + (LK_TAG_SIZE if self.sealed else 0), dn, cn))
        _sigbus_check(self)       # written into a page the file lost: not acknowledged (lk_sigbus.h)
        return PyLong_FromUnsignedLongLong(seq)

    def write_as(self, text, int severity, data, data_class, int64_t time,
                 uint32_t process_id, uint32_t thread_id):
        """Store a copy of a message made elsewhere, keeping its time,
        severity and writer's process and thread ids (drains and copies use
        this; a new message of this process uses write()).  text: str or
        bytes; data: bytes-like.  Raises as write() does."""
        cdef const uint8_t[::1] tv
        cdef const uint8_t[::1] dv
        cdef const void *tp = NULL
        cdef const void *dp = NULL
        cdef Py_ssize_t tn = 0, dn = 0, cn = 0
        cdef const char *cp = NULL
        cdef uint64_t seq
        cdef long sev = _severity(severity)
        self._check_writable()
        if isinstance(text, str):
            text = utf8_text(text)
        tv = memoryview(text).cast("B")
        tn = tv.shape[0]
        if tn:
            tp = &tv[0]
        if data is not None:
            dv = memoryview(data).cast("B")
            dn = dv.shape[0]
            if dn:
                dp = &dv[0]
        cls = utf8_text(data_class or "", "data_class")
        cn = len(cls)
        if cn:
            cp = cls
        cdef int rc
        if self.sealed:
            self._seal_ready()
        if not self.sealed:
            rc = lk_write_as(self.base, self.size, tp, tn, dp, dn, cp, cn, <int16_t>sev,
                             time, lk_now_ns(), process_id, thread_id, &seq)
        else:
            rc = self._write_sealed(tp, tn, dp, dn, cp, cn, <int16_t>sev, time, lk_now_ns(),
                                    process_id, thread_id, &seq)
        if rc != LK_OK:
            self.raise_status(rc, lk_message_size(tn + (LK_TAG_SIZE if self.sealed else 0), dn, cn))
        _sigbus_check(self)       # written into a page the file lost: not acknowledged (lk_sigbus.h)
        return PyLong_FromUnsignedLongLong(seq)

    def write_stepwise(self, text, severity=20, data=b"", data_class="", time=None,
                       stop_at=None, action="stop", notify=None, process_id=None, thread_id=None):
        """TEST ONLY: write() (or write_as() with process_id/thread_id) through
        the same inline C writer, with a hook after each step: "claimed"
        (space and sequence ours, no stub), "stub" (stub published),
        "copied" (payload copied) and "committed" (the commit CAS done, the
        written counter not yet).  At each step it calls
        logkit.inject.point(f"core.write.{step}"), so those points can be
        armed from the environment; `stop_at` arms that step here with
        `action` ("stop", "kill", "exit", "wait"; see logkit.inject) and
        `notify`.  Production writes pass a constant NULL hook, which the
        compiler removes.  Returns the sequence number; raises as write()."""
        from logkit import inject
        if stop_at is not None and stop_at not in _STEP_NAMES.values():
            raise InvalidArgument(f"stop_at must be one of {sorted(_STEP_NAMES.values())}, not {stop_at!r}")
        self._check_writable()
        cdef long sev = _severity(severity)
        if isinstance(text, str):
            text = utf8_text(text)
        data = bytes(data or b"")
        cls = utf8_text(data_class or "", "data_class")
        cdef const char *tp = text
        cdef const char *dp = data
        cdef const char *cp = cls
        cdef int64_t now = lk_now_ns()
        cdef int64_t t = now if time is None else time
        cdef uint32_t pid = lk_process_id() if process_id is None else process_id
        cdef uint32_t tid = lk_thread_id() if thread_id is None else thread_id
        cdef uint64_t seq = 0
        cdef int rc
        ctx = [None]
        if stop_at is not None:
            inject.arm(f"core.write.{stop_at}", action, 1, notify)
        try:
            while True:
                if self.sealed:
                    self._seal_ready()
                    rc = lk_write_steps(self.base, self.size, tp, len(text), dp, len(data), cp, len(cls),
                                        <int16_t>sev, t, now, pid, tid, self.seal_key_id, self.seal_key,
                                        self.seal_uuid, &seq, _step_hook, <void *>ctx)
                else:
                    rc = lk_write_steps(self.base, self.size, tp, len(text), dp, len(data), cp, len(cls),
                                        <int16_t>sev, t, now, pid, tid, 0, NULL, NULL, &seq,
                                        _step_hook, <void *>ctx)
                if rc != LK_REKEY:
                    break
        finally:
            if stop_at is not None:
                inject.disarm(f"core.write.{stop_at}")
        if ctx[0] is not None:
            raise ctx[0]
        if rc != LK_OK:
            self.raise_status(rc, lk_message_size(len(text) + (LK_TAG_SIZE if self.sealed else 0),
                                                   len(data), len(cls)))
        return PyLong_FromUnsignedLongLong(seq)

    def reserve(self, Py_ssize_t text_len, Py_ssize_t data_len=0, data_class=""):
        """Claim space for a message; fill r.text and r.data, then r.finish().

        Also a context manager: leaving the block finishes the message, or
        abandons it if the block raised.
        """
        self._check_writable()
        if data_class is None:
            data_class = ""
        if not isinstance(data_class, str):
            raise InvalidArgument(f"data_class must be str, not {type(data_class).__name__}")
        if text_len < 0 or data_len < 0:
            raise InvalidArgument(f"lengths must be >= 0 (text_len={text_len}, data_len={data_len})")
        cls = utf8_text(data_class, "data_class") if data_class else b""
        cdef Reservation r = Reservation.__new__(Reservation)
        cdef const char *cp = cls
        cdef int rc
        if self.sealed:
            self._seal_ready()
        if not self.sealed:
            rc = lk_claim_space(self.base, self.size, text_len, data_len, cp, len(cls), lk_now_ns(),
                                lk_process_id(), lk_thread_id(), 0, &r._claim, NULL, NULL)
        else:
            while True:
                rc = lk_claim_space(self.base, self.size, text_len, data_len, cp, len(cls), lk_now_ns(),
                                    lk_process_id(), lk_thread_id(), self.seal_key_id, &r._claim, NULL, NULL)
                if rc != LK_OK or memcmp(r._claim.uuid, self.seal_uuid, 16) == 0:  # [K1]
                    break
                lk_abandon_claim(self.base, &r._claim)   # reformatted: the key changed
                self._seal_ready()
        if rc != LK_OK:
            self.raise_status(rc, lk_message_size(text_len + (LK_TAG_SIZE if self.sealed else 0),
                                                   data_len, len(cls)))
        r._cls = cls
        r._claim.cls = <const uint8_t *>PyBytes_AS_STRING(cls)
        r._sealed = self.sealed
        r.segment = self
        r.offset = r._claim.at
        r.sequence = r._claim.seq
        r._text_len = text_len
        r._data_len = data_len
        r._cls_len = len(cls)
        r._done = False
        return r

    def sync(self):
        """msync(MS_SYNC): the messages written so far are on disk when this returns."""
        self._check_open()
        cdef size_t start = (<size_t>self.base) & ~(<size_t>4095)
        cdef size_t length = self.size + ((<size_t>self.base) & 4095)
        with nogil:
            rc = msync(<void *>start, length, MS_SYNC)
        if rc != 0:
            raise OSError(errno, f"msync of segment {self.path} failed: {os.strerror(errno)}")

    # ------------------------------------------------------------ waiting

    cdef uint8_t *_wake_header(self) except? NULL:
        """Where this process writes the waiter count, the wake word and its
        listener slot: the segment's own header when it is writable; for a
        read-only segment of a file, the file's first page mapped writable
        (if this process may write the file, and its name still names the
        file mapped); else NULL, and wait() polls."""
        if self.base == NULL:
            return NULL
        if not self.readonly:
            self._hdr = self.base
            return self.base
        if self._hdr != NULL or self._hdr_tried:
            return self._hdr
        self._hdr_tried = True
        if self.path is None or self.file_id is None or self._region_offset != 0:
            return NULL
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return NULL                 # no write permission: poll
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != self.file_id:
                return NULL             # renamed away (rotated): the name is another file now
            mm = _mmap_mod.mmap(fd, LK_HEADER_SIZE, _mmap_mod.MAP_SHARED,
                                _mmap_mod.PROT_READ | _mmap_mod.PROT_WRITE)
        except OSError:
            return NULL
        finally:
            os.close(fd)
        PyObject_GetBuffer(mm, &self._wake_view, PyBUF_WRITABLE)
        self._has_wake_view = True
        self._wake_mmap = mm
        self._hdr = <uint8_t *>self._wake_view.buf
        _sigbus_watch(self, self._hdr, LK_HEADER_SIZE)     # SIGBUS: see lk_sigbus.h
        return self._hdr

    cdef int _claim_slot(self, uint64_t min_interval_ns) except -2:
        """This process's listener slot, claimed now if need be ([L1]); its
        minimum interval set.  -1: the table is full of live processes, or
        the header cannot be written."""
        cdef uint8_t *hdr = self._wake_header()
        cdef uint32_t me = lk_process_id()
        cdef int i
        self._min_interval_ns = min_interval_ns
        if hdr == NULL:
            return -1
        if self._slot >= 0 and self._slot_pid == me and lk_listener_pid_load_acquire(
                <uint32_t *>(lk_listener_slot(hdr, self._slot) + LK_LS_PID)) == me:
            lk_listener_field_store_relaxed(<uint64_t *>(lk_listener_slot(hdr, self._slot) + LK_LS_MIN_INTERVAL),
                                            min_interval_ns)
            return self._slot
        if self._slot_pid != me:
            self._slot_waits = 0        # state inherited across fork() is the parent's
        self._slot = -1
        i = lk_listener_claim(hdr, me, min_interval_ns)
        if i >= 0:
            self._slot = i
            self._slot_pid = me
        return i

    cdef void _release_slot(self, uint8_t *hdr) noexcept:
        if self._slot >= 0 and hdr != NULL and self._slot_pid == lk_process_id():
            lk_listener_release(hdr, self._slot, self._slot_pid)      # [L2]
        self._slot = -1
        self._release_after_wait = False

    def listen(self, min_interval=0.0):
        """Register this process in the segment's listener table, with the
        least time in seconds between two wake-ups that wait() will return
        (it does not wait again before that time has passed since it last
        found something).  Returns the slot index, or None when the table is
        full of live processes or this process cannot write the header;
        wait() works all the same, unlisted.  wait() calls listen() itself
        when the segment is not listed yet."""
        self._check_open()
        try:
            interval = float(min_interval)
        except (TypeError, ValueError):
            raise InvalidArgument(f"min_interval {min_interval!r} is not a number of seconds") from None
        if not 0 <= interval <= 1e9:
            raise InvalidArgument(f"min_interval {min_interval!r} must be between 0 and 1e9 seconds")
        self._listen_retry_at = 0
        cdef int i = self._claim_slot(<uint64_t>(interval * 1e9))
        return i if i >= 0 else None

    def unlisten(self):
        """Give the listener slot back (close() does too).  The minimum
        interval set by listen() still applies to wait()."""
        self._check_open()
        if self._slot_waits:
            self._release_after_wait = True
        else:
            self._release_slot(self._wake_header())

    @property
    def listener_slot(self):
        """The index of this process's slot in the listener table, or None."""
        if self.base != NULL and self._slot >= 0 and self._slot_pid == lk_process_id():
            return self._slot
        return None

    def wait(self, offset, timeout=None, poll_interval=0.01):
        """Block until there is something to read at byte `offset` (where a
        walk stopped, e.g. SegmentIterator.pos), or the segment leaves
        service, or `timeout` seconds pass (None: no limit).  Returns True if
        something is ready, False on timeout.

        Ready: the record at `offset` is finished (committed or abandoned:
        anything but empty space, a claim without a stub, or an open
        reservation), or the segment is out of service.  On Linux the call
        sleeps on the header's futex and a writer that finishes a message
        wakes it; without futex (WAIT_FUTEX is False), or when this process
        cannot write the header, it looks every `poll_interval` seconds.
        Releases the GIL while it sleeps; a signal handler that raises
        interrupts it.  Raises InvalidArgument for an offset that is no
        message position (a multiple of 8 from 4096 to the segment size).
        """
        self._check_open()
        if not isinstance(offset, int) or offset < LK_HEADER_SIZE or offset > self.size or offset % 8:
            raise InvalidArgument(f"{self.path or 'segment'}: wait offset {offset!r} is not a message "
                                  f"position (a multiple of 8 from {LK_HEADER_SIZE} to {self.size})")
        try:
            pi = float(poll_interval)
            tm = None if timeout is None else float(timeout)
        except (TypeError, ValueError):
            raise InvalidArgument(f"wait(): timeout {timeout!r} and poll_interval {poll_interval!r} "
                                  "must be numbers of seconds") from None
        if not 1e-6 <= pi <= 1e6:
            raise InvalidArgument(f"wait(): poll_interval {poll_interval!r} must be between 1e-6 and 1e6 seconds")
        if tm is not None and not tm >= 0:
            raise InvalidArgument(f"wait(): timeout {timeout!r} must be >= 0 seconds or None")
        cdef uint64_t at = offset
        cdef const uint8_t *base = self.base
        cdef uint64_t size = self.size
        cdef int64_t interval = <int64_t>(pi * 1e9)
        cdef int64_t deadline = -1
        cdef int64_t hold
        cdef uint8_t *hdr = NULL
        cdef uint32_t *flags = NULL
        cdef uint32_t me = lk_process_id()
        cdef int rc
        cdef bint use_slot = False
        if tm is not None:
            deadline = lk_monotonic_ns() + <int64_t>(min(tm, 1e9) * 1e9)
        self._wait_calls += 1
        if lk_cancel_take(&self._cancel):
            self._wait_timeouts += 1
            return False                    # cancel_waits() came first: this wait is the one cancelled
        guard = memoryview(self._owner)     # close() meanwhile cannot unmap what we sleep on
        wguard = None
        try:
            # The minimum interval: no new wait before it has passed since the
            # last wake-up (the waiter honours its own registration).
            if self._min_interval_ns and self._last_wake_mono:
                while True:
                    hold = self._last_wake_mono + <int64_t>self._min_interval_ns - lk_monotonic_ns()
                    if deadline >= 0 and deadline - lk_monotonic_ns() < hold:
                        hold = deadline - lk_monotonic_ns()
                    if hold <= 0:
                        break
                    with nogil:
                        rc = lk_sleep_ns(hold)
                    if rc == LK_FUTEX_INTERRUPTED:
                        PyErr_CheckSignals()
            rc = LK_WAIT_READY if lk_wait_ready(base, size, at) else LK_WAIT_TIMEOUT
            if rc != LK_WAIT_READY and (deadline < 0 or lk_monotonic_ns() < deadline):
                hdr = self._wake_header()
                if hdr != NULL:
                    if self._wake_mmap is not None:
                        wguard = memoryview(self._wake_mmap)
                    if (self._slot < 0 or self._slot_pid != me) and lk_monotonic_ns() >= self._listen_retry_at:
                        if self._claim_slot(self._min_interval_ns) < 0:
                            self._listen_retry_at = lk_monotonic_ns() + 1000000000   # full: look again in 1 s
                if LK_HAVE_FUTEX and not _force_poll and hdr != NULL:
                    if self._slot >= 0 and self._slot_pid == me and self._slot_waits == 0:
                        flags = <uint32_t *>(lk_listener_slot(hdr, self._slot) + LK_LS_FLAGS)
                        self._slot_waits = 1
                        use_slot = True
                    while True:
                        with nogil:
                            rc = lk_wait_futex(base, size, hdr, at, deadline, flags, &self._wait_sleeps,
                                               &self._cancel)
                        if rc != LK_WAIT_INTERRUPTED:
                            break
                        PyErr_CheckSignals()
                else:
                    while True:
                        with nogil:
                            rc = lk_wait_poll(base, size, at, deadline, interval, &self._wait_sleeps,
                                              &self._cancel)
                        if rc != LK_WAIT_INTERRUPTED:
                            break
                        PyErr_CheckSignals()
            if rc == LK_WAIT_CANCELLED:
                lk_cancel_take(&self._cancel)
            if rc == LK_WAIT_READY:
                self._wait_ready += 1
                self._last_wake_mono = lk_monotonic_ns()
                if hdr != NULL and self._slot >= 0 and self._slot_pid == me:
                    lk_listener_field_store_relaxed(
                        <uint64_t *>(lk_listener_slot(hdr, self._slot) + LK_LS_LAST_WAKE), <uint64_t>lk_now_ns())
            else:
                self._wait_timeouts += 1
            return rc == LK_WAIT_READY
        finally:
            if use_slot:
                self._slot_waits = 0
                if self._release_after_wait:
                    self._release_slot(hdr)
            guard.release()
            if wguard is not None:
                wguard.release()

    def cancel_waits(self):
        """End a wait() of this Segment object that another thread is in,
        at once, or else the next one: it returns False, as on a timeout.
        The flag is set, then every sleeper on the segment's futex is woken
        ([C1] in lk_segment.h: a cancel is never slept through; the other
        sleepers look again and sleep on).  A wait that polls notices it
        within its poll interval.  What FamilyReader.stop() uses."""
        self._check_open()
        lk_cancel_set(&self._cancel)
        cdef uint8_t *hdr = self._wake_header()
        if hdr == NULL or not LK_HAVE_FUTEX:
            return
        guard = memoryview(self._wake_mmap) if self._wake_mmap is not None else None
        try:
            with nogil:
                lk_wake_waiters(hdr)        # [W4] after the [C1] store
        finally:
            if guard is not None:
                guard.release()

    def wait_stats(self):
        """Counts of this Segment object's wait() calls: calls, ready
        (returned True), timeouts (returned False) and sleeps (times it
        blocked: futex waits, or poll intervals slept; counted as they
        happen, so another thread can watch a wait in progress)."""
        return {"calls": self._wait_calls, "ready": self._wait_ready,
                "timeouts": self._wait_timeouts, "sleeps": self._wait_sleeps}

    # ------------------------------------------------------------ reading

    def _memoryview(self):
        self._check_open()
        if self._mv is None:
            self._mv = memoryview(self._owner).cast("B")
        return self._mv

    def __iter__(self):
        """Finished messages, oldest first, as zero-copy Message views."""
        self._check_open()
        return SegmentIterator(self)

    def messages(self):
        """The same as iter(seg); the iterator counts what it passed over
        (.open_reservations, .gaps, .damaged)."""
        return self.__iter__()

    def records(self, whole_region=False):
        """Every record and range, including open reservations, gaps and damage,
        as Record(kind, offset, length, sequence, span, state) tuples."""
        self._check_open()
        cdef lk_rec r
        cdef uint64_t bound = self.size if whole_region else lk_read_bound(self.base, self.size)
        cdef uint64_t pos = LK_HEADER_SIZE
        cdef uint64_t min_seq = _u64(self.base, LK_H_SEQUENCE_BASE)
        cdef uint64_t min_pos = LK_HEADER_SIZE
        out = []
        while True:
            self._check_open()
            lk_next_record(self.base, self.size, pos, bound, min_seq, min_pos, &r)
            if r.kind == LK_REC_END:
                break
            if r.kind == LK_REC_GAP and r.next >= bound and whole_region:
                break   # the never-used tail of the region
            out.append(Record(RECORD_KINDS[r.kind], r.offset, r.next - r.offset,
                              r.sequence if r.kind <= LK_REC_ABANDONED else None,
                              r.span if r.kind <= LK_REC_ABANDONED else None,
                              r.state if r.kind <= LK_REC_ABANDONED else None))
            if r.kind <= LK_REC_ABANDONED:
                min_seq = r.sequence + r.span
                min_pos = r.next
            pos = r.next
        return out

    cdef uint64_t _committed_hint(self, uint64_t min_seq, uint64_t min_pos, uint64_t max_seq):
        """Offset of the committed message the header's last-offset hint names,
        if it is valid after (min_seq, min_pos) with sequence <= max_seq;
        else 0.  Lets find() and limits() skip most of a segment."""
        cdef uint64_t hint = lk_hint_load_relaxed(<uint64_t *>(self.base + LK_H_LAST_OFFSET))
        cdef uint32_t total, span, state
        cdef uint64_t seq
        if hint > min_pos and hint < self.size and hint % 8 == 0 and lk_valid_record(
                self.base, self.size, hint, min_seq, min_pos, &total, &seq, &span, &state) \
                and state == LK_STATE_COMMITTED and seq <= max_seq:
            return hint
        return 0

    def find(self, sequence=None, time=None):
        """The first finished message with sequence >= `sequence` (or time >= `time`, ns).

        Raises NoSuchMessage when there is none.
        """
        self._check_open()
        if (sequence is None) == (time is None):
            raise InvalidArgument("find() takes exactly one of sequence= or time=")
        cdef uint64_t want_seq = 0
        cdef int64_t want_time = 0
        cdef bint by_seq = sequence is not None
        if by_seq:
            want_seq = max(0, min(sequence, (1 << 64) - 1))
        else:
            want_time = max(min(time, (1 << 63) - 1), -(1 << 63))
        cdef lk_rec r
        cdef uint64_t pos = LK_HEADER_SIZE
        cdef uint64_t min_seq = _u64(self.base, LK_H_SEQUENCE_BASE)
        cdef uint64_t min_pos = LK_HEADER_SIZE
        cdef uint64_t bound = lk_read_bound(self.base, self.size)
        cdef uint64_t hint
        if by_seq:
            # Start from the last-offset hint when it is not past the target.
            hint = self._committed_hint(min_seq, min_pos, want_seq)
            if hint:
                pos = min_pos = hint
                min_seq = _u64(self.base, hint + LK_M_SEQUENCE)
        while True:
            lk_next_record(self.base, self.size, pos, bound, min_seq, min_pos, &r)
            if r.kind == LK_REC_END:
                break
            if r.kind == LK_REC_COMMITTED:
                if (r.sequence >= want_seq) if by_seq else (<int64_t>_u64(self.base, r.offset + LK_M_TIME) >= want_time):
                    return Message.make_at(self, r.offset)
            if r.kind <= LK_REC_ABANDONED:
                min_seq = r.sequence + r.span
                min_pos = r.next
            pos = r.next
        what = f"sequence >= {sequence}" if by_seq else f"time >= {time}"
        raise NoSuchMessage(f"{self.path or 'segment'}: no finished message with {what}")

    def limits(self):
        """Limits(first_sequence, first_time, last_sequence, last_time) of the
        finished messages, exact at the moment of the call; None if there are none.
        Walks from the header's last-offset hint, so it costs a few messages."""
        self._check_open()
        cdef SegmentIterator it = SegmentIterator(self)
        cdef Message first = next(it, None)
        if first is None:
            return None
        cdef Message last = first
        cdef uint64_t hint = self._committed_hint(it.min_seq, it.min_pos, UINT64_MAX)
        if hint:
            last = Message.make_at(self, hint)
            it.pos = it.min_pos = hint + _u32(self.base, hint + LK_M_TOTAL)
            it.min_seq = _u64(self.base, hint + LK_M_SEQUENCE) + 1
        for m in it:
            last = m
        return Limits(first.sequence, first.time, last.sequence, last.time)

    def scan(self):
        """A read-only census: dict with committed (count), reserved (open
        reservations as (offset, sequence, pid) tuples), abandoned (sequence
        numbers accounted for by abandoned records), gaps and damaged (byte
        ranges as (start, end))."""
        self._check_open()
        report = {"committed": 0, "reserved": [], "abandoned": 0, "gaps": [], "damaged": []}
        for rec in self.records():
            if rec.kind == "committed":
                report["committed"] += 1
            elif rec.kind == "reserved":
                report["reserved"].append((rec.offset, rec.sequence, _u32(self.base, rec.offset + LK_M_PID)))
            elif rec.kind == "abandoned":
                report["abandoned"] += rec.span
            elif rec.kind == "gap":
                report["gaps"].append((rec.offset, rec.offset + rec.length))
            else:
                report["damaged"].append((rec.offset, rec.offset + rec.length))
        return report

    # ------------------------------------------------------------ salvage internals

    def header_problem(self):
        """What is wrong with the header's identity block (a sentence naming
        the field), or None if it is sound.  Raises UnsupportedFormat for a
        sound header of another format version (which salvage must not
        "repair").  For a segment attached with check_header=False."""
        self._check_open()
        _check_version(self.base, self.path or "segment")
        return _header_problem(self.base, self.size)

    def token(self):
        """The token word at header offset 456 (a family's rotation token, a
        partition half's state token), loaded with acquire ([T1]).  Take it
        apart with token_state / token_attempt / token_pid."""
        self._check_open()
        return lk_token_load(self.base)

    def claim_token(self, uint64_t expected, uint64_t desired):
        """CAS the token from `expected` to `desired` ([T2], acq_rel); True if
        this call changed it.  Of several processes claiming from the same
        value exactly one wins: that is how one process is elected to
        rotate, swap or drain, also when one takes over from a dead one."""
        self._check_writable()
        return bool(lk_token_claim(self.base, expected, desired))

    # ------------------------------------------------------------ who holds a reservation

    def reservation_holder(self, offset):
        """(pid, start, reserved_ns) of the process that holds the reservation
        at `offset`, or None if no reservation is open there (committed,
        abandoned, or not a record).  pid and start identify the holder: the
        process that made the reservation and will finish it, also when the
        message is a copy (write_as) whose own pid names another process;
        start is its start time as logkit records it (0: not recorded, a file
        written before 0.x; see docs/format.md, "Who holds a reservation");
        reserved_ns is when it reserved (ns since the epoch)."""
        self._check_open()
        cdef uint64_t at = offset
        cdef uint32_t total, span, state
        cdef uint64_t seq
        cdef const uint8_t *m
        if at % 8 or at < LK_HEADER_SIZE or at + LK_MSG_HEADER > self.size:
            return None
        m = self.base + at
        if lk_state_load_acquire(<const uint64_t *>m) != lk_state_word(LK_STATE_RESERVED):  # [A1]
            return None
        # One read of each field after [A1]; the stub checksum vouches for the
        # pid (+32), not for the start time (+60) or the time (+24).
        cdef uint32_t pid = _u32(m, LK_M_PID), start = _u32(m, LK_M_CRC)
        cdef int64_t t = <int64_t>_u64(m, LK_M_TIME)
        if not lk_plausible_shape(self.base, self.size, at, &total, &seq, &span, &state) \
                or _u32(m, LK_M_STUB_CRC) != lk_stub_checksum(m) or _u32(m, LK_M_PID) != pid:
            return None
        return (pid, start, t)

    def reservation_alive(self, offset, grace=None):
        """True while the reservation at `offset` may still be finished: it is
        open and its holder (reservation_holder) still runs -- the same
        process, not merely a process with its pid (pid reuse, another pid
        namespace) -- and, when `grace` (seconds) is given, it was reserved
        less than `grace` ago.  False when nothing is open there, or its
        holder is gone, or the grace has passed.  THE liveness test for a
        reservation: salvage, followers and partition settling all use it."""
        h = self.reservation_holder(offset)
        if h is None:
            return False
        pid, start, t = h
        if lk_identity_gone(pid, start):
            return False
        if grace is not None and lk_now_ns() - t > grace * 1e9:
            return False
        return True

    def unfinished_claims(self):
        """Claims not yet finished nor abandoned, found by walking the
        segment up to its allocation end: a list of (offset, end, kind) with
        kind "reserved" (a stub) or "gap" (claimed, stub not yet published,
        or a writer killed before publishing it).  Empty means every
        reservation made so far is committed or abandoned, whatever the
        written counter says (a writer killed between its commit and the
        counter leaves it one short for ever: docs/format.md, "Counters").
        Damaged ranges are not listed: they are no claim that can finish."""
        out = []
        for rec in self.records():
            if rec.kind in ("reserved", "gap"):
                out.append((rec.offset, rec.offset + rec.length, rec.kind))
        return out

    def store_hints(self, first_seq, first_time, last_seq, last_time, last_offset):
        """Store the header's hints (offsets 392..431: first and last sequence
        and time, the last message's offset) so that later readers find the
        ends without a walk.  Plain relaxed stores: hints order nothing and
        readers validate them.  A rotation stores them once a segment is
        full; salvage stores what its walk found."""
        self._check_writable()
        lk_hint_store_relaxed(<uint64_t *>(self.base + LK_H_FIRST_SEQUENCE), first_seq)
        lk_hint_store_relaxed(<uint64_t *>(self.base + LK_H_FIRST_TIME), <uint64_t><int64_t>first_time)
        lk_hint_store_relaxed(<uint64_t *>(self.base + LK_H_LAST_SEQUENCE), last_seq)
        lk_hint_store_relaxed(<uint64_t *>(self.base + LK_H_LAST_TIME), <uint64_t><int64_t>last_time)
        lk_hint_store_relaxed(<uint64_t *>(self.base + LK_H_LAST_OFFSET), last_offset)

include "segment_repair.pxi"


_STEP_NAMES = {LK_STEP_CLAIMED: "claimed", LK_STEP_STUB: "stub",
               LK_STEP_COPIED: "copied", LK_STEP_COMMITTED: "committed"}


cdef void _step_hook(void *arg, int step) noexcept with gil:
    """Segment.write_stepwise's hook: the injection point of each step.  An
    exception (action "raise") cannot cross the C writer: it is kept and
    raised once the write returns."""
    cdef list ctx = <list>arg
    try:
        from logkit import inject
        inject.point(f"core.write.{_STEP_NAMES[step]}")
    except BaseException as e:
        if ctx[0] is None:
            ctx[0] = e


cdef class SegmentIterator:
    """Walks a segment's finished messages, counting what it passes over."""

    def __cinit__(self, Segment seg not None, bint strict=False):
        seg._check_open()
        self.seg = seg
        self.strict = strict
        self.pending = None
        self.pos = LK_HEADER_SIZE
        self.min_seq = _u64(seg.base, LK_H_SEQUENCE_BASE)
        self.min_pos = LK_HEADER_SIZE
        self.bound = lk_read_bound(seg.base, seg.size)
        self.open_reservations = []
        self.gaps = []
        self.damaged = []
        self.abandoned = 0

    def __iter__(self):
        return self

    def pending_writer(self):
        """(pid, reservation time ns) of the HOLDER of the pending reserved
        record (the process that will finish it, also for a copy), or None.
        To judge it, use seg.reservation_alive(it.pending.offset), which also
        checks the holder's start time (pid reuse, pid namespaces)."""
        if self.pending is None or self.pending.kind != "reserved":
            return None
        cdef uint64_t off = self.pending.offset
        return _u32(self.seg.base, off + LK_M_PID), <int64_t>_u64(self.seg.base, off + LK_M_TIME)

    def skip_pending(self):
        """Pass over the record a strict iterator stopped at (its writer is gone),
        counting it as open reservation or gap.  Returns True if it moved."""
        cdef lk_rec r
        cdef Segment seg = self.seg
        seg._check_open()
        self.pending = None
        lk_next_record(seg.base, seg.size, self.pos, self.bound, self.min_seq, self.min_pos, &r)
        if r.kind == LK_REC_RESERVED:
            self.open_reservations.append((r.offset, r.sequence))
            self.min_seq = r.sequence + r.span
            self.min_pos = r.next
        elif r.kind == LK_REC_GAP:
            self.gaps.append((r.offset, r.next))
        else:
            return False
        self.pos = r.next
        return True

    def __next__(self):
        cdef lk_rec r
        cdef Segment seg = self.seg
        if seg.base == NULL:
            raise SegmentClosed(f"segment {seg.path} was closed during iteration")
        self.pending = None
        while True:
            lk_next_record(seg.base, seg.size, self.pos, self.bound, self.min_seq, self.min_pos, &r)
            if r.kind == LK_REC_COMMITTED:
                self.pos = r.next
                self.min_seq = r.sequence + 1
                self.min_pos = r.next
                return Message.make_at(seg, r.offset)
            if r.kind == LK_REC_END:
                # Writers may have allocated more since we looked: look again.
                self.bound = lk_read_bound(seg.base, seg.size)
                if self.bound > self.pos:
                    lk_next_record(seg.base, seg.size, self.pos, self.bound, self.min_seq, self.min_pos, &r)
                    if r.kind != LK_REC_END:
                        continue
                _sigbus_check(seg)    # the end, or zeros where the file shrank (lk_sigbus.h)?
                raise StopIteration
            if self.strict and (r.kind == LK_REC_RESERVED or r.kind == LK_REC_GAP):
                # A follower must not pass a message that may still be finished:
                # stop here; the caller waits, or skip_pending() once it knows
                # the writer is gone.
                self.pending = Record(RECORD_KINDS[r.kind], r.offset, r.next - r.offset,
                                      r.sequence if r.kind == LK_REC_RESERVED else None,
                                      r.span if r.kind == LK_REC_RESERVED else None,
                                      r.state if r.kind == LK_REC_RESERVED else None)
                raise StopIteration
            if r.kind == LK_REC_RESERVED:
                self.open_reservations.append((r.offset, r.sequence))
            elif r.kind == LK_REC_ABANDONED:
                self.abandoned += r.span
            elif r.kind == LK_REC_GAP:
                self.gaps.append((r.offset, r.next))
            else:
                self.damaged.append((r.offset, r.next))
            if r.kind <= LK_REC_ABANDONED:
                self.min_seq = r.sequence + r.span
                self.min_pos = r.next
            self.pos = r.next


# ---------------------------------------------------------------- SIGBUS
# A Segment registers the buffer it is attached to with lk_sigbus.h while it
# is open (and the header page it maps for waiting, if any); a fault there
# (the file was truncated under the mapping) reads zeros instead of killing
# the process, and _sigbus_check raises SegmentDamaged naming the file.

cdef int _sigbus_watch(Segment seg, const void *start, uint64_t length) noexcept:
    lk_sigbus_install()          # again, if faulthandler or another took SIGBUS over since
    return lk_sigbus_watch(start, length, <uintptr_t><void *>seg)


cdef void _sigbus_unwatch(Segment seg) noexcept:
    lk_sigbus_unwatch(<uintptr_t><void *>seg)


cdef int _sigbus_check(Segment seg) except -1:
    """SegmentDamaged if a page of `seg`'s mapping was lost (its file shrank)
    since it was attached.  One atomic load when no fault ever happened."""
    cdef uintptr_t first, mstart
    cdef uint64_t n = lk_sigbus_hits(<uintptr_t><void *>seg, &first, &mstart)
    if n == 0:
        return 0
    where = seg.path or "segment"
    raise SegmentDamaged(
        f"{where}: the file shrank under its mapping (truncated by some process?): "
        f"{n} access(es) past its end read zeros, the first at byte {first - mstart} of the "
        "mapping; what lay there is lost, what is still in the file can be salvaged "
        "(logkit salvage)")


def check_mapping(Segment seg not None):
    """Raise SegmentDamaged (naming the file and the first byte lost) if the
    file under `seg` shrank while it was mapped: pages past the new end read
    as zeros in this process instead of killing it with SIGBUS (see
    pyx/include/lk_sigbus.h).  A reader calls it when its walk ends; a
    writer after a write it is about to acknowledge."""
    _sigbus_check(seg)


def sigbus_counts():
    """(faults absorbed in logkit mappings, SIGBUS passed on) in this process."""
    return (lk_sigbus_events, lk_sigbus_chained)


cdef struct _Shape:
    uint32_t tl         # text bytes
    uint16_t cl         # class-name bytes
    uint32_t dl         # data bytes
    bint sealed         # read from the opened private copy (or no key: nothing to read)


cdef const uint8_t *_shape(Message m, _Shape *sh) except? NULL:
    """The payload lengths of `m`, each read ONCE from the mapping into a
    local and checked there, and the base the caller reads the payload at.

    The walk validated the message, but any process that can write the file
    can rewrite its lengths afterwards; a length re-read from the mapping
    would then be used as a raw pointer length (an over-read).  So: one read
    of each field, a check that they agree with the total (also read once)
    and that the total lies inside the region, and only those locals used.
    A sealed message is read from its opened private copy, whose lengths
    were authenticated and bounded by lk_open_message (NULL: no key).
    SegmentDamaged, naming the file and offset, when they do not agree."""
    cdef const uint8_t *p = m._ptr()
    cdef Segment seg = m.segment
    cdef lk_lengths l
    cdef bint agree = lk_read_lengths(p, seg.size - m.offset, seg.sealed, &l)
    _sigbus_check(seg)
    if l.kid != 0 or seg.sealed:
        plain = m._opened()
        sh.sealed = True
        if plain is None:
            # No key: only the class name (authenticated, not encrypted) can
            # be read, in the mapping, with the lengths read above once and
            # checked here (the tag counts in a sealed message's total).
            if not agree:
                raise SegmentDamaged(
                    f"{seg.path or 'segment'}: message at offset {m.offset} changed after it was read "
                    f"(total {l.total}, text {l.tl}, class {l.cl}, data {l.dl} bytes no longer agree): "
                    "another process wrote into it")
            sh.tl, sh.cl, sh.dl = l.tl, l.cl, l.dl
            return NULL
        q = <const uint8_t *><char *>plain
        memcpy(&sh.tl, q + 40, 4)
        memcpy(&sh.dl, q + 44, 4)
        memcpy(&sh.cl, q + 48, 2)
        # lk_open_message checked these against the copy's length; say so again
        # here, where a reader can see it, before they become pointer lengths.
        if LK_MSG_HEADER + <uint64_t>sh.tl + sh.cl + sh.dl + LK_TAG_SIZE > <uint64_t>len(plain):
            raise SegmentDamaged(f"{seg.path or 'segment'}: sealed message at offset {m.offset}: "
                                 "its lengths do not fit the opened message")
        return q
    if not agree:
        raise SegmentDamaged(
            f"{seg.path or 'segment'}: message at offset {m.offset} changed after it was read "
            f"(total {l.total}, text {l.tl}, class {l.cl}, data {l.dl} bytes no longer agree, or pass "
            f"the end of the {seg.size}-byte region): another process wrote into it")
    sh.sealed = False
    sh.tl, sh.cl, sh.dl = l.tl, l.cl, l.dl
    return p


cdef class Message:
    """A finished message, read in place (zero-copy).  Fields are read from the
    mapping on access; text is decoded only when asked for."""

    @staticmethod
    cdef Message make_at(Segment seg, uint64_t offset):
        cdef Message m = Message.__new__(Message)
        m.segment = seg
        m.offset = offset
        return m

    def __cinit__(self):
        self.segment = None
        self._plain = None

    cdef const uint8_t *_ptr(self) except NULL:
        if self.segment is None:
            raise SegmentClosed("this Message is not attached to a segment")
        if self.segment.base == NULL:
            raise SegmentClosed(f"message at offset {self.offset}: its segment {self.segment.path} is closed")
        return self.segment.base + self.offset

    @property
    def sequence(self):
        return _u64(self._ptr(), 16)

    @property
    def time(self):
        """ns since the epoch, as given by the writer."""
        return <int64_t>_u64(self._ptr(), 24)

    @property
    def severity(self):
        """-250..250; SegmentDamaged if it changed to anything else since the
        walk validated the message (formatters index tables by it)."""
        cdef int16_t s
        memcpy(&s, self._ptr() + 12, 2)
        if s < LK_SEVERITY_MIN or s > LK_SEVERITY_MAX:
            raise SegmentDamaged(
                f"{self.segment.path or 'segment'}: message at offset {self.offset} changed after it "
                f"was read (severity {s} is outside {LK_SEVERITY_MIN}..{LK_SEVERITY_MAX}): another "
                "process wrote into it")
        return s

    @property
    def process_id(self):
        return _u32(self._ptr(), 32)

    @property
    def thread_id(self):
        return _u32(self._ptr(), 36)

    @property
    def key_id(self):
        return _u16(self._ptr(), 50)

    @property
    def sealed(self):
        """True if the message is sealed (encrypted and authenticated; key id != 0)."""
        return _u16(self._ptr(), 50) != 0

    cdef object _opened(self):
        """The plaintext of a sealed message: a private copy of the whole
        message, verified and decrypted (never in place in the mapping), or
        None when its segment has no key.  MessageTampered when it fails
        authentication, or when a sealed segment holds an unsealed message."""
        cdef const uint8_t *p = self._ptr()
        cdef Segment seg = self.segment
        cdef uint16_t kid = _u16(p, LK_M_KEY_ID)
        if self._plain is not None:
            return self._plain
        where = f"{seg.path or 'segment'}: message {_u64(p, LK_M_SEQUENCE)} at offset {self.offset}"
        if kid == 0:
            from logkit.errors import MessageTampered
            raise MessageTampered(f"{where} is not sealed, but its segment is: a plain message "
                                  "stands where a sealed one should")
        if not seg.has_key:
            return None
        # The length is read ONCE into a local, bounded by the region, and only
        # the local is used: another process can rewrite +8 at any moment.
        cdef uint64_t total = _u32(p, LK_M_TOTAL)
        cdef int rc
        if kid != seg.seal_key_id or total < LK_MSG_HEADER or total > seg.size - self.offset:
            rc = LK_SEAL_BAD_TAG
        else:
            buf = bytearray((<const char *>p)[:total])
            rc = lk_open_message(seg.seal_key, <uint8_t *><char *>buf, total)
        if rc != LK_SEAL_OK:
            from logkit.errors import MessageTampered
            raise MessageTampered(f"{where} failed authentication under key id {seg.seal_key_id} "
                                  "(a byte of its header, class name, text, data or tag was changed)")
        self._plain = buf
        return buf

    @property
    def size(self):
        """Bytes the message occupies in the segment, header and padding included."""
        return _u32(self._ptr(), 8)

    @property
    def text(self):
        """The text, decoded from UTF-8 (undecodable bytes become U+FFFD).
        Sealed: decrypted if the segment has its key, else "[encrypted]".
        SegmentDamaged if the message's lengths changed since it was read."""
        cdef _Shape sh
        cdef const uint8_t *p = _shape(self, &sh)
        if sh.sealed:
            return "[encrypted]" if p == NULL else PyUnicode_DecodeUTF8(
                <const char *>(p + LK_MSG_HEADER), sh.tl, "replace")
        return PyUnicode_DecodeUTF8(<const char *>(p + LK_MSG_HEADER), sh.tl, "replace")

    @property
    def text_bytes(self):
        """The text as a read-only memoryview into the segment (zero-copy);
        sealed: into the decrypted private copy (empty without the key)."""
        cdef _Shape sh
        cdef const uint8_t *p = _shape(self, &sh)
        if sh.sealed:
            if p == NULL:
                return memoryview(b"")
            return memoryview(self._plain)[LK_MSG_HEADER:LK_MSG_HEADER + sh.tl].toreadonly()
        cdef uint64_t a = self.segment._region_offset + self.offset + LK_MSG_HEADER
        return self.segment._memoryview()[a:a + sh.tl].toreadonly()

    @property
    def data_class(self):
        """The name of the formatter of the data (sealed: readable without the
        key, it is authenticated but not encrypted)."""
        cdef _Shape sh
        cdef const uint8_t *p = _shape(self, &sh)
        if sh.cl == 0:
            return ""
        if p == NULL:
            p = self._ptr()                  # sealed, no key: the mapping, lengths checked by _shape
        return PyUnicode_DecodeUTF8(<const char *>(p + LK_MSG_HEADER + sh.tl), sh.cl, "replace")

    @property
    def data(self):
        """The binary data as a read-only memoryview into the segment (zero-copy);
        sealed: into the decrypted private copy (empty without the key)."""
        cdef _Shape sh
        cdef const uint8_t *p = _shape(self, &sh)
        cdef uint64_t d = LK_MSG_HEADER + <uint64_t>sh.tl + sh.cl
        if sh.sealed:
            if p == NULL:
                return memoryview(b"")
            return memoryview(self._plain)[d:d + sh.dl].toreadonly()
        cdef uint64_t a = self.segment._region_offset + self.offset + d
        return self.segment._memoryview()[a:a + sh.dl].toreadonly()

    def checksum_ok(self):
        """Verify the checksum again (the reader already did when it yielded this)."""
        # Every length read ONCE into a local and bounded by the total and the
        # region before it becomes the checksum's length (a co-writer may have
        # rewritten +40/+44 since the walk: re-reading them over-read past the
        # mapping).  Lengths that no longer agree: the checksum does not hold.
        cdef const uint8_t *p = self._ptr()
        cdef Segment seg = self.segment
        cdef lk_lengths l
        cdef uint32_t stored
        cdef bint agree = lk_read_lengths(p, seg.size - self.offset, 0, &l)
        memcpy(&stored, p + 60, 4)
        _sigbus_check(seg)
        if not agree:
            return False
        return stored == lk_message_checksum_n(p, <uint64_t>l.tl + l.dl + l.cl + (LK_TAG_SIZE if l.kid else 0))

    def to_dict(self):
        """A copy of every field, independent of the segment."""
        return {"sequence": self.sequence, "time": self.time, "severity": self.severity,
                "process_id": self.process_id, "thread_id": self.thread_id, "text": self.text,
                "data_class": self.data_class, "data": bytes(self.data)}

    def __repr__(self):
        if self.segment is None or self.segment.base == NULL:
            return f"<logkit.Message at {self.offset} (segment closed)>"
        return f"<logkit.Message seq={self.sequence} sev={self.severity} text={self.text!r}>"


cdef class Reservation:
    """Space claimed in a segment: fill .text and .data, then finish()."""

    def __cinit__(self):
        self.segment = None
        self._done = True     # a Reservation not made by Segment.reserve() is inert

    def __dealloc__(self):
        # A sealed reservation dropped unfinished may hold plaintext its owner
        # copied in: give it up now ([P1], [S1], wipe) rather than leave the
        # plaintext on disk until salvage (docs/security.md).  Unsealed ones
        # are left open, as before (salvage abandons them).
        if not self._done and self._sealed and self.segment is not None \
                and self.segment.base != NULL and not self.segment.readonly:
            lk_abandon_claim(self.segment.base, &self._claim)

    @property
    def text(self):
        """Writable memoryview of exactly text_len bytes (UTF-8 text goes here)."""
        if self._done or self.segment is None:
            raise InvalidArgument(f"reservation {self.sequence} is already finished")
        if self._text_view is None:
            a = self.segment._region_offset + self.offset + LK_MSG_HEADER
            self._text_view = self.segment._memoryview()[a:a + self._text_len]
        return self._text_view

    @property
    def data(self):
        """Writable memoryview of exactly data_len bytes."""
        if self._done or self.segment is None:
            raise InvalidArgument(f"reservation {self.sequence} is already finished")
        if self._data_view is None:
            a = self.segment._region_offset + self.offset + LK_MSG_HEADER + self._text_len + self._cls_len
            self._data_view = self.segment._memoryview()[a:a + self._data_len]
        return self._data_view

    cdef _release_views(self):
        for v in (self._text_view, self._data_view):
            if v is not None:
                try:
                    v.release()
                except BufferError:
                    pass
        self._text_view = None
        self._data_view = None

    def finish(self, severity=20, time=None):
        """Checksum and publish the message.  Raises MessageLost if salvage
        abandoned the reservation first."""
        if self.segment is None:
            raise InvalidArgument("this Reservation was not made by Segment.reserve()")
        if self._done:
            raise InvalidArgument(f"reservation {self.sequence} is already finished")
        cdef long sev = _severity(severity)
        self.segment._check_writable()
        cdef int64_t t = lk_now_ns() if time is None else time
        self._release_views()
        self._done = True
        cdef int rc
        cdef Segment seg = self.segment
        if not self._sealed:
            rc = lk_finish_claim(seg.base, seg.size, &self._claim, <int16_t>sev, t, NULL, NULL, NULL)
        else:
            if not seg.has_key:     # closed and reopened meanwhile: never seal without the key
                lk_abandon_claim(seg.base, &self._claim)    # and leave no plaintext behind
                seg._refuse_unkeyed()
            if memcmp(self._claim.uuid, seg.seal_uuid, 16) != 0:
                lk_abandon_claim(seg.base, &self._claim)
                raise MessageLost(f"{seg.path or 'segment'}: the segment key changed while reservation "
                                  f"{self.sequence} was open; it is lost")
            # lk_finish_claim re-proves the claim ([P1]): a region formatted
            # again meanwhile (a partition half reused) gives LK_LOST.
            rc = lk_finish_claim(seg.base, seg.size, &self._claim, <int16_t>sev, t, seg.seal_key, NULL, NULL)
        if rc != LK_OK:
            self.segment.raise_status(rc, 0)
        _sigbus_check(seg)        # finished in a page the file lost: not acknowledged (lk_sigbus.h)
        return self.sequence

    def abandon(self):
        """Give the reservation up: readers pass over it and count it abandoned."""
        if self._done or self.segment is None:
            return
        self._release_views()
        self._done = True
        self.segment._check_writable()
        lk_abandon_claim(self.segment.base, &self._claim)   # [P1], then [S1]; a sealed payload is wiped

    @property
    def finished(self):
        return self._done

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abandon()
        elif not self._done:
            self.finish()
