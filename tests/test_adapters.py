"""structlog and loguru into logkit (logkit.structlog, logkit.loguru), with
the real packages: what each event or record becomes (text, severity,
logger, source, fields, traceback, time), lazy imports, errors, several
independently started processes writing one family through loguru, and
the examples of docs/from-other-loggers.md."""
from __future__ import annotations

import datetime
import json
import logging
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

import logkit
import logkit.loguru
import logkit.structlog

try:
    import structlog
    from loguru import logger as loguru_logger
except ModuleNotFoundError as e:       # a test extra (make installs it): a skip would hide the adapters
    pytest.fail(f"{e.name} is not installed: `.venv/bin/pip install structlog loguru` (make installs them)",
                pytrace=False)

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "from-other-loggers.md"


def _messages(directory, family="app"):
    return list(logkit.open_reader(str(directory), family))


def _options(tmp_path, **more):
    return {"storage": "family", "directory": str(tmp_path), "family": "app", "segment_size": "64KiB", **more}


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


# ---------------------------------------------------------------- importing

def test_importing_the_adapters_imports_neither_structlog_nor_loguru():
    code = ("import sys, logkit, logkit.structlog, logkit.loguru\n"
            "assert 'structlog' not in sys.modules, 'import logkit.structlog imported structlog'\n"
            "assert 'loguru' not in sys.modules, 'import logkit.loguru imported loguru'\n"
            "import structlog, loguru\n"
            # the package's own module is not the real one it is named after
            "assert structlog.configure and structlog is not logkit.structlog, structlog.__file__\n"
            "assert loguru.logger and loguru is not logkit.loguru, loguru.__file__\n"
            "print('ok')\n")
    p = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout) == (0, "ok\n"), p.stderr


# ---------------------------------------------------------------- structlog

@pytest.fixture
def structlog_to(tmp_path):
    """Configure structlog with these processors (to_logkit appended) and
    one LoggerFactory (made at the first call) writing into tmp_path's
    family "app"."""
    made = []

    def configure(*processors, last=logkit.structlog.to_logkit):
        if not made:
            made.append(logkit.structlog.LoggerFactory(**_options(tmp_path)))
        structlog.configure(processors=[*processors, last], logger_factory=made[0],
                            cache_logger_on_first_use=False)
        return made[0]

    yield configure
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    for f in made:
        f.close()


def test_structlog_event_is_the_text_level_the_severity_and_every_other_key_a_field(structlog_to, tmp_path):
    structlog_to(structlog.contextvars.merge_contextvars, structlog.processors.add_log_level)
    log = structlog.get_logger("shop.orders")
    structlog.contextvars.bind_contextvars(request_id="r-17")
    log.debug("d")
    log.info("order placed", user="alice", items=3, total=9.5, paid=True, tags=["a", "b"], note=None)
    line = sys._getframe().f_lineno - 1
    log.warning("w")
    log.warn("w2")
    log.error("e")
    log.critical("c")
    log.log(logging.WARNING, "via log()")
    msgs = _messages(tmp_path)
    assert [(m.severity, m.text) for m in msgs] == [(10, "d"), (20, "order placed"), (30, "w"), (30, "w2"),
                                                    (40, "e"), (50, "c"), (30, "via log()")]
    m = msgs[1]
    assert m.record == logkit.RecordInfo(
        "shop.orders", "test_adapters",
        "test_structlog_event_is_the_text_level_the_severity_and_every_other_key_a_field", line, __file__,
        {"request_id": "r-17", "user": "alice", "items": 3, "total": 9.5, "paid": True, "tags": ["a", "b"],
         "note": None}, None)
    # 'level' and 'event' became the severity and the text, not fields
    assert all(set(x.fields) == {"request_id"} for x in msgs if x is not m)


