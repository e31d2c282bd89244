"""Data-class formatters (issue 7): the built-ins on real messages, entry-point
discovery and its failures (reported once, shown in hex), format_message's
text/short/json layouts with expansion selection, duplicates and colour,
sealed messages read without their key, and a third-party formatter
(tests/thirdparty/logkit-fmt-demo) installed for real and used by name."""
from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import time

import pytest

from procs import install_offline
from hypothesis import given, settings
from hypothesis import strategies as st

import logkit
from logkit import formatters as F
from logkit.backends.partition import PartitionMessage
from logkit.backends.pipe import PipeRecord
from logkit.crypto import generate_key_file

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO = os.path.join(HERE, "thirdparty", "logkit-fmt-demo")

# 2026-12-01 08:30:00.123456789 UTC
T0 = 1_796_113_800_123_456_789
SAMPLE = b"hello world\n\x00\x01abcdefghijklmnopqrstu"       # 35 bytes: two full lines and a part


@pytest.fixture(autouse=True)
def fresh_cache():
    F.clear_cache()
    yield
    F.clear_cache()


@pytest.fixture
def tz(monkeypatch):
    """set(zone): run the test in that TZ; the process's zone is restored after."""
    def set_zone(zone: str) -> None:
        monkeypatch.setenv("TZ", zone)
        time.tzset()
    yield set_zone
    monkeypatch.undo()
    time.tzset()


def _messages(tmp_path, *records, family="fam", key_file=None):
    """Write (text, severity, data, data_class[, time]) records; read them back."""
    w = logkit.open_writer(tmp_path, family, key_file=key_file)
    for i, r in enumerate(records):
        text, severity, data, data_class = r[:4]
        w.write(text, severity, data, data_class, time=r[4] if len(r) > 4 else T0 + i * 1000)
    w.close()
    return list(logkit.open_reader(tmp_path, family, key_file=key_file))


def _one(tmp_path, data, data_class, text="msg", severity=20):
    return _messages(tmp_path, (text, severity, data, data_class))[0]


class _EP:
    """An entry point as importlib.metadata gives it: name, value, dist, load()."""
    def __init__(self, name, target, dist="somepkg", value=None):
        self.name, self.group = name, F.GROUP
        self.value = value or f"{dist.replace('-', '_')}:thing"
        self.dist = type("Dist", (), {"name": dist})() if dist else None
        self._target = target

    def load(self):
        if isinstance(self._target, BaseException):
            raise self._target
        return self._target


@pytest.fixture
def entry_points(monkeypatch):
    """install(*eps): make those the only entry points of logkit.formatters."""
    import importlib.metadata as md
    real = md.entry_points

    def install(*eps):
        monkeypatch.setattr(md, "entry_points", lambda group: list(eps) if group == F.GROUP else real(group=group))
        F.clear_cache()
    return install


# ---------------------------------------------------------------- the built-ins

def test_hex_builtin_is_a_hexdump_c_layout(tmp_path):
    m = _one(tmp_path, SAMPLE, "blob")
    expected = (
        "00000000  68 65 6c 6c 6f 20 77 6f  72 6c 64 0a 00 01 61 62  |hello world...ab|\n"
        "00000010  63 64 65 66 67 68 69 6a  6b 6c 6d 6e 6f 70 71 72  |cdefghijklmnopqr|\n"
        "00000020  73 74 75                                          |stu|")
    assert F.expand(m) == expected                      # "blob" has no formatter: hex
    assert F.expand(m, "hex") == expected == F.format_hex(SAMPLE)
    if shutil.which("hexdump"):
        out = subprocess.run(["hexdump", "-C"], input=SAMPLE, capture_output=True, check=True).stdout
        assert out.decode().splitlines()[:-1] == expected.splitlines()   # less its final offset line


def test_octal_builtin_is_an_od_layout(tmp_path):
    m = _one(tmp_path, SAMPLE, "octal")
    expected = (
        "0000000 150 145 154 154 157 040 167 157 162 154 144 012 000 001 141 142\n"
        "0000020 143 144 145 146 147 150 151 152 153 154 155 156 157 160 161 162\n"
        "0000040 163 164 165")
    assert F.expand(m) == expected == F.expand(_one(tmp_path / "b", SAMPLE, "blob"), "octal")
    if shutil.which("od"):
        out = subprocess.run(["od", "-A", "o", "-t", "o1"], input=SAMPLE, capture_output=True, check=True).stdout
        assert [" ".join(l.split()) for l in out.decode().splitlines()[:-1]] == expected.splitlines()


