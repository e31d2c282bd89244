"""Message selection for `logkit print` and `logkit monitor`, after Multics print_sys_log.

The CLI parses the options with `add_arguments`, builds a `Selection` with
`Selection.from_args`, and either runs `Selection.apply` (this module, the
reference semantics) or hands the parsed parts (windows, severity mask, plain
strings) to a reader's fast path, which must select exactly what `apply` does.

Selection runs in print_sys_log's eleven steps, in this order, each working on
what the previous one left; an option not given eliminates nothing:

     1) --to            stop after the given message (sequence number or time)
     2) --from          skip until the first message at or after the value
     3) --for DURATION  stop after start + duration (start: --from's time,
                        else the time of the first message steps 1-2 let through)
     4) --last TIME     skip until the first message at or after the time
     5) --severity
    5a) --pid, --logger, --field   drop messages from other writers, other
                        loggers, or whose fields do not hold (the record payload)
     6) --exclude       drop messages whose text matches
     7) --match         drop messages whose text does not match
     8) --exclude-data  drop messages whose expanded data matches
     9) --match-data    drop messages whose expanded data does not match
    10) --for COUNT     stop after COUNT selected messages
    11) --last COUNT    keep only the last COUNT selected messages

Steps 1-4 are positional, as in print_sys_log: they start and stop reading;
they do not filter.  In a log whose times are slightly out of order, a message
after the --to point with an earlier time is therefore not printed, and one
after the --from point with an earlier time is.  All bounds are inclusive.

With --reverse the log is examined from the newest message backwards, so the
positional steps turn around: --from is where reading starts (the first message
at or *before* the value, default the newest), --to is where it stops (the
oldest message printed), --for DURATION reaches back from the start, and
--for COUNT counts from the newest.  --last keeps its meaning (the newest
messages, or those since a time); --reverse only prints them newest first.
"""
from __future__ import annotations

import argparse
import bisect
import collections
import datetime as _dt
import fnmatch
import heapq
import itertools
import json
import re
import time as _time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator, Literal, Protocol

from logkit.errors import InvalidArgument

__all__ = [
    "SelectionError",
    "Point",
    "parse_point",
    "parse_span",
    "SeveritySet",
    "parse_severities",
    "Patterns",
    "compile_patterns",
    "Selection",
    "add_arguments",
    "merge_by_time",
    "expand_data",
    "SEVERITY_MIN",
    "SEVERITY_MAX",
]

SEVERITY_MIN = -250
SEVERITY_MAX = 250

_NS = 1_000_000_000
_UNIT_NS = {
    "w": 7 * 86400 * _NS,
    "d": 86400 * _NS,
    "h": 3600 * _NS,
    "m": 60 * _NS,
    "s": _NS,
    "ms": 1_000_000,
    "us": 1_000,
    "ns": 1,
}
_UNITS_TEXT = "w, d, h, m, s, ms, us, ns"

_POINT_FORMS = ("a sequence number or a time (ISO 8601 like 2026-12-01T10:00, "
                "relative like -2h or -30m, or yesterday/today/now)")
_SPAN_FORMS = "a count of messages (like 10) or a duration (like 2h, 30m, 1h30m, 1d)"
_LAST_FORMS = ("a count of messages (like 10), a duration (like 2h, 30m, 1d) or a time "
               "(ISO 8601 like 2026-12-01T10:00, or yesterday/today/now)")


class SelectionError(InvalidArgument):
    """A message-selection option has a value it does not accept, or options clash.

    The message names the option and the value and says what is accepted.
    """


class _Message(Protocol):
    sequence: int
    time: int
    severity: int
    text: str
    data: Any


# --------------------------------------------------------------------------- points


Kind = Literal["sequence", "time", "count", "duration"]
_KINDS = ("sequence", "time", "count", "duration")


@dataclass(frozen=True)
class Point:
    """A parsed option value: a sequence number, a time (ns since the epoch, UTC),
    a count of messages, or a duration (ns, never negative).

    `text` is what the user wrote (for messages); it does not take part in equality.
    """

    kind: Kind
    value: int
    text: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise InvalidArgument(f"Point kind {self.kind!r}: not one of {', '.join(_KINDS)}")
        if not isinstance(self.value, int) or isinstance(self.value, bool):
            raise InvalidArgument(f"Point value {self.value!r}: not an int")

    def describe(self) -> str:
        return repr(self.text) if self.text else f"{self.kind} {self.value}"


