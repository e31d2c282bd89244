"""What a Python record carries, kept (issue 15, section 1): the logger's name,
the source location, fields (extra=, logkit.bind/context, exc_type and
exc_message) and the traceback, written as one record payload by every
storage, read back as Message.logger/.fields/.record, shown by `logkit
print` (text and JSON) and selected by --logger, --pid and --field in print
and monitor.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

import logkit
from logkit import formatters as F
from logkit._segment import RECORD_CLASS, record_decode, record_encode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_cli_print import Monitor, asleep_on_the_futex  # noqa: E402
from test_handler import _logger  # noqa: E402
from waiting import wait_until  # noqa: E402


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "logkit", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


_log = _logger                     # a logger writing only through `handler` (test_handler's)


@pytest.fixture
def app_log(tmp_path):
    """A family written by three stdlib loggers through logkit.Handler."""
    d = tmp_path / "logs"
    h = logkit.Handler(storage="family", directory=str(d), family="app", create_directory=True)
    _log(h, "gunicorn.access").info("GET / 200", extra={"user": "alice", "status": 200, "ok": True})
    _log(h, "django.request").warning("slow request", extra={"user": "bob", "ms": 812.5})
    try:
        raise TimeoutError("upstream took too long")
    except TimeoutError:
        _log(h, "celery.task").exception("task failed")
    _log(h, "django.db").info("query", extra={"text": "a field named like a key", "tags": ["x", "y"]})
    h.close()
    return d


def _texts(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if not ln.startswith("==")]


# ---------------------------------------------------------------- the payload

def test_a_payload_round_trips_and_anything_else_reads_as_no_record():
    p = record_encode("web.api", "views", "get", 42, "/srv/views.py", {"u": "a", "n": [1, None]}, "TB")
    assert record_decode(p) == logkit.RecordInfo("web.api", "views", "get", 42, "/srv/views.py",
                                                 {"u": "a", "n": [1, None]}, "TB")
    for bad in (p[:-1], p + b"x", b"\x02" + p[1:], b"", b"\x01" * 23):
        assert record_decode(bad) is None
        assert logkit.record_info(RECORD_CLASS, bad) == logkit.RecordInfo("", "", "", 0, "", {}, None)
    with pytest.raises(logkit.InvalidArgument, match="record fields must be a dict"):
        record_encode(fields=["not", "a", "dict"])


json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=20),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                           max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(logger=st.text(max_size=40), module=st.text(max_size=20), function=st.text(max_size=20),
       line=st.integers(0, 2**32 - 1), path=st.text(max_size=60),
       fields=st.dictionaries(st.text(min_size=1, max_size=10), json_values, max_size=5),
       tb=st.none() | st.text(max_size=200))
def test_every_payload_round_trips(logger, module, function, line, path, fields, tb):
    def clean(s):                       # a lone surrogate is stored as its escape
        return s.encode("utf-8", "backslashreplace").decode("utf-8")
    got = record_decode(record_encode(logger, module, function, line, path, fields, tb))
    assert got.logger == clean(logger) and got.module == clean(module) and got.function == clean(function)
    assert got.line == line and got.path == clean(path)
    assert got.traceback == (None if not tb else clean(tb))
    assert got.fields == json.loads(json.dumps(fields, ensure_ascii=False).encode("utf-8", "backslashreplace"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_break_a_reader(data):
    info = logkit.record_info(RECORD_CLASS, data)
    assert isinstance(info.fields, dict)
    F.format_record(data)


# ---------------------------------------------------------------- every storage keeps it

@pytest.mark.parametrize("storage", ["family", "partition", "plainfile"])
def test_every_storage_keeps_the_logger_fields_and_traceback(tmp_path, storage):
    opts = {"family": {"storage": "family", "directory": str(tmp_path), "family": "app"},
            "partition": {"storage": "partition", "path": str(tmp_path / "p.part"), "size": "64KiB"},
            "plainfile": {"storage": "plainfile", "path": str(tmp_path / "app.log")}}[storage]
    h = logkit.Handler(**opts)
    lg = _log(h, f"svc.{storage}")
    with logkit.context(request_id="r-1"):
        lg.info("one", extra={"n": 1})
    try:
        {}["k"]
    except KeyError:
        lg.error("two", exc_info=True)
    st_ = h.storage
    got = [(m.text, m.logger, m.fields, m.traceback is not None) for m in st_.reader()]
    h.close()
    assert got == [("one", f"svc.{storage}", {"request_id": "r-1", "n": 1}, False),
                   ("two", f"svc.{storage}", {"exc_type": "KeyError", "exc_message": "'k'"}, True)]


# ---------------------------------------------------------------- print shows it

def test_print_shows_the_logger_name_in_the_c_path_and_in_python(app_log):
    fast = _texts(cli("print", app_log, "-o", "short").stdout)
    assert [ln.split(" ", 2)[2].strip() for ln in fast] == [
        "gunicorn.access: GET / 200", "django.request: slow request", "celery.task: task failed",
        "django.db: query"]
    # The Python formatter (reverse order takes it) prints the same lines.
    slow = _texts(cli("print", app_log, "-o", "short", "--reverse").stdout)
    assert slow == fast[::-1]
    msgs = list(logkit.open_reader(app_log, "app"))
    assert fast == [F.format_message(m, expand=False, fmt="short") for m in msgs]


def test_print_json_puts_each_field_at_the_top_level_with_its_type(app_log):
    rows = [json.loads(ln) for ln in cli("print", app_log, "-o", "json").stdout.splitlines()]
    a, b, c, d = rows
    assert (a["logger"], a["text"], a["user"], a["status"], a["ok"]) == ("gunicorn.access", "GET / 200",
                                                                        "alice", 200, True)
    assert a["source"]["function"] == "app_log" and a["source"]["path"] == __file__
    assert (b["logger"], b["ms"]) == ("django.request", 812.5)
    assert c["exc_type"] == "TimeoutError" and c["exc_message"] == "upstream took too long"
    assert c["traceback"].startswith("Traceback (most recent call last):")
    # A field named like one of print's own keys does not replace it.
    assert d["text"] == "query" and d["fields"] == {"text": "a field named like a key"} and d["tags"] == ["x", "y"]


def test_expand_shows_the_source_fields_and_traceback(app_log):
    out = cli("print", app_log, "--expand", "--match", "task failed").stdout
    assert "celery.task: task failed" in out and "[record]" in out
    assert '"exc_type": "TimeoutError"' in out and "source: test_record_fields.app_log" in out
    assert "TimeoutError: upstream took too long" in out


# ---------------------------------------------------------------- selection by who logged

@pytest.mark.parametrize("args, want", [
    (["--logger", "django.*"], ["slow request", "query"]),
    (["--logger", "!django.*"], ["GET / 200", "task failed"]),
    (["--logger", "celery.task", "gunicorn.*"], ["GET / 200", "task failed"]),
    (["--logger", "django.*", "!django.db"], ["slow request"]),
    (["--field", "user=alice"], ["GET / 200"]),
    (["--field", "status=200"], ["GET / 200"]),
    (["--field", "ok=true"], ["GET / 200"]),
    (["--field", "exc_type=TimeoutError"], ["task failed"]),
    (["--field", "user~^b"], ["slow request"]),
    (["--field", "user"], ["GET / 200", "slow request"]),
    (["--field", "user", "--field", "ms=812.5"], ["slow request"]),
    (["--field", "user=carol"], []),
    (["--pid", str(os.getpid())], ["GET / 200", "slow request", "task failed", "query"]),
    (["--pid", "1"], []),
])
def test_print_selects_by_logger_pid_and_field(app_log, args, want):
    r = cli("print", app_log, "-o", "json", *args)
    assert r.returncode == (0 if want else 1), r.stderr       # 1: nothing selected, as grep
    assert [json.loads(ln)["text"] for ln in r.stdout.splitlines()] == want


@pytest.mark.parametrize("args, says", [
    (["--field", "=x"], "--field '=x': write KEY=VALUE, KEY~REGEX or KEY"),
    (["--field", "k~("], "--field 'k~(': bad regular expression"),
    (["--pid", "abc"], "--pid 'abc': give a process id"),
    (["--logger", "!"], "--logger '!': give a logger name or a glob"),
])
def test_a_bad_who_option_is_an_error_naming_it(app_log, args, says):
    r = cli("print", app_log, *args)
    assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr


def test_monitor_selects_by_logger_and_field(tmp_path):
    d = tmp_path / "live"
    h = logkit.Handler(storage="family", directory=str(d), family="app", create_directory=True)
    w = h.storage.writer
    m = Monitor(d, "--logger", "web.*", "--field", "user=alice", "-o", "short", cwd=tmp_path)
    try:
        wait_until(lambda: asleep_on_the_futex(w), "the monitor to sleep on the futex")
        _log(h, "web.api").info("for alice", extra={"user": "alice"})
        _log(h, "web.api").info("for bob", extra={"user": "bob"})
        _log(h, "db").info("db alice", extra={"user": "alice"})
        _log(h, "web.ui").info("ui alice", extra={"user": "alice"})
        lines = m.wait_for(lambda ls: len(ls) >= 2, "two selected messages")
        assert [ln.split(" ", 2)[2].strip() for ln in lines] == ["web.api: for alice", "web.ui: ui alice"]
    finally:
        m.kill()
        m.p.stdout.close()
        m.p.stderr.close()
        h.close()


def test_odd_records_take_the_python_path_and_keep_everything(tmp_path):
    """A logger name with a lone surrogate, a record made without a function
    name (makeLogRecord), and a payload over the 1 KiB built on the C stack."""
    h = logkit.Handler(storage="family", directory=str(tmp_path), family="app")
    odd = _log(h, "caf\udce9.log")
    odd.info("surrogate logger")
    h.handle(logging.makeLogRecord({"name": "made", "msg": "no function", "levelno": 20, "funcName": None,
                                    "lineno": None, "module": 7}))
    big = {f"k{i}": "v" * 40 for i in range(60)}
    _log(h, "big").info("large fields", extra={"blob": big})
    h.close()
    a, b, c = logkit.open_reader(str(tmp_path), "app")
    assert a.logger == "caf\\udce9.log" and a.text == "surrogate logger"
    assert (b.logger, b.record.function, b.record.line, b.record.module) == ("made", "", 0, "7")
    assert c.fields == {"blob": big} and len(bytes(c.data)) > 1024
