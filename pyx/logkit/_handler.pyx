# cython: binding=False, always_allow_keywords=False, embedsignature=True, embedsignature.format=clinic
# (This file differs from the setup.py directives on purpose: Emitter.handle is
# called once per log record by logging's callHandlers, and a plain METH_O C
# method bound to its object is the cheapest call CPython has; a binding
# cyfunction with keyword parsing costs tens of ns more.  The embedded
# clinic-style signatures keep inspect.signature working without binding.)
# The hot path of logkit.Handler: LogRecord -> (text, severity, time, data)
# -> one segment write, without the stdlib handler lock and with as little
# Python work as a record allows.  logkit/handler.py is the class users see;
# it binds `handle` below as its method and hands it a sink.
#
# A FamilySink writes straight into the family writer's live segment with
# lk_write (the C-level API of logkit._segment; lk_write_sealed when the live
# segment is sealed) and falls back to the
# writer's Python slow path only when the segment is full or rotated.  Any
# other transport is called through its Python `write`.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t, int16_t
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.contextvars cimport get_value as _ctx_get
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_Format
from cpython.long cimport PyLong_FromUnsignedLongLong
from cpython.exc cimport PyErr_Clear

cdef extern from "Python.h":
    # PyUnicode_AsUTF8AndSize without Cython's exception check: NULL (with
    # UnicodeEncodeError set) for a str holding a lone surrogate.
    const char *_utf8_or_null "PyUnicode_AsUTF8AndSize" (object, Py_ssize_t *)

from logkit._segment cimport (
    Segment, lk_write, lk_write_sealed, lk_now_ns, lk_process_id, lk_thread_id, lk_message_size, LK_REKEY,
    LK_OK, LK_FULL, LK_OUT_OF_SERVICE, LK_SEVERITY_MIN, LK_SEVERITY_MAX, LK_TAG_SIZE,
    LK_RECORD_NAME_MAX, lk_record_size, lk_record_put,
)

import logging
import traceback

from logkit import inject
from logkit._segment import RECORD_CLASS as _RECORD_CLASS, fields_json as _fields_json, record_encode as _record_encode
from logkit.contextfields import FIELDS as _FIELDS

# The attributes every LogRecord has; anything more came from `extra=`.
# (Python 3.12 adds taskName; the set is taken from a real record, so it is
# right for the running interpreter.)
_STANDARD = frozenset(logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None).__dict__) | {
    "message", "asctime", "exc_text", "stack_info", "taskName"}
cdef Py_ssize_t _STANDARD_LEN = len(logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None).__dict__)
_LogRecord = logging.LogRecord
_NO_FIELDS = {}
cdef bytes _RECORD_CLASS_B = _RECORD_CLASS.encode("ascii")
cdef const char *_RECORD_CLASS_UTF8 = _RECORD_CLASS_B
cdef Py_ssize_t _RECORD_CLASS_LEN = len(_RECORD_CLASS_B)
_Formatter_format = logging.Formatter.format