_DURATION_RE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|us|ns|w|d|h|m|s))+")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|us|ns|w|d|h|m|s)")
_RELATIVE_RE = re.compile(r"(now)?\s*([+-])\s*(\S+)", re.IGNORECASE)
_ISO_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"\s*([Zz]|[+-]\d{2}(?::?\d{2})?)?")


def _duration_ns(text: str) -> int | None:
    """`1h30m` -> ns, or None if `text` is not a duration."""
    if not _DURATION_RE.fullmatch(text):
        return None
    total = Decimal(0)
    for number, unit in _DURATION_PART_RE.findall(text):
        total += Decimal(number) * _UNIT_NS[unit]
    return int(total)


def _now(now_ns: int | None) -> int:
    return _time.time_ns() if now_ns is None else now_ns


def _local_midnight_ns(now_ns: int, days: int) -> int:
    day = _dt.datetime.fromtimestamp(now_ns // _NS).date() + _dt.timedelta(days=days)
    return round(_dt.datetime(day.year, day.month, day.day).timestamp()) * _NS


_WORDS = {"today": 0, "yesterday": -1, "tomorrow": 1}
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def _iso_ns(text: str, option: str) -> int | None:
    m = _ISO_RE.fullmatch(text)
    if not m:
        return None
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    tz = None
    if zone is not None:
        if zone in "Zz":
            tz = _dt.timezone.utc
        else:
            digits = zone[1:].replace(":", "")
            hours, minutes = int(digits[:2]), int(digits[2:] or 0)
            if hours > 23 or minutes > 59:
                raise SelectionError(f"{option} {text!r}: time zone offset {zone} is out of range "
                                     "(write Z, +HH:MM or -HH:MM)")
            offset = _dt.timedelta(hours=hours, minutes=minutes)
            tz = _dt.timezone(-offset if zone[0] == "-" else offset)
    try:
        when = _dt.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                            int(second or 0), tzinfo=tz)
    except ValueError as e:
        raise SelectionError(f"{option} {text!r}: not a valid date or time ({e})") from None
    frac_ns = int((fraction or "").ljust(9, "0"))
    if tz is None:
        # Naive means local time; timestamp() resolves it (an ambiguous time at a
        # DST change means the first of the two).  Whole seconds here, so exact.
        try:
            return round(when.timestamp()) * _NS + frac_ns
        except (OverflowError, OSError, ValueError) as e:
            raise SelectionError(f"{option} {text!r}: not a time this system can convert ({e})") from None
    delta = when - _EPOCH
    return (delta.days * 86400 + delta.seconds) * _NS + frac_ns


def _time_ns(text: str, option: str, now_ns: int | None) -> int | None:
    """A time point in any form but a relative one, or None if `text` is none of them."""
    word = text.lower()
    if word == "now":
        return _now(now_ns)
    if word in _WORDS:
        return _local_midnight_ns(_now(now_ns), _WORDS[word])
    return _iso_ns(text, option)


def parse_point(text: str, option: str = "--from", now_ns: int | None = None) -> Point:
    """Parse a --from / --to value into a sequence or time Point.

    Accepted (surrounding blanks ignored):
      * a decimal integer >= 0: a sequence number;
      * ISO 8601: `2026-12-01`, `2026-12-01T10:00`, `2026-12-01 10:00:05.25`
        (up to 9 fraction digits), optionally followed by `Z`, `+01:00`, `+0100`
        or `+01`; without a zone it is local time;
      * relative to now: `-2h`, `-90s`, `-1h30m`, `+1d`, `now-2h`, `now+30m`
        (units w, d, h, m, s, ms, us, ns; decimals like 1.5h allowed);
      * `now`, `today` / `yesterday` / `tomorrow` (local midnight).

    `now_ns` (ns since the epoch) is the "now" of relative forms; default: the clock.
    Raises SelectionError naming `option` and `text`.
    """
    raw = text
    text = text.strip()
    if text.isdigit() and text.isascii():
        return Point("sequence", int(text), raw)
    if text[:1] in "+-" and text[1:].isdigit() and text[1:].isascii():
        raise SelectionError(
            f"{option} {raw!r}: a sequence number is a plain number >= 0 "
            f"(for a time relative to now add a unit: {text}m, {text}h, ...)")
    ns = _time_ns(text, option, now_ns) if text else None
    if ns is not None:
        return Point("time", ns, raw)
    rel = _RELATIVE_RE.fullmatch(text)
    if rel:
        delta = _duration_ns(rel.group(3))
        if delta is None:
            raise SelectionError(f"{option} {raw!r}: {rel.group(3)!r} is not a duration "
                                 f"(a number and a unit, like 2h, 30m or 1h30m; units {_UNITS_TEXT})")
        return Point("time", _now(now_ns) + (delta if rel.group(2) == "+" else -delta), raw)
    raise SelectionError(f"{option} {raw!r}: not {_POINT_FORMS}")


