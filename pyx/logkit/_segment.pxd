# The C-level API of the segment core.  Other Cython modules
# `from logkit._segment cimport Segment, lk_write, ...` and call reserve and
# finish with no Python overhead: seg.base and seg.size are the region (check
# seg.base != NULL: a closed segment has base NULL).  The headers' static state
# (checksum table, cached pid) initialises itself lazily in each module.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int16_t, int64_t
from cpython.buffer cimport Py_buffer

cdef extern from "lk_segment.h" nogil:
    enum:
        LK_FORMAT_VERSION_1
        LK_FORMAT_VERSION_2
        LK_FORMAT_VERSION
        LK_FORMAT_VERSION_SEALED
        LK_MSG_FLAG_SEALED
        LK_SEG_FLAG_SEALED
        LK_TAG_SIZE
        LK_HEADER_SIZE
        LK_MSG_HEADER
        LK_M_STATE
        LK_M_TOTAL
        LK_M_SEVERITY
        LK_M_FLAGS
        LK_M_SEQUENCE
        LK_M_TIME
        LK_M_PID
        LK_M_TID
        LK_M_TEXT_LEN
        LK_M_DATA_LEN
        LK_M_CLASS_LEN
        LK_M_KEY_ID
        LK_M_SPAN
        LK_M_STUB_CRC
        LK_M_CRC
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
        LK_LS_PID
        LK_LS_FLAGS
        LK_LS_MIN_INTERVAL
        LK_LS_LAST_WAKE
        LK_LISTENER_WAITING
        LK_WAIT_TIMEOUT
        LK_WAIT_READY
        LK_WAIT_INTERRUPTED
        LK_WAIT_CANCELLED
        LK_OK
        LK_FULL
        LK_TOO_BIG
        LK_OUT_OF_SERVICE
        LK_DAMAGED
        LK_LOST
        LK_REKEY
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
        LK_H_UUID_COPY
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
        LK_H_KEY_CHECK
        LK_H_KEY_ID
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

    # The writer's record of its claim (lk_segment.h): every step after the
    # reservation takes its values from here, never from the mapping.
    ctypedef struct lk_claim:
        uint64_t at
        uint64_t seq
        uint64_t total
        uint32_t tl
        uint32_t dl
        uint32_t pid
        uint32_t tid
        uint16_t cl
        uint16_t kid
        const uint8_t *cls
        uint8_t uuid[16]
    ctypedef void (*lk_step_hook)(void *arg, int step) noexcept
    enum:
        LK_STEP_CLAIMED
        LK_STEP_STUB
        LK_STEP_COPIED
        LK_STEP_COMMITTED
    int lk_claim_space(uint8_t *base, uint64_t size, uint64_t text_len, uint64_t data_len,
                       const void *cls, uint64_t cls_len, int64_t now, uint32_t pid, uint32_t tid,
                       uint16_t kid, lk_claim *c, lk_step_hook hook, void *arg)
    int lk_claim_held(const uint8_t *base, const lk_claim *c)
    int lk_claim_copy(uint8_t *base, const lk_claim *c, const void *text, const void *data,
                      lk_step_hook hook, void *arg)
    int lk_finish_claim(uint8_t *base, uint64_t size, const lk_claim *c, int16_t severity,
                        int64_t time_ns, const uint8_t *seg_key, lk_step_hook hook, void *arg)
    int lk_abandon_claim(uint8_t *base, const lk_claim *c)
    int lk_write_steps(uint8_t *base, uint64_t size, const void *text, uint64_t text_len,
                       const void *data, uint64_t data_len, const void *cls, uint64_t cls_len,
                       int16_t severity, int64_t time_ns, int64_t now, uint32_t pid, uint32_t tid,
                       uint16_t kid, const uint8_t *seg_key, const uint8_t *key_uuid, uint64_t *seq,
                       lk_step_hook hook, void *arg)

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
    ctypedef struct lk_lengths:
        uint32_t total
        uint32_t tl
        uint32_t dl
        uint16_t cl
        uint16_t kid
    int lk_read_lengths(const uint8_t *m, uint64_t room, int sealed_segment, lk_lengths *l)
    uint32_t lk_message_checksum(const uint8_t *m)
    uint32_t lk_message_checksum_n(const uint8_t *m, uint64_t payload)
    uint64_t lk_payload_len(const uint8_t *m)
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
    # sealed segments (format version 2): key id != 0 and the segment key
    int lk_reserve_kid(uint8_t *base, uint64_t size, uint64_t text_len, uint64_t data_len,
                       const void *cls, uint64_t cls_len, int64_t now, uint32_t pid, uint32_t tid,
                       uint16_t kid, uint64_t *off, uint64_t *seq)
    int lk_finish_sealed(uint8_t *base, uint64_t size, uint64_t at, int16_t severity,
                         int64_t time_ns, const uint8_t *seg_key)
    int lk_write_sealed(uint8_t *base, uint64_t size, const void *text, uint64_t text_len,
                        const void *data, uint64_t data_len, const void *cls, uint64_t cls_len,
                        int16_t severity, int64_t time_ns, int64_t now, uint32_t pid, uint32_t tid,
                        uint16_t kid, const uint8_t *seg_key, const uint8_t *key_uuid, uint64_t *seq)
    int lk_abandon_reserved(uint8_t *base, uint64_t size, uint64_t at, int sealed)
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
    # wake-ups (lk_segment.h, "Wake-ups")
    void lk_wake_if_waiters(uint8_t *base)
    void lk_wake_waiters(uint8_t *base)
    void lk_wake_after_release_store(uint8_t *base)
    int lk_wait_ready(const uint8_t *base, uint64_t size, uint64_t at)
    void lk_cancel_set(uint32_t *cancel)
    uint32_t lk_cancel_take(uint32_t *cancel)
    int lk_wait_futex(const uint8_t *base, uint64_t size, uint8_t *hdr, uint64_t at,
                      int64_t deadline, uint32_t *slot_flags, uint64_t *sleeps, const uint32_t *cancel)
    int lk_wait_poll(const uint8_t *base, uint64_t size, uint64_t at, int64_t deadline,
                     int64_t interval, uint64_t *sleeps, const uint32_t *cancel)
    uint8_t *lk_listener_slot(uint8_t *hdr, uint32_t i)
    int lk_listener_table_sound(const uint8_t *hdr)
    int lk_listener_sweep(uint8_t *hdr, uint32_t self)
    int lk_listener_claim(uint8_t *hdr, uint32_t self, uint64_t min_interval_ns)
    int lk_listener_release(uint8_t *hdr, uint32_t i, uint32_t self)
    enum:
        LK_TOKEN_STATE_SHIFT
        LK_TOKEN_ATTEMPT_SHIFT
    uint64_t LK_TOKEN_ATTEMPT_MASK
    uint64_t lk_token_make(uint32_t state, uint64_t attempt, uint64_t pid)
    uint32_t lk_token_state(uint64_t t)
    uint64_t lk_token_attempt(uint64_t t)
    uint32_t lk_token_pid(uint64_t t)
    uint64_t lk_token_load(const uint8_t *base)
    int lk_token_claim(uint8_t *base, uint64_t expected, uint64_t desired)