def test_structlog_severity_without_add_log_level_and_numeric_levels(structlog_to, tmp_path):
    def numeric(logger, method_name, event_dict):
        if "lvl" in event_dict:
            event_dict["level"] = event_dict.pop("lvl")
        return event_dict
    structlog_to(numeric, structlog.stdlib.add_log_level_number)
    log = structlog.get_logger()
    log.info("method name")                        # level_number 20
    log.error("custom", lvl=35)                    # level_number (from the method) wins over level
    structlog_to(numeric)
    log = structlog.get_logger()
    log.info("a number", lvl=35)
    log.info("a name", lvl="CRITICAL")
    log.info("unknown name", lvl="loud")           # no level: the method's, and the key stays a field
    assert logkit.structlog.severity_of("exception") == 40 == logkit.structlog.severity_of("ERROR")
    got = [(m.severity, m.text, m.fields) for m in _messages(tmp_path)]
    assert got == [(20, "method name", {}), (40, "custom", {}), (35, "a number", {}),
                   (50, "a name", {}), (20, "unknown name", {"level": "loud"})]


def test_structlog_logger_name_from_the_key_or_the_name_given_to_get_logger(structlog_to, tmp_path):
    structlog_to(structlog.stdlib.add_logger_name)          # adds "logger": the wrapped logger's name
    structlog.get_logger("from.get_logger").info("one")
    structlog_to()
    structlog.get_logger("plain").info("two")
    structlog.get_logger("plain").info("three", logger_name="given.key")
    structlog.get_logger().info("four")
    got = [(m.text, m.logger, m.fields) for m in _messages(tmp_path)]
    assert got == [("one", "from.get_logger", {}), ("two", "plain", {}), ("three", "given.key", {}),
                   ("four", "", {})]


def _log_from_a_helper(log):
    log.info("from the helper"); return sys._getframe().f_lineno


def test_structlog_source_location_from_callsite_keys_or_the_calling_frame(structlog_to, tmp_path):
    CP = structlog.processors.CallsiteParameter
    structlog_to(structlog.processors.CallsiteParameterAdder(
        [CP.MODULE, CP.FUNC_NAME, CP.LINENO, CP.PATHNAME, CP.THREAD_NAME]))
    log = structlog.get_logger()
    line_a = _log_from_a_helper(log)
    structlog_to()                                           # no callsite keys: the frame
    log = structlog.get_logger()
    line_b = _log_from_a_helper(log)
    a, b = _messages(tmp_path)
    expected = ("test_adapters", "_log_from_a_helper", line_a, __file__)
    assert (a.record.module, a.record.function, a.record.line, a.record.path) == expected
    assert (b.record.module, b.record.function, b.record.line, b.record.path) == expected[:2] + (line_b, __file__)
    assert a.fields == {"thread_name": "MainThread"}         # callsite keys that are not the source stay fields
    assert b.fields == {}


def test_structlog_async_methods_leave_the_source_empty_unless_callsite_keys_give_it(structlog_to, tmp_path):
    """ainfo() runs the processors in an executor thread: its frames are not
    the caller's, so without CallsiteParameterAdder the source is empty, never
    concurrent/futures/thread.py."""
    import asyncio
    CP = structlog.processors.CallsiteParameter

    async def caller():
        await structlog.get_logger("aio").ainfo("async", k=1); return sys._getframe().f_lineno

    structlog_to()
    asyncio.run(caller())
    structlog_to(structlog.processors.CallsiteParameterAdder([CP.MODULE, CP.FUNC_NAME, CP.LINENO, CP.PATHNAME]))
    line = asyncio.run(caller())
    a, b = _messages(tmp_path)
    assert (a.text, a.logger, a.fields) == ("async", "aio", {"k": 1})
    assert (a.record.module, a.record.function, a.record.line, a.record.path) == ("", "", 0, "")
    assert (b.record.module, b.record.function, b.record.line, b.record.path) == ("test_adapters", "caller", line,
                                                                                  __file__)


