# SegmentRepair: the repair primitives of a segment (included by _segment.pyx).
#
# Salvage (logkit.salvager) and the read-only tools' private rebuild use these
# to account for what dead writers left, rebuild a damaged identity and put
# the counters right.  They are public, documented calls of the core rather
# than private methods of Segment, but they are not for writing logs: each
# one assumes the caller has taken the segment out of service or owns the
# region (docs/format.md, "Salvage", says when each step is safe).


cdef class SegmentRepair:
    """The repair primitives of one writable (or privately mapped) segment:
    ``SegmentRepair(seg)``.  Every offset is a byte offset in the region."""

    def __cinit__(self, Segment segment not None):
        self.segment = segment

    def word_at(self, uint64_t offset):
        """The 8-byte word at `offset` (8-aligned, inside the region)."""
        self.segment._check_open()
        if offset % 8 or offset + 8 > self.segment.size:
            raise InvalidArgument(f"offset {offset} is not an 8-byte word of the segment")
        return _u64(self.segment.base, offset)

    def fillable(self, uint64_t start, uint64_t end):
        """True if [start, end) holds nothing but unpublished claims: the first
        word zero and every other byte zero, except the fixed part of a stub
        (bytes 8..63) and the data-class name a stub stores at reservation."""
        self.segment._check_open()
        if start % 8 or end % 8 or start < LK_HEADER_SIZE or end > self.segment.size or end < start + LK_MSG_HEADER:
            return False
        cdef const uint8_t *m = self.segment.base + start
        if _u64(m, 0) != 0:
            return False      # a state was published: not a bare claim (+60 is the holder's start)
        cdef uint64_t tl = _u32(m, LK_M_TEXT_LEN), dl = _u32(m, LK_M_DATA_LEN), cl = _u16(m, LK_M_CLASS_LEN)
        cdef uint64_t cls_a = 0, cls_b = 0
        cdef uint64_t tag = LK_TAG_SIZE if _u16(m, LK_M_KEY_ID) else 0
        if lk_message_size(tl + tag, dl, cl) == _u32(m, LK_M_TOTAL) and _u32(m, LK_M_TOTAL) <= end - start:
            cls_a = LK_MSG_HEADER + tl
            cls_b = cls_a + cl
            # +60 of a claim holds its holder's start time, so a non-zero word
            # there no longer tells a finished message from a claim: its
            # checksum does (a finished message whose state word was zeroed).
            if _u32(m, LK_M_CRC) != 0 and _u32(m, LK_M_CRC) == lk_message_checksum_n(m, tl + tag + dl + cl):   # lengths read once
                return False
        cdef uint64_t i
        for i in range(LK_MSG_HEADER, end - start, 8):
            if _u64(m, i) != 0 and not (i + 8 > cls_a and i < cls_b):
                return False
        return True

    def message_pid(self, uint64_t offset):
        """(pid at +32, time at +24) of the record at `offset`: the pid and
        time salvage reports and stores as hints."""
        self.segment._check_open()
        return _u32(self.segment.base, offset + LK_M_PID), <int64_t>_u64(self.segment.base, offset + LK_M_TIME)

    def set_written_count(self, uint64_t n):
        """Salvage: the written counter (the sum of its shards) set to n, the
        finished messages a walk found.  Only for a segment out of service
        with no unfinished claim (nobody can add to it any more)."""
        self.segment._check_writable()
        cdef int i
        for i in range(LK_WRITTEN_SHARDS):
            lk_hint_store_relaxed(<uint64_t *>(self.segment.base + LK_H_WRITTEN_SHARDS + 64 * i), n if i == 0 else 0)

    def abandon(self, uint64_t offset):
        """CAS a reserved stub to abandoned ([S1]); True if this call did it."""
        self.segment._check_writable()
        return lk_abandon_reserved(self.segment.base, self.segment.size, offset,
                                   1 if (self.segment.sealed or _header_sealed(self.segment.base)) else 0) == 1  # [S1]

    def write_filler(self, uint64_t offset, uint64_t length, uint64_t sequence, uint32_t span):
        """Account for claims that left no stub: an abandoned record covering
        [offset, offset+length) and `span` sequence numbers from `sequence`."""
        self.segment._check_writable()
        if length < LK_MSG_HEADER or length % 8 or offset + length > self.segment.size or offset < LK_HEADER_SIZE:
            raise InvalidArgument(f"filler {offset}+{length} does not fit the segment")
        cdef uint8_t *m = self.segment.base + offset
        memset(m + 8, 0, length - 8)
        _put32(m, LK_M_TOTAL, <uint32_t>length)
        (<uint16_t *>(m + LK_M_FLAGS))[0] = LK_FLAG_FILLER
        _put64(m, LK_M_SEQUENCE, sequence)
        _put64(m, LK_M_TIME, <uint64_t>lk_now_ns())
        _put32(m, LK_M_TEXT_LEN, <uint32_t>(length - LK_MSG_HEADER))
        _put32(m, LK_M_SPAN, span)
        _put32(m, LK_M_STUB_CRC, lk_stub_checksum(m))
        _put32(m, LK_M_CRC, lk_message_checksum(m))
        lk_state_store_release(<uint64_t *>m, lk_state_word(LK_STATE_ABANDONED))
        lk_counter_add_relaxed(<uint64_t *>(self.segment.base + LK_H_ABANDONED), span)
        lk_wake_after_release_store(self.segment.base)

    def rebuild_identity(self, uint64_t sequence_base, bint sealed_hint=False, identity=None):
        """Rewrite a damaged identity block (magic .. identity CRC) from what the
        region itself proves; keeps family, previous and uuid bytes as found.
        identity: (uuid, key_id, key_check, sequence_base, created, family
        bytes) from a sealed family's ledger (logkit.idledger), taken only
        when the header page lost the UUID and its copy; returns True then."""
        self.segment._check_writable()
        cdef bint from_ledger = False
        cdef uint8_t *b = self.segment.base
        cdef uint32_t found = _u32(b, LK_H_VERSION)
        # Never rewrite a sealed header as unsealed: keep it sealed when the
        # damaged header, its key id hint or a message found in the region
        # says so.  Keep an older version as found (1, 2: no holder identity,
        # no UUID copy); anything else becomes this logkit's (3, 4).
        cdef bint sealed = sealed_hint or (_u16(b, LK_H_KEY_ID) != 0 and (
            found == LK_FORMAT_VERSION_SEALED or found == LK_FORMAT_VERSION_2
            or (_u32(b, LK_H_FLAGS) & LK_SEG_FLAG_SEALED) != 0))
        cdef uint32_t version
        if sealed:
            version = LK_FORMAT_VERSION_2 if found == LK_FORMAT_VERSION_2 else LK_FORMAT_VERSION_SEALED
        else:
            version = LK_FORMAT_VERSION_1 if found == LK_FORMAT_VERSION_1 else LK_FORMAT_VERSION
        if version >= LK_FORMAT_VERSION:
            self._restore_uuid()
        cdef int i
        cdef bint uuid_zero = True, family_zero = True
        cdef uint16_t kid16
        for i in range(16):
            if b[LK_H_UUID + i]:
                uuid_zero = False
        for i in range(LK_H_FAMILY_MAX):
            if b[LK_H_FAMILY + i]:
                family_zero = False
        if sealed and identity is not None and uuid_zero:
            # The header page is lost (the UUID and its copy): the segment key
            # derives from the UUID, so only the ledger can give it back.
            uid, kid, check, sequence_base, created, fam = identity
            if len(uid) != 16 or len(check) != 16 or not 0 < kid < 65536 or len(fam) >= LK_H_FAMILY_MAX:
                raise InvalidArgument("identity: a 16-byte UUID and key check, a key id 1..65535, a family name")
            memcpy(b + LK_H_UUID, <const char *>uid, 16)
            memcpy(b + LK_H_UUID_COPY, <const char *>uid, 16)
            memcpy(b + LK_H_KEY_CHECK, <const char *>check, 16)
            kid16 = kid
            memcpy(b + LK_H_KEY_ID, &kid16, 2)
            _put64(b, LK_H_CREATED, <uint64_t>created)
            if family_zero:
                memcpy(b + LK_H_FAMILY, <const char *>fam, len(fam))
            from_ledger = True
        _put_fixed_identity(b, self.segment.size, sequence_base, version)
        _put32(b, LK_H_FLAGS, LK_SEG_FLAG_SEALED if sealed else 0)
        self.segment.sealed = sealed
        b[LK_H_FAMILY + LK_H_FAMILY_MAX - 1] = 0
        b[LK_H_PREVIOUS + LK_H_PREVIOUS_MAX - 1] = 0
        _put32(b, LK_H_IDENTITY_CRC, lk_identity_crc(b))
        return from_ledger

    cdef void _restore_uuid(self) noexcept:
        """Versions 3 and 4 keep the UUID twice (24 and LK_H_UUID_COPY): before
        the identity is rebuilt, take the copy when it is what the identity
        CRC was computed over (only the UUID was damaged), or when the UUID
        is zeros and the copy is not; then make both the same."""
        cdef uint8_t *b = self.segment.base
        cdef uint8_t found[16]
        cdef bint zero = True, copy_zero = True
        cdef int i
        for i in range(16):
            if b[LK_H_UUID + i]:
                zero = False
            if b[LK_H_UUID_COPY + i]:
                copy_zero = False
        if not copy_zero and memcmp(b + LK_H_UUID, b + LK_H_UUID_COPY, 16) != 0:
            memcpy(found, b + LK_H_UUID, 16)
            memcpy(b + LK_H_UUID, b + LK_H_UUID_COPY, 16)
            if not zero and _u32(b, LK_H_IDENTITY_CRC) != lk_identity_crc(b):
                memcpy(b + LK_H_UUID, found, 16)     # the CRC does not take the copy's side
        memcpy(b + LK_H_UUID_COPY, b + LK_H_UUID, 16)

    def raise_word(self, uint64_t min_next, uint64_t min_count, bint out_of_service):
        """Raise NEXT and COUNT to at least the given values (never lower them;
        COUNT saturates);
        optionally clear IN_SERVICE in the same CAS.  Returns True if changed."""
        self.segment._check_writable()
        cdef uint64_t *word = <uint64_t *>(self.segment.base + LK_H_RESERVATION)
        cdef uint64_t w = lk_reserve_word_load_relaxed(word)
        cdef uint64_t nxt, cnt, nw
        while True:
            nxt = (w & LK_NEXT_MASK) * 8
            cnt = (w >> 32) & LK_COUNT_MASK
            if nxt < LK_HEADER_SIZE or nxt > self.segment.size:
                nxt = min_next
            nxt = max(nxt, min_next)
            cnt = max(cnt, min_count)
            if cnt > LK_COUNT_MASK:
                # A record far ahead in sequence (damage that passed its
                # checksum): COUNT saturates instead of wrapping into the
                # flag bit or to a small number, which would give the next
                # segment a base below sequences already used.  The segment
                # is full of sequence numbers: out of service.
                cnt = LK_COUNT_MASK
                out_of_service = True
            nw = (w & LK_IN_SERVICE) | (cnt << 32) | (nxt // 8)
            if out_of_service:
                nw &= ~LK_IN_SERVICE
            if nw == w:
                return False
            if lk_service_word_cas(word, &w, nw):          # [O1]
                if out_of_service and (w & LK_IN_SERVICE):
                    lk_hint_store_relaxed(<uint64_t *>(self.segment.base + LK_H_OUT_OF_SERVICE_TIME), <uint64_t>lk_now_ns())
                    lk_wake_if_waiters(self.segment.base)      # [O2]
                return True

    def set_abandoned_count(self, uint64_t n):
        """The abandoned counter (offset 600) set to n: what a walk counted."""
        self.segment._check_writable()
        lk_hint_store_relaxed(<uint64_t *>(self.segment.base + LK_H_ABANDONED), n)

    def note_salvage(self):
        """Count one salvage (offset 440) and store its time (448)."""
        self.segment._check_writable()
        lk_counter_add_relaxed(<uint64_t *>(self.segment.base + LK_H_SALVAGE_COUNT), 1)
        lk_hint_store_relaxed(<uint64_t *>(self.segment.base + LK_H_SALVAGE_TIME), <uint64_t>lk_now_ns())

    cdef int64_t _next_good_record(self, uint64_t q) except -2:
        """For a damaged identity: the offset, at or after q, of the next
        checksum-valid committed message found by sentinel, or -1."""
        cdef uint32_t total, span, state
        cdef uint64_t seq
        while q + LK_MSG_HEADER <= self.segment.size:
            if _u32(self.segment.base, q) == LK_SENTINEL and lk_plausible_shape(
                    self.segment.base, self.segment.size, q, &total, &seq, &span, &state) \
                    and state == LK_STATE_COMMITTED \
                    and lk_payload_len(self.segment.base + q) <= total - LK_MSG_HEADER \
                    and _u32(self.segment.base, q + LK_M_CRC) == lk_message_checksum_n(
                        self.segment.base + q, min(lk_payload_len(self.segment.base + q), total - LK_MSG_HEADER)):
                return <int64_t>q
            q += 8
        return -1

    def probe_sealed(self):
        """For a damaged identity: True if a checksum-valid committed message
        found by sentinel is sealed (key id != 0), so the segment was version 2."""
        self.segment._check_open()
        cdef int64_t q = self._next_good_record(LK_HEADER_SIZE)
        while q >= 0:
            if _u16(self.segment.base, q + LK_M_KEY_ID) != 0:
                return True
            q = self._next_good_record(<uint64_t>q + _u32(self.segment.base, q + LK_M_TOTAL))
        return False

    def probe_first_sequence(self):
        """For a damaged identity: the sequence of the first checksum-valid
        message found by sentinel, or None."""
        self.segment._check_open()
        cdef int64_t q = self._next_good_record(LK_HEADER_SIZE)
        return None if q < 0 else _u64(self.segment.base, q + LK_M_SEQUENCE)

    def probe_sequence_base(self):
        """For a damaged identity: the smallest sequence base consistent with the
        first checksum-valid message found by sentinel, or None."""
        self.segment._check_open()
        cdef int64_t q = self._next_good_record(LK_HEADER_SIZE)
        if q < 0:
            return None
        # Python ints: no unsigned wrap-around.
        return max(1, <object>_u64(self.segment.base, q + LK_M_SEQUENCE) - (<object>q - LK_HEADER_SIZE) // LK_MSG_HEADER)
