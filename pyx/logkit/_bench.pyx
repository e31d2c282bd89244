# Benchmark floors for bench/bench_segment.py, written against the C-level API
# exported by _segment.pxd (this module is also the proof that another Cython
# module can cimport reserve/finish and call them with no Python overhead).
from libc.stdint cimport uint8_t, uint64_t, int64_t
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

from logkit._segment cimport (
    Segment, lk_reserve, lk_finish, lk_write, lk_now_ns, lk_state_store_release,
    lk_state_word, lk_reserve_word_load_exclusive, lk_reserve_word_cas,
    LK_OK, LK_MSG_HEADER, LK_STATE_COMMITTED,
)


cdef inline int _bare(Segment seg, const char *p, uint64_t n) noexcept nogil:
    # reserve + copy + commit, no checksum: the cost of the lock-free core alone
    cdef uint64_t off, seq
    cdef int rc = lk_reserve(seg.base, seg.size, n, 0, NULL, 0, &off, &seq)
    if rc != LK_OK:
        return rc
    memcpy(seg.base + off + LK_MSG_HEADER, p, n)
    lk_state_store_release(<uint64_t *>(seg.base + off), lk_state_word(LK_STATE_COMMITTED))
    return LK_OK


cdef int _usable(Segment seg) except -1:
    if seg.base == NULL or seg.readonly:
        raise ValueError("segment is closed or read-only")
    return 0


def bare_write(Segment seg not None, bytes payload not None):
    """One bare reserve + copy + commit, called from Python.  Returns the status."""
    _usable(seg)
    return _bare(seg, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))


def bare_loop(Segment seg not None, bytes payload not None, Py_ssize_t n):
    """n bare steps in a Cython loop; returns how many succeeded."""
    _usable(seg)
    cdef const char *p = PyBytes_AS_STRING(payload)
    cdef uint64_t ln = PyBytes_GET_SIZE(payload)
    cdef Py_ssize_t i, ok = 0
    with nogil:
        for i in range(n):
            if _bare(seg, p, ln) == LK_OK:
                ok += 1
    return ok


def write_loop(Segment seg not None, bytes payload not None, Py_ssize_t n, int severity=20):
    """n full writes (reserve, copy, checksum, commit) in a Cython loop."""
    _usable(seg)
    cdef int64_t now
    cdef const char *p = PyBytes_AS_STRING(payload)
    cdef uint64_t ln = PyBytes_GET_SIZE(payload)
    cdef uint64_t seq
    cdef Py_ssize_t i, ok = 0
    with nogil:
        for i in range(n):
            now = lk_now_ns()
            if lk_write(seg.base, seg.size, p, ln, NULL, 0, NULL, 0, severity, now, now, &seq) == LK_OK:
                ok += 1
    return ok


def shared_word_loop(unsigned char[::1] buf not None, Py_ssize_t n):
    """n compare-and-swap increments of the 64-bit word at the start of `buf`
    (a MAP_SHARED mapping), with the same load-exclusive + CAS loop that
    lk_reserve_at uses and nothing else: no message, no checksum.  Run in two
    processes on one file, it measures how many reservations a second one
    shared word can hand out at all on this machine (the contention ceiling);
    returns how many CAS attempts failed."""
    if buf.shape[0] < 8:
        raise ValueError("buffer must hold at least 8 bytes")
    cdef uint64_t *w = <uint64_t *>&buf[0]
    cdef uint64_t v
    cdef Py_ssize_t i, failed = 0
    with nogil:
        for i in range(n):
            v = lk_reserve_word_load_exclusive(w)
            while not lk_reserve_word_cas(w, &v, v + 1):
                failed += 1
    return failed