def parse_span(text: str, option: str = "--for", now_ns: int | None = None,
               allow_time: bool | None = None) -> Point:
    """Parse a --for / --last value into a count, duration or time Point.

    Accepted (surrounding blanks ignored):
      * a decimal integer >= 1: a count of messages (kind "count");
      * a duration `2h`, `30m`, `1h30m`, `1d`, `1.5h` (units w, d, h, m, s, ms, us,
        ns), must be > 0; a leading `-` or `+` is ignored, so `-2h` is `2h`
        (kind "duration", ns);
      * only if `allow_time` (default: when `option` is "--last"): a time point as
        parse_point takes it, but no sequence number: ISO 8601, `now-2h`,
        `today`, `yesterday`, ... (kind "time").

    Raises SelectionError naming `option` and `text`.
    """
    if allow_time is None:
        allow_time = option == "--last"
    raw = text
    text = text.strip()
    forms = _LAST_FORMS if allow_time else _SPAN_FORMS
    if text.isdigit() and text.isascii():
        if int(text) < 1:
            raise SelectionError(f"{option} {raw!r}: a count of messages must be at least 1")
        return Point("count", int(text), raw)
    if text[:1] in "+-" and text[1:].isdigit() and text[1:].isascii():
        raise SelectionError(f"{option} {raw!r}: a count of messages is a plain number like "
                             f"{text[1:]}, without a sign (for a duration add a unit: {text[1:]}h)")
    unsigned = text[1:] if text[:1] in "+-" else text
    ns = _duration_ns(unsigned)
    if ns is not None:
        if ns == 0:
            raise SelectionError(f"{option} {raw!r}: a duration must be longer than zero")
        return Point("duration", ns, raw)
    if allow_time and text:
        when = _time_ns(text, option, now_ns)
        rel = _RELATIVE_RE.fullmatch(text)
        if when is None and rel is not None and rel.group(1):
            when = parse_point(text, option, now_ns).value  # now-2h; its error if bad
        if when is not None:
            return Point("time", when, raw)
    raise SelectionError(f"{option} {raw!r}: not {forms}")


# --------------------------------------------------------------------------- severities


_SEVERITY_RE = re.compile(r"([+-]?\d+)(?::([+-]?\d+))?")


class SeveritySet:
    """A set of severities in SEVERITY_MIN..SEVERITY_MAX, kept as merged ranges."""

    __slots__ = ("_ranges", "_los", "_mask")

    def __init__(self, ranges: Iterable[tuple[int, int]]) -> None:
        merged: list[tuple[int, int]] = []
        for lo, hi in sorted(ranges):
            if not (SEVERITY_MIN <= lo <= hi <= SEVERITY_MAX):
                raise InvalidArgument(f"severity range {lo}:{hi}: not within "
                                      f"{SEVERITY_MIN}..{SEVERITY_MAX} with low <= high")
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        self._ranges = tuple(merged)
        self._los = [lo for lo, _ in merged]
        mask = bytearray(SEVERITY_MAX - SEVERITY_MIN + 1)
        for lo, hi in merged:
            mask[lo - SEVERITY_MIN:hi - SEVERITY_MIN + 1] = b"\x01" * (hi - lo + 1)
        self._mask = bytes(mask)

    @property
    def ranges(self) -> list[tuple[int, int]]:
        """The selected severities as sorted, disjoint, non-adjacent (lo, hi) ranges, inclusive."""
        return list(self._ranges)

    def mask(self) -> bytes:
        """501 bytes: byte i is 1 if severity i + SEVERITY_MIN is selected, else 0."""
        return self._mask

    def __contains__(self, severity: object) -> bool:
        if not isinstance(severity, int):
            return False
        i = bisect.bisect_right(self._los, severity) - 1
        return i >= 0 and severity <= self._ranges[i][1]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SeveritySet) and self._ranges == other._ranges

    def __hash__(self) -> int:
        return hash(self._ranges)

    def __repr__(self) -> str:
        parts = [str(lo) if lo == hi else f"{lo}:{hi}" for lo, hi in self._ranges]
        return f"SeveritySet({' '.join(parts)})"