def test_structlog_exceptions_become_the_traceback_with_type_and_message_fields(structlog_to, tmp_path):
    structlog_to(structlog.processors.add_log_level, structlog.processors.format_exc_info)
    log = structlog.get_logger("exc")
    try:
        raise ValueError("bad value 17")
    except ValueError:
        log.exception("rendered by format_exc_info")
    structlog_to(structlog.processors.add_log_level)
    log = structlog.get_logger("exc")
    try:
        {}["missing"]
    except KeyError:
        log.exception("exc_info=True, no renderer")
    err = RuntimeError("gone")
    log.error("an exception object", exc_info=err, exc_type="mine")
    log.info("with the stack", stack_info=True)
    a, b, c, d = _messages(tmp_path)
    assert (a.severity, a.text) == (40, "rendered by format_exc_info")
    assert a.traceback.startswith("Traceback (most recent call last):") and "ValueError: bad value 17" in a.traceback
    assert a.fields == {"exc_type": "ValueError", "exc_message": "bad value 17"}
    assert (b.severity, b.fields) == (40, {"exc_type": "KeyError", "exc_message": "'missing'"})
    assert "KeyError: 'missing'" in b.traceback
    assert c.fields == {"exc_type": "mine", "exc_message": "gone"}   # a given key wins
    assert c.traceback == "RuntimeError: gone"                       # never raised: no frames
    assert d.traceback.startswith("Stack (most recent call last):") and "test_structlog_exceptions" in d.traceback
    assert d.fields == {}


def test_structlog_timestamp_is_the_messages_time(structlog_to, tmp_path):
    structlog_to(structlog.processors.TimeStamper(fmt="iso"))
    log = structlog.get_logger()
    before = time.time_ns()
    log.info("iso")
    structlog_to(structlog.processors.TimeStamper())             # seconds since the epoch, a float
    structlog.get_logger().info("seconds")
    after = time.time_ns()
    structlog_to()                                               # no TimeStamper: the caller's
    structlog.get_logger().info("given", timestamp="2024-05-06T07:08:09.123456+02:00")
    structlog_to(structlog.processors.TimeStamper(fmt="%Y"))     # not a time logkit can read: a field
    structlog.get_logger().info("a year")
    iso, secs, given, year = _messages(tmp_path)
    assert before - 1000 <= iso.time <= after and before - 1000 <= secs.time <= after + 1000
    assert iso.fields == secs.fields == given.fields == {}
    assert given.time == int(datetime.datetime(2024, 5, 6, 5, 8, 9, 123456, datetime.timezone.utc)
                             .timestamp()) * 10**9 + 123456000
    assert year.fields == {"timestamp": time.strftime("%Y", time.gmtime())} and year.time >= after


def test_structlog_fields_of_logkit_bind_and_structlog_contextvars_both_arrive(structlog_to, tmp_path):
    structlog_to(structlog.contextvars.merge_contextvars)
    structlog.contextvars.bind_contextvars(tenant="t1", user="from-structlog")
    with logkit.context(job="nightly", user="from-logkit"):
        structlog.get_logger().info("both", attempt=2)
    (m,) = _messages(tmp_path)
    assert m.fields == {"job": "nightly", "tenant": "t1", "user": "from-structlog", "attempt": 2}


def test_structlog_a_renderer_as_the_last_processor_writes_its_output_as_the_text(structlog_to, tmp_path):
    structlog_to(structlog.processors.add_log_level, last=structlog.processors.JSONRenderer(sort_keys=True))
    structlog.get_logger("json").warning("rendered", n=1)
    (m,) = _messages(tmp_path)
    assert (m.severity, m.logger, json.loads(m.text)) == (30, "json", {"event": "rendered", "level": "warning",
                                                                       "n": 1})


def test_structlog_and_the_stdlib_share_one_handler_in_order(tmp_path):
    h = logkit.Handler(**_options(tmp_path))
    std = logging.getLogger("adapters.shared")
    std.handlers[:] = [h]
    std.propagate = False
    std.setLevel(logging.INFO)
    structlog.configure(processors=[logkit.structlog.to_logkit],
                        logger_factory=logkit.structlog.LoggerFactory(handler=h))
    try:
        std.info("stdlib 1")
        structlog.get_logger("sl").info("structlog 2")
        std.info("stdlib 3")
    finally:
        structlog.reset_defaults()
        h.close()
    assert [(m.logger, m.text) for m in _messages(tmp_path)] == [
        ("adapters.shared", "stdlib 1"), ("sl", "structlog 2"), ("adapters.shared", "stdlib 3")]
    with pytest.raises(TypeError, match="either handler= or"):
        logkit.structlog.LoggerFactory(handler=h, directory=str(tmp_path))


