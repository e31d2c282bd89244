"""Data-class formatters and the one-message layout of `logkit print`.

A message may carry binary ``data`` tagged with a ``data_class``; a formatter
turns the data of one class into text (MTB-666's format_XXXX_log_msg_).  This
module finds formatters by entry point, holds the built-ins, and defines
``format_message``, the reference for the CLI's output (docs/formatters.md).

The formatter contract
----------------------
A formatter is registered under the entry-point group ``logkit.formatters``;
the entry-point name is the data class it formats, the value a callable::

    def format_point(data: bytes, message) -> str: ...

``data`` is the message's data as ``bytes`` (never empty), ``message`` the
message itself (read ``sequence``, ``severity``, ``data_class``... if the
layout depends on them).  It returns the expansion: text, possibly several
lines, without a trailing newline (one is stripped if present).  The value
may also name a class: it is instantiated once, with no arguments, and the
instance is called as above.  A ``description`` attribute, or else the first
line of the docstring, is what ``available()`` lists.

A formatter that fails to load, raises, or returns something other than a
str is reported once on standard error (naming the entry point, its package
and the error), and the message is shown as a hex dump: a reader never
crashes on data it cannot format.

An installed entry point named like a built-in (json, traceback, utf8, hex,
octal) replaces it, unless it is logkit's own declaration of that built-in;
the built-ins work without any entry point installed.
"""
from __future__ import annotations

import base64
import json as _json
import re
import time as _time
from typing import Any, Callable, Collection
from logkit import registry
from logkit.console import say
from logkit._segment import RECORD_CLASS, record_decode

__all__ = [
    "GROUP", "BUILTINS", "Formatter", "available", "get", "expand", "format_message", "clear_cache",
    "severity_name",
    "format_json", "format_traceback", "format_record", "format_utf8", "format_hex", "format_octal",
]

GROUP = "logkit.formatters"

Formatter = Callable[[bytes, Any], str]


# ---------------------------------------------------------------- the built-ins

def format_hex(data: bytes, message: Any = None) -> str:
    """Hex dump: offset, 16 bytes in hex (two groups of 8), ASCII column (like hexdump -C)."""
    data = bytes(data)
    lines = []
    for off in range(0, len(data), 16):
        chunk = data[off:off + 16]
        left = " ".join("%02x" % b for b in chunk[:8])
        right = " ".join("%02x" % b for b in chunk[8:])
        text = chunk.translate(_ASCII_COLUMN).decode("ascii")
        lines.append("%08x  %-23s  %-23s  |%s|" % (off, left, right, text))
    return "\n".join(lines)


def format_octal(data: bytes, message: Any = None) -> str:
    """Octal dump: offset in octal, 16 bytes a line as 3-digit octal (like od -A o -t o1)."""
    data = bytes(data)
    return "\n".join("%07o %s" % (off, " ".join("%03o" % b for b in data[off:off + 16]))
                     for off in range(0, len(data), 16))


def format_json(data: bytes, message: Any = None) -> str:
    """JSON, pretty-printed with sorted keys (indent 2); invalid JSON as a note and a hex dump."""
    try:
        return _json.dumps(_json.loads(bytes(data)), indent=2, sort_keys=True, ensure_ascii=False)
    except (ValueError, RecursionError) as e:      # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return f"(invalid json: {e})\n{format_hex(data)}"


def format_traceback(data: bytes, message: Any = None) -> str:
    """A Python traceback: the data as UTF-8 text, as it was written."""
    return bytes(data).decode("utf-8", errors="replace").rstrip("\n")


