# The C-level API of the segment core.  Other Cython modules
# `from logkit._segment cimport Segment, lk_write, ...` and call reserve and
# finish with no Python overhead: seg.base and seg.size are the region (check
# seg.base != NULL: a closed segment has base NULL).  The headers' static state
# (checksum table, cached pid) initialises itself lazily in each module.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int16_t, int64_t
from cpython.buffer cimport Py_buffer

cdef extern from "lk_segment.h" nogil:
    enum:
        LK_FORMAT_VERSION
        LK_HEADER_SIZE
        LK_MSG_HEADER
        LK_MIN_REGION
        LK_SENTINEL
        LK_CHECKSUM_CRC32C
        LK_STATE_RESERVED
        LK_STATE_COMMITTED
        LK_STATE_ABANDONED
        LK_FLAG_FILLER
        LK_SEVERITY_MIN
        LK_SEVERITY_MAX
        LK_H_FAMILY_MAX
        LK_H_PREVIOUS_MAX
        LK_WRITTEN_SHARDS
        LK_LISTENER_SLOTS
        LK_LISTENER_SLOT_BYTES
        LK_OK
        LK_FULL
        LK_TOO_BIG
        LK_OUT_OF_SERVICE
        LK_DAMAGED
        LK_LOST
        LK_REC_END
        LK_REC_COMMITTED
        LK_REC_RESERVED
        LK_REC_ABANDONED
        LK_REC_GAP
        LK_REC_DAMAGED
        # header offsets
        LK_H_VERSION
        LK_H_HEADER_SIZE
        LK_H_REGION_SIZE
        LK_H_UUID
        LK_H_SEQUENCE_BASE
        LK_H_CHECKSUM_ALG
        LK_H_FLAGS
        LK_H_CREATED
        LK_H_FAMILY
        LK_H_PREVIOUS
        LK_H_IDENTITY_CRC
        LK_H_FIRST_SEQUENCE
        LK_H_FIRST_TIME
        LK_H_LAST_SEQUENCE
        LK_H_LAST_TIME
        LK_H_LAST_OFFSET
        LK_H_OUT_OF_SERVICE_TIME
        LK_H_SALVAGE_COUNT
        LK_H_SALVAGE_TIME
        LK_H_ROTATOR
        LK_H_RESERVATION
        LK_H_REFUSED_FULL
        LK_H_REFUSED_TOO_BIG
        LK_H_REFUSED_OOS
        LK_H_ABANDONED
        LK_H_WAKE_WORD
        LK_H_WAITERS
        LK_H_WRITTEN_SHARDS
        LK_H_LISTENER_COUNT
        LK_H_LISTENER_SLOT_SIZE
        LK_H_LISTENERS

    uint64_t LK_IN_SERVICE
    uint64_t LK_COUNT_ONE
    uint64_t LK_COUNT_MASK
    uint64_t LK_NEXT_MASK
    uint64_t LK_MAX_REGION

    ctypedef struct lk_rec:
        int kind
        uint64_t offset
        uint64_t next
        uint64_t sequence
        uint32_t span
        uint32_t state
        int checksum_ok

    uint64_t lk_align8(uint64_t n)
    uint64_t lk_state_word(uint32_t state)
    uint64_t lk_message_size(uint64_t text_len, uint64_t data_len, uint64_t cls_len)
    uint32_t lk_message_checksum(const uint8_t *m)
    uint32_t lk_identity_crc(const uint8_t *base)
    uint32_t lk_stub_checksum(const uint8_t *m)
    int lk_valid_record(const uint8_t *base, uint64_t size, uint64_t at, uint64_t min_seq,
                        uint64_t min_pos, uint32_t *total, uint64_t *seq, uint32_t *span,
                        uint32_t *state)
    int lk_reserve(uint8_t *base, uint64_t size, uint64_t text_len, uint64_t data_len,
                   const void *cls, uint64_t cls_len, uint64_t *off, uint64_t *seq)
    int lk_reserve_at(uint8_t *base, uint64_t size, uint64_t text_len, uint64_t data_len,
                      const void *cls, uint64_t cls_len, int64_t now, uint64_t *off, uint64_t *seq)
    int lk_finish(uint8_t *base, uint64_t at, int16_t severity, int64_t time_ns)
    int lk_write(uint8_t *base, uint64_t size, const void *text, uint64_t text_len,
                 const void *data, uint64_t data_len, const void *cls, uint64_t cls_len,
                 int16_t severity, int64_t time_ns, int64_t now, uint64_t *seq)
    int lk_write_as(uint8_t *base, uint64_t size, const void *text, uint64_t text_len,
                    const void *data, uint64_t data_len, const void *cls, uint64_t cls_len,
                    int16_t severity, int64_t time_ns, int64_t now, uint32_t pid, uint32_t tid,
                    uint64_t *seq)
    int lk_set_in_service(uint8_t *base, int in_service)
    int lk_plausible_shape(const uint8_t *base, uint64_t size, uint64_t at, uint32_t *total,
                           uint64_t *seq, uint32_t *span, uint32_t *state)
    void lk_next_record(const uint8_t *base, uint64_t size, uint64_t pos, uint64_t bound,
                        uint64_t min_seq, uint64_t min_pos, lk_rec *r)
    uint64_t lk_read_bound(const uint8_t *base, uint64_t size)
    int lk_all_zero(const uint8_t *p, uint64_t n)

