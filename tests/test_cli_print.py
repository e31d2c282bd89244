"""`logkit print` and `logkit monitor` (issue #7), end to end.

A family with known content (200 messages over several segments) is printed
with every option, alone and combined.  Each output is compared with an
oracle built here: the messages as the test wrote them, selected by a
literal implementation of print_sys_log's eleven steps (not Selection.apply),
formatted with logkit.format_message.  The C scan of print (print_cmd._fast)
and the Python pipeline (_general) are compared on random logs and random
selections.  monitor runs as a real process that the test writes to.
"""
from __future__ import annotations

import base64
import datetime as dt
import io
import itertools
import json
import os
import pty
import re
import select as _select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logkit
from logkit import cli
from logkit import formatters as F
from logkit.cli import print_cmd as P
from logkit.cli.sources import resolve
from logkit.select import Selection

import procs.printing as printprocs
from waiting import wait_until

NS = 1_000_000_000
MIN = 60 * NS
N = 200                      # messages in the test family
TZ = "Asia/Kolkata"          # +05:30: a zone offset that is not whole hours, and not UTC
TIMEOUT = 20.0               # the longest any wait on a monitor process may take


# ====================================================================== environment

@pytest.fixture(scope="module", autouse=True)
def local_zone():
    """Local time is TZ for this module (and the processes it starts)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = TZ
    time.tzset()
    F.clear_cache()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()
    F.clear_cache()


@pytest.fixture(autouse=True)
def no_config(tmp_path, monkeypatch):
    """No configuration file is found unless a test names one: the search
    order looks in the current directory and $HOME."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("LOGKIT_CONFIG", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.chdir(home)


def child_env(**extra) -> dict:
    env = dict(os.environ)
    env.pop("LOGKIT_CONFIG", None)
    env.pop("NO_COLOR", None)
    env["TZ"] = TZ
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


# ====================================================================== the family

@dataclass(frozen=True)
class Msg:
    """A message as the test wrote it (process and thread ids as read back)."""
    sequence: int
    time: int
    severity: int
    text: str
    data: bytes = b""
    data_class: str = ""
    process_id: int = 0
    thread_id: int = 0
    source: int = 0          # which log, when several are merged


FILLER = " lorem ipsum" * 250          # makes every fifth message 3 KB, so the family rotates
SPECIAL_TEXTS = {
    30: "same again", 31: "same again", 32: "same again", 33: "same again",
    50: "caf\u00e9 cr\u00e8me \u00fcn\u00efcode \u2713",
    51: "bell\x07 esc\x1b[31m del\x7f c1\x85",
    52: "first line\nsecond line",
    53: "tab\there",
    54: "", 55: "",
    60: "\u00fcmlaut dup", 61: "\u00fcmlaut dup",
    64: "mixed dup", 65: "mixed dup",
    77: "the rare zebra crossed",
}


def content(i: int) -> tuple[str, int, bytes, str]:
    """(text, severity, data, data_class) of message i of the family."""
    if i in SPECIAL_TEXTS:
        text = SPECIAL_TEXTS[i]
    elif i % 10 == 3:
        text = "repeat me"
    else:
        text = f"message {i:03d} {('alpha', 'beta', 'gamma', 'delta')[i % 4]}"
        if i % 5 == 0:
            text += FILLER
    if i == 0:
        sev = -250
    elif i == N - 1:
        sev = 250
    elif i % 17 == 0:
        sev = (10, 20, 30, 40, 50)[i % 5]
    elif i % 9 == 0:
        sev = 20 + i % 10
    elif i % 11 == 0:
        sev = -(i % 6)
    else:
        sev = (i * 37) % 501 - 250
    if i % 7 == 0 or i == 65:
        data = json.dumps({"i": i, "kind": ("even", "odd")[i % 2], "tag": f"t{i % 3}"}).encode()
        cls = "json"
    elif i % 13 == 5:
        data, cls = bytes([i, 0, 255, 1, 2]) * 3, "blob"
    elif i % 19 == 7:
        data, cls = f"donn\u00e9es {i}".encode(), "utf8"
    else:
        data, cls = b"", ""
    return text, sev, data, cls


@dataclass
class Family:
    dir: str
    msgs: list[Msg]
    segments: list[str]

    def at(self, i: int) -> Msg:
        return self.msgs[i]


def write_family(directory, family, items, segment_size="64KiB") -> list[Msg]:
    """Write items [(text, severity, data, data_class, time)], return them as
    Msgs with their sequence numbers (and ids as read back)."""
    w = logkit.open_writer(directory, family, segment_size=segment_size)
    seqs = [w.write(text, sev, data, cls, time=t) for text, sev, data, cls, t in items]
    w.close()
    read = list(logkit.open_reader(directory, family))
    assert [(m.sequence, m.time, m.severity, m.text, bytes(m.data), m.data_class) for m in read] == \
        [(s, t, sev, text, data, cls) for s, (text, sev, data, cls, t) in zip(seqs, items)]
    return [Msg(s, t, sev, text, data, cls, m.process_id, m.thread_id)
            for s, (text, sev, data, cls, t), m in zip(seqs, items, read)]


@pytest.fixture(scope="module")
def fam(tmp_path_factory) -> Family:
    """200 messages, one a minute up to 90 s ago (so no relative time of the
    tests falls within 30 s of a message), over at least three segments."""
    d = tmp_path_factory.mktemp("fam")
    base = time.time_ns() - (N * 60 + 30) * NS
    items = [content(i) + (base + i * MIN + i * 1001,) for i in range(N)]
    msgs = write_family(d, "app", items)
    segments = logkit.open_reader(d, "app").segment_paths()
    assert len(segments) >= 3, "the family should have rotated"
    return Family(str(d), msgs, segments)


# ====================================================================== the oracle

def _search(patterns, s: str) -> bool:
    for p in patterns:
        if len(p) >= 2 and p[0] == "/" and p[-1] == "/":
            if re.search(p[1:-1], s):
                return True
        elif p in s:
            return True
    return False


def _sev_ok(sevs, s: int) -> bool:
    for v in sevs:
        lo, _, hi = re.fullmatch(r"(-?\d+)(:(-?\d+))?", v).groups()
        if int(lo) <= s <= int(hi if hi is not None else lo):
            return True
    return False


def expansion(m) -> str:
    """The expanded data, as --expand shows it and as --match-data and
    --exclude-data look at it: by the formatter of its class (json pretty
    printed with sorted keys, utf8 as text, anything else a hex dump)."""
    if not m.data:
        return ""
    if m.data_class == "json":
        return json.dumps(json.loads(bytes(m.data)), indent=2, sort_keys=True, ensure_ascii=False)
    if m.data_class == "utf8":
        return bytes(m.data).decode("utf-8", "backslashreplace")
    return F.format_hex(m.data)


def oracle_select(msgs, spec) -> list:
    """print_sys_log's eleven steps, literally, one after the other on lists.

    spec: from / to: ("seq", n) or ("time", ns); for: ("count", n) or
    ("dur", ns); last: ("count", n) or ("time", ns); reverse; severity,
    exclude, match, exclude_data, match_data: lists of option values.
    """
    rev = spec.get("reverse", False)
    ms = list(reversed(msgs)) if rev else list(msgs)
    frm, to, for_, last = spec.get("from"), spec.get("to"), spec.get("for"), spec.get("last")

    def key(m, p):
        return m.sequence if p[0] == "seq" else m.time

    if to:                                                       # 1 stop after --to
        ms = list(itertools.takewhile(lambda m: key(m, to) >= to[1] if rev else key(m, to) <= to[1], ms))
    if frm:                                                      # 2 start at --from
        ms = list(itertools.dropwhile(lambda m: key(m, frm) > frm[1] if rev else key(m, frm) < frm[1], ms))
    if for_ and for_[0] == "dur" and ms:                         # 3 --for DURATION from the start
        start = frm[1] if frm and frm[0] == "time" else ms[0].time
        if rev:
            ms = list(itertools.takewhile(lambda m: m.time >= start - for_[1], ms))
        else:
            ms = list(itertools.takewhile(lambda m: m.time <= start + for_[1], ms))
    if last and last[0] == "time":                               # 4 --last TIME
        if rev:
            ms = list(itertools.takewhile(lambda m: m.time >= last[1], ms))
        else:
            ms = list(itertools.dropwhile(lambda m: m.time < last[1], ms))
    if "severity" in spec:                                       # 5
        ms = [m for m in ms if _sev_ok(spec["severity"], m.severity)]
    if "exclude" in spec:                                        # 6
        ms = [m for m in ms if not _search(spec["exclude"], m.text)]
    if "match" in spec:                                          # 7
        ms = [m for m in ms if _search(spec["match"], m.text)]

    if "exclude_data" in spec:                                   # 8
        ms = [m for m in ms if not _search(spec["exclude_data"], expansion(m))]
    if "match_data" in spec:                                     # 9
        ms = [m for m in ms if _search(spec["match_data"], expansion(m))]
    if for_ and for_[0] == "count":                              # 10
        ms = ms[:for_[1]]
    if last and last[0] == "count":                              # 11 the newest N
        ms = ms[:last[1]] if rev else ms[-last[1]:]
    return ms


def oracle_lines(selected, expand=False, classes=None, no_expand=(), how="auto", fmt="text",
                 dups=False, colour=False, per_class=None) -> str:
    """What print prints for these messages (no header): format_message of each,
    with dups, "=" for a text equal to the previous one printed (the default on a
    terminal; these tests print into a pipe).
    per_class: {data class: how} for expansions that differ by class."""
    out = []
    prev = None
    for m in selected:
        if per_class is not None:
            expand, how = m.data_class in per_class, per_class.get(m.data_class, "auto")
        out.append(F.format_message(m, expand=expand, classes=classes, no_expand=no_expand, how=how,
                                    fmt=fmt, duplicate_of=prev if dups else None, colour=colour) + "\n")
        prev = m.text
    return "".join(out)


