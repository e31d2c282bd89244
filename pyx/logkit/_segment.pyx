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
