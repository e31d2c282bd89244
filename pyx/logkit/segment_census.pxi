# What a segment's header says (included by _segment.pyx): the bodies of
# Segment.header and Segment.stats, every field and counter by name
# (docs/format.md, "Complete map").


cdef object _segment_stats(Segment self):
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


cdef object _segment_header(Segment self):
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