def test_json_builtin_pretty_prints_with_sorted_keys(tmp_path):
    m = _one(tmp_path, b'{"b": [1, 2], "a": {"z": null, "y": "caf\\u00e9"}}', "json")
    assert F.expand(m) == textwrap.dedent("""\
        {
          "a": {
            "y": "café",
            "z": null
          },
          "b": [
            1,
            2
          ]
        }""")


def test_invalid_json_falls_back_to_hex_with_a_note_and_no_warning(tmp_path, capsys):
    m = _one(tmp_path, b'{"a":', "json")
    assert F.expand(m) == ("(invalid json: Expecting value: line 1 column 6 (char 5))\n"
                           "00000000  7b 22 61 22 3a                                    |{\"a\":|")
    m = _one(tmp_path / "b", b"\xff\xfe\xfa", "json")
    first, *dump = F.expand(m).splitlines()
    assert first.startswith("(invalid json: ") and dump == [F.format_hex(b"\xff\xfe\xfa")]
    assert capsys.readouterr().err == ""


def test_traceback_builtin_is_the_text_as_written(tmp_path):
    tb = "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\nValueError: é\n"
    m = _one(tmp_path, tb.encode(), "traceback")
    assert F.expand(m) == tb.rstrip("\n")


def test_utf8_builtin_shows_bad_bytes_as_backslash_escapes(tmp_path):
    m = _one(tmp_path, b"caf\xc3\xa9 \xff\xfe ok", "utf8")
    assert F.expand(m) == "café \\xff\\xfe ok"


def test_unknown_class_and_empty_data(tmp_path):
    ms = _messages(tmp_path, ("a", 20, b"\x00\x01", "no-such-class"), ("b", 20, b"", "json"), ("c", 20, b"", ""))
    assert F.expand(ms[0]) == "00000000  00 01" + " " * 45 + "|..|"
    assert F.get("no-such-class") is None
    assert F.expand(ms[1]) == F.expand(ms[2]) == F.expand(ms[2], "octal") == ""
    with pytest.raises(ValueError, match="how must be one of auto, hex, octal, not 'binary'"):
        F.expand(ms[0], "binary")


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=200))
def test_hex_and_octal_dumps_round_trip(data):
    hex_lines = F.format_hex(data).splitlines()
    back = bytearray()
    for i, line in enumerate(hex_lines):
        assert int(line[:8], 16) == 16 * i and line[8:10] == "  "
        chunk = bytes.fromhex(line[10:58])
        assert line[58:61] == "  |" and line.endswith("|")
        assert line[61:-1] == "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        back += chunk
    assert bytes(back) == data
    back = bytearray()
    for i, line in enumerate(F.format_octal(data).splitlines()):
        offset, *values = line.split(" ")
        assert int(offset, 8) == 16 * i and len(offset) == 7
        assert all(len(v) == 3 for v in values)
        back += bytes(int(v, 8) for v in values)
    assert bytes(back) == data


# ---------------------------------------------------------------- entry points

def test_builtins_work_with_no_entry_point_installed(entry_points, tmp_path):
    entry_points()
    for name, f in (("json", F.format_json), ("traceback", F.format_traceback), ("utf8", F.format_utf8),
                    ("hex", F.format_hex), ("octal", F.format_octal), ("record", F.format_record)):
        assert F.get(name) is f
    assert sorted(F.available()) == ["hex", "json", "octal", "record", "traceback", "utf8"]
    assert F.expand(_one(tmp_path, b'[1]', "json")) == "[\n  1\n]"


def test_logkits_own_entry_point_is_never_loaded_a_third_partys_wins(entry_points, tmp_path, capsys):
    entry_points(_EP("json", ImportError("must not be loaded"), dist="logkit",
                     value="logkit.formatters:format_json"),
                 _EP("utf8", lambda data, m: "third party utf8", dist="better-utf8"),
                 _EP("utf8", ImportError("must not be loaded"), dist="logkit",
                     value="logkit.formatters:format_utf8"))
    ms = _messages(tmp_path, ("a", 20, b"[1]", "json"), ("b", 20, b"x", "utf8"))
    assert F.get("json") is F.format_json and F.expand(ms[0]) == "[\n  1\n]"
    assert F.expand(ms[1]) == "third party utf8"
    assert F.available()["utf8"] == "from better-utf8"
    assert capsys.readouterr().err == ""