def test_structlog_a_failing_write_is_reported_on_stderr_not_raised(structlog_to, tmp_path, capsys):
    factory = structlog_to()
    structlog.get_logger().info("kept")
    factory.close()
    structlog.get_logger().info("lost")                     # no exception into the caller
    err = capsys.readouterr().err
    assert "--- Logging error in logkit.structlog" in err and "logkit.Handler is closed" in err
    assert [m.text for m in _messages(tmp_path)] == ["kept"]


@pytest.mark.parametrize("make", [lambda **o: logkit.structlog.LoggerFactory(**o),
                                  lambda **o: logkit.loguru.Sink(**o)], ids=["structlog", "loguru"])
def test_a_bad_option_is_a_config_error_naming_the_key(make, tmp_path):
    with pytest.raises(logkit.ConfigError, match="segmant_size"):
        make(storage="family", directory=str(tmp_path), family="app", segmant_size="64KiB")
    cfg = tmp_path / "logkit.toml"
    cfg.write_text('[log.app]\nstorage = "family"\ndirectory = "."\nsegment_size = "lots"\n')
    with pytest.raises(logkit.ConfigError, match=r"logkit\.toml.*segment_size") as e:
        make(log="app", config=str(cfg))
    assert "[log.app]" in str(e.value) or "log.app" in str(e.value)


# ---------------------------------------------------------------- loguru

@pytest.fixture
def loguru_to(tmp_path):
    """loguru's logger with no sink but a logkit Sink into tmp_path's family "app"."""
    loguru_logger.remove()
    sinks = []

    def add(sink=None, **add_kw):
        sink = sink or logkit.loguru.Sink(**_options(tmp_path))
        sinks.append(sink)
        return loguru_logger.add(sink, **add_kw), sink

    yield add
    loguru_logger.remove()
    for s in sinks:
        s.stop()


def test_loguru_record_maps_to_text_severity_logger_source_fields_and_time(loguru_to, tmp_path):
    loguru_to(level=0)
    log = loguru_logger.bind(request_id="r-9", attempt=2)
    before = time.time_ns()
    log.info("user {} bought {n} items", "alice", n=3); line = sys._getframe().f_lineno
    after = time.time_ns()
    for name in ("TRACE", "DEBUG", "SUCCESS", "WARNING", "ERROR", "CRITICAL"):
        loguru_logger.log(name, name.lower())
    loguru_logger.level("NOTICE", no=33)
    loguru_logger.log("NOTICE", "custom")
    loguru_logger.log(7, "a bare number")
    with loguru_logger.contextualize(task="t-1"):
        loguru_logger.bind(ok=True, tags=["x"]).info("contextualized")
    msgs = _messages(tmp_path)
    m = msgs[0]
    assert (m.severity, m.text) == (20, "user alice bought 3 items")
    assert before - 1000 <= m.time <= after
    assert m.record == logkit.RecordInfo(
        "test_adapters", "test_adapters", "test_loguru_record_maps_to_text_severity_logger_source_fields_and_time",
        line, __file__, {"request_id": "r-9", "attempt": 2, "n": 3}, None)   # loguru puts format kwargs in extra
    assert [(x.severity, x.text) for x in msgs[1:-1]] == [
        (5, "trace"), (10, "debug"), (25, "success"), (30, "warning"), (40, "error"), (50, "critical"),
        (33, "custom"), (7, "a bare number")]
    assert msgs[-1].fields == {"task": "t-1", "ok": True, "tags": ["x"]}


def test_loguru_exception_is_the_traceback_with_type_and_message_fields(loguru_to, tmp_path):
    loguru_to()
    try:
        raise ValueError("bad value 17")
    except ValueError:
        loguru_logger.exception("it failed")
    try:
        1 / 0
    except ZeroDivisionError:
        loguru_logger.bind(exc_type="mine").opt(exception=True).warning("bound wins")
    loguru_logger.opt(exception=KeyError("k")).error("an exception object")
    a, b, c = _messages(tmp_path)
    assert (a.severity, a.text) == (40, "it failed")
    assert a.traceback.startswith("Traceback (most recent call last):")
    assert a.traceback.endswith("ValueError: bad value 17") and 'raise ValueError("bad value 17")' in a.traceback
    assert a.fields == {"exc_type": "ValueError", "exc_message": "bad value 17"}
    assert (b.severity, b.fields) == (30, {"exc_type": "mine", "exc_message": "division by zero"})
    assert c.fields == {"exc_type": "KeyError", "exc_message": "'k'"} and "KeyError: 'k'" in c.traceback


