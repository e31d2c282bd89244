"""logkit.console.say: one diagnostic line, one write() (CI stop 21: under
PYTHONUNBUFFERED print() wrote `logkit monitor: ... to appear` and its newline
separately, so a reader of the pipe saw the line without its end)."""
from __future__ import annotations

import io
import os
import pathlib
import re
import subprocess
import sys

from logkit.console import say

ROOT = pathlib.Path(__file__).resolve().parent.parent


class Raw(io.RawIOBase):
    """An unbuffered binary stream that records each write, as python -u's stderr."""

    def __init__(self):
        self.writes: list[bytes] = []

    def writable(self):
        return True

    def write(self, b):
        self.writes.append(bytes(b))
        return len(b)


def unbuffered_text() -> tuple[io.TextIOWrapper, Raw]:
    raw = Raw()
    return io.TextIOWrapper(raw, encoding="utf-8", line_buffering=True, write_through=True), raw


def test_print_to_an_unbuffered_stream_splits_the_line_and_say_does_not():
    t, raw = unbuffered_text()
    print("logkit monitor: waiting", file=t)
    assert raw.writes == [b"logkit monitor: waiting", b"\n"]    # why say() exists
    t, raw = unbuffered_text()
    say("logkit monitor: waiting", t)
    assert raw.writes == [b"logkit monitor: waiting\n"]


def test_say_with_no_stderr_is_silent(monkeypatch):
    monkeypatch.setattr(sys, "stderr", None)
    say("nobody listens")                                          # no AttributeError


def test_the_monitor_waiting_line_reaches_an_unbuffered_stderr_in_one_write(tmp_path):
    cfg = tmp_path / "logkit.toml"
    later = tmp_path / "later"
    cfg.write_text(f'[log.app]\nstorage = "family"\ndirectory = "{later}"\ncreate_directory = true\n')
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("LOGKIT_CONFIG", None)
    p = subprocess.Popen([sys.executable, "-m", "logkit", "monitor", "app", "-c", str(cfg),
                          "--idle-timeout", "1"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         env=env, cwd=tmp_path)
    try:
        first = os.read(p.stderr.fileno(), 65536)  # what the first write() put in the pipe
        assert first.startswith(b"logkit monitor: log app: waiting for its directory")
        assert first.endswith(b"to appear\n"), first
    finally:
        p.kill()
        p.wait(60)
        p.stderr.close()


def test_no_diagnostic_bypasses_say():
    offenders = []
    for d in ("logkit", "backends"):
        for f in sorted(p for p in (ROOT / d).rglob("*.py") if p.name != "console.py"):
            for n, line in enumerate(f.read_text().splitlines(), 1):
                if re.search(r"file=sys\.stderr|sys\.stderr\.write", line):
                    offenders.append(f"{f.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "diagnostics not written with logkit.console.say:\n" + "\n".join(offenders)