def parse_severities(values: Iterable[str], option: str = "--severity") -> SeveritySet:
    """Parse --severity values: each `N` or `LO:HI` (inclusive), integers in -250..250.

    A message is selected if its severity is in any of them.  Raises SelectionError
    naming the option and the value (not a number, out of range, LO > HI, none given).
    """
    ranges = []
    for raw in values:
        text = raw.strip()
        m = _SEVERITY_RE.fullmatch(text)
        if not m or not text.isascii():
            raise SelectionError(f"{option} {raw!r}: not a severity or a range of them "
                                 f"(a whole number from {SEVERITY_MIN} to {SEVERITY_MAX}, "
                                 "or two joined by a colon like 20:29)")
        lo = int(m.group(1))
        hi = lo if m.group(2) is None else int(m.group(2))
        for v in (lo, hi):
            if not SEVERITY_MIN <= v <= SEVERITY_MAX:
                raise SelectionError(f"{option} {raw!r}: severity {v} is outside "
                                     f"{SEVERITY_MIN}..{SEVERITY_MAX}")
        if lo > hi:
            raise SelectionError(f"{option} {raw!r}: the range runs backwards "
                                 f"(write the lower severity first: {hi}:{lo})")
        ranges.append((lo, hi))
    if not ranges:
        raise SelectionError(f"{option}: no severity given")
    return SeveritySet(ranges)


# --------------------------------------------------------------------------- patterns


@dataclass(frozen=True)
class Patterns:
    """Strings to look for: plain substrings (case-sensitive) and regular expressions.

    `search` is true if any of them occurs.  `plain` holds the plain strings as
    UTF-8 bytes and `regexes` the compiled expressions, for a fast path.
    """

    sources: tuple[str, ...]
    plain_text: tuple[str, ...]
    regexes: tuple[re.Pattern[str], ...]

    @property
    def plain(self) -> list[bytes]:
        return [s.encode("utf-8") for s in self.plain_text]

    def search(self, text: str) -> bool:
        return (any(s in text for s in self.plain_text)
                or any(r.search(text) is not None for r in self.regexes))


def compile_patterns(values: Iterable[str], option: str = "--match") -> Patterns:
    """Compile --match / --exclude / --match-data / --exclude-data values.

    A value between slashes, `/re/`, is a Python regular expression searched
    anywhere in the text (flags inline: `/(?i)disk/`); any other value, `/` alone
    included, is a plain case-sensitive substring.  Raises SelectionError naming
    the option and the value for an invalid expression or an empty list.
    """
    sources, plain, regexes = [], [], []
    for raw in values:
        sources.append(raw)
        if len(raw) >= 2 and raw[0] == "/" and raw[-1] == "/":
            try:
                regexes.append(re.compile(raw[1:-1]))
            except re.error as e:
                raise SelectionError(f"{option} {raw!r}: not a valid regular expression ({e}); "
                                     "a value between slashes is a regular expression, "
                                     "anything else a plain string") from None
        else:
            plain.append(raw)
    if not sources:
        raise SelectionError(f"{option}: no string given")
    return Patterns(tuple(sources), tuple(plain), tuple(regexes))


def expand_data(message: _Message) -> str:
    """The default expansion of a message's data for --match-data / --exclude-data:
    the bytes decoded as UTF-8, undecodable bytes as backslash escapes."""
    return bytes(message.data).decode("utf-8", "backslashreplace")


# --------------------------------------------------------------------------- selection


# --------------------------------------------------------------------------- who logged


class LoggerPatterns:
    """--logger PATTERN...: shell-style globs (fnmatch, case-sensitive) on
    the logger's name; a pattern starting with "!" excludes.  A message
    passes when no including pattern is given or one matches, and no
    excluding pattern matches.  A message without a logger name has the
    name "" (only "" or "*" patterns include it)."""

    def __init__(self, values: Iterable[str], option: str = "--logger") -> None:
        inc, exc = [], []
        for v in values:
            if not isinstance(v, str) or v in ("", "!"):
                raise SelectionError(f"{option} {v!r}: give a logger name or a glob such as "
                                     f"'web.*' ('!web.*' leaves those out)")
            (exc if v.startswith("!") else inc).append(v[1:] if v.startswith("!") else v)
        self.include = tuple(inc)
        self.exclude = tuple(exc)

    def __call__(self, name: str) -> bool:
        if self.include and not any(fnmatch.fnmatchcase(name, p) for p in self.include):
            return False
        return not any(fnmatch.fnmatchcase(name, p) for p in self.exclude)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LoggerPatterns) and (self.include, self.exclude) == (other.include, other.exclude)

    def __hash__(self) -> int:
        return hash((self.include, self.exclude))

    def __repr__(self) -> str:
        return f"LoggerPatterns(include={self.include!r}, exclude={self.exclude!r})"