def test_a_raising_formatter_falls_back_to_hex_and_warns_once(entry_points, tmp_path, capsys):
    calls = []

    def broken(data, message):
        calls.append(message.sequence)
        raise KeyError("boom")
    entry_points(_EP("bad", broken, dist="logkit-bad", value="logkit_bad:broken"))
    ms = _messages(tmp_path, ("a", 20, b"\x01", "bad"), ("b", 20, b"\x02", "bad"))
    assert [F.expand(m) for m in ms] == [F.format_hex(b"\x01"), F.format_hex(b"\x02")]
    assert calls == [1, 2]                                  # still tried: it may fail only on some data
    err = capsys.readouterr().err.splitlines()
    assert err == ["logkit: warning: formatter 'bad' (logkit_bad:broken, from package logkit-bad) "
                   "failed on message 1: KeyError: 'boom'; its messages are shown in hex"]
    line = F.format_message(ms[0])
    assert line.splitlines()[1:] == ["    [bad] 1 byte", "    " + F.format_hex(b"\x01")]
    assert capsys.readouterr().err == ""


def test_an_entry_point_that_fails_to_load_is_reported_once_and_listed_broken(entry_points, tmp_path, capsys):
    entry_points(_EP("gone", ModuleNotFoundError("No module named 'logkit_gone'"), dist="logkit-gone",
                     value="logkit_gone:fmt"),
                 _EP("notcallable", 42, dist="logkit-odd", value="logkit_odd:VALUE"))
    ms = _messages(tmp_path, ("a", 20, b"ab", "gone"), ("b", 20, b"cd", "gone"), ("c", 20, b"ef", "notcallable"))
    assert [F.expand(m) for m in ms] == [F.format_hex(b"ab"), F.format_hex(b"cd"), F.format_hex(b"ef")]
    assert F.get("gone") is None
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "logkit: warning: formatter 'gone' (logkit_gone:fmt, from package logkit-gone) failed to load: "
        "ModuleNotFoundError: No module named 'logkit_gone'; its messages are shown in hex",
        "logkit: warning: formatter 'notcallable' (logkit_odd:VALUE, from package logkit-odd) failed to load: "
        "TypeError: int object is not callable; its messages are shown in hex"]
    listed = F.available()
    assert listed["gone"] == "BROKEN: ModuleNotFoundError: No module named 'logkit_gone'"
    assert listed["notcallable"].startswith("BROKEN: TypeError")
    assert capsys.readouterr().err == ""


def test_a_formatter_class_is_instantiated_once_and_a_non_str_result_is_hex(entry_points, tmp_path, capsys):
    made = []

    class Upper:
        description = "upper-cased text"

        def __init__(self):
            made.append(self)

        def __call__(self, data, message):
            return data.decode().upper() + "\n"            # a trailing newline is dropped
    entry_points(_EP("upper", Upper, dist="pkg-a"), _EP("number", lambda d, m: 7, dist="pkg-b"))
    ms = _messages(tmp_path, ("a", 20, b"abc", "upper"), ("b", 20, b"xyz", "upper"), ("c", 20, b"n", "number"))
    assert [F.expand(m) for m in ms[:2]] == ["ABC", "XYZ"] and len(made) == 1
    assert F.expand(ms[2]) == F.format_hex(b"n")
    assert "failed on message 3: TypeError: returned int, not str" in capsys.readouterr().err
    assert F.available()["upper"] == "upper-cased text (from pkg-a)"


def test_the_formatter_receives_bytes_and_the_message(entry_points, tmp_path):
    seen = []
    entry_points(_EP("probe", lambda data, m: seen.append((type(data), data, m.sequence, m.severity)) or "ok"))
    m = _one(tmp_path, b"\x00payload", "probe", severity=30)
    assert F.expand(m) == "ok" and seen == [(bytes, b"\x00payload", 1, 30)]


# ---------------------------------------------------------------- format_message: text

