"""Plainfile's two line formats: escaping, the header line, encoding a record
as a text or JSON line and parsing one back (PlainMessage).  Used by the
storage (backends/plainfile.py) and the reader (backends/plainfile_reader.py);
docs/backend-plainfile.md describes the bytes."""
from __future__ import annotations

import base64
import binascii
import calendar
import json
import re
import time as _time
from datetime import datetime
from typing import Any

from logkit._segment import crc32c
from logkit.records import RecordParts

__all__ = ["PlainMessage", "encode_text_line", "encode_json_line", "parse_line", "header_line",
           "parse_header", "iso_time", "IsoCache", "VERSION", "SEVERITY_MIN", "SEVERITY_MAX",
           "TIME_MAX"]

SEVERITY_MIN, SEVERITY_MAX = -250, 250
TIME_MAX = (1 << 64) - 1          # as in a segment: an unsigned 64-bit count of ns
VERSION = 1

# ------------------------------------------------------------------ escaping

# Text format: a backslash, the C0 controls and DEL are escaped; everything
# else is written as UTF-8.  The data class also escapes ']' (it ends the class).
_ESC = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}
_ESC.update({ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
_CLASS_ESC = dict(_ESC)
_CLASS_ESC[ord("]")] = "\\x5d"
_needs_esc = re.compile(r"[\x00-\x1f\x7f\\]").search
_class_needs_esc = re.compile(r"[\x00-\x1f\x7f\\\]]").search
_UNESC_RE = re.compile(r"\\(x[0-9a-fA-F]{2}|.?)", re.S)
_UNESC = {"\\": "\\", "n": "\n", "r": "\r", "t": "\t"}
_RAW_CONTROL = re.compile(r"[\x00-\x1f\x7f]").search     # never raw in a text record


def _escape(s: str) -> str:
    return s.translate(_ESC) if _needs_esc(s) else s


def _escape_class(s: str) -> str:
    return s.translate(_CLASS_ESC) if _class_needs_esc(s) else s


def _unesc_one(m: re.Match) -> str:
    g = m.group(1)
    if len(g) == 3:
        return chr(int(g[1:], 16))
    try:
        return _UNESC[g]
    except KeyError:
        raise ValueError(f"bad escape '\\{g}'") from None


def _unescape(s: str) -> str:
    return _UNESC_RE.sub(_unesc_one, s) if "\\" in s else s


# ------------------------------------------------------------------ line formats

_HEADER_TEXT_RE = re.compile(rb"#logkit plainfile version=(\d+) base=(\d+)\n?")
_HEADER_JSON_RE = re.compile(rb'\{"logkit": "plainfile", "version": (\d+), "base": (\d+)\}\n?')
_TEXT_RE = re.compile(
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{9})Z (-?\d{1,3}) pid=(\d{1,10}) tid=(\d{1,20}) ")
_encode_string = json.encoder.encode_basestring      # the C one: '"...\\n..."', non-ASCII kept


def header_line(fmt: str, base: int) -> bytes:
    """The first line of a file whose line 1 has sequence `base`."""
    if fmt == "json":
        return b'{"logkit": "plainfile", "version": %d, "base": %d}\n' % (VERSION, base)
    return b"#logkit plainfile version=%d base=%d\n" % (VERSION, base)


def parse_header(line: bytes) -> int | None:
    """The base of a header line, or None if `line` is not one."""
    m = _HEADER_TEXT_RE.fullmatch(line) or _HEADER_JSON_RE.fullmatch(line)
    return int(m.group(2)) if m is not None and int(m.group(1)) == VERSION else None


class IsoCache:
    """iso_time as a callable object that keeps the ISO-8601 seconds prefix of
    the last second seen (one strftime a second); safe to share between threads."""
    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = (-1, "")        # one tuple, so threads never see a torn pair

    def __call__(self, t: int) -> str:
        sec, frac = divmod(t, 1_000_000_000)
        last = self.last
        if sec != last[0]:
            last = (sec, _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(sec)))
            self.last = last
        return f"{last[1]}.{frac:09d}Z"


def iso_time(t: int) -> str:
    """'2026-12-01T08:30:00.123456789Z' for `t` ns since the epoch (UTC)."""
    sec, frac = divmod(t, 1_000_000_000)
    return _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(sec)) + f".{frac:09d}Z"


def encode_text_line(t: int, severity: int, pid: int, tid: int, text: str,
                     data_class: str, data, iso=iso_time) -> bytes:
    """One record in the text format, newline included (checked arguments)."""
    body = f"{iso(t)} {severity} pid={pid} tid={tid} {_escape(text)}"
    if data or data_class:
        body += f"\t[{_escape_class(data_class)}]"
        if data:
            body += " " + binascii.b2a_base64(data, newline=False).decode("ascii")
    b = body.encode("utf-8")
    return b + b"\t%08x\n" % crc32c(b)


