"""logkit.Handler: records from many threads in many processes, the record
mapping (level, text, time, ids, traceback, extra), formatters, filters,
flush/close, errors reported the stdlib way, fork."""
from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import threading
import time

import pytest

import logkit
from logkit import config as lkconfig
from procs import CTX, Group, HANDLER_LEVELS, TIMEOUT, handler_text, recv_all, child_handler_threads


def _logger(handler, name):
    lg = logging.getLogger(name)
    lg.handlers[:] = [handler]
    lg.propagate = False
    lg.setLevel(1)
    return lg


def storage_options(kind, tmp_path):
    """Handler keyword options for each built-in storage backend."""
    if kind == "family":
        return {"storage": "family", "directory": str(tmp_path), "family": "app", "segment_size": "256KiB"}
    if kind == "partition":
        return {"storage": "partition", "path": str(tmp_path / "app.part"), "size": "8MiB",
                "directory": str(tmp_path), "family": "app"}
    if kind == "plainfile":
        return {"storage": "plainfile", "path": str(tmp_path / "app.log"), "format": "json",
                "max_size": "128KiB"}
    raise AssertionError(kind)


def read_back(kind, options):
    """Every message of the log (for a partition: what is in the partition)."""
    lc = lkconfig.from_options("app", **options)
    storage = lc.open_storage()
    try:
        return [(m.sequence, m.severity, m.process_id, m.thread_id, m.text) for m in storage.reader()]
    finally:
        storage.close()


@pytest.mark.parametrize("kind", ["family", "partition", "plainfile"])
def test_eight_threads_in_each_of_four_processes_every_record_arrives_once(kind, tmp_path):
    opts = storage_options(kind, tmp_path)
    procs, threads, count = 4, 8, 200
    go = CTX.Event()
    with Group() as g:
        kids = g.spawn_many(procs, child_handler_threads, lambda p: (opts, p, threads, count, go))
        recv_all(kids, "ready")
        go.set()
        done = recv_all(kids, "done", timeout=120)
    msgs = read_back(kind, opts)
    seqs = [m[0] for m in msgs]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    got = {}
    for seq, sev, pid, tid, text in msgs:
        assert text not in got, f"record {text!r} arrived twice"
        got[text] = (sev, pid, tid)
    expected = {}
    for p, (pid, tids) in enumerate(done):
        for t in range(threads):
            for i in range(count):
                expected[handler_text(p, t, i) % "alice"] = (HANDLER_LEVELS[i % 5], pid, tids[t])
    assert len(got) == len(expected) == procs * threads * count
    assert got == expected


@pytest.fixture
def family_handler(tmp_path):
    h = logkit.Handler(storage="family", directory=str(tmp_path), family="app", segment_size="64KiB")
    yield h
    h.close()


def _messages(tmp_path, family="app"):
    return list(logkit.open_reader(str(tmp_path), family))


def test_record_maps_to_severity_text_time_and_ids(family_handler, tmp_path):
    lg = _logger(family_handler, "map")
    before = time.time_ns()
    lg.warning("user %s did %d things", "alice", 42); line = sys._getframe().f_lineno
    after = time.time_ns()
    (m,) = _messages(tmp_path)
    assert (m.severity, m.text, m.data_class) == (30, "user alice did 42 things", "record")
    assert before - 1000 <= m.time <= after + 1000      # created, in ns (float seconds: sub-µs rounding)
    assert (m.process_id, m.thread_id) == (os.getpid(), threading.get_native_id())
    # The logger's name and the source location travel with the record.
    assert m.record == logkit.RecordInfo("map", "test_handler", "test_record_maps_to_severity_text_time_and_ids",
                                         line, __file__, {}, None)
    assert m.logger == "map" and m.fields == {} and m.traceback is None


def test_custom_levels_outside_the_severity_range_are_clamped(family_handler, tmp_path):
    lg = _logger(family_handler, "levels")
    lg.log(5, "five")
    lg.log(1000, "thousand")
    assert [(m.severity, m.text) for m in _messages(tmp_path)] == [(5, "five"), (250, "thousand")]


