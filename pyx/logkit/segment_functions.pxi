# The module-level functions of the segment core (included by _segment.pyx,
# before Segment): the public helpers (token codec, crc32c, atomic words,
# process identity, parse_size) and the private ones Segment builds on
# (typed loads and stores, formatting a header, judging one, key arguments).


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