_FIELD_RE = re.compile(r"([^=~]+)(=|~)(.*)", re.S)


def _field_text(v: Any) -> str:
    """What --field compares: a string as it is, anything else as JSON (3, true, null)."""
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True)


class FieldTests:
    """--field KEY=VALUE / KEY~REGEX / KEY: every test must hold.  KEY=VALUE:
    the field equals VALUE (a string field as it is, any other value as its
    JSON text: attempt=3, ok=true); KEY~REGEX: a Python regular expression
    searched in that text; KEY alone: the field is present."""

    def __init__(self, values: Iterable[str], option: str = "--field") -> None:
        tests: list[tuple[str, str, Any]] = []
        for v in values:
            m = _FIELD_RE.fullmatch(v) if isinstance(v, str) else None
            if m is None:
                if isinstance(v, str) and v and "=" not in v and "~" not in v:
                    tests.append((v, "has", None))
                    continue
                raise SelectionError(f"{option} {v!r}: write KEY=VALUE, KEY~REGEX or KEY "
                                     f"(e.g. user=alice, exc_type~Timeout)")
            key, op, val = m.groups()
            if op == "~":
                try:
                    tests.append((key, "re", re.compile(val)))
                except re.error as e:
                    raise SelectionError(f"{option} {v!r}: bad regular expression: {e}") from None
            else:
                tests.append((key, "eq", val))
        self.tests = tuple(tests)

    def _key(self) -> tuple:
        return tuple((k, o, getattr(v, "pattern", v)) for k, o, v in self.tests)

    def __call__(self, fields: dict) -> bool:
        for key, op, val in self.tests:
            if key not in fields:
                return False
            if op == "eq" and _field_text(fields[key]) != val:
                return False
            if op == "re" and not val.search(_field_text(fields[key])):
                return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FieldTests) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"FieldTests({list(self._key())!r})"


def parse_pids(values: Iterable[str], option: str = "--pid") -> frozenset[int]:
    """--pid N...: the process ids, as a set."""
    out = set()
    for v in values:
        try:
            n = int(v)
        except (TypeError, ValueError):
            n = -1
        if not 0 < n < 1 << 32:
            raise SelectionError(f"{option} {v!r}: give a process id (a whole number from 1 to 4294967295)")
        out.add(n)
    return frozenset(out)