def test_text_layout_is_local_time_with_offset_sequence_severity_and_text(tmp_path, tz):
    tz("IST-05:30")
    ms = _messages(tmp_path, ("first", 20, b"", ""), ("second", 55, b"", "", T0 + 1_000_000_000 * 3600),
                   ("third", -250, b"", "", T0 - 86_400 * 10**9))
    assert [F.format_message(m) for m in ms] == [
        "2026-12-01 14:00:00.123456+05:30        1  INFO      first",
        "2026-12-01 15:00:00.123456+05:30        2  55        second",
        "2026-11-30 14:00:00.123456+05:30        3  -250      third"]
    tz("PST+08:00")                                         # the time cache follows tzset()
    assert F.format_message(ms[0]) == "2026-12-01 00:30:00.123456-08:00        1  INFO      first"


def test_severity_names_are_the_stdlib_levels_else_the_number(tmp_path, tz):
    tz("UTC0")
    ms = _messages(tmp_path, *[(f"s{s}", s, b"", "") for s in (10, 20, 30, 40, 50, 0, 25, 250, -1)])
    assert [F.format_message(m)[43:53] for m in ms] == [
        "DEBUG     ", "INFO      ", "WARNING   ", "ERROR     ", "CRITICAL  ",
        "0         ", "25        ", "250       ", "-1        "]
    assert F.severity_name(30) == "WARNING" and F.severity_name(31) == "31"


def test_expansion_is_indented_under_a_class_line(tmp_path, tz):
    tz("UTC0")
    m = _one(tmp_path, b'{"k": 1}', "json", text="config loaded")
    assert F.format_message(m) == (
        "2026-12-01 08:30:00.123456+00:00        1  INFO      config loaded\n"
        "    [json] 8 bytes\n"
        "    {\n"
        "      \"k\": 1\n"
        "    }")
    assert F.format_message(m, how="octal").splitlines()[2] == "    0000000 173 042 153 042 072 040 061 175"


def test_expand_classes_and_no_expand_select_as_print_sys_log(tmp_path):
    ms = _messages(tmp_path, ("j", 20, b"[1]", "json"), ("u", 20, b"hi", "utf8"), ("r", 20, b"\x00", ""),
                   ("e", 20, b"", "json"))

    def expanded(**kw):
        return [len(F.format_message(m, **kw).splitlines()) > 1 for m in ms]
    assert expanded() == [True, True, True, False]            # every class; no data, nothing to expand
    assert expanded(expand=False) == [False] * 4
    assert expanded(expand=False, classes=["json"]) == [False] * 4
    assert expanded(classes=["json"]) == [True, False, False, False]
    assert expanded(classes=["json", ""]) == [True, False, True, False]
    assert expanded(no_expand=["utf8"]) == [True, False, True, False]
    assert expanded(classes=["json", "utf8"], no_expand=("json",)) == [False, True, False, False]
    assert F.format_message(ms[2]).splitlines()[1:] == ["    [] 1 byte", "    " + F.format_hex(b"\x00")]


def test_control_characters_are_escaped_and_further_lines_align_with_the_text(tmp_path, tz):
    tz("UTC0")
    m = _one(tmp_path, b"line1\nbell\x07\x1b[2J", "utf8", text="two\nlines\x1b[31m\ttab\r")
    lines = F.format_message(m).splitlines()
    assert lines[0].endswith("  INFO      two")
    assert lines[1] == " " * 53 + "lines\\x1b[31m\ttab\\x0d"
    assert lines[2:] == ["    [utf8] 15 bytes", "    line1", "    bell\\x07\\x1b[2J"]
    assert "\x1b" not in F.format_message(m, fmt="short")
    assert "\x1b" not in F.format_message(m, fmt="json")


def test_short_format(tmp_path, tz):
    tz("IST-05:30")
    ms = _messages(tmp_path, ("started", 20, b"", ""), ("disk full", 40, b"\x07", "errno"))
    assert F.format_message(ms[0], fmt="short") == "14:00:00 INFO     started"
    assert F.format_message(ms[1], fmt="short") == (
        "14:00:00 ERROR    disk full\n    [errno] 1 byte\n    " + F.format_hex(b"\x07"))
    assert F.format_message(ms[1], fmt="short", expand=False) == "14:00:00 ERROR    disk full"