cdef extern from "lk_atomic.h" nogil:
    uint64_t lk_reserve_word_load_relaxed(const uint64_t *w)
    uint64_t lk_reserve_word_load_exclusive(uint64_t *w)
    uint64_t lk_reserve_word_load_acquire(const uint64_t *w)
    int lk_reserve_word_cas(uint64_t *w, uint64_t *expected, uint64_t desired)
    void lk_reserve_word_store_release(uint64_t *w, uint64_t v)
    uint64_t lk_token_load_acquire(const uint64_t *w)
    int lk_token_cas(uint64_t *w, uint64_t *expected, uint64_t desired)
    void lk_state_store_release(uint64_t *w, uint64_t v)
    uint64_t lk_state_load_acquire(const uint64_t *w)
    int lk_state_cas(uint64_t *w, uint64_t *expected, uint64_t desired)
    void lk_counter_add_relaxed(uint64_t *c, uint64_t n)
    uint64_t lk_counter_load_relaxed(const uint64_t *c)
    void lk_hint_store_relaxed(uint64_t *h, uint64_t v)
    void lk_word_store_release(uint64_t *w, uint64_t v)
    uint64_t lk_word_load_acquire(const uint64_t *w)
    uint64_t lk_hint_load_relaxed(const uint64_t *h)
    int lk_service_word_cas(uint64_t *w, uint64_t *expected, uint64_t desired)
    void lk_waiters_enter(uint32_t *w)
    void lk_waiters_leave(uint32_t *w)
    uint32_t lk_waiters_load_seq_cst(const uint32_t *w)
    void lk_wake_word_bump(uint32_t *w)
    uint32_t lk_wake_word_load_acquire(const uint32_t *w)
    uint32_t lk_listener_pid_load_acquire(const uint32_t *pid)
    void lk_listener_field_store_relaxed(uint64_t *f, uint64_t v)
    uint64_t lk_listener_field_load_relaxed(const uint64_t *f)

cdef extern from "lk_futex.h" nogil:
    enum:
        LK_HAVE_FUTEX
        LK_FUTEX_WOKEN
        LK_FUTEX_TIMEOUT
        LK_FUTEX_INTERRUPTED
    uint64_t lk_wake_syscalls
    int64_t lk_monotonic_ns()
    int lk_sleep_ns(int64_t ns)
    int lk_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns)
    void lk_futex_wake_all(uint32_t *word)
    int lk_pid_gone(uint32_t pid)

cdef extern from "lk_crc32c.h" nogil:
    void lk_crc32c_setup()
    uint32_t lk_crc32c(uint32_t crc, const void *buf, size_t n)
    int lk_crc32c_using_hardware()
    void lk_crc32c_force_software(int force)