def iso_utc(ns: int) -> str:
    """ns as ISO 8601 UTC with all nine fraction digits (exact)."""
    sec, frac = divmod(ns, NS)
    return dt.datetime.fromtimestamp(sec, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def cli_args(spec) -> list[str]:
    """The options of `logkit print` that say what spec says."""
    a = []

    def point(p):
        return str(p[1]) if p[0] == "seq" else iso_utc(p[1])
    if "from" in spec:
        a.append(f"--from={point(spec['from'])}")
    if "to" in spec:
        a.append(f"--to={point(spec['to'])}")
    if "for" in spec:
        k, v = spec["for"]
        a.append(f"--for={v}" if k == "count" else f"--for={v}ns")
    if "last" in spec:
        k, v = spec["last"]
        a.append(f"--last={v}" if k == "count" else f"--last={iso_utc(v)}")
    if spec.get("reverse"):
        a.append("--reverse")
    for key, opt in (("severity", "--severity"), ("exclude", "--exclude"), ("match", "--match"),
                     ("exclude_data", "--exclude-data"), ("match_data", "--match-data")):
        for v in spec.get(key, ()):
            a.append(f"{opt}={v}")
    return a


def resolve_spec(fam: Family, spec) -> dict:
    """("time@", i, delta) in spec: the time of message i, plus delta ns."""
    out = dict(spec)
    for k in ("from", "to", "last"):
        v = spec.get(k)
        if v is not None and v[0] == "time@":
            out[k] = ("time", fam.at(v[1]).time + (v[2] if len(v) > 2 else 0))
    return out


def lk(capsys, *argv):
    """Run `logkit ARGV...` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def first_diff(a: str, b: str) -> str:
    la, lb = a.splitlines(), b.splitlines()
    for i, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            return f"line {i}:\n  got:      {x[:200]!r}\n  expected: {y[:200]!r}"
    return f"{len(la)} lines, expected {len(lb)}"


def assert_same(got: str, expected: str) -> None:
    assert got == expected, first_diff(got, expected)


# ====================================================================== selection: every option against the oracle

SELECTIONS = {
    "everything": {},
    "from-seq": {"from": ("seq", 20)},
    "to-seq": {"to": ("seq", 40)},
    "from-to-seq": {"from": ("seq", 20), "to": ("seq", 40)},
    "from-to-time-inclusive": {"from": ("time@", 20), "to": ("time@", 40)},
    "from-to-time-between": {"from": ("time@", 20, 1), "to": ("time@", 40, -1)},
    "from-seq-for-count": {"from": ("seq", 20), "for": ("count", 7)},
    "from-time-for-30m": {"from": ("time@", 20), "for": ("dur", 30 * MIN)},
    "from-time-for-exact": {"from": ("time@", 20), "for": ("dur", 20 * MIN + 20 * 1001)},
    "for-10m-from-the-first": {"for": ("dur", 10 * MIN)},
    "from-seq-for-5m-from-its-time": {"from": ("seq", 100), "for": ("dur", 5 * MIN)},
    "for-count": {"for": ("count", 7)},
    "last-count": {"last": ("count", 5)},
    "last-count-more-than-the-log": {"last": ("count", N + 1)},
    "last-count-more-than-selected": {"match": ["repeat me"], "last": ("count", 25)},
    "last-time": {"last": ("time@", 150)},
    "last-time-and-to": {"last": ("time@", 150), "to": ("seq", 171)},
    "last-count-and-to": {"last": ("count", 4), "to": ("time@", 100)},
    "severity-range": {"severity": ["20:29"]},
    "severity-negative-and-ends": {"severity": ["-5:0", "250", "-250"]},
    "severity-overlapping-ranges": {"severity": ["-100:-50", "-60:0", "40"]},
    "exclude-plain": {"exclude": ["lorem"]},
    "exclude-regex": {"exclude": ["/^message \\d+ (alpha|beta)/"]},
    "match-rare": {"match": ["zebra"]},
    "match-duplicates": {"match": ["repeat me"]},
    "match-regex-ignoring-case": {"match": ["/(?i)ZEBRA|caf\u00e9/"]},
    "match-plain-or-regex": {"match": ["zebra", "/^tab/"]},
    "match-non-ascii": {"match": ["\u00fcmlaut"]},
    "match-and-exclude": {"match": ["message"], "exclude": ["lorem", "/gamma$/"]},
    "exclude-then-match-order": {"exclude": ["repeat"], "match": ["repeat", "same"]},
    "match-data-json": {"match_data": ['"tag": "t1"']},
    "exclude-data-regex": {"exclude_data": ["/\"kind\": \"odd\"/"]},
    "match-data-utf8-class": {"match_data": ["donn\u00e9es"]},
    "match-data-hex-dump": {"match_data": ["00 ff 01 02"]},
    "match-data-pretty-json-only": {"match_data": ['/"i": \\d+,\\n  "kind": "odd"/']},
    "exclude-data-hex-and-match-data": {"exclude_data": ["|..."], "match_data": ["/./"]},
    "severity-match-for-count": {"severity": ["-250:0"], "match": ["message"], "for": ("count", 9)},
    "severity-last-count": {"severity": ["0:250"], "last": ("count", 6)},
    "match-last-count-duplicates": {"match": ["/repeat|same/"], "last": ("count", 5)},
    "to-severity-exclude": {"to": ("time@", 120), "severity": ["-250:50"], "exclude": ["lorem"]},
    "all-window-steps": {"from": ("time@", 10), "for": ("dur", 150 * MIN), "severity": ["-250:100"],
                         "exclude": ["beta"], "match": ["message", "/repeat|same/"],
                         "exclude_data": ["t2"]},
    "all-filter-steps": {"to": ("seq", 190), "last": ("time@", 30), "severity": ["-200:200"],
                         "exclude": ["/delta/"], "match": ["message", "repeat"],
                         "match_data": ["/t[01]/"]},
    "all-steps-last-count": {"to": ("seq", 150), "severity": ["-250:250"], "exclude": ["zebra"],
                             "match": ["/a/"], "exclude_data": ["odd"], "match_data": ["kind"],
                             "last": ("count", 3)},
    # --reverse: --from is the newer end, --to the older
    "reverse-everything": {"reverse": True},
    "reverse-from-to-seq": {"reverse": True, "from": ("seq", 40), "to": ("seq", 20)},
    "reverse-from-to-time": {"reverse": True, "from": ("time@", 40, -1), "to": ("time@", 20, 1)},
    "reverse-from-for-30m": {"reverse": True, "from": ("time@", 150), "for": ("dur", 30 * MIN)},
    "reverse-for-10m-from-the-newest": {"reverse": True, "for": ("dur", 10 * MIN)},
    "reverse-for-count": {"reverse": True, "for": ("count", 7)},
    "reverse-last-count": {"reverse": True, "last": ("count", 5)},
    "reverse-last-time": {"reverse": True, "last": ("time@", 150)},
    "reverse-severity-match": {"reverse": True, "severity": ["-5:0", "20:29"], "match": ["message", "repeat"]},
    "reverse-duplicates": {"reverse": True, "match": ["/same|repeat/"]},
    "reverse-all-steps": {"reverse": True, "from": ("seq", 180), "for": ("dur", 120 * MIN),
                          "severity": ["-250:200"], "exclude": ["gamma"], "match": ["/./"],
                          "exclude_data": ["t0"]},
}


@pytest.mark.parametrize("name", list(SELECTIONS))
def test_selection_is_print_sys_logs_eleven_steps(fam, capsys, name):
    spec = resolve_spec(fam, SELECTIONS[name])
    expected = oracle_select(fam.msgs, spec)
    assert expected, "a case should select something"
    rc, out, err = lk(capsys, "print", fam.dir, "--no-header", *cli_args(spec))
    assert_same(out, oracle_lines(expected))
    assert rc == (0 if expected else 1)
    assert err == ""


def test_the_oracle_selects_what_the_cases_mean(fam):
    """Spot checks of the oracle itself against sequence numbers worked out by hand."""
    seqs = lambda name: [m.sequence for m in oracle_select(fam.msgs, resolve_spec(fam, SELECTIONS[name]))]
    s = fam.msgs[0].sequence                     # sequence of message 0
    assert seqs("from-to-seq") == list(range(20, 41))
    assert seqs("from-to-time-between") == [s + i for i in range(21, 40)]
    assert seqs("from-time-for-30m") == [s + i for i in range(20, 50)]       # 50 is 30 us too late
    assert seqs("from-time-for-exact") == [s + i for i in range(20, 41)]
    assert seqs("last-count") == [s + i for i in range(195, 200)]
    assert seqs("reverse-last-count") == [s + i for i in range(199, 194, -1)]
    assert seqs("reverse-from-to-seq") == list(range(40, 19, -1))
    assert seqs("match-rare") == [s + 77]
    assert seqs("for-10m-from-the-first") == [s + i for i in range(0, 10)]


def test_data_tests_look_at_the_expansion_not_the_raw_bytes(fam):
    """--match-data on what --expand shows: pretty JSON, hex dumps."""
    for name in ("match-data-pretty-json-only", "match-data-hex-dump"):
        spec = SELECTIONS[name]
        assert oracle_select(fam.msgs, spec)
        raw = [m for m in fam.msgs if _search(spec["match_data"], bytes(m.data).decode("utf-8", "replace"))]
        assert raw == [], name                         # the case would select nothing on the raw bytes


DISPLAYS = {
    "default": ([], {}),
    "expand-json-and-octal-blob": (["--expand", "json", "--expand-octal", "blob"],
                                   {"per_class": {"json": "auto", "blob": "octal"}}),
    "expand-all-and-hex-blob": (["--expand", "--expand-hex", "blob"],
                                {"per_class": {"json": "auto", "utf8": "auto", "blob": "hex", "": "auto"}}),
    "duplicates": (["--duplicates"], {"dups": False}),
    "no-duplicates": (["--duplicates", "--no-duplicates"], {"dups": True}),
    "short": (["-o", "short"], {"fmt": "short"}),
    "expand": (["--expand"], {"expand": True}),
    "expand-json-only": (["--expand", "json"], {"expand": True, "classes": {"json"}}),
    "expand-two-classes": (["--expand", "json", "blob"], {"expand": True, "classes": {"json", "blob"}}),
    "expand-octal": (["--expand-octal"], {"expand": True, "how": "octal"}),
    "expand-hex-blob": (["--expand-hex", "blob"], {"expand": True, "how": "hex", "classes": {"blob"}}),
    "expand-but-not-json": (["--expand", "--no-expand", "json"], {"expand": True, "no_expand": {"json"}}),
    "no-expand-cancels": (["--expand", "--no-expand"], {}),
    "json-expand-octal-json": (["-o", "json", "--expand-octal", "json"],
                               {"fmt": "json", "expand": True, "how": "octal", "classes": {"json"}}),
    "colour": (["--colour", "always"], {"colour": True}),
    "colour-never": (["--colour", "never"], {}),
    "short-colour-expand": (["-o", "short", "--color", "always", "--expand-hex"],
                            {"fmt": "short", "colour": True, "expand": True, "how": "hex"}),
}


@pytest.mark.parametrize("sel", ["everything", "match-duplicates", "reverse-all-steps", "all-filter-steps"])
@pytest.mark.parametrize("display", list(DISPLAYS))
def test_display_options_format_each_message_as_format_message(fam, capsys, sel, display):
    spec = resolve_spec(fam, SELECTIONS[sel])
    opts, kw = DISPLAYS[display]
    rc, out, err = lk(capsys, "print", fam.dir, "--no-header", *opts, *cli_args(spec))
    assert rc == 0 and err == ""
    assert_same(out, oracle_lines(oracle_select(fam.msgs, spec), **kw))


# ====================================================================== display, by hand

def local_text_line(m: Msg, text: str) -> str:
    """The text layout worked out here, not by format_message."""
    t = dt.datetime.fromtimestamp(m.time // NS).astimezone()
    off = t.utcoffset()
    sign = "-" if off < dt.timedelta(0) else "+"
    hh, rest = divmod(abs(int(off.total_seconds())), 3600)
    stamp = t.strftime("%Y-%m-%d %H:%M:%S") + f".{(m.time // 1000) % 1_000_000:06d}{sign}{hh:02d}:{rest // 60:02d}"
    sev = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}.get(m.severity, str(m.severity))
    return f"{stamp}  {m.sequence:>7}  {sev:<8}  {text}"


def test_text_layout_is_local_time_sequence_severity_text(fam, capsys):
    rc, out, _ = lk(capsys, "print", fam.dir, "--no-header", "--from", fam.at(17).sequence,
                    "--for", "1")
    m = fam.at(17)
    assert out == local_text_line(m, m.text) + "\n"
    assert "+05:30  " in out and "  WARNING   message 017 " in out


def text_of(line: str) -> str:
    """The text column of a text-format line (time 32, sequence 7, severity 8, two spaces between)."""
    return line[32 + 2 + 7 + 2 + 8 + 2:]


def test_a_text_equal_to_the_previous_one_printed_is_an_equals_sign(fam, capsys):
    s = fam.at(30).sequence
    _, out, _ = lk(capsys, "print", fam.dir, "--no-header", "--from", s, "--to", s + 3, "--no-duplicates")
    texts = [text_of(line) for line in out.splitlines()]
    assert texts == ["same again", "=", "=", "="]
    _, out, _ = lk(capsys, "print", fam.dir, "--no-header", "--from", s, "--to", s + 3, "--duplicates")
    assert [text_of(line) for line in out.splitlines()] == ["same again"] * 4
    # "Previous" is the previous message printed, not the previous in the log.
    _, out, _ = lk(capsys, "print", fam.dir, "--no-header", "--match", "repeat me", "--no-duplicates")
    texts = [text_of(line) for line in out.splitlines()]
    assert texts[0] == "repeat me" and set(texts[1:]) == {"="} and len(texts) > 10


def test_equals_sign_for_empty_non_ascii_and_mixed_texts(fam, capsys):
    """Duplicates decided by the C printer, by the Python fallback, and across
    the two (message 65 has data: with --expand it takes the fallback)."""
    for first, opts in ((54, []), (60, []), (64, ["--expand"])):
        s = fam.at(first).sequence
        _, out, _ = lk(capsys, "print", fam.dir, "--no-header", "--from", s, "--to", s + 1, "--no-duplicates", *opts)
        lines = [x for x in out.splitlines() if not x.startswith("    ")]     # not the expansions
        assert len(lines) == 2 and lines[1].endswith("  =") and not lines[0].endswith("  ="), (first, lines)


def test_control_characters_print_escaped_and_lines_indented(fam, capsys):
    s = fam.at(51).sequence
    _, out, _ = lk(capsys, "print", fam.dir, "--no-header", "--from", s, "--for", "2")
    assert "\x1b" not in out and "\x07" not in out
    bell, first, second = out.splitlines()
    assert text_of(bell) == "bell\\x07 esc\\x1b[31m del\\x7f c1\\x85"
    assert text_of(first) == "first line" and second == " " * 53 + "second line"


def test_colour_by_severity_only_when_asked_or_on_a_terminal(fam, capsys):
    s = fam.at(190).sequence
    rc, always, _ = lk(capsys, "print", fam.dir, "--no-header", "--from", s, "--colour", "always")

    def colour(sev):
        return ("\x1b[1;31m" if sev >= 50 else "\x1b[31m" if sev >= 40 else "\x1b[33m" if sev >= 30
                else "\x1b[2m" if sev <= 10 else "")
    lines = always.splitlines()
    assert len(lines) == N - 190
    for line, m in zip(lines, fam.msgs[190:]):
        c = colour(m.severity)
        assert line == (c + local_text_line(m, m.text) + "\x1b[0m" if c else local_text_line(m, m.text))
    assert any(colour(m.severity) for m in fam.msgs[190:]) and not all(colour(m.severity) for m in fam.msgs[190:])
    for opts in ([], ["--colour", "never"], ["--colour", "auto"]):
        _, out, _ = lk(capsys, "print", fam.dir, "--no-header", "--from", s, *opts)
        assert "\x1b" not in out                   # not a terminal: no colour
    _, js, _ = lk(capsys, "print", fam.dir, "--from", s, "-o", "json", "--colour", "always")
    assert "\x1b" not in js                          # JSON never


def _run_on_terminal(argv, env) -> str:
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen(argv, stdout=slave, stderr=subprocess.PIPE, env=env)
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                b = os.read(master, 65536)
            except OSError:                        # EIO: the child closed the terminal
                break
            if not b:
                break
            chunks.append(b)
        assert p.wait(TIMEOUT) == 0, p.stderr.read()
        return b"".join(chunks).decode()
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def test_colour_auto_on_a_terminal_unless_no_color(fam):
    s = fam.at(195).sequence
    argv = [sys.executable, "-m", "logkit", "print", fam.dir, "--no-header", "--from", str(s)]
    assert "\x1b[" in _run_on_terminal(argv, child_env())
    assert "\x1b[" not in _run_on_terminal(argv, child_env(NO_COLOR="1"))


def test_json_output_parses_back_to_the_messages(fam, capsys):
    rc, out, err = lk(capsys, "print", fam.dir, "-o", "json", "--expand", "json")
    assert rc == 0 and err == ""
    objs = [json.loads(line) for line in out.splitlines()]       # no header in JSON
    assert len(objs) == N
    for o, m in zip(objs, fam.msgs):
        assert (o["sequence"], o["time_ns"], o["severity"], o["text"], o["data_class"]) == \
            (m.sequence, m.time, m.severity, m.text, m.data_class)
        assert base64.b64decode(o["data"]) == m.data
        assert (o["process_id"], o["thread_id"]) == (m.process_id, m.thread_id) and m.process_id == os.getpid()
        assert o["time"] == iso_utc(m.time)
        if m.data_class == "json":
            assert json.loads(o["expanded"]) == json.loads(m.data)
        else:
            assert "expanded" not in o
    assert [o["text"] for o in objs[30:34]] == ["same again"] * 4        # no "=" in JSON
    assert "\x1b" not in out and "\x07" not in out and "\x7f" not in out


def test_json_output_of_a_selection_in_reverse(fam, capsys):
    _, out, _ = lk(capsys, "print", fam.dir, "-o", "json", "--reverse", "--match", "repeat me", "--for", "3")
    objs = [json.loads(line) for line in out.splitlines()]
    assert [o["sequence"] for o in objs] == \
        [m.sequence for m in fam.msgs if m.text == "repeat me"][::-1][:3]


# ====================================================================== header, limits, pathnames

def local_iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns // NS).astimezone().replace(
        microsecond=(ns // 1000) % 1_000_000).isoformat(timespec="microseconds")


def test_header_gives_first_and_last_message_of_the_log(fam, capsys):
    first, last = fam.msgs[0], fam.msgs[-1]
    head = (f"{fam.dir}: first {first.sequence} at {local_iso(first.time)}, "
            f"last {last.sequence} at {local_iso(last.time)}")
    rc, out, _ = lk(capsys, "print", fam.dir, "--match", "zebra")
    assert out.splitlines() == ["== " + head, local_text_line(fam.at(77), fam.at(77).text)]
    _, out, _ = lk(capsys, "print", fam.dir, "--match", "zebra", "--header")
    assert out.splitlines()[0] == "== " + head
    _, out, _ = lk(capsys, "print", fam.dir, "--match", "zebra", "--no-header")
    assert len(out.splitlines()) == 1
    _, out, _ = lk(capsys, "print", fam.dir, "--match", "zebra", "-o", "short")
    assert out.splitlines()[0] == "== " + head
    rc, out, _ = lk(capsys, "print", fam.dir, "--limits", "--match", "zebra", "--reverse", "-o", "json")
    assert rc == 0 and out == head + "\n"         # --limits: nothing else, whatever else is given


def test_limits_of_an_empty_log_exit_1(tmp_path, capsys):
    logkit.open_writer(tmp_path, "empty", segment_size="64KiB").close()
    rc, out, _ = lk(capsys, "print", tmp_path, "--limits")
    assert rc == 1 and out == f"{tmp_path}: no messages\n"
    rc, out, _ = lk(capsys, "print", tmp_path)
    assert rc == 1 and out == f"== {tmp_path}: no messages\n"


def _path_lines(out):
    return [line[3:] for line in out.splitlines() if line.startswith("-- ")]


def test_absolute_pathname_names_each_segment_examined(fam, capsys):
    segs = [os.path.abspath(p) for p in fam.segments]
    rc, out, _ = lk(capsys, "print", fam.dir, "--no-header", "--absolute-pathname")
    assert _path_lines(out) == segs
    assert [line for line in out.splitlines() if not line.startswith("-- ")] == \
        oracle_lines(fam.msgs).splitlines()
    # The segments holding printed messages only, in the order printed.
    _, out, _ = lk(capsys, "print", fam.dir, "--no-header", "--absolute-pathname", "--last", "3")
    assert _path_lines(out) == segs[-1:]
    _, out, _ = lk(capsys, "print", fam.dir, "--no-header", "--absolute-pathname", "--reverse")
    assert _path_lines(out) == segs[::-1]
    _, out, _ = lk(capsys, "print", fam.dir, "--no-header", "--absolute-pathname", "--for", "1")
    assert _path_lines(out) == segs[:1]
    _, out, _ = lk(capsys, "print", fam.dir, "--no-header", "--absolute-pathname", "--last", str(N - 1))
    assert _path_lines(out) == segs


def test_absolute_pathname_in_json_output_keeps_every_line_json(fam, capsys):
    segs = [os.path.abspath(p) for p in fam.segments]
    for opts in ([], ["--reverse"], ["--last", "3"]):
        _, out, _ = lk(capsys, "print", fam.dir, "-o", "json", "--absolute-pathname", *opts)
        objs = [json.loads(line) for line in out.splitlines()]
        paths = [o["segment"] for o in objs if "segment" in o]
        want = segs[::-1] if opts == ["--reverse"] else segs[-1:] if opts else segs
        assert paths == want
        assert len(objs) - len(paths) == (3 if opts == ["--last", "3"] else N)


def test_last_count_that_starts_in_an_older_segment(fam, capsys):
    """--last COUNT reaching back over a segment boundary: the C path keeps the
    tail's offsets per segment and prints them after the walk."""
    with logkit.Segment.open(fam.segments[-1], readonly=True) as live:
        base = live.sequence_base
    n = sum(1 for m in fam.msgs if m.sequence >= base) + 5
    spec = {"last": ("count", n)}
    _, out, _ = lk(capsys, "print", fam.dir, "--no-header", "--absolute-pathname", *cli_args(spec))
    assert _path_lines(out) == [os.path.abspath(p) for p in fam.segments[-2:]]
    assert_same("".join(x + "\n" for x in out.splitlines() if not x.startswith("-- ")),
                oracle_lines(fam.msgs[-n:]))


# ====================================================================== what a LOG names

def test_a_segment_file_means_its_family_unless_single(fam, capsys):
    for seg in fam.segments:
        whole = lk(capsys, "print", seg, "--no-header")[1]
        assert_same(whole, oracle_lines(fam.msgs))
        assert lk(capsys, "print", seg, "--no-header", "--family")[1] == whole
        with logkit.Segment.open(seg, readonly=True) as sg:
            own = {m.sequence for m in sg}
        rc, out, _ = lk(capsys, "print", seg, "--no-header", "--single")
        assert rc == 0
        assert_same(out, oracle_lines([m for m in fam.msgs if m.sequence in own]))
        # The header of --single describes that segment.
        head = lk(capsys, "print", seg, "--single", "--for", "1")[1].splitlines()[0]
        assert head.startswith(f"== {seg}: first {min(own)} at ") and f", last {max(own)} at " in head
    # --single in reverse and with a selection goes through the Python path.
    seg = fam.segments[1]
    with logkit.Segment.open(seg, readonly=True) as sg:
        own = {m.sequence for m in sg}
    spec = {"reverse": True, "match": ["message"], "last": ("count", 4)}
    _, out, _ = lk(capsys, "print", seg, "--no-header", "--single", *cli_args(spec))
    assert_same(out, oracle_lines(oracle_select([m for m in fam.msgs if m.sequence in own], spec)))


def write_config(tmp_path, body: str) -> str:
    p = tmp_path / "logkit.toml"
    p.write_text(body)
    return str(p)


def test_a_log_name_of_the_configuration(fam, tmp_path, capsys, monkeypatch):
    cfg = write_config(tmp_path, f'[log.app]\ndirectory = "{fam.dir}"\nfamily = "app"\n'
                                 f'[log.other]\ndirectory = "{fam.dir}"\nfamily = "app"\n')
    spec = {"match": ["repeat"], "for": ("count", 3)}
    rc, out, _ = lk(capsys, "print", "-c", cfg, "app", "--no-header", *cli_args(spec))
    assert rc == 0
    assert_same(out, oracle_lines(oracle_select(fam.msgs, spec)))
    rc, out, _ = lk(capsys, "print", "-c", cfg, "app", "--limits")
    assert out.startswith("app: first ")
    # No LOG: every log of the configuration (found through $LOGKIT_CONFIG), merged by time.
    monkeypatch.setenv("LOGKIT_CONFIG", cfg)
    rc, out, _ = lk(capsys, "print", "--match", "zebra", "--no-duplicates")
    lines = out.splitlines()
    assert lines[0].startswith("== app: first") and lines[1].startswith("== other: first")
    assert lines[2:] == [local_text_line(fam.at(77), fam.at(77).text), local_text_line(fam.at(77), "=")]
    # A trailing value of a list option that names a log is a LOG.
    monkeypatch.delenv("LOGKIT_CONFIG")
    rc, out, _ = lk(capsys, "print", "-c", cfg, "--no-header", "--match", "zebra", "app")
    assert rc == 0 and out == local_text_line(fam.at(77), fam.at(77).text) + "\n"


def test_a_trailing_path_after_a_list_option_is_the_log(fam, capsys):
    want = local_text_line(fam.at(77), fam.at(77).text) + "\n"
    assert lk(capsys, "print", "--no-header", "--match", "zebra", fam.dir)[1] == want
    assert lk(capsys, "print", "--no-header", "--severity", str(fam.at(77).severity), fam.dir)[1] \
        .count(fam.at(77).text) == 1
    rc, out, _ = lk(capsys, "print", "--no-header", "--match", "zebra", "--expand", fam.dir)
    assert rc == 0 and out == oracle_lines([fam.at(77)], expand=True) and "[json]" in out


def partition_messages(path, items):
    from logkit.backends.partition import PartitionStorage
    s = PartitionStorage("p", path=str(path), size="64KiB")
    for text, sev, data, cls, t in items:
        s.write(text, sev, data, cls, time=t)
    s.close()
    from logkit.backends.partition import open_reader
    return list(open_reader(str(path)))


def small_items(base, n, source=0, step=MIN):
    out = []
    for i in range(n):
        text, sev, data, cls = content(i)
        out.append((text.replace(FILLER, "") + f" [{source}]" if text else text, sev, data, cls,
                    base + i * step + source))
    return out


def test_a_partition_file(tmp_path, capsys):
    items = small_items(time.time_ns() - 100 * MIN, 40)
    path = tmp_path / "p.part"
    read = partition_messages(path, items)
    assert [(m.text, m.severity, bytes(m.data), m.time) for m in read] == \
        [(t, s, d, tm) for t, s, d, c, tm in items]
    for spec in ({}, {"match": ["repeat"]}, {"reverse": True, "last": ("count", 5)},
                 {"from": ("seq", read[5].sequence), "for": ("dur", 10 * MIN)},
                 {"severity": ["-100:100"], "exclude": ["/alpha/"]}):
        rc, out, err = lk(capsys, "print", path, "--no-header", "--expand", *cli_args(spec))
        assert rc == 0 and err == ""
        assert_same(out, oracle_lines(oracle_select(read, spec), expand=True))
    rc, out, _ = lk(capsys, "print", path, "--limits")
    assert out == f"{path}: first {read[0].sequence} at {local_iso(read[0].time)}, " \
                  f"last {read[-1].sequence} at {local_iso(read[-1].time)}\n"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_plain_log_file(tmp_path, capsys, fmt):
    from logkit.backends.plainfile import PlainFileStorage, open_reader
    items = small_items(time.time_ns() - 100 * MIN, 40)
    path = tmp_path / f"app-{fmt}.log"
    s = PlainFileStorage("plain", path=str(path), format=fmt)
    for text, sev, data, cls, t in items:
        s.write(text, sev, data, cls, time=t)
    s.close()
    read = list(open_reader(str(path)))
    assert [(m.text, m.severity, bytes(m.data), m.data_class) for m in read] == \
        [(t, s, d, c) for t, s, d, c, tm in items]
    for spec in ({}, {"match": ["repeat"]}, {"reverse": True, "for": ("count", 4)},
                 {"last": ("count", 6), "severity": ["-250:0"]}):
        rc, out, err = lk(capsys, "print", path, "--no-header", "--expand", *cli_args(spec))
        assert rc == 0 and err == ""
        assert_same(out, oracle_lines(oracle_select(read, spec), expand=True))


def test_a_sealed_family_prints_with_its_key_file_and_encrypted_without(tmp_path, capsys):
    from logkit.crypto import generate_key_file
    key = tmp_path / "app.keys"
    generate_key_file(key)
    d = tmp_path / "sealed"
    w = logkit.open_writer(d, "app", segment_size="8KiB", key_file=key)
    base = time.time_ns() - 100 * MIN
    items = small_items(base, 40)
    for text, sev, data, cls, t in items:
        w.write(text, sev, data, cls, time=t)
    w.close()
    read = list(logkit.open_reader(d, "app", key_file=key))
    assert [m.text for m in read] == [i[0] for i in items] and read[0].sealed
    for spec in ({}, {"match": ["repeat"]}, {"exclude": ["/gamma/"], "last": ("count", 3)},
                 {"match_data": ["kind"]}, {"reverse": True, "severity": ["-250:0"]}):
        rc, out, err = lk(capsys, "print", d, "--no-header", "--key-file", key, "--expand", *cli_args(spec))
        assert rc == 0, (spec, err)
        assert_same(out, oracle_lines(oracle_select(read, spec), expand=True))
    rc, out, _ = lk(capsys, "print", d, "--no-header", "--duplicates")
    assert rc == 0 and {text_of(x) for x in out.splitlines()} == {"[encrypted]"}
    assert lk(capsys, "print", d, "--no-header", "--match", "repeat")[0] == 1     # the text is not readable


def test_several_logs_are_merged_by_time(tmp_path, capsys):
    base = time.time_ns() - 100 * MIN
    a = write_family(tmp_path / "a", "a", small_items(base, 30, 0, step=2 * MIN))
    b = write_family(tmp_path / "b", "b", small_items(base + MIN // 2, 30, 1, step=3 * MIN))
    c = write_family(tmp_path / "c", "c", small_items(base, 10, 0, step=2 * MIN))  # ties with a
    a = [replace(m, source=0) for m in a]
    b = [replace(m, source=1) for m in b]
    c = [replace(m, source=2) for m in c]
    merged = sorted(a + b + c, key=lambda m: (m.time, m.source, m.sequence))
    assert any(x.time == y.time for x, y in zip(merged, merged[1:]))     # ties are ordered by LOG
    logs = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    for spec in ({}, {"reverse": True}, {"match": ["repeat"]}, {"last": ("count", 7)},
                 {"from": ("time", base + 20 * MIN), "for": ("dur", 30 * MIN)},
                 {"reverse": True, "from": ("time", base + 40 * MIN), "to": ("time", base + 10 * MIN)},
                 {"for": ("count", 5), "severity": ["-250:0"]}):
        rc, out, err = lk(capsys, "print", *logs, "--no-header", *cli_args(spec))
        assert err == ""
        assert_same(out, oracle_lines(oracle_select(merged, spec)))
    rc, out, _ = lk(capsys, "print", *logs)
    assert [line.split(":")[0] for line in out.splitlines()[:3]] == [f"== {p}" for p in logs]
    rc, out, _ = lk(capsys, "print", *logs, "--limits")
    assert out.splitlines() == [f"{p}: first 1 at {local_iso(ms[0].time)}, last {ms[-1].sequence} at "
                                f"{local_iso(ms[-1].time)}" for p, ms in zip(logs, (a, b, c))]
    # A family and a plain file merged.
    from logkit.backends.plainfile import PlainFileStorage, open_reader
    s = PlainFileStorage("plain", path=str(tmp_path / "p.log"))
    for text, sev, data, cls, t in small_items(base + MIN // 3, 20, 3, step=4 * MIN):
        s.write(text, sev, data, cls, time=t)
    s.close()
    plain = list(open_reader(str(tmp_path / "p.log")))
    both = sorted([(m.time, 0, m.sequence, m) for m in a] + [(m.time, 1, m.sequence, m) for m in plain],
                  key=lambda x: x[:3])
    rc, out, _ = lk(capsys, "print", tmp_path / "a", tmp_path / "p.log", "--no-header", "--expand")
    assert_same(out, oracle_lines([x[3] for x in both], expand=True))


# ====================================================================== time expressions

def test_relative_and_iso_times(fam, capsys):
    now = time.time_ns()
    msgs = fam.msgs

    def since(t):
        return [m for m in msgs if m.time >= t]

    def check(opts, expected):
        rc, out, _ = lk(capsys, "print", fam.dir, "--no-header", *opts)
        assert_same(out, oracle_lines(expected))
    check(["--from=-2h"], since(now - 120 * MIN))
    check(["--from", "now-2h"], since(now - 120 * MIN))
    check(["--from=-1h30m"], since(now - 90 * MIN))
    check(["--last", "30m"], since(now - 30 * MIN))
    check(["--last=-30m"], since(now - 30 * MIN))                   # a sign on a duration is ignored
    check(["--last", "now-45m"], since(now - 45 * MIN))
    check(["--to=-150m"], [m for m in msgs if m.time <= now - 150 * MIN])
    check(["--from=-2h", "--for", "10m"], [m for m in since(now - 120 * MIN)
                                           if m.time <= now - 110 * MIN])
    # ISO 8601: UTC, an offset, and local time (this module's TZ), to the second or the ns.
    m = fam.at(100)
    sec = m.time // NS
    utc = dt.datetime.fromtimestamp(sec, dt.timezone.utc)
    local = dt.datetime.fromtimestamp(sec).astimezone()
    check(["--from", utc.strftime("%Y-%m-%dT%H:%M:%SZ")], since(sec * NS))
    check(["--from", utc.astimezone(dt.timezone(dt.timedelta(hours=-3))).strftime("%Y-%m-%dT%H:%M:%S-03:00")],
          since(sec * NS))
    check(["--from", local.strftime("%Y-%m-%d %H:%M:%S")], since(sec * NS))
    check(["--from", local.strftime("%Y-%m-%dT%H:%M")], since(sec // 60 * 60 * NS))
    check(["--to", iso_utc(m.time)], [x for x in msgs if x.time <= m.time])


def test_yesterday_and_today_are_local_midnights(tmp_path, capsys):
    now = time.time_ns()
    midnight = int(dt.datetime.combine(dt.date.today(), dt.time()).timestamp()) * NS
    if now - midnight < 5 * NS:
        pytest.skip("too close to midnight for 'today' to be unambiguous")
    ystd = int(dt.datetime.combine(dt.date.today() - dt.timedelta(days=1), dt.time()).timestamp()) * NS
    hour = 3600 * NS
    times = [ystd - 12 * hour, ystd + 6 * hour, ystd + 18 * hour, midnight + 1, now - NS]
    items = [(f"day {i}", 20, b"", "", t) for i, t in enumerate(times)]
    msgs = write_family(tmp_path, "days", items)

    def texts(*opts):
        out = lk(capsys, "print", tmp_path, "--no-header", *opts)[1]
        return [text_of(line) for line in out.splitlines()]
    assert texts("--from", "yesterday", "--to", "today") == \
        [m.text for m in msgs if ystd <= m.time <= midnight]
    assert texts("--last", "yesterday") == [m.text for m in msgs if m.time >= ystd]
    assert texts("--from", "today") == [m.text for m in msgs if m.time >= midnight]
    assert texts("--to", "yesterday") == [m.text for m in msgs if m.time <= ystd]
    assert texts("--from", "yesterday", "--to", "today") == ["day 1", "day 2"]


# ====================================================================== the C scan and the Python pipeline agree

class _Sink:
    def __init__(self):
        self.buffer = io.BytesIO()

    def flush(self):
        pass


def both_paths(path, argv, now_ns=None, single=False):
    """(printed, output bytes) of print_cmd._fast and of _general for one LOG."""
    args = cli.build_parser().parse_args(["print", str(path), *argv])
    results = []
    for fast in (True, False):
        sel = Selection.from_args(args, now_ns=now_ns)
        disp = P.Display(args, out_isatty=False)
        src = resolve(str(path), single=single)
        sink = _Sink()
        try:
            if fast:
                n = P._fast(src, sel, disp, P.Output(sink), args.absolute_pathname)
            else:
                n = P._general([src], sel, disp, P.Output(sink), args.absolute_pathname)
        finally:
            src.close()
        results.append((n, sink.buffer.getvalue()))
    return results


def test_the_c_printer_falls_back_to_python_for_control_and_non_ascii_texts(fam, monkeypatch):
    """Messages 50-55 (non-ASCII, controls, a newline, a tab, empty) print the
    same from the C printer's fallback as from format_message."""
    from logkit import _scan
    made = []
    real = _scan.Printer

    def spy(*a):
        p = real(*a)
        made.append(p)
        return p
    monkeypatch.setattr(_scan, "Printer", spy)
    s = fam.at(49).sequence
    argv = ["--from", str(s), "--to", str(s + 13), "--no-header"]
    (nf, fast), (ng, general) = both_paths(fam.dir, argv)
    assert made and made[0].fallbacks >= 6 and made[0].lines == 14     # 50-53 and 60-61 at least
    assert (nf, fast) == (ng, general) == (14, oracle_lines(fam.msgs[49:63]).encode())


def test_the_c_scan_agrees_on_the_fixture_for_every_selection(fam):
    now = time.time_ns()
    for name, spec in SELECTIONS.items():
        if spec.get("reverse"):
            continue
        spec = resolve_spec(fam, spec)
        for extra in ([], ["--expand"], ["-o", "short", "--duplicates"], ["--absolute-pathname"]):
            (nf, fast), (ng, general) = both_paths(fam.dir, cli_args(spec) + extra, now_ns=now)
            assert (nf, fast) == (ng, general), (name, extra, first_diff(fast.decode(), general.decode()))


WORDS = ["alpha", "beta", "a", "", "Z", "\u00e9", "x\ty", "end"]
text_st = st.one_of(
    st.builds(" ".join, st.lists(st.sampled_from(WORDS), max_size=4)),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x2FF, exclude_categories=("Cs",)),
            max_size=12),
    st.sampled_from(["alpha", "alpha", "alpha beta"]),                     # duplicates
    st.builds(lambda n: "long " + "b" * n, st.integers(200, 3000)),        # memmem, rotation
)
data_st = st.one_of(
    st.just((b"", "")),
    st.builds(lambda k: (json.dumps({"k": k}).encode(), "json"), st.sampled_from(WORDS)),
    st.tuples(st.binary(min_size=1, max_size=20), st.sampled_from(["blob", "utf8", ""])),
)
msg_st = st.tuples(text_st, st.integers(-250, 250), data_st, st.integers(-3 * MIN, 5 * MIN))
pattern_st = st.sampled_from(["alpha", "beta", "a", "Z", "\u00e9", "b" * 50, "/^alpha$/", "/a.?b/",
                              "/(?i)z/", "/[\\x00-\\x1f]/", "t", "/^$/", ""])
window_st = st.fixed_dictionaries({}, optional={
    "from": st.one_of(st.tuples(st.just("seq"), st.integers(0, 60)),
                      st.tuples(st.just("time@"), st.integers(0, 59), st.integers(-MIN, MIN))),
    "to": st.one_of(st.tuples(st.just("seq"), st.integers(0, 60)),
                    st.tuples(st.just("time@"), st.integers(0, 59), st.integers(-MIN, MIN))),
    "for": st.one_of(st.tuples(st.just("count"), st.integers(1, 30)),
                     st.tuples(st.just("dur"), st.integers(1, 60 * MIN))),
    "last": st.one_of(st.tuples(st.just("count"), st.integers(1, 30)),
                      st.tuples(st.just("time@"), st.integers(0, 59), st.integers(-MIN, MIN))),
    "severity": st.lists(st.sampled_from(["-250:0", "0:250", "20:29", "-5:0", "100", "-100:-50"]),
                         min_size=1, max_size=3),
    "exclude": st.lists(pattern_st, min_size=1, max_size=3),
    "match": st.lists(pattern_st, min_size=1, max_size=3),
    "exclude_data": st.lists(st.sampled_from(["alpha", "/k/", "\\x00", "/./"]), min_size=1, max_size=2),
    "match_data": st.lists(st.sampled_from(["alpha", "/k/", "\\x00", "a"]), min_size=1, max_size=2),
})
PROPERTY_DISPLAYS = {                    # options -> oracle_lines keywords (None: not compared)
    (): {},
    ("--duplicates",): {"dups": False},
    ("-o", "short"): {"fmt": "short"},
    ("-o", "json"): {"fmt": "json"},
    ("--expand",): {"expand": True},
    ("--expand", "json"): {"expand": True, "classes": {"json"}},
    ("--expand-octal",): {"expand": True, "how": "octal"},
    ("--colour", "always"): {"colour": True},
    ("-o", "short", "--colour", "always", "--expand-hex"): {"fmt": "short", "colour": True,
                                                            "expand": True, "how": "hex"},
    ("--absolute-pathname",): None,
}
display_st = st.sampled_from(list(PROPERTY_DISPLAYS))


def _compatible(spec) -> dict:
    """spec without the options that would clash (--to with --for, --last with --from or --for)."""
    spec = dict(spec)
    if "for" in spec:
        spec.pop("to", None)
    if "last" in spec and ("from" in spec or "for" in spec):
        del spec["last"]
    return spec


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(msg_st, min_size=1, max_size=60), spec=window_st, display=display_st)
def test_the_c_scan_and_the_python_pipeline_print_the_same_bytes(items, spec, display):
    rows = []
    t = 1_750_000_000 * NS
    for text, sev, (data, cls), step in items:         # times mostly rising, sometimes back
        t += step
        rows.append((text, sev, data, cls, t))
    with tempfile.TemporaryDirectory() as d:
        msgs = write_family(d, "h", rows, segment_size="8KiB")
        spec = _compatible(spec)
        for k in ("from", "to", "last"):               # ("time@", i, delta): i among these messages
            if k in spec and spec[k][0] == "time@":
                spec[k] = ("time", msgs[spec[k][1] % len(msgs)].time + spec[k][2])
        f, to = spec.get("from"), spec.get("to")
        if f and to and f[0] == to[0] and f[1] > to[1]:
            spec["from"], spec["to"] = to, f           # else a usage error, tested elsewhere
        (nf, fast), (ng, general) = both_paths(d, cli_args(spec) + list(display))
        assert (nf, fast) == (ng, general), first_diff(fast.decode(), general.decode())
        expected = oracle_select(msgs, spec)
        assert nf == len(expected)
        kw = PROPERTY_DISPLAYS[display]
        if kw is not None:
            assert_same(fast.decode(), oracle_lines(expected, **kw))


# ====================================================================== errors

def error(capsys, *argv):
    rc, out, err = lk(capsys, *argv)
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in err
    return err


def test_a_missing_log(tmp_path, capsys):
    err = error(capsys, "print", tmp_path / "nope")
    assert f"{tmp_path / 'nope'}: no such file or directory" in err and err.startswith("logkit print: ")


def test_a_missing_log_names_the_logs_of_the_configuration(tmp_path, capsys, fam):
    cfg = write_config(tmp_path, f'[log.app]\ndirectory = "{fam.dir}"\n')
    err = error(capsys, "print", "-c", cfg, "ap")
    assert "ap: no such file or directory, and no log of that name in" in err and "(logs: app)" in err


def test_no_log_and_no_configuration(capsys):
    err = error(capsys, "print")
    assert "no LOG given" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_an_unreadable_segment(fam, tmp_path, capsys):
    import shutil
    d = tmp_path / "copy"
    shutil.copytree(fam.dir, d)
    segs = sorted(p for p in os.listdir(d) if p != "app")
    os.chmod(d / segs[0], 0)
    err = error(capsys, "print", d / segs[0])
    assert "permission denied" in err and segs[0] in err
    # Inside a family: the other segments print, with a warning naming the one passed over.
    rc, out, err = lk(capsys, "print", d, "--no-header")
    assert rc == 0 and segs[0] in err and out


def test_an_unreadable_segment_in_a_family_is_passed_over_with_a_warning(fam, tmp_path, capsys):
    """(Runs as root too: a segment that cannot be opened is damaged instead.)"""
    import shutil
    d = tmp_path / "copy"
    shutil.copytree(fam.dir, d)
    first = os.path.basename(fam.segments[0])              # the oldest history segment
    with open(d / first, "r+b") as f:
        f.write(b"LOGKITSG" + b"\xff" * 120)               # the header is garbage
    with logkit.Segment.open(fam.segments[0], readonly=True) as sg:
        lost = {m.sequence for m in sg}
    rc, out, err = lk(capsys, "print", d, "--no-header")
    assert rc == 0 and first in err and "warning" in err
    assert_same(out, oracle_lines([m for m in fam.msgs if m.sequence not in lost]))
    rc, out, err = lk(capsys, "print", d, "--no-header", "--reverse")
    assert rc == 0 and first in err


def test_damaged_records_are_passed_over_with_a_warning_forward_and_in_reverse(fam, tmp_path, capsys):
    import shutil
    d = tmp_path / "copy"
    shutil.copytree(fam.dir, d)
    seg = os.path.join(d, os.path.basename(fam.segments[1]))
    with logkit.Segment.open(seg, readonly=True) as sg:
        victim = list(sg)[3]
        off, vseq, size = victim.offset, victim.sequence, victim.size
    with open(seg, "r+b") as f:                      # one byte of its text: the checksum fails
        f.seek(off + size - 8)
        b = f.read(1)
        f.seek(off + size - 8)
        f.write(bytes([b[0] ^ 0x55]))
    rest = [m for m in fam.msgs if m.sequence != vseq]
    for opts, order in (([], rest), (["--reverse"], rest[::-1]), (["--match", "/./"], None)):
        rc, out, err = lk(capsys, "print", d, "--no-header", *opts)
        assert rc == 0
        if order is not None:
            assert_same(out, oracle_lines(order))
        assert re.search(rf"^logkit print: warning: {re.escape(seg)}: damaged bytes {off}\.\.\d+ passed over$",
                         err, re.M), (opts, err)


def test_a_damaged_segment_is_reported_once_in_logkits_words(fam, tmp_path):
    """A segment that cannot be opened: one warning line naming it, not a Python
    RuntimeWarning with a line of logkit's source under it."""
    import shutil
    d = tmp_path / "copy"
    shutil.copytree(fam.dir, d)
    first = os.path.join(d, os.path.basename(fam.segments[0]))
    with open(first, "r+b") as f:
        f.write(b"LOGKITSG" + b"\xff" * 120)
    for opts in ([], ["--reverse"], ["--limits"]):
        p = subprocess.run([sys.executable, "-m", "logkit", "print", str(d), *opts], capture_output=True,
                           env=child_env(), cwd=tmp_path, timeout=TIMEOUT)
        err = p.stderr.decode()
        assert p.returncode == 0 and p.stdout
        assert err.count(first) >= 1 and "RuntimeWarning" not in err, (opts, err)
        assert all(line.startswith("logkit print: warning: ") for line in err.splitlines()), (opts, err)
        if opts != ["--limits"]:
            assert len(err.splitlines()) == 1, (opts, err)


@pytest.mark.parametrize("opts, words", [
    (["--from", "2026-13-01"], ["--from", "2026-13-01", "not a valid date"]),
    (["--from", "soon"], ["--from", "soon", "not a sequence number or a time"]),
    (["--to=-2x"], ["--to", "-2x", "not a duration"]),
    (["--last", "0"], ["--last", "at least 1"]),
    (["--for", "-5"], ["--for", "-5", "without a sign"]),
    (["--severity", "300"], ["--severity", "300", "outside -250..250"]),
    (["--severity", "20:10"], ["--severity", "20:10", "runs backwards"]),
    (["--severity", "abc"], ["--severity", "abc", "not a severity"]),
    (["--match", "/(/"], ["--match", "/(/", "not a valid regular expression"]),
    (["--exclude-data", "/[/"], ["--exclude-data", "/[/", "not a valid regular expression"]),
    (["--from", "3", "--last", "5"], ["--from", "--last", "cannot be used together"]),
    (["--to", "3", "--for", "5"], ["--to", "--for", "cannot be used together"]),
    (["--for", "3", "--last", "5"], ["--for", "--last", "cannot be used together"]),
    (["--from", "50", "--to", "10"], ["--from", "is after --to"]),
    (["--reverse", "--from", "10", "--to", "50"], ["--from", "is before --to", "--reverse"]),
    (["--key-file", "/nonexistent/key"], ["--key-file", "no such file"]),
])
def test_bad_option_values(fam, capsys, opts, words):
    err = error(capsys, "print", fam.dir, *opts)
    for w in words:
        assert w in err, (w, err)
    assert len(err.splitlines()) == 1


def test_a_directory_with_two_families(fam, tmp_path, capsys):
    logkit.open_writer(tmp_path, "one", segment_size="64KiB").write("1")
    logkit.open_writer(tmp_path, "two", segment_size="64KiB").write("2")
    err = error(capsys, "print", tmp_path)
    assert "several families (one, two)" in err
    rc, out, _ = lk(capsys, "print", tmp_path, "--family-name", "two", "--no-header")
    assert rc == 0 and out.endswith("  INFO      2\n") and len(out.splitlines()) == 1
    err = error(capsys, "print", tmp_path, "--family-name", "three")
    assert "no family 'three'" in err and "one, two" in err


def test_an_empty_directory_and_a_file_that_is_no_log(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert "holds no log segments" in error(capsys, "print", tmp_path / "empty")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x7fELF\x00\x01\x02" + bytes(range(256)))
    err = error(capsys, "print", junk)
    assert str(junk) in err and "not a log" in err


def test_a_bad_output_format_is_a_usage_error(fam, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["print", fam.dir, "-o", "xml"])
    assert e.value.code == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err


def test_nothing_selected_exits_1(fam, capsys):
    rc, out, err = lk(capsys, "print", fam.dir, "--match", "no such text anywhere")
    assert rc == 1 and err == "" and out.startswith("== ") and len(out.splitlines()) == 1
    for opts in (["--from", "100000"], ["--reverse", "--to", "100000"], ["--severity", "249", "--no-header"],
                 ["--match-data", "nothing like it"], ["--last=-1s"]):
        rc, out, _ = lk(capsys, "print", fam.dir, "--no-header", *opts)
        assert rc == 1 and out == "", opts


def test_print_as_a_process(fam, tmp_path):
    """`python -m logkit print` in a process of its own: the same bytes, and the exit statuses."""
    spec = resolve_spec(fam, SELECTIONS["all-window-steps"])
    p = subprocess.run([sys.executable, "-m", "logkit", "print", fam.dir, "--no-header", "--expand",
                        *cli_args(spec)], capture_output=True, env=child_env(), cwd=tmp_path, timeout=TIMEOUT)
    assert p.returncode == 0 and p.stderr == b""
    assert p.stdout.decode() == oracle_lines(oracle_select(fam.msgs, spec), expand=True)
    p = subprocess.run([sys.executable, "-m", "logkit", "print", fam.dir, "--match", "nothing at all"],
                       capture_output=True, env=child_env(), cwd=tmp_path, timeout=TIMEOUT)
    assert p.returncode == 1
    p = subprocess.run([sys.executable, "-m", "logkit", "print", str(tmp_path / "none")],
                       capture_output=True, env=child_env(), cwd=tmp_path, timeout=TIMEOUT)
    assert p.returncode == 2 and b"no such file or directory" in p.stderr and b"Traceback" not in p.stderr


def test_print_into_a_closed_pipe_is_quiet(fam, tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "logkit", "print", fam.dir], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=child_env(), cwd=tmp_path)
    p.stdout.read(100)
    p.stdout.close()                                    # like `| head`
    err = p.stderr.read()
    p.wait(TIMEOUT)
    assert b"Traceback" not in err and p.returncode in (0, 1, -signal.SIGPIPE)


# ====================================================================== monitor

class Monitor:
    """`python -m logkit monitor ARGS` as a process, its output read as it comes."""

    def __init__(self, *args, cwd=None, env=None):
        self.p = subprocess.Popen([sys.executable, "-m", "logkit", "monitor", *map(str, args)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=env or child_env(), cwd=cwd)
        self.out = b""

    def _read(self, timeout) -> bool:
        r, _, _ = _select.select([self.p.stdout], [], [], max(timeout, 0))
        if not r:
            return False
        b = os.read(self.p.stdout.fileno(), 65536)
        self.out += b
        return bool(b)

    def lines(self) -> list[str]:
        return self.out.decode().splitlines()

    def wait_for(self, cond, what, timeout=TIMEOUT) -> list[str]:
        """The output lines once cond(lines) holds, reading the output as it
        comes (each look blocks up to 50 ms on the pipe)."""
        def ready():
            if cond(self.lines()):
                return True
            if self.p.poll() is not None and not self._read(0):
                raise AssertionError(f"monitor exited ({self.p.returncode}) waiting for {what}: "
                                     f"{self.p.stderr.read().decode()}")
            self._read(0.05)
            return cond(self.lines())
        wait_until(ready, what, timeout, interval=0, detail=lambda: f"output so far: {self.lines()}")
        return self.lines()

    def finish(self, timeout=TIMEOUT) -> tuple[int, str]:
        """Wait for it to end, reading its output meanwhile; (exit status, stderr)."""
        def ended():
            if self.p.poll() is not None:
                return True
            self._read(0.05)
            return self.p.poll() is not None
        try:
            wait_until(ended, "the monitor to end", timeout, interval=0, detail=lambda: f"output: {self.lines()}")
        finally:
            self.kill()                     # (only if it is still running)
        while self._read(0):
            pass
        return self.p.returncode, self.p.stderr.read().decode()

    def kill(self):
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGKILL)
            self.p.wait(TIMEOUT)


@pytest.fixture
def monitors():
    started = []

    def start(*args, **kw):
        m = Monitor(*args, **kw)
        started.append(m)
        return m
    yield start
    for m in started:
        m.kill()
        m.p.stdout.close()
        m.p.stderr.close()


def asleep_on_the_futex(w) -> bool:
    return w.segment.header()["waiters"] >= 1


@pytest.fixture
def live(tmp_path):
    """A family with a few old messages, and its writer."""
    d = tmp_path / "live"
    w = logkit.open_writer(d, "app", segment_size="64KiB")
    for i in range(3):
        w.write(f"old {i}", 20)
    yield d, w
    w.close()


def test_monitor_prints_new_messages_as_they_are_finished(live, tmp_path, monitors):
    d, w = live
    m = monitors(d, "--no-duplicates", cwd=tmp_path)
    wait_until(lambda: asleep_on_the_futex(w), "the monitor to sleep on the futex")
    t0 = time.monotonic()
    s1 = w.write("first new", 40)
    lines = m.wait_for(lambda ls: len(ls) >= 1, "the first new message")
    assert time.monotonic() - t0 < 5
    s2 = w.write("first new", 20)
    s3 = w.write("caf\u00e9 \x07", 50, b'{"b": 1}', "json")
    lines = m.wait_for(lambda ls: len(ls) >= 3, "three messages")
    msgs = {x.sequence: x for x in logkit.open_reader(d, "app")}
    assert lines == [F.format_message(msgs[s1], expand=False),
                     F.format_message(msgs[s2], expand=False, duplicate_of="first new"),
                     F.format_message(msgs[s3], expand=False)]
    assert lines[1].endswith("  =") and not any("old" in x for x in lines)
    os.kill(m.p.pid, signal.SIGINT)
    rc, err = m.finish()
    assert rc == 0 and "Traceback" not in err and err == ""


def test_monitor_selects_and_displays_like_print(live, tmp_path, monitors):
    d, w = live
    m = monitors(d, "--severity", "30:50", "--severity=-5:0", "--exclude", "noise", "--match", "disk", "/^net/",
                 "--exclude-data", "secret", "--expand", "json", "-o", "short", "--idle-timeout", "3", cwd=tmp_path)
    wait_until(lambda: asleep_on_the_futex(w), "the monitor to sleep on the futex")
    rows = [("disk full", 40, b"", ""), ("disk noise", 40, b"", ""), ("disk low", 10, b"", ""),
            ("a network up", 30, b"", ""), ("net up", -3, b'{"x": 1}', "json"),
            ("disk data", 45, b'{"k": "secret"}', "json"), ("disk data", 45, b'{"k": "open"}', "json"),
            ("the end", 50, b"", "")]
    for r in rows:
        w.write(*r)
    rc, err = m.finish()
    assert rc == 0 and err == ""
    msgs = [x for x in logkit.open_reader(d, "app") if x.text not in ("old 0", "old 1", "old 2")]
    chosen = [x for x in msgs if x.text in ("disk full", "net up") or bytes(x.data) == b'{"k": "open"}']
    assert m.out.decode() == oracle_lines(chosen, expand=True, classes={"json"}, fmt="short")


def test_monitor_existing_then_new_and_json(live, tmp_path, monitors):
    d, w = live
    m = monitors(d, "--existing", "-o", "json", cwd=tmp_path)
    m.wait_for(lambda ls: len(ls) >= 3, "the existing messages")
    wait_until(lambda: asleep_on_the_futex(w), "the monitor to sleep")
    w.write("new one", 20)
    lines = m.wait_for(lambda ls: len(ls) >= 4, "the new message")
    assert [json.loads(x)["text"] for x in lines] == ["old 0", "old 1", "old 2", "new one"]
    m.p.send_signal(signal.SIGTERM)
    rc, err = m.finish()
    assert rc == 0 and "Traceback" not in err


def test_monitor_follows_the_family_across_rotation(tmp_path, monitors):
    d = tmp_path / "rot"
    w = logkit.open_writer(d, "app", segment_size="8KiB")
    w.write("start", 20)
    m = monitors(d, "--idle-timeout", "3", "-o", "json", cwd=tmp_path)
    wait_until(lambda: asleep_on_the_futex(w), "the monitor to sleep")
    texts = [f"rotating {i} " + "y" * 500 for i in range(60)]        # about four segments' worth
    for t in texts:
        w.write(t, 20)
    assert w.rotations >= 2
    rc, err = m.finish()
    w.close()
    assert rc == 0 and err == ""
    assert [json.loads(x)["text"] for x in m.lines()] == texts


def test_monitor_call_runs_the_command_with_five_arguments(live, tmp_path, monitors):
    d, w = live
    rec = tmp_path / "calls.jsonl"
    call = f"{sys.executable} {printprocs.HERE} record {rec}"
    m = monitors(d, "--call", call, "--match", "call", "--idle-timeout", "2", cwd=tmp_path)
    wait_until(lambda: asleep_on_the_futex(w), "the monitor to sleep")
    s1 = w.write("call one", 30)
    s2 = w.write("skip me", 30)
    s3 = w.write("call two, with 'quotes' and spaces", -7, b'{"z": 1, "a": [2]}', "json")
    s4 = w.write("call three", 250, b"\x00\x01", "blob")
    rc, err = m.finish()
    assert rc == 0 and err == ""
    assert m.out == b""                                 # --call instead of printing
    calls = [json.loads(x) for x in rec.read_text().splitlines()]
    assert calls == [
        ["app", str(s1), "30", "call one", ""],
        ["app", str(s3), "-7", "call two, with 'quotes' and spaces", '{\n  "a": [\n    2\n  ],\n  "z": 1\n}'],
        ["app", str(s4), "250", "call three", F.format_hex(b"\x00\x01")],
    ]
    assert s2 not in [int(c[1]) for c in calls]


def test_monitor_call_follows_the_expand_options_and_names_each_family(tmp_path, monitors):
    """Two logs followed at once; with --expand-hex json the fifth argument is
    a hex dump of JSON data, and '' for a class no --expand option names."""
    wa = logkit.open_writer(tmp_path / "a", "alpha", segment_size="64KiB")
    wb = logkit.open_writer(tmp_path / "b", "beta", segment_size="64KiB")
    rec = tmp_path / "calls.jsonl"
    call = f"{sys.executable} {printprocs.HERE} record {rec}"
    m = monitors(tmp_path / "a", tmp_path / "b", "--call", call, "--expand-hex", "json",
                 "--match-data", "/./", "--idle-timeout", "2", cwd=tmp_path)
    wait_until(lambda: asleep_on_the_futex(wa) and asleep_on_the_futex(wb), "both followers to sleep")
    sa = wa.write("in alpha", 20, b'{"q":1}', "json")
    wait_until(lambda: rec.exists(), "the first call")
    sb = wb.write("in beta", 20, b"\x01\x02", "blob")
    wb.write("no data: --match-data drops it", 20)
    rc, err = m.finish()
    wa.close()
    wb.close()
    assert rc == 0 and err == ""
    calls = [json.loads(x) for x in rec.read_text().splitlines()]
    assert calls == [["alpha", str(sa), "20", "in alpha", F.format_hex(b'{"q":1}')],
                     ["beta", str(sb), "20", "in beta", ""]]


def test_monitor_sigint_while_a_call_runs_ends_cleanly(live, tmp_path, monitors):
    d, w = live
    started = tmp_path / "started"
    script = tmp_path / "slow.py"
    # A command still running when SIGINT comes: its sleep is the behaviour
    # under test (the test waits on `started`, not on time).
    script.write_text(f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\ntime.sleep(30)\n")
    m = monitors(d, "--call", f"{sys.executable} {script}", cwd=tmp_path)
    wait_until(lambda: asleep_on_the_futex(w), "the monitor to sleep")
    w.write("go", 20)
    wait_until(started.exists, "the command to start")
    t0 = time.monotonic()
    os.kill(m.p.pid, signal.SIGINT)
    rc, err = m.finish()
    assert rc == 0 and "Traceback" not in err and time.monotonic() - t0 < 10


def test_monitor_of_an_empty_family_prints_its_first_messages(tmp_path, monitors):
    d = tmp_path / "empty"
    w = logkit.open_writer(d, "app", segment_size="64KiB")
    m = monitors(d, "--idle-timeout", "2", "--no-duplicates", cwd=tmp_path)
    wait_until(lambda: asleep_on_the_futex(w), "the monitor to sleep")
    seqs = [w.write(t, 20) for t in ("one", "one", "two")]
    rc, err = m.finish()
    w.close()
    assert rc == 0 and err == ""
    assert [text_of(x) for x in m.lines()] == ["one", "=", "two"]
    assert [int(x.split()[2]) for x in m.lines()] == seqs


def test_monitor_of_a_config_log_not_yet_written_waits_for_it(tmp_path, monitors):
    d = tmp_path / "later"
    cfg = tmp_path / "logkit.toml"
    cfg.write_text(f'[log.app]\nstorage = "family"\ndirectory = "{d}"\ncreate_directory = true\n')
    m = monitors("app", "-c", cfg, "--idle-timeout", "3", cwd=tmp_path)
    err = b""

    def said_waiting():
        nonlocal err
        if _select.select([m.p.stderr], [], [], 0.05)[0]:       # (blocks up to 50 ms on the pipe)
            err += os.read(m.p.stderr.fileno(), 4096)
        return b"waiting for its directory" in err
    wait_until(said_waiting, "the monitor to say it waits for the directory", TIMEOUT, interval=0,
               detail=lambda: f"stderr so far: {err!r}")
    assert f"logkit monitor: log app: waiting for its directory {d} to appear".encode() in err
    assert m.p.poll() is None, "monitor gave up on a log that is not there yet"
    w = logkit.open_writer(d, "app", segment_size="64KiB")
    for t in ("first", "second"):
        w.write(t, 20)
    m.wait_for(lambda ls: len(ls) >= 2, "the first messages")
    rc, rest = m.finish()
    w.close()
    assert rc == 0 and rest == ""
    assert [text_of(x) for x in m.lines()] == ["first", "second"]


def test_monitor_call_of_a_missing_command_is_an_error(live, tmp_path, monitors):
    d, w = live
    m = monitors(d, "--call", str(tmp_path / "no-such-command") + " --flag", cwd=tmp_path)
    wait_until(lambda: asleep_on_the_futex(w), "the monitor to sleep")
    w.write("x", 20)
    rc, err = m.finish()
    assert rc == 2 and "no-such-command" in err and "cannot run" in err and "Traceback" not in err


def probe_until_printing(m, write, pause):
    """A polling monitor prints only what comes after its start: write
    "probe N" messages, `pause` seconds apart, until it has printed one."""
    k = 0

    def probe(lines):
        nonlocal k
        if not lines:
            k += 1
            write(f"probe {k}", 20)
            time.sleep(pause)       # the probes' pace (the wait is on the monitor's output)
        return bool(lines)
    m.wait_for(probe, "the monitor to print a probe")


def test_monitor_interval_polls_instead_of_sleeping_on_the_futex(live, tmp_path, monitors):
    d, w = live
    m = monitors(d, "--interval", "0.1", "--idle-timeout", "30", cwd=tmp_path)
    probe_until_printing(m, w.write, 0.05)
    s = w.write("after the probe", 30)
    lines = m.wait_for(lambda ls: ls[-1].endswith("after the probe"), "the message")
    assert f"  {s}  WARNING   after the probe" in lines[-1]
    assert w.segment.header()["waiters"] == 0          # polling: nobody sleeps on the futex
    os.kill(m.p.pid, signal.SIGINT)
    rc, err = m.finish()
    assert rc == 0 and "Traceback" not in err


def test_monitor_polls_a_plain_file(tmp_path, monitors):
    from logkit.backends.plainfile import PlainFileStorage
    path = tmp_path / "app.log"
    s = PlainFileStorage("plain", path=str(path))
    s.write("before", 20)
    m = monitors(path, "--interval", "0.05", "--idle-timeout", "30", cwd=tmp_path)
    probe_until_printing(m, s.write, 0.1)
    s.write("plain news", 40)
    lines = m.wait_for(lambda ls: ls[-1].endswith("plain news"), "the message")
    assert "before" not in m.out.decode()
    os.kill(m.p.pid, signal.SIGINT)
    rc, err = m.finish()
    s.close()
    assert rc == 0 and "Traceback" not in err


@pytest.mark.parametrize("opts, words", [
    (["--interval", "0"], ["--interval", "must be a number of seconds > 0"]),
    (["--call", ""], ["--call", "empty"]),
    (["--severity", "251"], ["--severity", "251"]),
    (["--match", "/(/"], ["not a valid regular expression"]),
])
def test_monitor_bad_options(live, capsys, opts, words):
    d, _ = live
    err = error(capsys, "monitor", d, *opts)
    for word in words:
        assert word in err


def test_monitor_errors_for_a_missing_log_and_usage(tmp_path, capsys):
    assert "no such file or directory" in error(capsys, "monitor", tmp_path / "none")
    with pytest.raises(SystemExit) as e:
        cli.main(["monitor", str(tmp_path), "--from", "3"])       # no window options: it follows
    assert e.value.code == 2


def test_print_warns_about_a_segment_missing_from_the_middle_of_the_family(tmp_path, capsys):
    from logkit.family import history_segments
    d = str(tmp_path / "fam")
    w = logkit.open_writer(d, "app", segment_size=8192)
    while len(history_segments(d, "app")) < 3:
        w.write("m %d" % w.segment.stats()["reserved"])
    w.write("last")
    w.close()
    mid = history_segments(d, "app")[1]
    with logkit.Segment.open(mid, readonly=True) as s:
        first, n = s.sequence_base, s.stats()["reserved"]
    os.remove(mid)
    for opts in ([], ["--reverse"]):                   # the C path and the Python one
        rc, out, err = lk(capsys, "print", d, "--no-header", *opts)
        assert rc == 0
        assert f"logkit print: warning: sequences {first}..{first + n - 1} are missing" in err, err
        assert err.count("are missing") == 1