def test_exc_info_and_stack_info_become_traceback_data(family_handler, tmp_path):
    lg = _logger(family_handler, "tb")
    try:
        raise ValueError("bad value 17")
    except ValueError:
        lg.exception("it failed")
    lg.info("where am I", stack_info=True)
    a, b = _messages(tmp_path)
    assert a.text == "it failed" and a.data_class == "record"
    assert a.traceback.startswith("Traceback (most recent call last):") and "ValueError: bad value 17" in a.traceback
    # The exception's type and message are fields, for --field exc_type=...
    assert a.fields == {"exc_type": "ValueError", "exc_message": "bad value 17"}
    assert "Stack (most recent call last)" in b.traceback and b.fields == {}


def test_extra_fields_become_fields_with_their_json_types(family_handler, tmp_path):
    lg = _logger(family_handler, "extra")
    lg.info("login", extra={"user": "alice", "attempt": 3, "ok": True, "ratio": 0.5, "tags": ["a", "b"],
                            "none": None, "obj": object()})
    try:
        1 / 0
    except ZeroDivisionError:
        lg.error("both", exc_info=True, extra={"user": "bob", "exc_type": "mine"})
    a, b = _messages(tmp_path)
    assert a.data_class == "record" and a.logger == "extra"
    f = a.fields
    assert {k: v for k, v in f.items() if k != "obj"} == {"user": "alice", "attempt": 3, "ok": True, "ratio": 0.5,
                                                          "tags": ["a", "b"], "none": None}
    assert f["obj"].startswith("<object object")            # what JSON cannot hold: its repr()
    # extra= wins over the exception's own fields; the traceback stays apart
    assert b.fields == {"user": "bob", "exc_type": "mine", "exc_message": "division by zero"}
    assert "ZeroDivisionError" in b.traceback


def test_bound_fields_follow_the_context_and_extra_wins(family_handler, tmp_path):
    lg = _logger(family_handler, "ctx")
    token = logkit.bind(request_id="r-1", user="anon")
    try:
        lg.info("one")
        with logkit.context(job="nightly", user="cron") as now:
            assert now == {"request_id": "r-1", "user": "cron", "job": "nightly"}
            lg.info("two", extra={"user": "explicit"})
        lg.info("three")
    finally:
        from logkit.contextfields import FIELDS
        FIELDS.reset(token)
    lg.info("four")
    got = [(m.text, m.fields) for m in _messages(tmp_path)]
    assert got == [("one", {"request_id": "r-1", "user": "anon"}),
                   ("two", {"request_id": "r-1", "user": "explicit", "job": "nightly"}),
                   ("three", {"request_id": "r-1", "user": "anon"}),
                   ("four", {})]


def test_each_thread_and_each_task_keeps_its_own_bound_fields(family_handler, tmp_path):
    import asyncio
    lg = _logger(family_handler, "tasks")

    async def task(name, n):
        logkit.bind(task=name)
        for i in range(n):
            lg.info(f"{name} {i}")
            await asyncio.sleep(0)            # interleave the tasks

    async def main():
        await asyncio.gather(task("a", 3), task("b", 3))

    def thread(name):
        with logkit.context(thread=name):
            lg.info(f"thread {name}")

    asyncio.run(main())
    ts = [threading.Thread(target=thread, args=(n,)) for n in ("x", "y")]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    lg.info("main")
    got = {m.text: m.fields for m in _messages(tmp_path)}
    assert all(got[f"{n} {i}"] == {"task": n} for n in "ab" for i in range(3))
    assert got["thread x"] == {"thread": "x"} and got["thread y"] == {"thread": "y"}
    assert got["main"] == {}                     # nothing a task or thread bound leaked out


def test_formatter_output_is_the_text_and_the_traceback_stays_data(family_handler, tmp_path):
    family_handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    lg = _logger(family_handler, "fmt")
    lg.info("hello %s", "there")
    try:
        raise KeyError("k")
    except KeyError:
        lg.exception("oops")
    a, b = _messages(tmp_path)
    assert a.text == "INFO:fmt:hello there"
    assert b.text == "ERROR:fmt:oops" and b.data_class == "record" and "KeyError" in b.traceback


def test_a_formatter_subclass_overriding_format_is_used_as_is(family_handler, tmp_path):
    class Upper(logging.Formatter):
        def format(self, record):
            return super().format(record).upper()
    family_handler.setFormatter(Upper("%(message)s"))
    _logger(family_handler, "upper").info("shout")
    assert [m.text for m in _messages(tmp_path)] == ["SHOUT"]