def test_loguru_remove_closes_the_sinks_log_and_a_given_handler_stays_open(loguru_to, tmp_path, capsys):
    sink_id, sink = loguru_to()
    loguru_logger.info("kept")
    loguru_logger.remove(sink_id)                   # loguru calls Sink.stop()
    assert sink.handler.transport is None, "logger.remove() left the sink's log open"
    h = logkit.Handler(**_options(tmp_path))
    try:
        shared_id, _ = loguru_to(logkit.loguru.Sink(handler=h))
        loguru_logger.info("through a given handler")
        loguru_logger.remove(shared_id)
        h.write_record("the handler is still open")
    finally:
        h.close()
    assert [m.text for m in _messages(tmp_path)] == ["kept", "through a given handler", "the handler is still open"]


_LOGURU_CHILD = r"""
import sys
from loguru import logger
import logkit.loguru

directory, proc, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
logger.remove()
logger.add(logkit.loguru.Sink(storage="family", directory=directory, family="app", segment_size="64KiB"))
print("ready", flush=True)
sys.stdin.readline()                    # "go": every process has its sink before any writes
for i in range(count):
    logger.bind(proc=proc, seq=i).info("process {} message {} {}", proc, i, "x" * (i % 40))
print("done", flush=True)               # logger.remove() at exit flushes and closes the log
"""


def _line(p, timeout=60):
    ready, _, _ = select.select([p.stdout], [], [], timeout)
    return p.stdout.readline() if ready else "(no line within %ss)" % timeout


def test_loguru_processes_started_independently_share_one_family_and_lose_nothing_across_rotations(tmp_path):
    procs, count = 4, 2500
    script = tmp_path / "child.py"
    script.write_text(_LOGURU_CHILD)
    kids = [subprocess.Popen([sys.executable, str(script), str(tmp_path), str(p), str(count)], env=_env(),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for p in range(procs)]
    try:
        for k in kids:
            assert _line(k) == "ready\n", k.stderr.read() if k.poll() is not None else "child not ready"
        for k in kids:
            k.stdin.write("go\n")
            k.stdin.flush()
        outs = [k.communicate(timeout=300) for k in kids]
    finally:
        for k in kids:
            if k.poll() is None:
                k.kill()
                k.wait()
    for k, (out, err) in zip(kids, outs):
        assert (k.returncode, out) == (0, "done\n"), err
        assert "Logging error" not in err, err
    msgs = _messages(tmp_path)
    seqs = [m.sequence for m in msgs]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "sequence numbers do not increase"
    per = {p: [] for p in range(procs)}
    for m in msgs:
        p, i = m.fields["proc"], m.fields["seq"]
        assert m.process_id == kids[p].pid and m.text == f"process {p} message {i} " + "x" * (i % 40)
        per[p].append(i)
    for p in range(procs):
        assert per[p] == list(range(count)), f"process {p}: messages missing, repeated or out of order"
    assert len(logkit.family.history_segments(str(tmp_path), "app")) > 10, "the family did not rotate"


# ---------------------------------------------------------------- the doc page

def _doc_blocks():
    import test_docs
    return [b for b in test_docs._blocks(DOC) if b.lang == "python" and b.file_name is None]


# (Its examples run with the other docs' in tests/test_docs.py, DOC_FILES.)


def test_from_other_loggers_md_has_the_mapping_table_and_an_example_each():
    text = DOC.read_text(encoding="utf-8")
    assert {"## From the stdlib", "## From structlog", "## From loguru"} <= {
        line.strip() for line in text.splitlines()}
    codes = [b.code for b in _doc_blocks()]
    assert any("logkit.structlog" in c for c in codes) and any("logkit.loguru" in c for c in codes)
    for row in ("text", "severity", "logger", "fields", "traceback"):
        assert any(line.startswith(f"| {row}") for line in text.splitlines()), f"no table row for {row}"