cdef extern from "lk_sys.h" nogil:
    void lk_sys_setup()
    uint32_t lk_process_id()
    uint32_t lk_process_start()
    uint32_t lk_proc_start(uint32_t pid)
    int lk_identity_gone(uint32_t pid, uint32_t start)
    uint32_t lk_thread_id()
    int64_t lk_now_ns()

cdef extern from "lk_record.h" nogil:
    # The record payload (docs/format.md, "The record payload"): what a
    # Python log record carries besides its text, a message's data of class
    # "record".  lk_record_parse bounds every length by the data's size.
    enum:
        LK_RECORD_VERSION
        LK_RECORD_HEADER
        LK_RECORD_NAME_MAX
    ctypedef struct lk_record_view:
        uint32_t logger, module, function, path
        uint32_t logger_len, module_len, function_len, path_len
        uint32_t line
        uint32_t fields, fields_len
        uint32_t traceback, traceback_len
    int lk_record_parse(const uint8_t *p, uint64_t n, lk_record_view *v)
    uint64_t lk_record_size(uint64_t logger, uint64_t module, uint64_t function,
                            uint64_t path, uint64_t fields, uint64_t traceback)
    void lk_record_put(uint8_t *out, const char *logger, uint16_t logger_len,
                       const char *module, uint16_t module_len, const char *function, uint16_t function_len,
                       const char *path, uint16_t path_len, uint32_t line,
                       const char *fields, uint32_t fields_len, const char *traceback, uint32_t traceback_len)


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
    # Sealing (format version 2): `sealed` is what the header says; with the
    # key, `has_key` is set, seal_key_id is the header's key id and seal_key
    # the segment key, derived from the key and seal_uuid (the header's UUID
    # when the key was derived).  A writer of a sealed segment uses
    # lk_write_sealed(..., seg.seal_key_id, seg.seal_key, seg.seal_uuid, ...)
    # when seg.sealed and seg.has_key; LK_REKEY from it means the region was
    # formatted again (a partition half reused): call seg.rekey() and retry.
    # A sealed segment without its key must not be written (write refuses).
    cdef readonly bint sealed
    cdef readonly bint has_key
    cdef uint16_t seal_key_id
    cdef uint8_t seal_key[32]
    cdef uint8_t seal_uuid[16]
    cdef object _key_given         # what use_key() was given (KeyRing or pair), for rekey()
    cdef readonly object key_check_problem   # None, or why the key was taken though its check differs
    # Waiting (wait(), listen()): where the waiter count, wake word and its
    # listener slot are written.  A writable segment writes its own header;
    # a read-only one maps its file's header page writable on first use.
    cdef uint8_t *_hdr             # NULL: not yet looked for, or not possible
    cdef bint _hdr_tried
    cdef object _wake_mmap         # that writable header mapping, else None
    cdef Py_buffer _wake_view
    cdef bint _has_wake_view
    cdef int _slot                 # listener slot index, -1: not listed
    cdef uint32_t _slot_pid        # the pid that claimed it (a forked child is not listed)
    cdef uint64_t _min_interval_ns
    cdef int64_t _last_wake_mono   # monotonic ns of the last wait() that found something
    cdef int64_t _listen_retry_at  # table was full: do not scan it again before this
    cdef int _slot_waits           # wait() calls using the slot now (0 or 1)
    cdef bint _release_after_wait  # closed during a wait: that wait gives the slot back
    cdef uint64_t _wait_calls, _wait_sleeps, _wait_ready, _wait_timeouts
    cdef uint32_t _cancel       # set by cancel_waits(), read by the wait loop ([C1] in lk_segment.h)

    cdef int _check_open(self) except -1
    cdef int _check_writable(self) except -1
    cdef int raise_status(self, int rc, uint64_t need) except -1



cdef class SegmentRepair:
    # The repair primitives of one segment (segment_repair.pxi): salvage's.
    cdef readonly Segment segment
    cdef void _restore_uuid(self) noexcept
    cdef int64_t _next_good_record(self, uint64_t q) except -2


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
    cdef object _plain          # sealed: the opened private copy of the message, once read
    cdef object _opened(self)
    cdef const uint8_t *_ptr(self) except NULL
    @staticmethod
    cdef Message make_at(Segment seg, uint64_t offset)


cdef class Reservation:
    cdef readonly Segment segment
    cdef readonly uint64_t offset
    cdef readonly uint64_t sequence
    cdef lk_claim _claim        # the claim as reserved: finish and abandon use only this
    cdef bytes _cls             # keeps _claim.cls alive
    cdef uint64_t _text_len
    cdef uint64_t _data_len
    cdef uint64_t _cls_len
    cdef bint _done
    cdef bint _sealed
    cdef object _text_view
    cdef object _data_view
    cdef _release_views(self)