def format_record(data: bytes, message: Any = None) -> str:
    """A record payload (docs/format.md, "The record payload"): the source
    location, the fields as JSON, then the traceback; a payload that does
    not parse as a hex dump."""
    r = record_decode(data)
    if r is None:
        return "(not a record payload)\n" + format_hex(data)
    out = []
    if r.module or r.function or r.path:
        where = f"{r.module}.{r.function}" if r.module else r.function
        out.append(f"source: {where} ({r.path or '?'}:{r.line})")
    if r.fields:
        out.append("fields: " + _json.dumps(r.fields, ensure_ascii=False, sort_keys=True))
    if r.traceback:
        out.append(r.traceback.rstrip("\n"))
    return "\n".join(out)


def format_utf8(data: bytes, message: Any = None) -> str:
    """UTF-8 text; bytes that are not UTF-8 shown as \\xNN."""
    return bytes(data).decode("utf-8", errors="backslashreplace")


_ASCII_COLUMN = bytes(b if 0x20 <= b < 0x7f else 0x2e for b in range(256))

# Used when no entry point is installed (and for logkit's own entry points,
# which name these same functions).
BUILTINS: dict[str, Formatter] = {
    "json": format_json,
    "traceback": format_traceback,
    "record": format_record,
    "utf8": format_utf8,
    "hex": format_hex,
    "octal": format_octal,
}
_OWN_DISTRIBUTION = "logkit"


# ---------------------------------------------------------------- the registry cache

_entry_point_map: dict[str, Any] | None = None      # name -> the entry point that wins
_loaded: dict[str, Formatter | None] = {}          # name -> formatter (None: none or broken)
_errors: dict[str, str] = {}                        # name -> why it failed to load
_reported: set[str] = set()                         # names already warned about


def _is_own(ep: Any) -> bool:
    return registry.distribution_name(ep) == _OWN_DISTRIBUTION and ep.name in BUILTINS


def _rank(ep: Any) -> tuple:
    # A third-party declaration beats logkit's own; among third parties
    # the first distribution by name wins, so the choice is reproducible.
    return (_is_own(ep), registry.distribution_name(ep))


def _entry_point_table() -> dict[str, Any]:
    global _entry_point_map
    table = _entry_point_map
    if table is None:
        table = _entry_point_map = registry.entry_points(GROUP, _rank)
    return table


def _where(name: str) -> str:
    ep = _entry_point_table().get(name)
    if ep is None or _is_own(ep):
        return f"built-in formatter '{name}' (logkit.formatters)"
    return f"formatter '{name}' ({ep.value}, from package {registry.distribution_name(ep)})"


def _report(name: str, what: str) -> None:
    """One line on stderr, the first time a formatter misbehaves."""
    if name in _reported:
        return
    _reported.add(name)
    say(f"logkit: warning: {_where(name)} {what}; its messages are shown in hex")


def _load(name: str) -> Formatter | None:
    table = _entry_point_table()
    ep = table.get(name)
    if ep is None or _is_own(ep):
        return BUILTINS.get(name)
    try:
        obj = registry.load_entry_point(GROUP, name, "formatter", table)
        if isinstance(obj, type):
            obj = obj()
        if not callable(obj):
            raise TypeError(f"{type(obj).__name__} object is not callable")
    except Exception as e:          # a broken package must not stop a reader
        cause = e.cause if isinstance(e, registry.EntryPointError) and e.cause is not None else e
        _errors[name] = f"{type(cause).__name__}: {cause}"
        _report(name, f"failed to load: {_errors[name]}")
        return None
    return obj


def get(name: str) -> Formatter | None:
    """The formatter for data class `name`, loaded on first use; None when no
    package declares one (or the one declared fails to load)."""
    try:
        return _loaded[name]
    except KeyError:
        pass
    f = _loaded[name] = _load(name)
    return f


def _describe(name: str, f: Formatter | None) -> str:
    if f is None:
        return f"BROKEN: {_errors.get(name, 'no formatter')}"
    text = getattr(f, "description", None)
    if not isinstance(text, str):
        doc = getattr(f, "__doc__", None) or ""
        text = doc.strip().splitlines()[0] if doc.strip() else ""
    ep = _entry_point_table().get(name)
    if ep is not None and not _is_own(ep):
        text = f"{text} (from {registry.distribution_name(ep)})" if text else f"from {registry.distribution_name(ep)}"
    return text


