"""Readers against a hostile co-writer and a file that shrinks (issue #13,
defects 7 and 19, and the follow part of 2).

Each reader that could crash runs in a child process (tests/readprocs.py),
so a crash shows as a signal here instead of killing the test run.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from logkit import Segment

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
READPROCS = os.path.join(TESTS_DIR, "readprocs.py")
CHILD_TIMEOUT = 120


def _child(*args: str, env: dict | None = None) -> list[str]:
    """Run a readprocs case; its result lines.  A signal or a traceback fails."""
    p = subprocess.run([sys.executable, READPROCS, *map(str, args)], capture_output=True,
                       text=True, timeout=CHILD_TIMEOUT, cwd=TESTS_DIR,
                       env=None if env is None else {**os.environ, **env})
    assert p.returncode == 0, (f"reader child ended with {p.returncode} "
                               f"({'signal ' + str(-p.returncode) if p.returncode < 0 else 'exit'}); "
                               f"stdout={p.stdout!r} stderr={p.stderr[-2000:]!r}")
    return p.stdout.splitlines()


def _segment(tmp_path, sealed=False, size=8192):
    from readprocs import KEY
    path = str(tmp_path / "s.seg")
    with Segment.create(path, size=size, key=KEY if sealed else None) as seg:
        seg.write("first message", 20, b"DATA-1", "cls")
        seg.write("second message", 30, b"DATA-2", "klass")
    return path


# ---------------------------------------------------------------- defect 7: validate once, read once

# (field offset, value written after the walk, accessor): each would make the
# unfixed accessor use the mapping's new length as a pointer length or index.
REREAD = [
    (40, 0x7FFFFFF0, "text"),         # text length: decoded from far past the mapping
    (40, 0x7FFFFFF0, "data_class"),   # the class name is found after the text
    (48, 0xFFFF, "data_class"),       # class-name length
    (44, 0x7FFFFFF0, "data"),         # data length: a view past the message
    (12, 999, "severity"),            # severity: formatters index tables by it
    (8, 0x7FFFFFF0, "text"),          # total: no longer agrees with the lengths
]


@pytest.mark.parametrize("field,value,accessor", REREAD, ids=[f"+{f}-{a}" for f, _, a in REREAD])
def test_field_rewritten_after_the_walk_gives_a_clear_error_not_a_crash(tmp_path, field, value, accessor):
    path = _segment(tmp_path)
    out = _child("message", path, field, value, accessor, "0")
    assert out[0].startswith("ERR SegmentDamaged:"), out
    assert path in out[0] and "changed after it was read" in out[0], out
    assert out[1].startswith("ERR SegmentDamaged:"), out      # to_dict reads the same way


@pytest.mark.parametrize("accessor,expected", [("text", "'second message'"), ("data", "b'DATA-2'"),
                                               ("data_class", "'klass'")])
def test_sealed_message_reads_lengths_from_its_private_copy(tmp_path, accessor, expected):
    """A sealed message is decrypted once into a private copy; rewriting the
    mapping's text length afterwards must not change what is read from the
    copy (the unfixed reader decoded the copy with the mapping's length: a
    heap over-read)."""
    path = _segment(tmp_path, sealed=True)
    out = _child("message", path, 40, 0x7FFFFFF0, accessor, "1")
    assert out[0] == "OK 'second message'", out
    assert out[1] == f"OK {expected}", out


@pytest.mark.parametrize("field,value", [(12, 30000), (12, -30000), (40, 0x7FFFFFF0), (8, 16)])
def test_print_formats_a_record_rewritten_after_the_walk_without_crashing(tmp_path, field, value):
    """logkit print's C formatter (Printer._one) used the severity as an
    index with bounds checks off and the text length as a raw length; the
    record is now passed over with a warning naming the file and offset."""
    path = _segment(tmp_path)
    out = _child("print", path, field, value)
    assert out[0] == "OK 1", out                       # the first message printed, the second passed over
    warns = [x for x in out if x.startswith("WARN")]
    assert len(warns) == 1 and path in warns[0] and "changed after it was read" in warns[0], out


# ---------------------------------------------------------------- defect 7: a file that shrinks (SIGBUS)

def test_reader_survives_a_truncate_by_another_process_and_names_the_file(tmp_path):
    path = str(tmp_path / "t.seg")
    with Segment.create(path, size=65536) as seg:
        for i in range(400):
            seg.write(f"message {i:04d} " + "x" * 40)
    keep = 4096 + 3 * 4096
    out = _child("sigbus_read", path, keep)
    assert out[0] == "OK 400", out
    n = int(out[1].split()[1])
    assert 0 < n < 400, out                         # what is still in the file was read
    assert out[2].startswith("ERR SegmentDamaged:") and path in out[2] and "shrank" in out[2], out
    assert out[3].startswith("ERR SegmentDamaged:") and path in out[3], out   # a Message past the cut
    assert out[4] == "OK counts True 0", out        # absorbed, none passed on


@pytest.mark.parametrize("keep", [8192, 4096 * 5, 4096])
def test_writer_moves_on_when_another_process_truncates_the_live_segment(tmp_path, keep):
    """Writes after the cut that land in a lost page are not acknowledged but
    written again in a new live segment: every acknowledged one is read back."""
    out = _child("sigbus_write", str(tmp_path), keep, "0", env={"READPROCS_SALVAGE": "1"})
    assert out[0].startswith("OK retired"), out
    assert out[1] == "OK missing 0 []", out


def test_follower_survives_a_truncate_and_follows_into_the_next_segment(tmp_path):
    out = _child("sigbus_write", str(tmp_path), 8192, "1", env={"READPROCS_SALVAGE": "1"})
    assert out[1] == "OK missing 0 []", out
    assert out[2] == "OK followed-missing 0 []", out
    assert out[3] == "OK problems True", out