@dataclass
class Selection:
    """What to select, parsed and checked (see the module docstring for the steps).

    from_, to: Points of kind "sequence" or "time".  for_: "count" or "duration".
    last: "count", "duration" (since now_ns − duration) or "time".
    now_ns: the "now" for --last DURATION (default: the clock when built).
    Raises SelectionError for incompatible options (--from with --last, --to
    with --for, --for with --last) or a --from / --to pair that can select nothing.
    """

    from_: Point | None = None
    to: Point | None = None
    for_: Point | None = None
    last: Point | None = None
    reverse: bool = False
    severities: SeveritySet | None = None
    match: Patterns | None = None
    exclude: Patterns | None = None
    match_data: Patterns | None = None
    exclude_data: Patterns | None = None
    now_ns: int | None = None
    pids: frozenset[int] | None = None
    loggers: LoggerPatterns | None = None
    fields: FieldTests | None = None

    def __post_init__(self) -> None:
        if self.now_ns is None:
            self.now_ns = _time.time_ns()
        for name, option, kinds in (("from_", "--from", ("sequence", "time")),
                                    ("to", "--to", ("sequence", "time")),
                                    ("for_", "--for", ("count", "duration")),
                                    ("last", "--last", ("count", "duration", "time"))):
            p = getattr(self, name)
            if p is not None and (not isinstance(p, Point) or p.kind not in kinds):
                raise SelectionError(f"{option} {p!r}: not a Point of kind {' or '.join(kinds)}")
        if self.from_ is not None and self.last is not None:
            raise SelectionError(f"--from {self.from_.describe()} and --last {self.last.describe()} "
                                 "cannot be used together: both say where to start "
                                 "(use --from with --to or --for, or --last alone)")
        if self.to is not None and self.for_ is not None:
            raise SelectionError(f"--to {self.to.describe()} and --for {self.for_.describe()} "
                                 "cannot be used together: both say where to stop")
        if self.for_ is not None and self.last is not None:
            raise SelectionError(f"--for {self.for_.describe()} and --last {self.last.describe()} "
                                 "cannot be used together (use --from with --for, or --last alone)")
        f, t = self.from_, self.to
        if f is not None and t is not None and f.kind == t.kind:
            if not self.reverse and f.value > t.value:
                raise SelectionError(f"--from {f.describe()} is after --to {t.describe()}: "
                                     "no message can be selected")
            if self.reverse and f.value < t.value:
                raise SelectionError(f"--from {f.describe()} is before --to {t.describe()}: with "
                                     "--reverse reading starts at --from and goes back to --to, "
                                     "so no message can be selected (swap them)")

    @classmethod
    def from_args(cls, args: argparse.Namespace, now_ns: int | None = None) -> "Selection":
        """Build a Selection from the options `add_arguments` defines.

        An attribute missing from `args` counts as not given, so a command may add
        only some of the options.  Relative times use one "now" (`now_ns`, default
        the clock).  Raises SelectionError.
        """
        now = _now(now_ns)

        def opt(name: str) -> Any:
            return getattr(args, name, None)

        def patterns(name: str, option: str) -> Patterns | None:
            values = opt(name)
            return None if values is None else compile_patterns(values, option)

        return cls(
            from_=None if opt("from_") is None else parse_point(opt("from_"), "--from", now),
            to=None if opt("to") is None else parse_point(opt("to"), "--to", now),
            for_=None if opt("for_") is None else parse_span(opt("for_"), "--for", now),
            last=None if opt("last") is None else parse_span(opt("last"), "--last", now),
            reverse=bool(opt("reverse")),
            severities=None if opt("severity") is None else parse_severities(opt("severity")),
            exclude=patterns("exclude", "--exclude"),
            match=patterns("match", "--match"),
            exclude_data=patterns("exclude_data", "--exclude-data"),
            match_data=patterns("match_data", "--match-data"),
            now_ns=now,
            pids=None if opt("pid") is None else parse_pids(opt("pid")),
            loggers=None if opt("logger") is None else LoggerPatterns(opt("logger")),
            fields=None if opt("field") is None else FieldTests(opt("field")),
        )

    @property
    def needs_record(self) -> bool:
        """True if selecting looks at who logged (--pid, --logger, --field:
        step 5a), which the C scan leaves to who_matches()."""
        return self.pids is not None or self.loggers is not None or self.fields is not None

    def who_matches(self, m: _Message) -> bool:
        """Step 5a: the message's process id, logger name and fields pass
        --pid, --logger and --field (True when none is given)."""
        if self.pids is not None and m.process_id not in self.pids:
            return False
        if self.loggers is None and self.fields is None:
            return True
        rec = getattr(m, "record", None)
        if rec is None:
            return False
        if self.loggers is not None and not self.loggers(rec.logger):
            return False
        return self.fields is None or self.fields(rec.fields)

    @property
    def needs_data(self) -> bool:
        """True if selecting needs each message's expanded data (--match-data / --exclude-data)."""
        return self.match_data is not None or self.exclude_data is not None

    def last_time(self) -> int | None:
        """The earliest time --last selects (ns), or None: no --last, or a
        --last COUNT (which selects by count, not time)."""
        last = self.last
        if last is None or last.kind == "count":
            return None
        if last.kind == "duration":
            assert self.now_ns is not None
            return self.now_ns - last.value
        return last.value

    def time_window(self) -> tuple[int | None, int | None]:
        """(lo, hi), inclusive ns, None for unbounded: no message outside can be selected.

        Exact for a log in time order, so a reader may seek to lo (forward) or hi
        (--reverse) and stop past the other end.
        """
        lows: list[int] = []
        highs: list[int] = []
        start, stop = (highs, lows) if self.reverse else (lows, highs)
        if self.from_ is not None and self.from_.kind == "time":
            start.append(self.from_.value)
            if self.for_ is not None and self.for_.kind == "duration":
                sign = -1 if self.reverse else 1
                stop.append(self.from_.value + sign * self.for_.value)
        if self.to is not None and self.to.kind == "time":
            stop.append(self.to.value)
        t = self.last_time()
        if t is not None:
            lows.append(t)
        return (max(lows) if lows else None, min(highs) if highs else None)

    def sequence_window(self) -> tuple[int | None, int | None]:
        """(lo, hi), inclusive sequence numbers, None for unbounded (see time_window)."""
        start = self.from_.value if self.from_ is not None and self.from_.kind == "sequence" else None
        stop = self.to.value if self.to is not None and self.to.kind == "sequence" else None
        return (stop, start) if self.reverse else (start, stop)

    def apply(self, messages: Iterable[_Message], expand: Callable[[_Message], str] | None = None,
              *, messages_are_reversed: bool = False) -> Iterator[_Message]:
        """Yield the selected messages, in output order (newest first with reverse).

        `messages` are in log order (oldest first), or newest first if
        `messages_are_reversed` (allowed only with reverse).  Given log order and
        reverse, the messages are first read into a list and reversed (memory for
        the whole input): a reader that can go backwards should pass them reversed.
        Either way the result is the same.  `expand(message) -> str` is the data the
        data tests look at (default `expand_data`); it is called only if needs_data.
        Iteration stops reading `messages` as soon as no later message can be
        selected (--to, --for), except that --last COUNT reads to the end.
        """
        if messages_are_reversed and not self.reverse:
            raise InvalidArgument("messages_are_reversed=True needs a Selection with reverse=True")
        if self.reverse and not messages_are_reversed:
            messages = reversed(list(messages))
        selected = self._steps_1_to_9(iter(messages), expand or expand_data)
        if self.for_ is not None and self.for_.kind == "count":
            return itertools.islice(selected, self.for_.value)                    # 10
        if self.last is not None and self.last.kind == "count":
            if self.reverse:
                # Examined newest first, so the last N of the log are the first N seen.
                return itertools.islice(selected, self.last.value)                # 11
            return iter(collections.deque(selected, maxlen=self.last.value))      # 11
        return selected

    def _steps_1_to_9(self, messages: Iterator[_Message],
                      expand: Callable[[_Message], str]) -> Iterator[_Message]:
        rev = self.reverse

        def key(m: _Message, p: Point) -> int:
            return m.sequence if p.kind == "sequence" else m.time

        to, from_ = self.to, self.from_
        started = from_ is None
        for_ns = self.for_.value if self.for_ is not None and self.for_.kind == "duration" else None
        for_limit: int | None = None
        last_time = self.last_time()
        last_started = last_time is None
        sev, exclude, match = self.severities, self.exclude, self.match
        exclude_data, match_data = self.exclude_data, self.match_data
        who = self.needs_record
        for m in messages:
            if to is not None and (key(m, to) < to.value if rev else key(m, to) > to.value):
                return                                                            # 1
            if not started:                                                       # 2
                if key(m, from_) > from_.value if rev else key(m, from_) < from_.value:
                    continue
                started = True
            if for_ns is not None:                                                # 3
                if for_limit is None:
                    start = from_.value if from_ is not None and from_.kind == "time" else m.time
                    for_limit = start - for_ns if rev else start + for_ns
                if m.time < for_limit if rev else m.time > for_limit:
                    return
            if not last_started:                                                  # 4
                if m.time < last_time:
                    if rev:
                        return
                    continue
                # Forward, everything after the first message since the time is in;
                # backward, each message is checked until one is older.
                last_started = not rev
            if sev is not None and m.severity not in sev:                         # 5
                continue
            if who and not self.who_matches(m):                                   # 5a
                continue
            if exclude is not None and exclude.search(m.text):                    # 6
                continue
            if match is not None and not match.search(m.text):                    # 7
                continue
            if exclude_data is not None or match_data is not None:
                data = expand(m)
                if exclude_data is not None and exclude_data.search(data):        # 8
                    continue
                if match_data is not None and not match_data.search(data):        # 9
                    continue
            yield m


