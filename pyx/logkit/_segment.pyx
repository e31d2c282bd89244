# The segment core's object layer: Segment, Reservation, Message and the
# record walk, over the C primitives of pyx/include/lk_segment.h (which
# explains the reservation word, the message states and every ordering).
# Everything above this module (families, handler, tools) goes through it.
#
# The class body is the list of what a Segment does, with its docstrings;
# the longer bodies live in module functions over a typed Segment, one file
# per seam (Cython allows no include inside a class body):
#   segment_functions.pxi  header checks, sizes, the small helpers
#   segment_open.pxi       create / open / format / from_buffer, attach
#   segment_keys.pxi       use_key / rekey, the sealed write's re-derivation
#   segment_wait.pxi       listen / wait / cancel_waits, the listener slot
#   segment_read.pxi       records / find / limits / scan
#   segment_census.pxi     header() / stats()
#   segment_record.pxi     the record payload (logger, source, fields, traceback)
#   segment_repair.pxi     SegmentRepair, salvage's primitives
#   segment_message.pxi    Reservation, Message, SegmentIterator

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int16_t, int64_t, uintptr_t, UINT64_MAX
from libc.string cimport memcmp, memcpy, memset
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_WRITABLE, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
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
    write(), write_as(), write_steps() and the data-class name.  A str
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