def encode_json_line(t: int, severity: int, pid: int, tid: int, text: str,
                     data_class: str, data, iso=iso_time) -> bytes:
    """One record in the JSON format, newline included (checked arguments)."""
    b64 = binascii.b2a_base64(data, newline=False).decode("ascii") if data else ""
    b = (f'{{"time": {t}, "iso": "{iso(t)}", "severity": {severity}, "pid": {pid}, '
         f'"tid": {tid}, "text": {_encode_string(text)}, '
         f'"data_class": {_encode_string(data_class)}, "data": "{b64}"').encode("utf-8")
    return b + b', "crc": "%08x"}\n' % crc32c(b)


class PlainMessage(RecordParts):
    """A message read back from a plain file (the fields of logkit.Message)."""
    __slots__ = ("sequence", "time", "severity", "process_id", "thread_id",
                 "text", "data_class", "data", "path")

    def __init__(self, sequence, time, severity, process_id, thread_id, text, data_class, data,
                 path=""):
        self.sequence = sequence
        self.time = time
        self.severity = severity
        self.process_id = process_id
        self.thread_id = thread_id
        self.text = text
        self.data_class = data_class
        self.data = data
        self.path = path

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if k != "path"}

    def __repr__(self) -> str:
        return (f"PlainMessage(sequence={self.sequence}, time={self.time}, "
                f"severity={self.severity}, text={self.text!r})")


_seconds_cache: dict[str, int] = {}


def _seconds(stamp: str) -> int:
    """Seconds since the epoch of 'YYYY-MM-DDTHH:MM:SS' (ValueError if no such time)."""
    s = _seconds_cache.get(stamp)
    if s is None:
        d = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S")
        s = calendar.timegm(d.timetuple())
        if len(_seconds_cache) > 4096:
            _seconds_cache.clear()
        _seconds_cache[stamp] = s
    return s


def _parse_text(s: str) -> tuple:
    m = _TEXT_RE.match(s)
    if m is None:
        raise ValueError("not a text record (time, severity, pid=, tid= expected)")
    stamp, frac, sev, pid, tid = m.groups()
    rest = s[m.end():]
    text, tab, tail = rest.partition("\t")
    if _RAW_CONTROL(text) or _RAW_CONTROL(tail):
        raise ValueError("raw control character in the record")
    data_class, data = "", b""
    if tab:
        end = tail.find("]")
        if not tail.startswith("[") or end < 0:
            raise ValueError("data part is not '[class]' or '[class] base64'")
        data_class = _unescape(tail[1:end])
        after = tail[end + 1:]
        if after:
            if after[0] != " " or len(after) < 2:
                raise ValueError("data part is not '[class]' or '[class] base64'")
            data = base64.b64decode(after[1:], validate=True)
    return (_seconds(stamp) * 1_000_000_000 + int(frac), int(sev), int(pid), int(tid),
            _unescape(text), data_class, data)


def _parse_json(s: str) -> tuple:
    o = json.loads(s)
    if not isinstance(o, dict):
        raise ValueError("not a JSON object")
    try:
        t, sev, pid, tid, text = o["time"], o["severity"], o["pid"], o["tid"], o["text"]
    except KeyError as e:
        raise ValueError(f"no {e.args[0]!r} key") from None
    cls, data = o.get("data_class", ""), o.get("data", "")
    for k, v in (("time", t), ("severity", sev), ("pid", pid), ("tid", tid)):
        if type(v) is not int:
            raise ValueError(f"{k!r} is not an integer")
    if not (isinstance(text, str) and isinstance(cls, str) and isinstance(data, str)):
        raise ValueError("'text', 'data_class' and 'data' must be strings")
    return t, sev, pid, tid, text, cls, base64.b64decode(data, validate=True)


_TEXT_CRC_RE = re.compile(rb"\t([0-9a-f]{8})")
_JSON_CRC_RE = re.compile(rb', "crc": "([0-9a-f]{8})"\}')


def parse_line(line: bytes) -> tuple:
    """(time, severity, pid, tid, text, data_class, data) of one record line in
    either format (the newline optional); ValueError says why a line is not one."""
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.startswith(b"{"):
        m = _JSON_CRC_RE.fullmatch(line, len(line) - 20)
        cut, close = len(line) - 20, b"}"
    else:
        m = _TEXT_CRC_RE.fullmatch(line, len(line) - 9)
        cut, close = len(line) - 9, b""
    if m is None or cut < 0:
        raise ValueError("no checksum at the end of the line (torn or edited)")
    body = line[:cut]
    if int(m.group(1), 16) != crc32c(body):
        raise ValueError("checksum mismatch (torn or edited)")
    s = (body + close).decode("utf-8")  # UnicodeDecodeError is a ValueError
    rec = _parse_json(s) if close else _parse_text(s)
    if not SEVERITY_MIN <= rec[1] <= SEVERITY_MAX:
        raise ValueError(f"severity {rec[1]} outside {SEVERITY_MIN}..{SEVERITY_MAX}")
    if not 0 <= rec[0] <= TIME_MAX:
        raise ValueError(f"time {rec[0]} outside 0..2**64-1")
    return rec
