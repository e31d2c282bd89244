"""logkit.Handler used as a hostile (or just unlucky) program uses it: closed
while other threads log, by close(), dictConfig or logging.shutdown at exit
(issue #13, defect 14); records too big for a segment, lone surrogates
(defect 21).  The close races run in real subprocesses (tests/procs/
hostile_handler.py): a crash there is a signal, not a failed assert."""
from __future__ import annotations

import collections
import json
import logging
import os
import re
import subprocess
import sys

import pytest

import logkit
from logkit import config as lkconfig

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(TESTS_DIR, "procs", "hostile_handler.py")
# The only errors a record racing close() may report: the handler (or its
# family writer) is closed.  Anything else is the race showing through.
CLOSED_ERROR = re.compile(r"^(LogkitError|SegmentClosed): (logkit\.Handler|family writer for \S+|segment \S+) is closed$")


def run_child(scenario, out, rounds=1, timeout=300):
    proc = subprocess.run([sys.executable, CHILD, scenario, str(out), str(rounds)],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{scenario}: the process ended with {proc.returncode}"
        f"{' (signal ' + str(-proc.returncode) + ')' if proc.returncode < 0 else ''}; "
        f"stderr:\n{proc.stderr[-3000:]}")
    return proc


def check_nothing_finished_is_lost(out):
    """Every record a thread finished before the close is in the family once."""
    with open(os.path.join(out, "result.json")) as f:
        rounds = json.load(f)
    assert rounds
    for r in rounds:
        texts = collections.Counter(m.text for m in logkit.open_reader(str(out), r["family"]))
        twice = [t for t, c in texts.items() if c > 1]
        assert not twice, f"{r['family']}: written more than once: {twice[:5]}"
        for k, finished in enumerate(r["finished"]):
            assert finished > 0
            missing = [n for n in range(finished) if texts[f"t{k} m{n}"] != 1]
            assert not missing, (f"{r['family']}: thread {k} finished {finished} records before the close, "
                                 f"{len(missing)} missing (first: m{missing[0]})")


def reported_errors(out):
    try:
        with open(os.path.join(out, "errors.txt")) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def check_only_closed_errors(out):
    bad = [e for e in reported_errors(out) if not CLOSED_ERROR.match(e)]
    assert not bad, f"errors other than 'closed' reported by records racing close(): {bad[:5]}"


@pytest.mark.parametrize("scenario", ["close", "dictconfig"])
def test_handler_closed_while_eight_threads_log_never_crashes_nor_loses_finished_records(scenario, tmp_path):
    # Ten rounds: before the fix, every run of this crashed (SIGSEGV in the sink's slow path).
    run_child(scenario, tmp_path, rounds=10)
    check_nothing_finished_is_lost(tmp_path)
    check_only_closed_errors(tmp_path)


def test_logging_shutdown_at_exit_with_daemon_threads_logging_exits_cleanly(tmp_path):
    for i in range(5):
        out = tmp_path / f"run{i}"
        out.mkdir()
        run_child("shutdown", out)
        check_nothing_finished_is_lost(out)
        check_only_closed_errors(out)


def test_emit_paused_in_the_slow_path_while_the_handler_closes_keeps_its_sink(tmp_path):
    # The thread stops inside FamilySink._slow (the segment is full); close()
    # drops the handler's references to the sink, and the freed memory is
    # refilled with canaries.  The paused emit must still hold the sink: it
    # ends with a clear "closed" error, never on freed memory.
    run_child("paused", tmp_path)
    assert not (tmp_path / "canary.txt").exists(), "the paused emit used the sink after it was freed"
    check_nothing_finished_is_lost(tmp_path)
    errors = reported_errors(tmp_path)
    assert len(errors) == 1 and CLOSED_ERROR.match(errors[0]), errors


# ---------------------------------------------------------------- defect 21: what a record may hold

class _Reported:
    """handleError replacement keeping (type name, message) of each error."""

    def __init__(self):
        self.errors = []

    def __call__(self, record):
        exc = sys.exc_info()[1]
        self.errors.append((type(exc).__name__, str(exc)))


def _handler_logger(tmp_path, name, **options):
    opts = options or {"storage": "family", "directory": str(tmp_path), "family": "app",
                       "segment_size": "64KiB"}
    h = logkit.Handler(**opts)
    h.handleError = _Reported()
    lg = logging.getLogger(f"hostile.{name}")
    lg.handlers[:] = [h]
    lg.propagate = False
    lg.setLevel(1)
    return h, lg, opts


def test_record_too_big_for_a_segment_reports_its_real_size_and_the_limit(tmp_path):
    h, lg, _ = _handler_logger(tmp_path, "toobig")
    lg.info("x" * 200_000)
    h.close()
    [(kind, msg)] = h.handleError.errors
    assert kind == "MessageTooBig", msg
    m = re.search(r"a message of (\d+) bytes can never fit \(at most (\d+) bytes per message", msg)
    assert m, msg
    size, limit = int(m.group(1)), int(m.group(2))
    assert size > 200_000 and limit < 64 * 1024 < size, msg


@pytest.mark.parametrize("storage", ["family", "plainfile"])
def test_lone_surrogate_in_a_record_is_written_escaped_not_refused(storage, tmp_path):
    # As logging.basicConfig's default errors='backslashreplace': the record
    # is kept, the surrogate written as its escape; in JSON data the escape
    # reads back as the very same string.
    options = {} if storage == "family" else {
        "storage": "plainfile", "path": str(tmp_path / "app.log"), "format": "json"}
    h, lg, opts = _handler_logger(tmp_path, f"surrogate.{storage}", **options)
    name = os.fsdecode(b"caf\xe9.txt")                   # 'caf\udce9.txt': a non-UTF-8 file name
    lg.info("cannot open %s", name)
    lg.info("with extra", extra={"file": name})
    try:
        raise OSError(2, "No such file", name)
    except OSError:
        lg.exception("failed")
    h.close()
    assert h.handleError.errors == []
    storage_backend = lkconfig.from_options("app", **opts).open_storage()
    try:
        got = [(m.text, m.fields, m.traceback) for m in storage_backend.reader()]
    finally:
        storage_backend.close()
    assert [t for t, _, _ in got] == ["cannot open caf\\udce9.txt", "with extra", "failed"]
    assert got[1][1] == {"file": name}                   # the escape reads back as the same string
    assert "caf\\udce9.txt" in got[2][2] and got[2][1]["exc_type"] == "FileNotFoundError"
