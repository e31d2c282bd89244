"""Preparing a family's next segment ahead of time (logkit/family_prepare.py,
issue 15 section 3): the write that fills a segment only installs a ready
one; a preparer killed at any step leaves nothing taken for a segment and
the next writer recovers; one process prepares at a time; the thread is a
daemon that survives a fork; a record lost to RotationTimeout is reported
by the next successful write.  Real processes, injection points, waits on
conditions."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

_TESTS = os.path.dirname(os.path.abspath(__file__))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from waiting import wait_until  # noqa: E402

import logkit  # noqa: E402
from logkit import Segment, inject  # noqa: E402
from logkit import family as family_mod  # noqa: E402
from logkit.family_prepare import lock_path, next_path, prepare_next, take_prepared  # noqa: E402
from logkit.family import history_segments  # noqa: E402

ROOT = os.path.dirname(_TESTS)
FAMILY = "app"
SMALL = 8192
STEPS = ("locked", "created", "allocated", "prefaulted", "published")


def _fill_one_segment(w, start=0):
    """Write until `w` has rotated once more; returns the texts written."""
    texts, target = [], w.rotations + 1
    i = start
    while w.rotations < target:
        t = f"message {i:06d}"
        w.write(t)
        texts.append(t)
        i += 1
    return texts


def _texts(d):
    return [m.text for m in logkit.open_reader(d, FAMILY)]


def _child(code: str, env_extra: dict) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT, **env_extra)
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env)


class _CountingSegment:
    """Stands in for logkit.family's Segment: counts create() calls."""
    creates = 0
    open = staticmethod(Segment.open)
    format = staticmethod(Segment.format)
    from_buffer = staticmethod(Segment.from_buffer)

    @classmethod
    def create(cls, *a, **kw):
        cls.creates += 1
        return Segment.create(*a, **kw)


def test_the_write_that_fills_a_segment_creates_no_file_when_the_next_one_is_prepared(tmp_path, monkeypatch):
    d = str(tmp_path / "fam")
    w = logkit.open_writer(d, FAMILY, segment_size=SMALL, prepare_at=0.0)
    wait_until(lambda: os.path.exists(next_path(d, FAMILY)), "the preparer to publish .app.next")
    nxt = os.stat(next_path(d, FAMILY))
    _CountingSegment.creates = 0
    monkeypatch.setattr(family_mod, "Segment", _CountingSegment)
    texts = _fill_one_segment(w)
    monkeypatch.setattr(family_mod, "Segment", Segment)
    assert _CountingSegment.creates == 0, "the rotating write created a segment file inline"
    assert w.unprepared_rotations == 0
    live = os.stat(os.path.join(d, FAMILY))
    assert (live.st_dev, live.st_ino) == (nxt.st_dev, nxt.st_ino), "the live segment is not the prepared file"
    with Segment.open(os.path.join(d, FAMILY), readonly=True) as seg:
        hist = history_segments(d, FAMILY)
        assert seg.previous == hist[-1] and seg.family == FAMILY
    assert _texts(d) == texts
    w.close()


def test_without_a_prepared_segment_the_writer_still_rotates_and_counts_it(tmp_path, monkeypatch):
    d = str(tmp_path / "fam")
    w = logkit.open_writer(d, FAMILY, segment_size=SMALL, prepare_at=1.0)   # never before the fill
    monkeypatch.setattr(family_mod, "take_prepared", lambda *a: None)
    texts = _fill_one_segment(w)
    assert w.unprepared_rotations == 1
    assert _texts(d) == texts
    w.close()


@pytest.mark.parametrize("step", STEPS)
def test_a_preparer_killed_at_each_step_leaves_no_segment_and_the_next_writer_prepares_again(tmp_path, step):
    d = str(tmp_path / "fam")
    notify = str(tmp_path / "points")
    p = _child(f"""
        import logkit, threading
        w = logkit.open_writer({d!r}, {FAMILY!r}, segment_size={SMALL}, prepare_at=0.0)
        w.write("before the kill")
        threading.Event().wait(120)
        """, {inject.ENV: f"family.prepare.{step}=kill", inject.ENV_NOTIFY: notify})
    try:
        inject.wait_for_point(notify, f"family.prepare.{step}", proc=p)
        assert p.wait(60) == -9
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    # Nothing left is taken for a segment: every name that is not the live
    # segment or history is a dot file no segment open accepts, and the CLI
    # does not list it as a family.
    from logkit.cli.sources import families_in
    assert families_in(d) == [FAMILY]
    for n in os.listdir(d):
        if n == FAMILY:
            continue
        assert n.startswith(f".{FAMILY}."), f"{n}: an unexpected file after the preparer died at {step}"
        if n == f".{FAMILY}.prepare":
            continue
        with pytest.raises(logkit.LogkitError):
            Segment.open(os.path.join(d, n), readonly=True).close()
    # The next writer takes over: it prepares (the dead one's lock is gone
    # with it), rotates into the prepared file, and its rotation's chores
    # remove the dead one's temporary.
    w = logkit.open_writer(d, FAMILY, segment_size=SMALL, prepare_at=0.0)
    wait_until(lambda: os.path.exists(next_path(d, FAMILY)), "a prepared .app.next",
               detail=lambda: sorted(os.listdir(d)))
    texts = _fill_one_segment(w)
    assert w.unprepared_rotations == 0
    wait_until(lambda: not any(n.startswith(f".{FAMILY}.prep.{p.pid}.") for n in os.listdir(d)),
               "no temporary of the dead preparer", detail=lambda: sorted(os.listdir(d)))
    assert _texts(d) == ["before the kill"] + texts
    w.close()