cdef class FamilySink:
    """Writes records into a FamilyWriter's live segment from C.

    Lifetime (a Handler may be closed, or replaced by dictConfig, while other
    threads are in the middle of a write): every caller holds its own strong
    reference to the sink for the whole call (Emitter._emit takes one before
    it starts), and put() holds one to the Segment it writes into, so
    dropping the handler's references frees nothing a write in progress
    still touches.  The mapping itself: see [H1] in put()."""
    cdef public object writer       # logkit.family.FamilyWriter (slow path, rotation)
    cdef Segment seg                # the writer's live segment when last seen

    def __init__(self, writer):
        self.writer = writer
        self.seg = writer.segment

    cpdef object write(self, text, int severity, data, data_class, int64_t time):
        """One message; returns its sequence number."""
        cdef uint64_t seq = 0
        if self.put(text, severity, data, data_class, time, &seq):
            return self._slow(text, severity, data, data_class, time)
        return PyLong_FromUnsignedLongLong(seq)

    cdef int put(self, object text, int severity, object data, object data_class, int64_t time,
                 uint64_t *seq) except -1:
        """Write from C: 0 when written (sequence in *seq), 1 when the caller
        must take the slow path (the segment is full, rotated, or the
        arguments are not the plain str/bytes this path handles)."""
        # The cached segment stays right until it refuses a write (full or
        # out of service: rotated); the slow path then moves the writer on
        # and the cache follows it.
        cdef const char *cp = NULL
        cdef Py_ssize_t cn = 0
        cdef const char *dp = NULL
        cdef Py_ssize_t dn = 0
        if type(text) is not str or (data and type(data) is not bytes):
            return 1
        if data:
            dp = <bytes>data
            dn = len(<bytes>data)
            cp = PyUnicode_AsUTF8AndSize(data_class, &cn)
        return self.put_raw(text, severity, dp, dn, cp, cn, time, seq)

    cdef int put_raw(self, str text, int severity, const char *dp, Py_ssize_t dn, const char *cp,
                     Py_ssize_t cn, int64_t time, uint64_t *seq) except -1:
        """put() with the data and its class as bytes the caller keeps alive
        for the call (a record payload built on the C stack)."""
        cdef Segment seg = self.seg     # a strong reference for the whole call
        cdef const char *tp
        cdef Py_ssize_t tn
        cdef int rc
        tp = PyUnicode_AsUTF8AndSize(text, &tn)
        # [H1] From this load of seg.base to the end of lk_write no Python
        # code runs (the conversions above may allocate, and so run the GC
        # and finalizers, which may switch threads: they are done first) and
        # the GIL is held, so Segment.close() in another thread, which needs
        # the GIL, cannot unmap the region or wipe the key in between; after
        # a close, base is NULL and the slow path reports it.  Releasing the
        # GIL around lk_write would need a buffer view on the mapping held
        # across the call (the core's "a view keeps the mapping" rule).
        if seg.base == NULL or seg.readonly:
            return 1
        if not seg.sealed:
            rc = lk_write(seg.base, seg.size, tp, tn, dp, dn, cp, cn, <int16_t>severity, time, lk_now_ns(), seq)
        elif seg.has_key:
            # A sealed segment (the log has a key_file): sealed in C, in the
            # same reserve-copy-finish as lk_write (docs/security.md).
            rc = lk_write_sealed(seg.base, seg.size, tp, tn, dp, dn, cp, cn, <int16_t>severity, time,
                                 lk_now_ns(), lk_process_id(), lk_thread_id(), seg.seal_key_id,
                                 seg.seal_key, seg.seal_uuid, seq)
        else:
            return 1                     # sealed without the key: the slow path refuses
        if rc == LK_OK:
            return 0
        if rc == LK_FULL or rc == LK_OUT_OF_SERVICE or rc == LK_REKEY:
            return 1                     # the slow path rotates (or derives the new key)
        # The size the segment refused, as Segment.write reports it.
        seg.raise_status(rc, lk_message_size(tn + (LK_TAG_SIZE if seg.sealed else 0), dn, cn))
        return -1

    cdef object _slow(self, text, int severity, data, data_class, int64_t time):
        inject.point("handler.sink.slow")
        seq = self.writer.write(text, severity, data, data_class, time)
        self.seg = self.writer.segment
        return seq


cdef inline int _severity(object levelno):
    # logging levels are ints 0..50 by default; custom ones are clamped into
    # the severity range rather than refused (a log call must not fail on it).
    cdef long lv
    try:
        lv = levelno
    except (TypeError, OverflowError):
        return 0
    if lv < LK_SEVERITY_MIN:
        return LK_SEVERITY_MIN
    if lv > LK_SEVERITY_MAX:
        return LK_SEVERITY_MAX
    return <int>lv


cdef object _message_text(object fmt, object record, dict d):
    """The text of a record: the plain message, or the Formatter's output.

    With a stock logging.Formatter the traceback is left out of the text (it
    is stored as binary data of class 'traceback' instead); a Formatter
    subclass that overrides format() is used as it is."""
    if fmt is None:
        msg = d["msg"]
        if type(msg) is not str:
            msg = str(msg)
        args = d["args"]
        if args:
            return PyUnicode_Format(msg, args)
        return msg
    if type(fmt).format is _Formatter_format:
        record.message = record.getMessage()
        if fmt.usesTime():
            record.asctime = fmt.formatTime(record, fmt.datefmt)
        return fmt.formatMessage(record)
    return fmt.format(record)