def available() -> dict[str, str]:
    """Every formatter, built-in or installed: data class -> one-line description
    (a third party's names its package; one that fails to load reads 'BROKEN: error').
    Loads each installed formatter."""
    names = set(BUILTINS) | set(_entry_point_table())
    return {name: _describe(name, get(name)) for name in sorted(names)}


def clear_cache() -> None:
    """Forget loaded formatters, entry points, warnings given and the time
    cache (tests, and a process that installs packages or changes TZ)."""
    global _entry_point_map
    _entry_point_map = None
    _loaded.clear()
    _errors.clear()
    _reported.clear()
    _local.last = _utc.last = _NEVER


# ---------------------------------------------------------------- expansion

_HOW = ("auto", "hex", "octal")


def expand(message: Any, how: str = "auto") -> str:
    """The expanded data of `message` ("" when it has none): `how` "auto" uses
    the formatter of its data class (a hex dump when there is none or it
    fails), "hex" and "octal" dump the bytes.  ValueError for another `how`."""
    if how not in _HOW:
        raise ValueError(f"how must be one of {', '.join(_HOW)}, not {how!r}")
    data = message.data
    if not data:
        return ""
    data = bytes(data)
    if how == "auto":
        name = message.data_class
        f = get(name)
        if f is not None:
            try:
                out = f(data, message)
                if not isinstance(out, str):
                    raise TypeError(f"returned {type(out).__name__}, not str")
                return out.rstrip("\n")
            except Exception as e:
                _report(name, f"failed on message {getattr(message, 'sequence', None)}: "
                              f"{type(e).__name__}: {e}")
        return format_hex(data)
    return format_octal(data) if how == "octal" else format_hex(data)


_expand = expand        # format_message's parameter `expand` hides the function


# ---------------------------------------------------------------- time, cached by second

_NEVER = (None, None, "", "", "")


class _LocalClock:
    """("YYYY-MM-DD HH:MM:SS.", "±hh:mm", "HH:MM:SS") of the last second seen.

    A memo, not state: the result is the same without it.  It is keyed by the
    second and by the identity of time.tzname, which time.tzset() replaces.
    One tuple, so threads never see a torn pair.
    """
    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = _NEVER

    def __call__(self, sec: int) -> tuple:
        last = self.last
        if last[0] != sec or last[1] is not _time.tzname:
            tz = _time.tzname
            tm = _time.localtime(sec)
            off = tm.tm_gmtoff
            sign = "-" if off < 0 else "+"
            h, rest = divmod(abs(off), 3600)
            m, s = divmod(rest, 60)
            zone = f"{sign}{h:02d}:{m:02d}" + (f":{s:02d}" if s else "")
            last = (sec, tz, _time.strftime("%Y-%m-%d %H:%M:%S.", tm), zone,
                    _time.strftime("%H:%M:%S", tm))
            self.last = last
        return last


class _UtcClock:
    """'YYYY-MM-DDTHH:MM:SS.' (UTC) of the last second seen (a memo, as above)."""
    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = _NEVER

    def __call__(self, sec: int) -> str:
        last = self.last
        if last[0] != sec:
            last = (sec, None, _time.strftime("%Y-%m-%dT%H:%M:%S.", _time.gmtime(sec)), "", "")
            self.last = last
        return last[2]


_local = _LocalClock()


def local_clock(sec: int) -> tuple:
    """The local clock's parts for second `sec` since the epoch, cached per
    second: (sec, time.tzname, "YYYY-MM-DD HH:MM:SS." prefix, UTC offset
    "+hh:mm", "HH:MM:SS"), as format_message prints them; logkit print's C
    formatter (logkit._scan) takes its time stamps from here."""
    return _local(sec)
_utc = _UtcClock()