def test_one_process_prepares_at_a_time_and_one_prepared_file_is_published(tmp_path):
    d = str(tmp_path / "fam")
    os.mkdir(d)
    notify = str(tmp_path / "points")
    p = _child(f"""
        from logkit.family_prepare import prepare_next
        print(prepare_next({d!r}, {FAMILY!r}, {SMALL}))
        """, {inject.ENV: "family.prepare.locked=wait", inject.ENV_NOTIFY: notify})
    try:
        inject.wait_for_point(notify, "family.prepare.locked", proc=p)
        # The child holds the lock: this process prepares nothing, makes no file.
        before = sorted(os.listdir(d))
        assert prepare_next(d, FAMILY, SMALL) is None
        assert sorted(os.listdir(d)) == before == [f".{FAMILY}.prepare"]
        open(notify + ".go", "w").close()
        assert p.wait(60) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert sorted(os.listdir(d)) == [f".{FAMILY}.next", f".{FAMILY}.prepare"]
    assert prepare_next(d, FAMILY, SMALL) is None          # ready already: nothing more
    assert os.path.getsize(next_path(d, FAMILY)) == SMALL
    assert os.path.exists(lock_path(d, FAMILY))


def test_the_preparer_thread_is_a_daemon_that_ends_with_its_writer_and_restarts_after_a_fork(tmp_path):
    d = str(tmp_path / "fam")
    w = logkit.open_writer(d, FAMILY, segment_size=SMALL)
    t = w._preparer._thread
    assert t is not None and t.daemon and t.is_alive()
    r, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:                                            # the child: a new thread, and it writes on
        try:
            ok = w._preparer.running and w._preparer._thread is not t
            _fill_one_segment(w, start=10_000)
            os.write(wfd, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(wfd)
    got = os.read(r, 1)
    os.close(r)
    assert os.waitpid(pid, 0)[1] == 0
    assert got == b"1", "no preparer thread ran in the forked child"
    w.close()
    t.join(10)
    assert not t.is_alive(), "the preparer thread outlived its closed writer"


def test_a_process_that_exits_without_closing_its_writer_exits_at_once(tmp_path):
    d = str(tmp_path / "fam")
    p = _child(f"""
        import logkit
        w = logkit.open_writer({d!r}, {FAMILY!r}, segment_size={SMALL}, prepare_at=0.0)
        w.write("and exit")
        """, {})
    assert p.wait(60) == 0


def test_a_record_lost_to_rotation_timeout_is_reported_by_the_next_successful_write(tmp_path):
    d = str(tmp_path / "fam")
    w = logkit.open_writer(d, FAMILY, segment_size=SMALL, wait_timeout=0.05, rotation_timeout=3600)
    first = w.write("kept")
    seg = w.segment
    # A live rotator (this process) holds the rotation and never finishes it.
    assert seg.take_out_of_service()
    stuck = family_mod.token_make(2, 1, os.getpid())
    assert seg.claim_token(0, stuck)
    with pytest.raises(family_mod.RotationTimeout):
        w.write("lost 1")
    with pytest.raises(family_mod.RotationTimeout):
        w.write("lost 2")
    assert w.lost == 2 and w.loss_reports == 0
    # Another writer takes the stuck rotation over; w's next write moves on.
    other = logkit.open_writer(d, FAMILY, segment_size=SMALL, rotation_timeout=0)
    other.write("after the takeover")
    assert other.takeovers == 1
    seq = w.write("next")
    assert w.loss_reports == 1
    msgs = list(logkit.open_reader(d, FAMILY))
    texts = [m.text for m in msgs]
    assert "lost 1" not in texts and "lost 2" not in texts
    report = [m for m in msgs if m.severity == family_mod.LOSS_SEVERITY and m.data_class == "json"]
    assert len(report) == 1, texts
    info = json.loads(bytes(report[0].data))
    assert info["lost"] == 2 and info["first_time"] <= info["last_time"]
    assert report[0].text.startswith("2 messages lost") and FAMILY in report[0].text
    assert first < report[0].sequence < seq, "the report is not the first thing the writer wrote after the loss"
    w.write("and on")
    assert w.loss_reports == 1                              # reported once
    w.close()
    other.close()


def test_prepare_at_out_of_range_is_refused_naming_the_option(tmp_path):
    with pytest.raises(logkit.InvalidArgument, match="prepare_at"):
        logkit.open_writer(str(tmp_path / "fam"), FAMILY, segment_size=SMALL, prepare_at=1.5)


def test_close_waits_for_a_preparation_in_progress_so_nothing_changes_the_directory_after_it(tmp_path):
    """Regression (a fresh clone's CI run): a test's TemporaryDirectory
    failed to be removed, 'Directory not empty', because the preparer
    thread was still creating .FAMILY.next after the writer was closed.
    close() now waits for the step in progress; held here at a named step."""
    import threading
    d = str(tmp_path / "fam")
    notify = str(tmp_path / "points")
    inject.arm("family.prepare.allocated", "wait", 1, notify)
    try:
        w = logkit.open_writer(d, FAMILY, segment_size=SMALL, prepare_at=0.0)
        w.write("kick the preparer")
        inject.wait_for_point(notify, "family.prepare.allocated")    # the thread is inside a step
        closer = threading.Thread(target=w.close)
        closer.start()
        closer.join(0.2)
        assert closer.is_alive(), "close() returned while a preparation was still in progress"
        open(notify + ".go", "w").close()                           # let the step go on
        closer.join(10)
        assert not closer.is_alive() and not w._preparer.running
    finally:
        inject.disarm("family.prepare.allocated")
    left = sorted(os.listdir(d))
    assert [n for n in left if n.startswith(f".{FAMILY}.prep")] == [f".{FAMILY}.prepare"], left
    assert os.path.exists(next_path(d, FAMILY))                     # the step finished: a whole next segment


def test_a_prepared_file_taken_and_replaced_just_after_publishing_is_not_mistaken_for_its_successor(tmp_path):
    """Regression (a fresh clone's CI run, test_family's four racing
    writers): a history segment was formatted a second time as a new live
    segment, and its messages (one whole segment, 681 sequences) vanished.
    The preparer kept its mapping of the file it published under the
    (dev, ino) it then stat()ed at .FAMILY.next, after releasing the lock:
    when another process had taken that file and published a new one in
    between, the mapping of the taken file was filed under the new one's
    identity, and the rotation that installed the new one formatted the old
    one (by then live, or history) through it.  Held here at the named step
    between the lock's release and the keeping of the mapping."""
    d = str(tmp_path / "fam")
    notify = str(tmp_path / "points")
    inject.arm("family.prepare.unlocked", "wait", 1, notify)
    try:
        w = logkit.open_writer(d, FAMILY, segment_size=SMALL, prepare_at=0.0)
        inject.wait_for_point(notify, "family.prepare.unlocked")   # published, lock released
        # Meanwhile another process takes the published file and a new one is prepared.
        taken = take_prepared(d, FAMILY)
        assert taken is not None
        assert prepare_next(d, FAMILY, SMALL) == next_path(d, FAMILY)
        open(notify + ".go", "w").close()
        wait_until(lambda: w._preparer.premapped is not None, "the preparer to keep its mapping")
    finally:
        inject.disarm("family.prepare.unlocked")
    texts = _fill_one_segment(w)                  # installs the second prepared file
    texts += [f"after {i}" for i in range(50)]
    for t in texts[-50:]:
        w.write(t)
    w.close()
    with open(taken, "rb") as f:
        assert f.read(4096) == bytes(4096), "the taken file was formatted through a mapping filed under another file"
    assert _texts(d) == texts


def test_format_over_a_region_vouched_blank_refuses_one_that_holds_a_segment(tmp_path):
    """The second guard against the defect above, in the core: format(zeroed=True)
    checks the header it is about to write is blank, and leaves a segment
    already there (and its messages) untouched."""
    import mmap
    p = str(tmp_path / "seg")
    with Segment.create(p, size=SMALL) as s:
        s.write("kept")
    with open(p, "r+b") as f:
        mm = mmap.mmap(f.fileno(), SMALL)
    with pytest.raises(logkit.InvalidArgument, match="not blank.*offset 0"):
        Segment.format(mm, family=FAMILY, sequence_base=99, zeroed=True)
    mm.close()
    with Segment.open(p, readonly=True) as s:
        assert [m.text for m in s] == ["kept"] and s.sequence_base == 1
    blank = bytearray(SMALL)
    Segment.format(blank, family=FAMILY, zeroed=True).close()
    assert blank[:8] == b"LOGKITSG"