cdef object _exc_of(dict d):
    """The record's exception as (type, value, traceback), or None: exc_info
    may be a tuple, an exception, or True (the one being handled now)."""
    exc = d["exc_info"]
    if not exc:
        return None
    if exc is True:
        import sys
        exc = sys.exc_info()
    if isinstance(exc, BaseException):
        exc = (type(exc), exc, exc.__traceback__)
    return exc if exc and exc[0] is not None else None


cdef object _traceback_of(dict d, object record):
    """The traceback (and stack) text of a record, or None."""
    tb = None
    exc = _exc_of(d)
    if exc is not None:
        tb = "".join(traceback.format_exception(*exc))
    elif d.get("exc_text"):
        tb = d["exc_text"]
    if d["stack_info"]:
        tb = (tb + "\n" if tb else "") + d["stack_info"]
    return tb


cdef object _fields_of(dict d, object record, dict bound):
    """The record's fields: those bound in its context (logkit.bind), then
    its extra= attributes (which win), then exc_type and exc_message for an
    exception (unless extra= gave them).  None when there are none."""
    cdef dict out = None
    if bound:
        out = dict(bound)
    if len(d) > _STANDARD_LEN:
        for k, v in d.items():
            if k not in _STANDARD:
                if out is None:
                    out = {}
                out[k] = v
    exc = _exc_of(d)
    if exc is not None:
        if out is None:
            out = {}
        if "exc_type" not in out:
            out["exc_type"] = exc[0].__name__
        if "exc_message" not in out:
            out["exc_message"] = str(exc[1]) if exc[1] is not None else ""
    return out


cdef inline const char *_utf8(object s, Py_ssize_t *n):
    """UTF-8 of a str (the cached form: no copy for most names), cut to a
    record name's limit; NULL for anything else or a str holding a lone
    surrogate (the caller takes the Python path, logkit.record_encode)."""
    cdef const char *p
    if type(s) is not str:
        return NULL
    p = _utf8_or_null(s, n)
    if p == NULL:
        PyErr_Clear()
        return NULL
    if n[0] > LK_RECORD_NAME_MAX:
        n[0] = LK_RECORD_NAME_MAX
    return p


DEF _STACK_PAYLOAD = 1024       # a record payload up to this size is built on the C stack


cdef object _record_payload(dict d, object record, dict bound, uint8_t *out, Py_ssize_t cap,
                            Py_ssize_t *size):
    """The record payload (docs/format.md, "The record payload"): logger
    name, source location, fields, traceback.  Built in C into `out` (cap
    bytes) when it fits: returns None and its size in *size.  Else (larger,
    or a name that is not a plain str) returns it as a new bytes object."""
    cdef Py_ssize_t ln, mn, fnl, pn
    cdef const char *lp = _utf8(d["name"], &ln)
    cdef const char *mp = _utf8(d["module"], &mn)
    cdef const char *fp = _utf8(d["funcName"], &fnl)
    cdef const char *pp = _utf8(d["pathname"], &pn)
    cdef long lineno
    try:
        lineno = d["lineno"]
    except (TypeError, OverflowError, KeyError):
        lineno = 0
    if lineno < 0 or lineno > 0xFFFFFFFF:
        lineno = 0
    cdef bytes fj = b""
    cdef bytes tb = b""
    fields = None
    tbs = None
    if bound or len(d) > _STANDARD_LEN or d["exc_info"]:
        fields = _fields_of(d, record, bound)
        if fields:
            fj = _fields_json(fields)
    if d["exc_info"] or d["stack_info"] or d.get("exc_text"):
        tbs = _traceback_of(d, record)
        if tbs is not None:
            tb = (<str>tbs).encode("utf-8", "backslashreplace")
    if lp == NULL or mp == NULL or fp == NULL or pp == NULL:
        def text(v):
            return v if isinstance(v, str) or v is None else str(v)
        return _record_encode(text(d["name"]), text(d["module"]), text(d["funcName"]), lineno,
                              text(d["pathname"]), fields, tbs)
    cdef uint64_t n = lk_record_size(ln, mn, fnl, pn, len(fj), len(tb))
    if n == 0:
        raise ValueError("record payload larger than 4 GiB")
    b = None
    if <Py_ssize_t>n > cap:
        b = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>n)
        out = <uint8_t *>PyBytes_AS_STRING(b)
    lk_record_put(out, lp, <uint16_t>ln, mp, <uint16_t>mn, fp, <uint16_t>fnl,
                  pp, <uint16_t>pn, <uint32_t>lineno, fj, <uint32_t>len(fj), tb, <uint32_t>len(tb))
    size[0] = <Py_ssize_t>n
    return b