# ---------------------------------------------------------------- severity, colour, escapes

_SEVERITY_NAMES = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}
_SEV_WIDTH = 8


def severity_name(severity: int) -> str:
    """'DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL' for 10..50, else the number."""
    return _SEVERITY_NAMES.get(severity) or str(severity)


def _colour_of(severity: int) -> str:
    if severity >= 50:
        return "\x1b[1;31m"
    if severity >= 40:
        return "\x1b[31m"
    if severity >= 30:
        return "\x1b[33m"
    if severity <= 10:
        return "\x1b[2m"
    return ""


_RESET = "\x1b[0m"
# Indexed by severity + 250: the padded name and the colour, computed once.
_SEV_PADDED = tuple(f"{severity_name(s):<{_SEV_WIDTH}}" for s in range(-250, 251))
_SEV_COLOUR = tuple(_colour_of(s) for s in range(-250, 251))

# Control characters (except tab and newline) would drive the terminal: a log
# written by anyone must not, so they print as \xNN.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escape_control(match: re.Match) -> str:
    return "\\x%02x" % ord(match.group())


def _safe(text: str, indent: str = "") -> str:
    """`text` with controls escaped and continuation lines indented by `indent`."""
    if text.isprintable():               # the common case: nothing to do
        return text
    text = _CONTROL.sub(_escape_control, text)
    return text.replace("\n", "\n" + indent) if indent and "\n" in text else text


# Widths of the text layout: time (32 for a whole-minute offset), 2, sequence
# (7), 2, severity (8), 2; continuation lines of a text align under it.
_SEQ_WIDTH = 7
_TEXT_INDENT = " " * (32 + 2 + _SEQ_WIDTH + 2 + _SEV_WIDTH + 2)
_SHORT_INDENT = " " * (8 + 1 + _SEV_WIDTH + 1)
_EXPAND_INDENT = "    "
_FMTS = ("text", "json", "short")


def _expansion_block(m: Any, data_class: str, how: str) -> str:
    """The indented '[class] N bytes' line and the expansion under it ('' for no data)."""
    n = len(m.data)
    if not n:
        return ""
    name = _safe(data_class).replace("\n", "\\x0a")        # the header stays one line
    head = f"\n{_EXPAND_INDENT}[{name}] {n} byte{'s' if n != 1 else ''}"
    body = _expand(m, how)
    return f"{head}\n{_EXPAND_INDENT}{_safe(body, _EXPAND_INDENT)}" if body else head


# The keys format_message's JSON object has of its own (fields never replace them).
_JSON_KEYS = frozenset(("sequence", "time", "time_ns", "severity", "process_id", "thread_id", "text",
                        "data_class", "data", "logger", "source", "traceback", "fields", "expanded"))


def _logger_of(m: Any, data_class: str) -> str:
    """"NAME: " for a message whose record payload names its logger, else ""."""
    if data_class != RECORD_CLASS:
        return ""
    name = getattr(m, "logger", "")
    return f"{_safe(name).replace(chr(10), '')}: " if name else ""


def _json_safe(s: str) -> str:
    # json.dumps escapes the C0 controls; escape DEL and C1 as well (\u007f...),
    # so the output is safe on a terminal and still the same JSON.
    return _CONTROL.sub(lambda mm: "\\u%04x" % ord(mm.group()), s)