def test_filters_and_handler_level_apply(family_handler, tmp_path):
    family_handler.setLevel(logging.INFO)
    family_handler.addFilter(lambda r: "secret" not in r.getMessage())
    lg = _logger(family_handler, "filters")
    lg.debug("too low")
    lg.info("public")
    lg.info("a secret")
    assert [m.text for m in _messages(tmp_path)] == ["public"]


def test_a_failing_record_goes_to_handle_error_not_to_the_caller(family_handler, tmp_path, capsys):
    lg = _logger(family_handler, "fail")
    lg.info("%d apples", "not a number")          # formatting fails inside the handler
    lg.info("after")
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err and "TypeError" in err
    assert [m.text for m in _messages(tmp_path)] == ["after"]


def test_a_message_too_big_is_reported_and_later_records_still_arrive(family_handler, tmp_path, capsys):
    lg = _logger(family_handler, "big")
    lg.info("x" * 100_000)                        # bigger than a 64 KiB segment
    lg.info("small")
    err = capsys.readouterr().err
    assert "MessageTooBig" in err and "can never fit" in err
    assert [m.text for m in _messages(tmp_path)] == ["small"]


def test_close_then_log_reports_closed_and_keeps_earlier_records(tmp_path, capsys):
    h = logkit.Handler(storage="family", directory=str(tmp_path), family="app")
    lg = _logger(h, "closed")
    lg.info("kept")
    h.flush()
    h.close()
    h.close()                                      # twice is harmless, as in the stdlib
    lg.info("lost")
    assert "logkit.Handler is closed" in capsys.readouterr().err
    assert [m.text for m in _messages(tmp_path)] == ["kept"]


def test_rotation_through_the_handler_loses_nothing(tmp_path):
    h = logkit.Handler(storage="family", directory=str(tmp_path), family="app", segment_size="16KiB")
    lg = _logger(h, "rot")
    for i in range(2000):
        lg.info("message %d", i)
    h.close()
    texts = [m.text for m in _messages(tmp_path)]
    assert texts == [f"message {i}" for i in range(2000)]
    assert len(logkit.family.history_segments(str(tmp_path), "app")) > 5


def test_many_threads_without_the_handler_lock(family_handler, tmp_path):
    lg = _logger(family_handler, "threads")
    held = []
    real_acquire = family_handler.acquire
    family_handler.acquire = lambda: (held.append(1), real_acquire())[1]
    def work(k):
        for i in range(500):
            lg.info("t%d %d", k, i)
    ts = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert held == [], "the write path took the handler lock"
    texts = sorted(m.text for m in _messages(tmp_path))
    assert texts == sorted(f"t{k} {i}" for k in range(8) for i in range(500))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_writes_with_its_own_pid(family_handler, tmp_path):
    lg = _logger(family_handler, "fork")
    lg.info("parent before")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                   # child: log, report, leave at once
        try:
            lg.info("child")
            os.write(w, b"ok")
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 2) == b"ok"
    os.waitpid(pid, 0)
    lg.info("parent after")
    got = [(m.text, m.process_id) for m in _messages(tmp_path)]
    assert got == [("parent before", os.getpid()), ("child", pid), ("parent after", os.getpid())]


def test_write_record_writes_what_a_logrecord_would_without_one(family_handler, tmp_path):
    with logkit.context(request_id="r-9"):
        family_handler.write_record("from an adapter", 40, logger="svc.worker", module="jobs",
                                    function="run", line=12, path="/srv/jobs.py",
                                    fields={"attempt": 2, "request_id": "given"}, traceback="Traceback ...")
    family_handler.write_record("clamped", 1000)
    a, b = _messages(tmp_path)
    assert (a.text, a.severity, a.data_class) == ("from an adapter", 40, "record")
    assert a.record == logkit.RecordInfo("svc.worker", "jobs", "run", 12, "/srv/jobs.py",
                                         {"request_id": "given", "attempt": 2}, "Traceback ...")
    assert (b.severity, b.logger, b.fields) == (250, "", {})
    family_handler.close()
    with pytest.raises(logkit.LogkitError, match="closed"):
        family_handler.write_record("after close")