include "segment_functions.pxi"
include "segment_keys.pxi"
include "segment_wait.pxi"
include "segment_read.pxi"
include "segment_open.pxi"
include "segment_census.pxi"
include "segment_record.pxi"


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
            _segment_release_slot(self, self._hdr)
        if self._has_wake_view:
            PyBuffer_Release(&self._wake_view)
            self._has_wake_view = False
        if self._has_view:
            PyBuffer_Release(&self._view)
            self._has_view = False

    # ------------------------------------------------------------ opening

    @staticmethod
    def _attach(owner, Py_ssize_t offset, length, bint readonly, path, mm, bint check=True):
        return _segment_attach(owner, offset, length, readonly, path, mm, check)

    def use_key(self, key):
        """Give a sealed segment its key: `key` is a (key_id, log_key) pair or
        a KeyRing (anything with .key(key_id)).  Derives the segment key once
        and checks it against the header's key check: WrongKey (naming the
        segment and the key id) when it differs.  A key that does not have the
        segment's key id leaves the segment without a key (readers show
        "[encrypted]"; writes are refused) and returns the MissingKey error
        instead of raising it.  Unsealed segments ignore the key."""
        return _segment_use_key(self, key)


    def rekey(self, key=None):
        """Read the header's sealing again and derive the segment key anew,
        from `key` or else the key given before: for a region formatted again
        in place (a partition half reused, with a new UUID and perhaps a new
        key id) since this object derived its key.  Raises WrongKey; returns
        the MissingKey error (not raised) as use_key() does, else None."""
        return _segment_rekey(self, key)

    def key_stale(self):
        """True if the header's sealing no longer matches what this object
        derived its key from (the region was formatted again in place)."""
        self._check_open()
        cdef bint hs = _header_sealed(self.base)
        return hs != self.sealed or (hs and memcmp(self.base + LK_H_UUID, self.seal_uuid, 16) != 0)



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
        return _segment_create(path, size, family, previous, sequence_base, mode, segment_uuid, key)

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
        return _segment_open(path, readonly, key, check_header)

    @staticmethod
    def _open_file(path, bint readonly, bint check):
        return _segment_open_file(path, readonly, check)

    @staticmethod
    def format(buffer, offset=0, length=None, family="", previous="", sequence_base=1,
               segment_uuid=None, key=None, *, zeroed=False):
        """Format a region of a writable buffer (e.g. an mmap) as an empty
        segment; key=(key_id, log_key) makes it sealed, as for create().
        zeroed=True: the caller vouches that every byte after the header is
        zero (a new file, never written): only the header is written, and
        a header that is not all zeros is refused (InvalidArgument): the
        region is not the blank one the caller thinks it is."""
        return _segment_format(buffer, offset, length, family, previous, sequence_base, segment_uuid, key,
                               zeroed)

    @staticmethod
    def from_buffer(buffer, offset=0, length=None, readonly=False, key=None, *, path=None,
                    close_buffer=False, check_header=True):
        """Attach to a segment already formatted in a region of `buffer`
        (key as for open()).  path: the name errors and repr use (e.g.
        "FILE@OFFSET").  close_buffer: the buffer is an mmap this segment
        owns and closes when it is closed.  check_header=False: attach
        whatever the header holds, as open(check_header=False) does (then no
        key)."""
        return _segment_from_buffer(buffer, offset, length, readonly, key, path, close_buffer, check_header)

    cdef int _check_open(self) except -1:
        if self.base == NULL:
            raise SegmentClosed(f"segment {self.path or ''} is closed".replace("  ", " "))
        return 0

    cdef int _check_writable(self) except -1:
        self._check_open()
        if self.readonly:
            raise ReadOnlySegment(f"segment {self.path} was opened read-only")
        return 0

    def prefault(self):
        """Fault the mapping in now so writers never take a page fault (about
        2 us per 4 KiB page here, more than ten writes).  MADV_POPULATE_WRITE
        where the kernel has it (5.14+); older kernels skip it."""
        cdef void *start
        cdef size_t length
        cdef int advice = _MADV_POPULATE_WRITE
        if self.base != NULL and not self.readonly:
            start = <void *>((<size_t>self.base) & ~(<size_t>4095))
            length = self.size + ((<size_t>self.base) & 4095)
            # Without the GIL: a family's preparer thread (logkit/family_prepare.py)
            # prefaults the next segment while this process's writers write on.
            # The caller holds this Segment (its view keeps the mapping).
            with nogil:
                madvise(start, length, advice)

    def close(self):
        """Release the mapping.  Views still held elsewhere keep the memory
        mapped until they are released; reads through Messages fail cleanly.
        Gives back this segment's listener slot (see listen())."""
        if self.base != NULL and self._slot >= 0:
            if self._slot_waits:
                self._release_after_wait = True     # the waiting thread gives it back
            else:
                _segment_release_slot(self, self._hdr)
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
        return _segment_stats(self)

    def header(self):
        """Every header field as a dict, for display and debugging."""
        return _segment_header(self)

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
            _segment_seal_ready(self)
        if not self.sealed:
            rc = lk_write(self.base, self.size, tp, tn, dp, dn, cp, cn, <int16_t>sev, t, now, &seq)
        else:
            rc = _segment_write_sealed(self, tp, tn, dp, dn, cp, cn, <int16_t>sev, t, now,
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
            _segment_seal_ready(self)
        if not self.sealed:
            rc = lk_write_as(self.base, self.size, tp, tn, dp, dn, cp, cn, <int16_t>sev,
                             time, lk_now_ns(), process_id, thread_id, &seq)
        else:
            rc = _segment_write_sealed(self, tp, tn, dp, dn, cp, cn, <int16_t>sev, time, lk_now_ns(),
                                    process_id, thread_id, &seq)
        if rc != LK_OK:
            self.raise_status(rc, lk_message_size(tn + (LK_TAG_SIZE if self.sealed else 0), dn, cn))
        _sigbus_check(self)       # written into a page the file lost: not acknowledged (lk_sigbus.h)
        return PyLong_FromUnsignedLongLong(seq)

    def write_steps(self, text, severity=20, data=b"", data_class="", time=None, on_step=None,
                    process_id=None, thread_id=None):
        """TEST ONLY: write() (or write_as() with process_id/thread_id) through
        the same inline C writer, calling ``on_step(name)`` after each step:
        "claimed" (space and sequence ours, no stub), "stub" (stub
        published), "copied" (payload copied) and "committed" (the commit CAS
        done, the written counter not yet).  What on_step raises cannot cross
        the C writer: it is kept and raised once the write returns.  The test
        harness (logkit.inject.write_stepwise) passes its injection points.
        Production writes pass a constant NULL hook, which the compiler
        removes.  Returns the sequence number; raises as write()."""
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
        ctx = [None, on_step]
        while True:
            if self.sealed:
                _segment_seal_ready(self)
                rc = lk_write_steps(self.base, self.size, tp, len(text), dp, len(data), cp, len(cls),
                                    <int16_t>sev, t, now, pid, tid, self.seal_key_id, self.seal_key,
                                    self.seal_uuid, &seq, _step_hook, <void *>ctx)
            else:
                rc = lk_write_steps(self.base, self.size, tp, len(text), dp, len(data), cp, len(cls),
                                    <int16_t>sev, t, now, pid, tid, 0, NULL, NULL, &seq,
                                    _step_hook, <void *>ctx)
            if rc != LK_REKEY:
                break
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
            _segment_seal_ready(self)
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
                _segment_seal_ready(self)
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




    def listen(self, min_interval=0.0):
        """Register this process in the segment's listener table, with the
        least time in seconds between two wake-ups that wait() will return
        (it does not wait again before that time has passed since it last
        found something).  Returns the slot index, or None when the table is
        full of live processes or this process cannot write the header;
        wait() works all the same, unlisted.  wait() calls listen() itself
        when the segment is not listed yet."""
        return _segment_listen(self, min_interval)

    def unlisten(self):
        """Give the listener slot back (close() does too).  The minimum
        interval set by listen() still applies to wait()."""
        return _segment_unlisten(self)

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
        return _segment_wait(self, offset, timeout, poll_interval)

    def cancel_waits(self):
        """End a wait() of this Segment object that another thread is in,
        at once, or else the next one: it returns False, as on a timeout.
        The flag is set, then every sleeper on the segment's futex is woken
        ([C1] in lk_segment.h: a cancel is never slept through; the other
        sleepers look again and sleep on).  A wait that polls notices it
        within its poll interval.  What FamilyReader.stop() uses."""
        return _segment_cancel_waits(self)

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
        return _segment_records(self, whole_region)


    def find(self, sequence=None, time=None):
        """The first finished message with sequence >= `sequence` (or time >= `time`, ns).

        Raises NoSuchMessage when there is none.
        """
        return _segment_find(self, sequence, time)

    def limits(self):
        """Limits(first_sequence, first_time, last_sequence, last_time) of the
        finished messages, exact at the moment of the call; None if there are none.
        Walks from the header's last-offset hint, so it costs a few messages."""
        return _segment_limits(self)

    def scan(self):
        """A read-only census: dict with committed (count), reserved (open
        reservations as (offset, sequence, pid) tuples), abandoned (sequence
        numbers accounted for by abandoned records), gaps and damaged (byte
        ranges as (start, end))."""
        return _segment_scan(self)

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


# The step names of Segment.write_steps (lk_segment.h, lk_write_steps).
STEP_NAMES = ("claimed", "stub", "copied", "committed")
_STEP_NAMES = {LK_STEP_CLAIMED: "claimed", LK_STEP_STUB: "stub",
               LK_STEP_COPIED: "copied", LK_STEP_COMMITTED: "committed"}


cdef void _step_hook(void *arg, int step) noexcept with gil:
    """Segment.write_steps's hook: calls its on_step with the step's name.
    An exception cannot cross the C writer: it is kept (the first one) and
    raised once the write returns."""
    cdef list ctx = <list>arg
    if ctx[1] is None:
        return
    try:
        ctx[1](_STEP_NAMES[step])
    except BaseException as e:
        if ctx[0] is None:
            ctx[0] = e


include "segment_message.pxi"