def add_arguments(parser: argparse.ArgumentParser | Any, *, window: bool = True) -> Any:
    """Add the message-selection options to `parser` in a "message selection" group.

    Dests: from_, to, for_, last, reverse (only if `window`, the default; a
    command that follows a live log may leave them out), severity, pid,
    logger, field, match, exclude, match_data, exclude_data.  Values stay strings (lists for the
    repeatable ones); Selection.from_args parses them.  Returns the group.
    """
    group = parser.add_argument_group(
        "message selection",
        "Options apply in this order: --to, --from, --for TIME, --last TIME, --severity, "
        "--pid/--logger/--field, --exclude, --match, --exclude-data, --match-data, --for COUNT, --last COUNT. "
        "A value that starts with '-' must be joined to its option with '=' "
        "(--from=-2h, --severity=-5:0), or argparse takes it for an option.")
    if window:
        group.add_argument(
            "--from", dest="from_", metavar="WHEN",
            help="start at the first message at or after WHEN (with --reverse: at or before): "
                 "a sequence number, an ISO 8601 time (2026-12-01, 2026-12-01T10:00, "
                 "2026-12-01 10:00:05.25, with Z or +01:00 for a zone; local time without), "
                 "a time relative to now (-2h, -30m, -1h30m, now-2h, +1d), or now, today, "
                 "yesterday, tomorrow (local midnight). Not with --last")
        group.add_argument(
            "--to", metavar="WHEN",
            help="stop after the last message at or before WHEN (with --reverse: at or after); "
                 "WHEN as for --from. Not with --for")
        group.add_argument(
            "--for", dest="for_", metavar="COUNT|DURATION",
            help="print at most COUNT messages (those printed, not those read), or only "
                 "messages within DURATION of the start (--from, else the first message): "
                 "2h, 30m, 1h30m, 1d, 90s (units w d h m s ms us ns). Not with --to or --last")
        group.add_argument(
            "--last", metavar="COUNT|DURATION|WHEN",
            help="print only the last COUNT messages selected, or those of the last DURATION "
                 "(2h, 30m, 1d), or those since WHEN (an ISO 8601 time, today, yesterday, "
                 "now-2h). Not with --from or --for")
        group.add_argument(
            "--reverse", action="store_true",
            help="print newest first; --from and --to then name the newer and the older end")
    group.add_argument(
        "--severity", nargs="+", action="extend", metavar="SEV",
        help="print only messages of these severities: a number from -250 to 250 or a range "
             "like 20:29 (inclusive); several and repeats add up")
    group.add_argument(
        "--pid", nargs="+", action="extend", metavar="N",
        help="print only messages written by these process ids")
    group.add_argument(
        "--logger", nargs="+", action="extend", metavar="PATTERN",
        help="print only messages of loggers whose name matches a PATTERN, a shell glob "
             "('web.*', 'django.request'); '!PATTERN' leaves those out ('!gunicorn.access'). "
             "Several add up")
    group.add_argument(
        "--field", nargs="+", action="extend", metavar="KEY=VALUE",
        help="print only messages whose field KEY equals VALUE (user=alice; a non-string value "
             "as JSON: attempt=3, ok=true), or KEY~REGEX (a Python regular expression searched in "
             "it: exc_type~Timeout), or KEY (the field is present). Every --field must hold")
    group.add_argument(
        "--exclude", nargs="+", action="extend", metavar="STR",
        help="leave out messages whose text contains any STR; /REGEX/ between slashes is a "
             "Python regular expression (/(?i)disk/ ignores case), else a plain, "
             "case-sensitive string")
    group.add_argument(
        "--match", nargs="+", action="extend", metavar="STR",
        help="print only messages whose text contains any STR (as for --exclude)")
    group.add_argument(
        "--exclude-data", dest="exclude_data", nargs="+", action="extend", metavar="STR",
        help="leave out messages whose expanded data contains any STR (as for --exclude); "
             "applied after --exclude and --match")
    group.add_argument(
        "--match-data", dest="match_data", nargs="+", action="extend", metavar="STR",
        help="print only messages whose expanded data contains any STR (as for --exclude); "
             "applied after --exclude-data")
    return group


def merge_by_time(iterables: Iterable[Iterable[_Message]], reverse: bool = False) -> Iterator[_Message]:
    """Merge several logs, each in time order, into one ordered by (time, source, sequence).

    Messages with equal times come in the order of their sources in `iterables`;
    each source's own order is kept.  With `reverse`, each source must be newest
    first and the result is exactly the reverse of the forward merge.  Lazy: reads
    each source only as far as needed.
    """
    def tagged(index: int, source: Iterable[_Message]) -> Iterator[tuple[int, _Message]]:
        for m in source:
            yield index, m

    sources = [tagged(i, s) for i, s in enumerate(iterables)]
    for _, m in heapq.merge(*sources, key=lambda im: (im[1].time, im[0], im[1].sequence),
                            reverse=reverse):
        yield m
