"""Readers racing a process that flips bytes of the file under them.

A mutator process (tests/procs/fuzz.py mutate) scribbles on a segment
through its own shared mapping for a bounded time while readers work on it:
a reader process iterating and touching every field, `logkit print` run
again and again, and a follow() reader on the family.  Each must end by
itself (no hang), with no signal (no crash), and with no error but a
LogkitError with a message.  Seeds are fixed per case; what races is the
scheduling, so a case that fails may pass on another run, never the reverse
(a pass proves nothing is wrong only for the schedules it saw).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from logkit import open_reader, open_writer

TESTS = os.path.dirname(os.path.abspath(__file__))
PROCS = os.path.join(TESTS, "procs", "fuzz.py")
RACE_SECONDS = float(os.environ.get("LOGKIT_RACE_SECONDS", "3"))
BOUND = RACE_SECONDS + 60          # a reader still running this long after the race is hung


def make_family(directory: str, n: int = 400) -> str:
    w = open_writer(directory, "race", segment_size="256KiB")
    try:
        for i in range(n):
            w.write(f"race message {i} " + "z" * (i * 31 % 200), i % 60, bytes(i % 9), "bin" if i % 3 else "")
    finally:
        w.close()
    paths = open_reader(directory, "race").segment_paths()
    assert paths, os.listdir(directory)
    return paths[-1]                  # the live segment


def spawn(*args):
    return subprocess.Popen([sys.executable, PROCS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(p: subprocess.Popen, what: str) -> str:
    try:
        out, err = p.communicate(timeout=BOUND)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"{what} hung: still running {BOUND:.0f} s after the race began\n{out}\n{err[-3000:]}")
    assert p.returncode >= 0, f"{what} was killed by signal {-p.returncode}\n{out}\n{err[-3000:]}"
    assert p.returncode == 0, f"{what} exit {p.returncode}: an error that is not a LogkitError\n{out}\n{err[-3000:]}"
    return out


def start_mutator(path, seed, mode):
    m = spawn("mutate", path, str(RACE_SECONDS), str(seed), mode)
    line = m.stdout.readline()
    assert line.startswith("READY"), (line, m.stderr.read() if m.poll() is not None else "")
    return m


# "toggle" flips length fields to a huge value and straight back: it found
# Message.checksum_ok() re-reading lengths after the walk (SIGBUS/SIGSEGV).
@pytest.mark.parametrize("mode", ["bytes", "fields", "toggle"])
def test_segment_reader_survives_a_concurrent_mutator(tmp_path, mode):
    path = make_family(str(tmp_path))
    m = start_mutator(path, 11, mode)
    readers = [spawn("read", path, str(RACE_SECONDS)) for _ in range(2)]
    for i, r in enumerate(readers):
        out = finish(r, f"reader {i}")
        passes, refused = (int(x) for x in out.split("PASSES ")[1].split()[::2][:2])
        assert passes > refused, f"reader {i}: {refused} of {passes} passes refused: the race never reached a walk"
    finish(m, "mutator")


@pytest.mark.parametrize("mode", ["bytes", "fields", "toggle"])
def test_logkit_print_survives_a_concurrent_mutator(tmp_path, mode):
    path = make_family(str(tmp_path))
    m = start_mutator(path, 12, mode)
    runs = 0
    end = time.monotonic() + RACE_SECONDS
    while time.monotonic() < end or runs < 2:
        for args in (["--single", path], [str(tmp_path)], ["--reverse", "--single", path]):
            p = subprocess.run([sys.executable, "-m", "logkit", "print", *args], capture_output=True, text=True,
                               timeout=BOUND)
            runs += 1
            assert p.returncode >= 0, f"logkit print {args} killed by signal {-p.returncode}\n{p.stderr[-3000:]}"
            assert p.returncode in (0, 1, 2), f"logkit print {args}: exit {p.returncode}\n{p.stderr[-3000:]}"
            assert "Traceback" not in p.stderr, f"logkit print {args}: a traceback\n{p.stderr[-3000:]}"
    finish(m, "mutator")
    assert runs >= 3


@pytest.mark.parametrize("mode", ["bytes", "fields", "toggle"])
def test_follow_survives_a_concurrent_mutator(tmp_path, mode):
    path = make_family(str(tmp_path))
    f = spawn("follow", str(tmp_path), "race", str(RACE_SECONDS + 1))
    m = start_mutator(path, 13, mode)
    finish(m, "mutator")
    out = finish(f, "follow reader")
    assert "FOLLOWED" in out or "DONE" in out     # DONE alone: follow() ended with a LogkitError (allowed)


def test_reader_survives_the_file_being_truncated_under_it(tmp_path):
    """Issue 13 #7: a segment truncated by another process while a reader has
    it mapped must not kill the reader with SIGBUS (open, truncate, then walk:
    deterministic, no race)."""
    path = make_family(str(tmp_path))
    r = subprocess.Popen([sys.executable, PROCS, "read-held", path], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert r.stdout.readline().startswith("OPEN")
    os.truncate(path, 8192)           # what any process that can write the file can do
    r.stdin.write("go\n")
    r.stdin.flush()
    out = finish(r, "reader of a truncated segment")
    assert "READ" in out or "DONE" in out


@pytest.mark.parametrize("offset", [8, 12,
                                40, 44,   # checksum_ok() re-read these and read past the mapping, before
                                    48],       # 0xFFF0 more bytes still lie inside this 256 KiB mapping
                         ids=["total", "severity", "text-length", "data-length", "class-length"])
def test_message_accessors_after_a_field_changed_under_them(tmp_path, offset):
    """The deterministic form of the toggle race: walk, then a co-writer
    changes one field of a message already returned, then every accessor."""
    path = make_family(str(tmp_path))
    out = finish(spawn("change-then-touch", path, str(offset)), f"reader after a change at +{offset}")
    assert "TOUCHED" in out