cdef class Emitter:
    """The handler's write path as one object, installed as the handler's
    `handle` and `emit` (instance attributes), so a record costs no lookups
    on the handler: the filters list, the formatter and the sink are held
    here (Handler.setFormatter keeps `formatter` current; addFilter mutates
    the same list)."""
    cdef public object handler
    cdef public list filters
    cdef public object formatter
    cdef public FamilySink sink      # or None (the handler is closed, or writes through `write`)
    cdef public object write         # the transport's write, used when sink is None
    cdef public bint emit_only       # emit(): skip the filters

    def __init__(self, handler, sink, write, bint emit_only=False):
        self.handler = handler
        self.filters = handler.filters
        self.formatter = handler.formatter
        self.sink = sink
        self.write = write
        self.emit_only = emit_only

    def __call__(self, record):
        """The same as handle(record)."""
        return self.handle(record)

    def handle(self, record):
        """handle(record) (or emit(record)): filter, then write without a lock.

        The handler's `handle` attribute is this bound method: a one-argument
        C method is the cheapest thing for logging's callHandlers to call.

        Every write is lock-free (one reservation in shared memory), so the
        lock the stdlib takes around emit() would only serialise threads for
        nothing.  Failures go to handleError(), never into the application."""
        if self.filters and not self.emit_only:
            rv = self.handler.filter(record)
            if not rv:
                return rv
            if isinstance(rv, _LogRecord):
                record = rv
        try:
            self._emit(record)
        except RecursionError:
            raise
        except Exception:
            self.handler.handleError(record)
        return True

    cdef object _emit(self, object record):
        # Fields are read from the record's __dict__ (where LogRecord keeps
        # them): cheaper than attribute lookups, which search the class first.
        cdef dict d = record.__dict__
        cdef object text, data = b"", cls = ""
        cdef int64_t t
        text = _message_text(self.formatter, record, d)
        if type(text) is str and _utf8_or_null(text, NULL) == NULL:
            # A lone surrogate cannot be UTF-8: written as its escape (\udcXX),
            # as logging.basicConfig's errors='backslashreplace' does, never
            # refused (the UTF-8 form is cached in the str: the write reuses it).
            PyErr_Clear()
            text = (<str>text).encode("utf-8", "backslashreplace").decode("utf-8")
        cdef uint8_t stack[_STACK_PAYLOAD]
        cdef Py_ssize_t dn = 0
        big = _record_payload(d, record, <dict>_ctx_get(_FIELDS, _NO_FIELDS), stack, _STACK_PAYLOAD, &dn)
        cdef const char *dp = <const char *>stack
        if big is not None:
            dp = PyBytes_AS_STRING(big)
            dn = len(<bytes>big)
        cls = _RECORD_CLASS
        t = <int64_t>(<double>d["created"] * 1000000000.0)
        cdef uint64_t seq
        cdef int sev = _severity(d["levelno"])
        # A local (strong) reference: close() may set self.sink to None from
        # another thread at any point of this call, which must not free the
        # sink under it (nor turn the second use into a call on None).
        cdef FamilySink sink = self.sink
        if sink is not None and type(text) is str:
            if sink.put_raw(text, sev, dp, dn, _RECORD_CLASS_UTF8, _RECORD_CLASS_LEN, t, &seq) == 0:
                return None
            data = PyBytes_FromStringAndSize(dp, dn)
            sink._slow(text, sev, data, cls, t)
            return None
        data = PyBytes_FromStringAndSize(dp, dn)
        return self.write(text, sev, data, cls, t)