def test_duplicate_text_prints_as_equals(tmp_path, tz):
    tz("UTC0")
    ms = _messages(tmp_path, ("retrying", 30, b"", ""), ("retrying", 30, b"\x01", "n"), ("done", 20, b"", ""))
    assert F.format_message(ms[1], duplicate_of=ms[0]).splitlines()[0] == \
        "2026-12-01 08:30:00.123457+00:00        2  WARNING   ="
    assert F.format_message(ms[1], duplicate_of=ms[0]).splitlines()[1] == "    [n] 1 byte"   # data still shown
    assert F.format_message(ms[1], fmt="short", duplicate_of="retrying") == \
        "08:30:00 WARNING  =\n    [n] 1 byte\n    " + F.format_hex(b"\x01")
    assert F.format_message(ms[2], duplicate_of=ms[1]).endswith("  done")       # a different text: as is
    assert F.format_message(ms[1]).splitlines()[0].endswith("  retrying")
    assert json.loads(F.format_message(ms[1], fmt="json", duplicate_of=ms[0]))["text"] == "retrying"


def test_colour_by_severity(tmp_path, tz):
    tz("UTC0")
    ms = _messages(tmp_path, *[(f"s{s}", s, b"", "") for s in (55, 50, 45, 40, 30, 20, 11, 10, -5)],
                   ("x", 40, b"\x01", "n"))
    prefixes = [F.format_message(m, colour=True)[:7] for m in ms[:9]]
    assert prefixes == ["\x1b[1;31m", "\x1b[1;31m", "\x1b[31m20", "\x1b[31m20", "\x1b[33m20",
                        "2026-12", "2026-12", "\x1b[2m202", "\x1b[2m202"]
    for m in ms[:9]:
        plain = F.format_message(m)
        coloured = F.format_message(m, colour=True)
        assert "\x1b" not in plain
        assert coloured == plain or (coloured.endswith("\x1b[0m") and coloured.count("\x1b[") == 2)
    # Each line of a multi-line message is coloured on its own (so grep and pagers keep it).
    lines = F.format_message(ms[9], colour=True).splitlines()
    assert len(lines) == 3 and all(l.startswith("\x1b[31m") and l.endswith("\x1b[0m") for l in lines)
    assert "\x1b" not in F.format_message(ms[9], fmt="json", colour=True)


# ---------------------------------------------------------------- format_message: json

def test_json_output_parses_back_to_the_message(tmp_path):
    ms = _messages(tmp_path, ("with data", 30, b'{"b":2,"a":1}', "json"), ("plain \u00e9", 20, b"", ""))
    obj = json.loads(F.format_message(ms[0], fmt="json"))
    assert obj == {
        "sequence": 1, "time": "2026-12-01T08:30:00.123456789Z", "time_ns": T0, "severity": 30,
        "process_id": os.getpid(), "thread_id": ms[0].thread_id, "text": "with data", "data_class": "json",
        "data": base64.b64encode(b'{"b":2,"a":1}').decode(), "expanded": '{\n  "a": 1,\n  "b": 2\n}'}
    assert base64.b64decode(obj["data"]) == bytes(ms[0].data)
    assert "\n" not in F.format_message(ms[0], fmt="json")           # one object a line
    assert "expanded" not in json.loads(F.format_message(ms[0], fmt="json", expand=False))
    assert "expanded" not in json.loads(F.format_message(ms[0], fmt="json", classes=["utf8"]))
    assert json.loads(F.format_message(ms[0], fmt="json", how="hex"))["expanded"] == F.format_hex(ms[0].data)
    second = json.loads(F.format_message(ms[1], fmt="json"))
    assert (second["text"], second["data"], second["expanded"], second["time_ns"]) == ("plain é", "", "", T0 + 1000)
    with pytest.raises(ValueError, match="fmt must be one of text, json, short, not 'xml'"):
        F.format_message(ms[0], fmt="xml")


# ---------------------------------------------------------------- other messages

