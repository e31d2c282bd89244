# The record payload (included by _segment.pyx): what a Python log record
# carries besides its text -- logger name, source location, fields, the
# traceback -- stored as a message's data of class "record" (layout:
# pyx/include/lk_record.h, docs/format.md "The record payload").
#
# record_encode() builds one from Python (the handler builds it in C:
# logkit._handler); record_info() reads what any message carries, whatever
# wrote it: a record payload, or the older data classes "json" (extra
# fields) and "traceback".  Readers never raise on a payload: one that does
# not parse reads as no record (its bytes stay readable as data).

import json as _json_mod

RECORD_CLASS = "record"
RECORD_VERSION = LK_RECORD_VERSION

RecordInfo = namedtuple("RecordInfo", "logger module function line path fields traceback",
                        module="logkit._segment")
RecordInfo.__doc__ = """What a message carries besides its text: the logger's name, the
source location (module, function, line, path), the fields (a dict, values
with their JSON types) and the traceback text (None: none).  "" or 0 for
what the writer did not give."""

_NO_RECORD = RecordInfo("", "", "", 0, "", {}, None)


cdef bytes _name_bytes(object s, str what):
    if s is None:
        return b""
    if not isinstance(s, str):
        raise InvalidArgument(f"record {what} must be a str, not {type(s).__name__}")
    b = (<str>s).encode("utf-8", "backslashreplace")
    if len(b) > LK_RECORD_NAME_MAX:
        b = b[:LK_RECORD_NAME_MAX].decode("utf-8", "ignore").encode("utf-8")
    return b


cdef bytes _name_bytes_long(object s):
    if not isinstance(s, str):
        raise InvalidArgument(f"record traceback must be a str, not {type(s).__name__}")
    return (<str>s).encode("utf-8", "backslashreplace")


def fields_json(fields):
    """The UTF-8 JSON object text of `fields` as the record payload stores
    it (b"" for none): keys as str, values that JSON cannot hold as their
    repr(), a lone surrogate as its escape."""
    if not fields:
        return b""
    if not isinstance(fields, dict):
        raise InvalidArgument(f"record fields must be a dict, not {type(fields).__name__}")
    return _json_mod.dumps({str(k): v for k, v in fields.items()}, default=repr, ensure_ascii=False,
                           separators=(",", ":")).encode("utf-8", "backslashreplace")


def record_encode(logger="", module="", function="", line=0, path="", fields=None, traceback=None):
    """The record payload (bytes) for these parts: store it as data of class
    RECORD_CLASS.  Names longer than 65,535 bytes are cut; InvalidArgument
    for a part of the wrong type."""
    cdef bytes lg = _name_bytes(logger, "logger")
    cdef bytes mo = _name_bytes(module, "module")
    cdef bytes fu = _name_bytes(function, "function")
    cdef bytes pa = _name_bytes(path, "path")
    cdef bytes fj = fields_json(fields)
    cdef bytes tb = b"" if traceback is None else _name_bytes_long(traceback)
    try:
        ln = int(line or 0)
    except (TypeError, ValueError):
        raise InvalidArgument(f"record line must be an int, not {line!r}") from None
    cdef uint32_t lno = ln if 0 <= ln <= 0xFFFFFFFF else 0
    cdef uint64_t n = lk_record_size(len(lg), len(mo), len(fu), len(pa), len(fj), len(tb))
    if n == 0:
        raise InvalidArgument("record payload larger than 4 GiB")
    out = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>n)
    lk_record_put(<uint8_t *>PyBytes_AS_STRING(out), lg, len(lg), mo, len(mo), fu, len(fu), pa, len(pa),
                  lno, fj, len(fj), tb, len(tb))
    return out


cdef str _part(const uint8_t *p, uint32_t at, uint32_t n):
    return PyUnicode_DecodeUTF8(<const char *>(p + at), n, "replace") if n else ""


def record_decode(data):
    """The RecordInfo of a record payload (bytes-like), or None if the bytes
    are not one (a reader shows them as data instead).  Fields that are not
    a JSON object read as {"fields": <their text>}."""
    cdef lk_record_view v
    b = bytes(data)            # a private copy: another process may rewrite the mapping
    if len(b) < LK_RECORD_HEADER:
        return None
    cdef const uint8_t *p = <const uint8_t *>PyBytes_AS_STRING(b)
    if not lk_record_parse(p, len(b), &v):
        return None
    fields = {}
    if v.fields_len:
        ftext = _part(p, v.fields, v.fields_len)
        try:
            fields = _json_mod.loads(ftext)
        except ValueError:
            fields = {"fields": ftext}
        if not isinstance(fields, dict):
            fields = {"fields": fields}
    return RecordInfo(_part(p, v.logger, v.logger_len), _part(p, v.module, v.module_len),
                      _part(p, v.function, v.function_len), v.line, _part(p, v.path, v.path_len),
                      fields, _part(p, v.traceback, v.traceback_len) if v.traceback_len else None)


def record_info(data_class, data):
    """What a message with this data carries besides its text, as a
    RecordInfo: a record payload decoded; data of class "json" holding an
    object (what logkit.Handler wrote before record payloads) as its
    fields, its "traceback" key as the traceback; data of class "traceback"
    as the traceback; anything else (or a payload that does not parse) as
    an empty RecordInfo.  Never raises on the bytes."""
    if not data:
        return _NO_RECORD
    if data_class == RECORD_CLASS:
        got = record_decode(data)
        return _NO_RECORD if got is None else got
    if data_class == "json":
        try:
            obj = _json_mod.loads(bytes(data).decode("utf-8", "replace"))
        except ValueError:
            return _NO_RECORD
        if not isinstance(obj, dict):
            return _NO_RECORD
        tb = obj.pop("traceback", None)
        return RecordInfo("", "", "", 0, "", obj, tb if isinstance(tb, str) else None)
    if data_class == "traceback":
        return RecordInfo("", "", "", 0, "", {}, bytes(data).decode("utf-8", "replace"))
    return _NO_RECORD