def format_message(m: Any, expand: bool = True, classes: Collection[str] | None = None,
                   no_expand: Collection[str] = (), how: str = "auto", fmt: str = "text",
                   duplicate_of: Any = None, colour: bool = False) -> str:
    """One message as `logkit print` prints it, without a trailing newline.

    fmt "text": ``YYYY-MM-DD HH:MM:SS.ffffff±hh:mm  SEQUENCE  SEVERITY  text``
    (local time, microseconds; sequence right-aligned in 7 columns; severity
    a stdlib level name or the number, left-aligned in 8); fmt "short":
    ``HH:MM:SS SEVERITY text``; fmt "json": one JSON object on one line.
    Control characters in text print as \\xNN; a text's further lines are
    indented to its column.

    Expansion (MTB-666 print_sys_log): with `expand`, a message with data
    whose class is in `classes` (None: every class) and not in `no_expand`
    gets its data expanded (see expand(); `how`) under it: a line
    ``    [CLASS] N bytes``, then the expansion indented by 4 spaces; in JSON
    the key "expanded".  `duplicate_of`: the previous message printed (or its
    text); when its text equals this one's, the text prints as "=" (text and
    short only).  `colour`: ANSI colours by severity (text and short only).
    ValueError for an unknown `fmt` or `how`.
    """
    if how not in _HOW:
        raise ValueError(f"how must be one of {', '.join(_HOW)}, not {how!r}")
    data_class = m.data_class
    expanded = (expand and (classes is None or data_class in classes)
                and data_class not in no_expand)
    t = m.time
    if fmt == "text" or fmt == "short":
        text = m.text
        if duplicate_of is not None:
            prev = duplicate_of if isinstance(duplicate_of, str) else getattr(duplicate_of, "text", None)
            if prev == text:
                text = "="
        severity = m.severity
        i = severity + 250
        sev = _SEV_PADDED[i] if 0 <= i < 501 else f"{severity:<{_SEV_WIDTH}}"
        us = t // 1000
        sec = us // 1_000_000
        try:
            clock = _local(sec)
        except (OverflowError, OSError, ValueError):         # a time no calendar holds
            clock = (sec, None, f"@{t}ns ", "", f"@{t}ns")
        logger = _logger_of(m, data_class)
        if fmt == "text":
            seq = getattr(m, "sequence", None)
            line = (f"{clock[2]}{us % 1_000_000:06d}{clock[3]}  "
                    f"{'-' if seq is None else seq:>{_SEQ_WIDTH}}  {sev}  {logger}{_safe(text, _TEXT_INDENT)}")
        else:
            line = f"{clock[4]} {sev} {logger}{_safe(text, _SHORT_INDENT)}"
        if expanded and m.data:
            line += _expansion_block(m, data_class, how)
        if colour:
            c = _SEV_COLOUR[i] if 0 <= i < 501 else _colour_of(severity)
            if c:
                line = c + line.replace("\n", _RESET + "\n" + c) + _RESET
        return line
    if fmt == "json":
        sec, ns = divmod(t, 1_000_000_000)
        try:
            iso = f"{_utc(sec)}{ns:09d}Z"
        except (OverflowError, OSError, ValueError):
            iso = None
        data = bytes(m.data)
        obj = {
            "sequence": getattr(m, "sequence", None),
            "time": iso,
            "time_ns": t,
            "severity": m.severity,
            "process_id": m.process_id,
            "thread_id": m.thread_id,
            "text": m.text,
            "data_class": data_class,
        }
        rec = record_decode(data) if data_class == RECORD_CLASS and data else None
        if rec is None:
            obj["data"] = base64.b64encode(data).decode("ascii")
        else:
            # A record payload: its parts as keys, each field at the top level
            # (a field named like one of the keys above goes under "fields").
            obj["logger"] = rec.logger
            obj["source"] = {"module": rec.module, "function": rec.function, "line": rec.line,
                             "path": rec.path}
            if rec.traceback is not None:
                obj["traceback"] = rec.traceback
            clash = {}
            for k, v in rec.fields.items():
                if k in obj or k in _JSON_KEYS:
                    clash[k] = v
                else:
                    obj[k] = v
            if clash:
                obj["fields"] = clash
        if expanded:
            obj["expanded"] = _expand(m, how)
        return _json_safe(_json.dumps(obj, ensure_ascii=False))
    raise ValueError(f"fmt must be one of {', '.join(_FMTS)}, not {fmt!r}")