def test_sealed_message_without_its_key_prints_encrypted(tmp_path, tz):
    tz("UTC0")
    key = tmp_path / "log.keys"
    generate_key_file(key)
    sealed = _messages(tmp_path, ("secret text", 40, b'{"card": 1234}', "json"), key_file=str(key))
    assert F.expand(sealed[0]) == '{\n  "card": 1234\n}'
    locked = list(logkit.open_reader(tmp_path, "fam"))
    assert locked[0].sealed and locked[0].text == "[encrypted]"
    assert F.format_message(locked[0]) == "2026-12-01 08:30:00.123456+00:00        1  ERROR     [encrypted]"
    assert F.expand(locked[0]) == ""
    obj = json.loads(F.format_message(locked[0], fmt="json"))
    assert (obj["text"], obj["data_class"], obj["data"], obj["expanded"]) == ("[encrypted]", "json", "", "")


def test_partition_and_pipe_messages_format_too(tz):
    tz("UTC0")
    pm = PartitionMessage(9, T0, 30, 1, 2, "from a partition", "utf8", b"ok")
    assert F.format_message(pm) == ("2026-12-01 08:30:00.123456+00:00        9  WARNING   from a partition\n"
                                    "    [utf8] 2 bytes\n    ok")
    rec = PipeRecord("from a pipe", 20, memoryview(b""), "", T0, 1, 2)     # no sequence yet
    assert F.format_message(rec) == "2026-12-01 08:30:00.123456+00:00        -  INFO      from a pipe"
    assert json.loads(F.format_message(rec, fmt="json"))["sequence"] is None


# ---------------------------------------------------------------- a real third-party formatter

@pytest.fixture(scope="module")
def installed_demo(tmp_path_factory):
    """pip-install tests/thirdparty/logkit-fmt-demo into a scratch directory
    (no network: no dependencies, no build isolation) and return a PYTHONPATH."""
    return install_offline(tmp_path_factory, DEMO, "logkit_fmt_demo")


def test_a_third_party_formatter_expands_its_class_with_no_change_to_logkit(installed_demo, tmp_path):
    point = struct.pack("<ii", 3, -7)
    _messages(tmp_path, ("moved", 20, point, "demo-point"), ("odd", 20, b"\x01\x02\x03", "demo-point"))
    script = textwrap.dedent(f"""
        import json, logkit
        from logkit import formatters
        ms = list(logkit.open_reader({str(tmp_path)!r}, "fam"))
        print(json.dumps([formatters.expand(ms[0]), formatters.format_message(ms[0], fmt="short").splitlines()[1:],
                          json.loads(formatters.format_message(ms[0], fmt="json"))["expanded"],
                          formatters.expand(ms[1]), formatters.expand(ms[1]),
                          formatters.available()["demo-point"]]))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": installed_demo})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [
        "point(x=3, y=-7)", ["    [demo-point] 8 bytes", "    point(x=3, y=-7)"], "point(x=3, y=-7)",
        F.format_hex(b"\x01\x02\x03"), F.format_hex(b"\x01\x02\x03"),
        "A point on the plane: two little-endian int32 (x, y). (from logkit-fmt-demo)"]
    # The wrong-length point was reported once, naming the package and the error.
    assert r.stderr.splitlines() == [
        "logkit: warning: formatter 'demo-point' (logkit_fmt_demo:format_point, from package logkit-fmt-demo) "
        "failed on message 2: error: unpack requires a buffer of 8 bytes; its messages are shown in hex"]
    # Without the package (this process), the class is shown in hex.
    m = next(iter(logkit.open_reader(tmp_path, "fam")))
    assert F.get("demo-point") is None and F.expand(m) == F.format_hex(point)


def test_logkit_print_expand_uses_the_installed_third_party_formatter(installed_demo, tmp_path):
    """The same formatter through the command: `logkit print --expand` with the
    package installed, nothing configured in logkit."""
    point = struct.pack("<ii", 12, 34)
    _messages(tmp_path, ("here", 20, point, "demo-point"))
    r = subprocess.run([sys.executable, "-m", "logkit", "print", "--no-header", "--colour", "never",
                        str(tmp_path), "--expand", "demo-point"], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "PYTHONPATH": installed_demo})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].endswith("here")
    assert lines[1:] == ["    [demo-point] 8 bytes", "    point(x=12, y=34)"]
    # Without the package, the command falls back to hex.
    r = subprocess.run([sys.executable, "-m", "logkit", "print", "--no-header", "--colour", "never",
                        "--expand", "--", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[2] == "    " + F.format_hex(point)