cdef extern from "lk_atomic.h" nogil:
    uint64_t lk_reserve_word_load_relaxed(const uint64_t *w)
    uint64_t lk_reserve_word_load_exclusive(uint64_t *w)
    uint64_t lk_reserve_word_load_acquire(const uint64_t *w)
    int lk_reserve_word_cas(uint64_t *w, uint64_t *expected, uint64_t desired)
    void lk_reserve_word_store_release(uint64_t *w, uint64_t v)
    void lk_state_store_release(uint64_t *w, uint64_t v)
    uint64_t lk_state_load_acquire(const uint64_t *w)
    int lk_state_cas(uint64_t *w, uint64_t *expected, uint64_t desired)
    void lk_counter_add_relaxed(uint64_t *c, uint64_t n)
    uint64_t lk_counter_load_relaxed(const uint64_t *c)
    void lk_hint_store_relaxed(uint64_t *h, uint64_t v)
    uint64_t lk_hint_load_relaxed(const uint64_t *h)

cdef extern from "lk_crc32c.h" nogil:
    void lk_crc32c_setup()
    uint32_t lk_crc32c(uint32_t crc, const void *buf, size_t n)
    int lk_crc32c_using_hardware()
    void lk_crc32c_force_software(int force)

cdef extern from "lk_sys.h" nogil:
    void lk_sys_setup()
    uint32_t lk_process_id()
    uint32_t lk_thread_id()
    int64_t lk_now_ns()


cdef class Segment:
    cdef object _owner          # the object whose buffer holds the region
    cdef object _mmap           # the mmap this Segment created, else None
    cdef object _mv             # memoryview of the whole buffer, for zero-copy slices
    cdef Py_buffer _view
    cdef bint _has_view
    cdef uint8_t *base          # region start; NULL once closed
    cdef uint64_t size          # region length in bytes
    cdef Py_ssize_t _region_offset
    cdef readonly bint readonly
    cdef readonly object path
    cdef readonly object file_id   # (st_dev, st_ino) of the file mapped, or None

    cdef int _check_open(self) except -1
    cdef int _check_writable(self) except -1
    cdef int _raise_status(self, int rc, uint64_t need) except -1
    cdef uint64_t _committed_hint(self, uint64_t min_seq, uint64_t min_pos, uint64_t max_seq)


cdef class SegmentIterator:
    cdef Segment seg
    cdef public uint64_t pos
    cdef public uint64_t min_seq
    cdef public uint64_t min_pos
    cdef uint64_t bound
    cdef public list open_reservations
    cdef public list gaps
    cdef public list damaged
    cdef public uint64_t abandoned
    cdef public bint strict
    cdef public object pending


cdef class Message:
    cdef readonly Segment segment
    cdef readonly uint64_t offset
    cdef const uint8_t *_ptr(self) except NULL
    @staticmethod
    cdef Message _make(Segment seg, uint64_t offset)


cdef class Reservation:
    cdef readonly Segment segment
    cdef readonly uint64_t offset
    cdef readonly uint64_t sequence
    cdef uint64_t _text_len
    cdef uint64_t _data_len
    cdef uint64_t _cls_len
    cdef bint _done
    cdef object _text_view
    cdef object _data_view
    cdef _release_views(self)
