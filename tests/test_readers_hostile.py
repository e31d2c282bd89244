"""Readers against a hostile co-writer and a file that shrinks (issue #13,
defects 7 and 19, and the follow part of 2).

Each reader that could crash runs in a child process (tests/procs/read.py),
so a crash shows as a signal here instead of killing the test run.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import procs
from logkit import Segment
from waiting import never_within, wait_until

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
READPROCS = os.path.join(TESTS_DIR, "procs", "read.py")
CHILD_TIMEOUT = 120


def _child(*args: str, env: dict | None = None) -> list[str]:
    """Run a procs/read.py case; its result lines.  A signal or a traceback fails."""
    p = subprocess.run([sys.executable, READPROCS, *map(str, args)], capture_output=True,
                       text=True, timeout=CHILD_TIMEOUT, cwd=TESTS_DIR,
                       env=None if env is None else {**os.environ, **env})
    assert p.returncode == 0, (f"reader child ended with {p.returncode} "
                               f"({'signal ' + str(-p.returncode) if p.returncode < 0 else 'exit'}); "
                               f"stdout={p.stdout!r} stderr={p.stderr[-2000:]!r}")
    return p.stdout.splitlines()


def _segment(tmp_path, sealed=False, size=8192):
    from procs.read import KEY
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


# ---------------------------------------------------------------- defect 19: segments are files, not UUIDs

def _family_of_segments(directory, n_segments):
    from logkit import open_writer
    from logkit.family import history_segments
    texts = []
    with open_writer(directory, "log", segment_size=8192) as w:
        i = 0
        while len(history_segments(directory, "log")) < n_segments:
            texts.append(f"message {i:05d}")
            w.write(texts[-1])
            i += 1
    return texts, history_segments(directory, "log")


def _zero_header_page(path):
    with open(path, "r+b") as f:
        f.write(bytes(4096))


def test_salvaged_segments_with_rebuilt_zero_uuids_are_all_read(tmp_path):
    """Two segments whose header pages were lost: salvage rebuilds their
    headers with the UUID bytes as found (all zero), and the reader, which
    read one segment per UUID, hid the second one whole and reported a false
    hole.  Segments are identified by file now."""
    import warnings
    from logkit import open_reader
    from logkit.salvager import salvage
    d = str(tmp_path)
    texts, hist = _family_of_segments(d, 4)
    for p in hist[1:3]:
        _zero_header_page(p)
        salvage(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = open_reader(d, "log")
        got = [m.text for m in r]
        assert [m.text for m in reversed(list(r.reverse()))] == got
    # Only the messages that lay in the zeroed header pages are gone (none:
    # messages start after the header), nothing else is hidden.
    assert got == texts, (len(got), len(texts), r.problems)
    assert not [p for p in r.problems if "missing" in p], r.problems


def test_reader_says_plainly_that_salvage_reads_a_segment_with_a_zeroed_header(tmp_path):
    import warnings
    from logkit import open_reader
    d = str(tmp_path)
    texts, hist = _family_of_segments(d, 3)
    _zero_header_page(hist[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = open_reader(d, "log")
        got = [m.text for m in r]
    assert len(got) < len(texts)
    msg = [p for p in r.problems if hist[1] in p]
    assert len(msg) == 1 and "logkit salvage" in msg[0] and "not lost" in msg[0], r.problems


# ---------------------------------------------------------------- defect 2: follow() judges the holder

def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _follow_into(reader, out: list, **kw):
    import threading
    t = threading.Thread(target=lambda: out.extend(m.text for m in reader.follow(**kw)), daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("holder_dies", [False, True], ids=["holder-alive", "holder-killed"])
def test_follow_never_passes_a_copy_whose_holder_is_alive(tmp_path, holder_dies):
    """A drain's copy carries the original writer's pid, usually of an exited
    process.  follow() judged the stub by that pid (or by pending_grace) and
    skipped the message for good while the copier was still at work.  Now:
    held back while the holder runs (far past pending_grace), passed over and
    reported in .problems once the holder is gone."""
    import signal
    from logkit import inject, open_reader, open_writer
    d = str(tmp_path)
    with open_writer(d, "log", segment_size="64KiB") as w:
        w.write("before")
    notify = str(tmp_path / "notify")
    child = subprocess.Popen([sys.executable, READPROCS, "stub_copy", os.path.join(d, "log"),
                              str(_dead_pid()), notify], cwd=TESTS_DIR, stdout=subprocess.PIPE, text=True)
    try:
        inject.wait_for_point(notify, "core.write.copied", proc=child)
        with open_writer(d, "log", segment_size="64KiB") as w:
            w.write("after")            # behind the held stub
        got: list = []
        r = open_reader(d, "log")
        t = _follow_into(r, got, poll_interval=0.01, pending_grace=0.2, idle_timeout=60.0)
        wait_until(lambda: got == ["before"], "the follower to pass 'before'", detail=lambda: got)
        if holder_dies:
            child.kill()
            child.wait()
            wait_until(lambda: got == ["before", "after"], "the follower to pass over the dead holder's stub",
                       detail=lambda: got)
            assert [p for p in r.problems if "passed over the reserved record" in p
                    and "holding the reservation is gone" in p], r.problems
        else:
            # 15 times pending_grace: "after" must not come before the copy.
            # (A window the behaviour must hold for, not a synchronisation.)
            never_within(lambda: len(got) > 1, 3.0, "the follower passed the copy its live holder is making",
                         detail=lambda: got)
            open(notify + ".go", "w").close()
            assert child.wait(60) == 0
            wait_until(lambda: got == ["before", "copied message", "after"], "the copy, then 'after'",
                       detail=lambda: got)
            assert not [p for p in r.problems if "passed over" in p], r.problems
        r.stop()
        t.join(30)
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            child.wait()


# ---------------------------------------------------------------- defect 13 (family): a rotator stopped while installing

def test_rotator_stopped_while_installing_is_taken_over_and_its_segment_installed(tmp_path):
    """A rotator SIGSTOPped in the INSTALLING phase blocked every family
    writer with no bound (RotationTimeout after wait_timeout).  Now a writer
    takes over after rotation_timeout and installs the stalled rotator's own
    new segment; when the rotator resumes, its rename finds nothing.  Every
    acknowledged message of both is read back exactly once."""
    import json
    import signal
    from logkit import inject, open_reader, open_writer
    d = str(tmp_path)
    notify = str(tmp_path / "notify")
    env = {**os.environ, inject.ENV: "family.rotate.installing=stop", inject.ENV_NOTIFY: notify}
    child = subprocess.Popen([sys.executable, READPROCS, "rotate_writer", d, "400", "child"],
                             cwd=TESTS_DIR, env=env, stdout=subprocess.PIPE, text=True)
    try:
        _, pid = inject.wait_for_point(notify, "family.rotate.installing", proc=child)
        assert pid == child.pid
        wait_until(lambda: procs.process_state(pid) == "T", f"the rotator (pid {pid}) to stop")
        mine = []
        with open_writer(d, "log", segment_size=8192, rotation_timeout=0.5, wait_timeout=10) as w:
            for i in range(200):                 # several rotations past the stalled one
                mine.append(f"parent {i:05d}")
                w.write(mine[-1])
            assert w.takeovers >= 1
        os.kill(pid, signal.SIGCONT)
        out, _ = child.communicate(timeout=120)
        assert child.returncode == 0, out
        acked = json.loads(out.splitlines()[0].split(" ", 1)[1])
        r = open_reader(d, "log")
        got = [m.text for m in r]
        seqs = [m.sequence for m in open_reader(d, "log")]
        assert len(seqs) == len(set(seqs))
        assert sorted(got) == sorted(acked + mine), (len(got), len(acked), len(mine))
        assert not [p for p in r.problems if "missing" in p or "overlap" in p], r.problems
        assert not [n for n in os.listdir(d) if n.endswith(".live")]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


# ---------------------------------------------------------------- defect 13 (family): migrate across file systems

def _other_filesystem_dir(tmp_path):
    """A directory on another file system than tmp_path (tmpfs /dev/shm)."""
    import tempfile
    shm = "/dev/shm"
    if not os.path.isdir(shm) or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another file system than the test's temporary directory, "
                    "to take migrate's copying path")
    return tempfile.mkdtemp(dir=shm)


def test_migrate_across_file_systems_never_writes_through_a_planted_link(tmp_path):
    """migrate's copy path opened DEST/NAME.migrating with open(..., "wb"):
    a symbolic link planted there had its target overwritten with the
    segment.  Now the copy goes to an unpredictable O_EXCL temporary opened
    relative to the directory, and nothing at DEST is ever replaced."""
    import shutil
    from logkit import open_reader
    from logkit.family import history_segments, migrate
    src = str(tmp_path / "src")
    os.mkdir(src)
    texts, hist = _family_of_segments(src, 2)
    dest = _other_filesystem_dir(tmp_path)
    try:
        victim = tmp_path / "victim"
        victim.write_bytes(b"precious")
        names = [os.path.basename(p) for p in hist]
        for n in names:
            os.symlink(victim, os.path.join(dest, n + ".migrating"))
        moved = migrate(src, "log", dest)
        assert victim.read_bytes() == b"precious"
        assert [os.path.basename(p) for p in moved] == names
        assert history_segments(src, "log") == []
        got = [m.text for m in open_reader([dest, src], "log")]
        assert got == texts
        assert [n for n in os.listdir(dest) if n.endswith(".tmp")] == []
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def test_migrate_across_file_systems_refuses_a_link_planted_at_the_destination_name(tmp_path):
    import shutil
    from logkit.errors import LogkitError
    from logkit.family import history_segments, migrate
    src = str(tmp_path / "src")
    os.mkdir(src)
    texts, hist = _family_of_segments(src, 1)
    dest = _other_filesystem_dir(tmp_path)
    try:
        victim = tmp_path / "victim"
        victim.write_bytes(b"precious")
        os.symlink(victim, os.path.join(dest, os.path.basename(hist[0])))
        with pytest.raises(LogkitError, match="already exists"):
            migrate(src, "log", dest)
        assert victim.read_bytes() == b"precious"
        assert history_segments(src, "log") == hist          # the source is kept
    finally:
        shutil.rmtree(dest, ignore_errors=True)


@pytest.mark.parametrize("how", ["mmap", "kill"])
@pytest.mark.parametrize("faulthandler", [False, True], ids=["default", "faulthandler"])
def test_a_sigbus_outside_logkit_mappings_still_kills_the_process(tmp_path, how, faulthandler):
    """The handler absorbs only faults inside a mapping a Segment is attached
    to; any other SIGBUS (a real bug, a signal sent with kill) goes to the
    previous handler (faulthandler's traceback) or the default action: the
    process dies of SIGBUS."""
    env = {**os.environ, "PYTHONFAULTHANDLER": "1" if faulthandler else ""}
    p = subprocess.run([sys.executable, READPROCS, "sigbus_foreign", str(tmp_path / "f"), how],
                       capture_output=True, text=True, timeout=CHILD_TIMEOUT, cwd=TESTS_DIR, env=env)
    assert p.returncode == -7, (p.returncode, p.stdout, p.stderr[-2000:])
    assert "OK survived" not in p.stdout
    if faulthandler:
        assert "Bus error" in p.stderr, p.stderr[-2000:]      # the previous handler ran


def test_limits_and_seek_of_a_family_whose_live_segment_shrank(tmp_path):
    out = _child("sigbus_limits", str(tmp_path))
    assert out[0] == "OK 400", out
    assert out[1] == "OK None", out                  # the only segment is skipped until salvaged
    assert out[2] == "OK no such message", out       # 390 lay in the pages lost
    assert out[3] == "OK problems True", out


@pytest.mark.parametrize("field,value,expected", [(48, 0xFFFF, "ERR SegmentDamaged:"), (40, 0x7FFFFFF0, "ERR SegmentDamaged:"),
                                                  (12, 20, "OK 'klass'")])
def test_sealed_message_without_its_key_reads_its_class_name_with_checked_lengths(tmp_path, field, value, expected):
    """Without the key only the class name (authenticated, not encrypted) is
    read, from the mapping: its lengths are read once and checked too."""
    path = _segment(tmp_path, sealed=True)
    out = _child("message", path, field, value, "data_class", "0")
    assert out[0].startswith(expected), out
