"""Families: a live segment plus its history (logkit/family.py).

What these prove: processes racing through hundreds of rotations lose,
duplicate and renumber nothing, and leave a history whose names, sequence
bases and previous links form one chain; a follower started on an empty
directory before any writer sees every message once, in order, across
rotations, and a reader iterating while the family rotates still yields
everything finished before it began; a writer killed at any stage of a
rotation is taken over, exactly once, by the others after rotation_timeout,
a live taker is not itself taken over, and the family stays whole; seek by
sequence and by time lands on the right message among a thousand segments,
and reverse is the forward order reversed; retention and migration
(also with rotations and a second migrate after it) leave a family that
reads end to end; a damaged history segment is reported and skipped, and a
missing one loses only itself.  Children are spawned through procs/common.py.
"""
import bisect
import itertools
import os
import random
import sys
import threading
import time
import warnings
from datetime import datetime, timezone

import pytest

_TESTS = os.path.dirname(os.path.abspath(__file__))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

import procs  # noqa: E402
from waiting import wait_until  # noqa: E402

import logkit  # noqa: E402
from logkit import NoSuchMessage, Segment  # noqa: E402
from logkit._segment import token_state  # noqa: E402
from logkit.family import _PHASE_DONE as ROTATION_DONE, history_segments  # noqa: E402

PROCS_FILE = os.path.abspath(procs.common.__file__)
FAMILY = "app"
SMALL = 8192                                    # the smallest segment: 4096 bytes of messages


@pytest.fixture
def group():
    with procs.Group() as g:
        yield g


# ====================================================================== helpers

def read_family(dirs, family=FAMILY):
    """Read the whole family once: ([(sequence, text)], reader, warning texts)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = logkit.open_reader(dirs, family)
        msgs = [(m.sequence, m.text) for m in r]
    return msgs, r, [str(w.message) for w in caught]


def segment_messages(path):
    """[(sequence, text)] of one segment file, read on its own (not through the family reader)."""
    with Segment.open(path, readonly=True) as seg:
        return [(m.sequence, m.text) for m in seg]


def live_path(directory, family=FAMILY):
    return os.path.join(os.path.abspath(directory), family)


def chain_problems(dirs, family=FAMILY, first_previous=""):
    """Everything wrong with the family's chain: history in name order, then
    the live segment (in the first directory).  Each segment's `previous` must
    be the path of the segment before it (the first one's: `first_previous`,
    None to skip), its sequence_base must be above the one before and continue
    exactly where that one's count ended, history must be out of service and
    the live segment in service."""
    dirs = [dirs] if isinstance(dirs, (str, os.PathLike)) else list(dirs)
    paths = history_segments(dirs, family) + [live_path(dirs[0], family)]
    problems = []
    prev_path, prev_base, prev_end = first_previous, None, None
    for i, p in enumerate(paths):
        with Segment.open(p, readonly=True) as s:
            base, reserved, in_service, previous = (s.sequence_base, s.stats()["reserved"],
                                                    s.in_service, s.previous)
        if prev_path is not None and previous != prev_path:
            problems.append(f"{p}: previous {previous!r}, expected {prev_path!r}")
        if prev_base is not None:
            if base <= prev_base:
                problems.append(f"{p}: sequence base {base} not above {prev_base} of the one before")
            if base != prev_end:
                problems.append(f"{p}: sequence base {base}, the one before ended at {prev_end}")
        if in_service != (i == len(paths) - 1):
            problems.append(f"{p}: in_service={in_service}")
        prev_path, prev_base, prev_end = p, base, base + reserved
    return problems


def check_writers(msgs, expected_counts):
    """Problems with a family's messages as (sequence, text): texts must be
    procs.message_text(writer, i), each writer's counters exactly
    0..expected_counts[writer]-1 once each, in sequence order."""
    problems = []
    nxt = {w: 0 for w in expected_counts}
    for seq, text in msgs:
        wi = procs.parse_text(text)
        if wi is None or wi[0] not in nxt:
            problems.append(f"stray message {seq}: {text!r}")
            continue
        w, i = wi
        if i != nxt[w]:
            problems.append(f"writer {w}: counter {i} at sequence {seq} where {nxt[w]} was due")
        nxt[w] = i + 1
    for w, n in expected_counts.items():
        if nxt[w] != n:
            problems.append(f"writer {w}: last counter {nxt[w] - 1}, expected {n - 1}")
    return problems[:20]


def strictly_increasing(seqs):
    return all(a < b for a, b in zip(seqs, seqs[1:]))


def write_segments(w, n_history, start=0, text=lambda i: f"message {i:06d}", time_of=None):
    """Write with FamilyWriter `w` (the family's only writer) until its
    directory holds `n_history` history segments and the live one has a
    message; returns [(sequence, text)]."""
    need = w.rotations + n_history - len(history_segments(w.directory, w.family))
    out = []
    i = start
    while w.rotations < need or not out or out[-1][0] < w.segment.sequence_base:
        t = text(i)
        out.append((w.write(t, time=None if time_of is None else time_of(i)), t))
        i += 1
    return out


def stamp_of(path):
    """Seconds since the epoch named by a history segment's YYYYMMDD.HHMMSS."""
    parts = os.path.basename(path).split(".")
    return datetime.strptime(parts[1] + parts[2], "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc).timestamp()


# ====================================================================== 1. racing rotations

def test_four_processes_racing_through_hundreds_of_rotations_lose_nothing_duplicate_nothing_and_chain_every_segment(
        tmp_path, group):
    nproc, count = 4, 100_000
    d = str(tmp_path / "fam")
    os.mkdir(d)
    go = procs.CTX.Event()
    opts = {"segment_size": "64KiB", "wait_timeout": 30.0}
    kids = group.spawn_many(nproc, procs.child_family_write, lambda w: (d, FAMILY, w, count, go, opts))
    procs.recv_all(kids, "ready")               # each has opened (or created) the live segment ...
    assert [k.module_file for k in kids] == [PROCS_FILE] * nproc
    go.set()                                    # ... and all start at once
    done = procs.recv_all(kids, "done")
    assert [k.join() for k in kids] == [0] * nproc
    seqs_of = {w: d_[0] for w, d_ in enumerate(done)}
    rotations = sum(d_[1] for d_ in done)
    takeovers = sum(d_[2] for d_ in done)
    total = nproc * count

    # What the writers were told: per writer strictly increasing, together 1..total once each.
    for w, seqs in seqs_of.items():
        assert len(seqs) == count and strictly_increasing(seqs), f"writer {w}"
    assert sorted(itertools.chain.from_iterable(seqs_of.values())) == list(range(1, total + 1))

    # What a reader finds: every sequence 1..total, each the message its writer was told.
    msgs, r, warns = read_family(d)
    assert warns == [] and r.damaged_segments == 0
    assert [s for s, _ in msgs] == list(range(1, total + 1))
    told = {}
    for w, seqs in seqs_of.items():
        told.update((s, procs.message_text(w, i)) for i, s in enumerate(seqs))
    wrong = [(s, t, told[s]) for s, t in msgs if told[s] != t]
    assert wrong == []
    assert check_writers(msgs, {w: count for w in range(nproc)}) == []
    lim = r.limits()
    assert (lim.first_sequence, lim.last_sequence) == (1, total)
    problems = []                               # every byte: severity, data class and data too
    for m in logkit.open_reader(d, FAMILY):
        problems += procs.check_message(m, *procs.parse_text(m.text))
        if len(problems) > 20:
            break
    assert problems == []

    # The history: one chain, names in sequence order, one history segment per rotation.
    hist = history_segments(d, FAMILY)
    assert len(hist) > 300, f"only {len(hist)} rotations: the test is sized for hundreds"
    assert chain_problems(d) == []
    assert rotations == len(hist)
    assert takeovers == 0                       # nobody died, so nobody took over
    assert sorted(_segment_files(d)) == sorted([FAMILY] + [os.path.basename(p) for p in hist])


def _segment_files(d: str) -> list[str]:
    """The names in `d` but the preparers' lock, the prepared next segment and
    files being prepared by a process that exited meanwhile (its daemon thread
    stops where it is; the next preparer removes them): logkit/family_prepare.py,
    none of them a segment."""
    return [n for n in os.listdir(d) if n not in (f".{FAMILY}.prepare", f".{FAMILY}.next")
            and not n.startswith(f".{FAMILY}.prep.")]


# ====================================================================== 2. following from the start

def test_a_follower_started_on_an_empty_directory_sees_every_message_once_in_order_across_rotations(
        tmp_path, group):
    nproc, count = 3, 20_000
    d = str(tmp_path / "fam")
    with pytest.raises(logkit.SegmentNotFound):     # a reader needs the directory ...
        logkit.open_reader(d, FAMILY)
    os.mkdir(d)                                 # ... but not a segment in it
    f = group.spawn(procs.child_family_follow, d, FAMILY, nproc * count, 0.0005, 5.0, name="follower")
    f.expect("ready")
    f.expect("waiting")                         # follow() found no segment and waits for the first
    assert os.listdir(d) == []
    go = procs.CTX.Event()
    opts = {"segment_size": 16384, "wait_timeout": 30.0}
    kids = group.spawn_many(nproc, procs.child_family_write, lambda w: (d, FAMILY, w, count, go, opts))
    procs.recv_all(kids, "ready")
    go.set()
    done = procs.recv_all(kids, "done")
    followed, problems = f.expect("followed")
    assert f.join() == 0
    assert [k.join() for k in kids] == [0] * nproc

    msgs, r, warns = read_family(d)
    assert warns == [] and r.damaged_segments == 0
    assert [s for s, _ in msgs] == list(range(1, nproc * count + 1))
    rotations = sum(d_[1] for d_ in done)
    assert rotations == len(history_segments(d, FAMILY)) >= 100
    assert problems == []
    lost = sorted(set(msgs) - set(followed))
    assert lost == [], f"the follower missed {len(lost)} messages, first {lost[:5]}"
    assert followed == msgs                     # every message once, in sequence order
    assert check_writers(followed, {w: count for w in range(nproc)}) == []


def test_a_follower_never_passes_over_a_message_that_a_writer_is_still_publishing(tmp_path, group):
    """One large live segment (no rotation at all), writer processes racing,
    a follower in this process on the tail: at a claim whose writer has not
    yet published its state word the follower must wait (a gap), never take
    it for damage and step past it, losing a message that is finished a
    moment later.  The window is narrow: three rounds."""
    nproc, count = 4, 60_000
    for k in range(3):
        d = str(tmp_path / f"fam{k}")
        go = procs.CTX.Event()
        opts = {"segment_size": "64MiB", "wait_timeout": 30.0}
        kids = [group.spawn(procs.child_family_write, d, FAMILY, w, count, go, opts, name=f"round{k}-writer{w}")
                for w in range(nproc)]
        procs.recv_all(kids, "ready")
        r = logkit.open_reader(d, FAMILY)
        go.set()
        followed = []
        for m in r.follow(poll_interval=0, idle_timeout=2.0):      # always on the tail: keep up
            followed.append(m)
            if len(followed) == nproc * count:
                break
        followed = [(m.sequence, m.text) for m in followed]
        done = procs.recv_all(kids, "done")
        assert sum(d_[1] for d_ in done) == 0   # everything fits the one live segment
        msgs, _, warns = read_family(d)
        assert warns == [] and [s for s, _ in msgs] == list(range(1, nproc * count + 1))
        lost = sorted(set(msgs) - set(followed))
        assert lost == [], f"round {k}: the follower passed over {len(lost)} messages: {lost[:5]}"
        assert followed == msgs


def test_a_follower_reads_the_rest_of_a_segment_that_filled_up_after_it_last_looked(tmp_path):
    """follow() drains the live segment, then looks whether it is out of
    service and, if so, moves to the next one.  Messages finished between
    those two looks (the segment filled and was rotated meanwhile) must still
    be followed.  The writes are made at exactly that point, deterministically,
    from the stop event's is_set(), which follow() calls in between."""
    d = str(tmp_path / "fam")
    w = logkit.open_writer(d, FAMILY, segment_size=SMALL)
    written = [(w.write(f"message {i:06d}"), f"message {i:06d}") for i in range(5)]

    class WritesBetweenTheLooks(threading.Event):
        calls = 0

        def is_set(self):
            self.calls += 1
            if self.calls == 1:                 # after the first drain: fill, rotate, one more
                written.extend(write_segments(w, 1, start=len(written)))
            return super().is_set()

    stop = WritesBetweenTheLooks()
    r = logkit.open_reader(d, FAMILY)
    followed = [(m.sequence, m.text) for m in r.follow(poll_interval=0.001, stop=stop, idle_timeout=0.5)]
    assert stop.calls > 1 and w.rotations == 1
    missing = sorted(set(written) - set(followed))
    assert missing == [], f"the follower skipped {len(missing)} messages, sequences {[m[0] for m in missing]}"
    assert followed == written


def test_a_follower_moving_to_the_next_segment_while_the_family_rotates_again_skips_none(tmp_path, monkeypatch):
    """follow()'s step to the next segment lists the directory, then opens
    the candidates, the live segment first.  A rotation between the two
    (made here, deterministically, from inside Segment.open) must not make
    it jump over the segment that was live when it listed."""
    import logkit.family_names as family_mod    # its open_segment() opens the live path

    d = str(tmp_path / "fam")
    w = logkit.open_writer(d, FAMILY, segment_size=SMALL)
    written = write_segments(w, 2)              # H1, H2 and a live segment
    h2_last = segment_messages(history_segments(d, FAMILY)[1])[-1][0]
    real_open = Segment.open
    armed, fired = [], []

    class RotatingBeforeOpen:
        """Segment for family.py: once armed, the next read-only open of the
        live path first lets the writer rotate the family once."""
        create = staticmethod(Segment.create)

        @staticmethod
        def open(path, readonly=False):
            if armed and not fired and readonly and os.fspath(path) == w.path:
                fired.append(path)
                written.extend(write_segments(w, 3, start=len(written)))   # one rotation
            return real_open(path, readonly)

    monkeypatch.setattr(family_mod, "Segment", RotatingBeforeOpen)
    r = logkit.open_reader(d, FAMILY)
    followed = []
    for m in r.follow(poll_interval=0.001, idle_timeout=0.5):
        followed.append((m.sequence, m.text))
        if m.sequence == h2_last:
            armed.append(True)                  # the next step lists, then finds the family rotated
    monkeypatch.setattr(family_mod, "Segment", Segment)
    assert fired and w.rotations == 3
    missing = sorted(set(written) - set(followed))
    assert missing == [], (f"the follower skipped {len(missing)} messages, "
                           f"sequences {missing[0][0]}..{missing[-1][0]}" if missing else "")
    assert followed == written


def test_a_reader_that_iterates_while_the_family_rotates_still_yields_every_message_finished_before_it_started(
        tmp_path):
    """Iteration lists the segments when it starts and opens them one by one;
    a rotation meanwhile must not make it skip the segment that was live when
    it started (it is history by the time the reader gets there)."""
    d = str(tmp_path / "fam")
    written, w = _small_family(d, 3)
    for i in range(len(written), len(written) + 20):   # 21 messages in the live segment
        written.append((w.write(f"message {i:06d}"), f"message {i:06d}"))
    assert w.rotations == 3 and len(segment_messages(live_path(d))) == 21
    r = logkit.open_reader(d, FAMILY)
    it = iter(r)
    got = [next(it)]                            # iteration has begun: segments listed
    more = write_segments(w, 5, start=len(written))     # two rotations meanwhile
    got += list(it)
    seqs = [m.sequence for m in got]
    assert strictly_increasing(seqs)
    missing = sorted(set(written) - {(m.sequence, m.text) for m in got})
    assert missing == [], (f"{len(missing)} of the {len(written)} messages finished before the read "
                           f"began are missing, sequences {missing[0][0]}..{missing[-1][0]}")
    assert [(m.sequence, m.text) for m in got][:len(written)] == written
    assert set(more) >= {(m.sequence, m.text) for m in got[len(written):]}


# ====================================================================== 3. killed mid-rotation

STAGES = ["out-of-service", "linked", "created", "installing"]


def _start_victim_and_survivors(group, d, stage, survivor_target, survivors_n, count, opts):
    """A victim that stalls at `stage` of a rotation it performs, and
    survivors writing `count` messages each, all started at once; returns
    (victim, survivors, what the victim reported) once the victim stalls."""
    go = procs.CTX.Event()
    victim = group.spawn(procs.child_family_rotation_victim, d, FAMILY, 0, stage, go, opts, name="victim")
    victim.expect("ready")                      # the victim made the live segment
    survivors = [group.spawn(survivor_target, d, FAMILY, i + 1, count, go, opts, name=f"survivor-{i + 1}")
                 for i in range(survivors_n)]
    procs.recv_all(survivors, "ready")
    go.set()
    stalled = victim.expect("stalled")
    assert stalled[0] == stage
    # The survivors cannot get past the stalled rotation on their own: none is done yet.
    assert not any(s.conn.poll(0) for s in survivors), "a survivor finished before the rotation stalled"
    return victim, survivors, stalled


def _assert_taken_over_and_whole(d, stage, victim, survivors, stalled, done, count):
    """After a victim died mid-rotation: the family reads end to end with
    nothing lost, renumbered or duplicated; then, one survivor took the
    stalled rotation over, once, and it left the segment in history once."""
    _, victim_finished, old_uuid, old_base, victim_rotations = stalled

    # The family reads end to end: nothing lost, nothing renumbered, no gap.
    msgs, r, warns = read_family(d)
    assert warns == [] and r.damaged_segments == 0
    assert [s for s, _ in msgs] == list(range(1, len(msgs) + 1))
    expected = {w: count for w in range(1, len(survivors) + 1)}
    expected[0] = victim_finished
    assert check_writers(msgs, expected) == []
    assert len(msgs) == len(survivors) * count + victim_finished
    for w, d_ in zip(range(1, len(survivors) + 1), done):
        assert [s for s, t in msgs if procs.parse_text(t)[0] == w] == d_[0]

    # The takeover: by a survivor, exactly once, one history name per rotation.
    takeovers = [d_[2] for d_ in done]
    assert sum(takeovers) >= 1, "nobody took the stalled rotation over"
    hist = history_segments(d, FAMILY)
    found = []
    for p in hist:
        with Segment.open(p, readonly=True) as s:
            if str(s.uuid) == old_uuid:
                found.append((os.path.basename(p), s.sequence_base, s.token()))
    token = found[0][2] if found else 0
    problems = []
    if sum(takeovers) != 1:
        problems.append(f"one stalled rotation, taken over {takeovers} times")
    if victim_rotations + sum(d_[1] for d_ in done) != len(hist):
        problems.append(f"{victim_rotations + sum(d_[1] for d_ in done)} rotations, {len(hist)} history segments")
    if [(b, token_state(t)) for _, b, t in found] != [(old_base, ROTATION_DONE)]:      # once, rotation done
        problems.append(f"the stalled segment (base {old_base}) is in history as {found}")
    if token & 0xFFFFFFFF not in {s.pid for s in survivors}:
        problems.append(f"its rotation token {token:#x} names no survivor")
    # attempt 1 was the victim's (unless it died before claiming the token), the next the taker's
    if (token >> 32) & 0x3FFFFFFF != (1 if stage == "out-of-service" else 2):
        problems.append(f"its rotation token {token:#x} counts {(token >> 32) & 0x3FFFFFFF} attempts")
    assert problems == []
    assert chain_problems(d) == []
    # Only the dead rotator's unfinished new segment is left over (removed later by cleanup).
    extra = sorted(set(_segment_files(d)) - {FAMILY} - {os.path.basename(p) for p in hist})
    assert all(n.startswith(f".{FAMILY}.{victim.pid}.") for n in extra), extra
    assert len(extra) == (1 if stage in ("created", "installing") else 0), extra


@pytest.mark.parametrize("stage", STAGES)
def test_a_writer_killed_mid_rotation_is_taken_over_after_rotation_timeout_and_the_family_stays_whole(
        tmp_path, group, stage):
    survivors_n, count = 3, 3000
    d = str(tmp_path / "fam")
    os.mkdir(d)
    opts = {"segment_size": SMALL, "rotation_timeout": 0.5, "wait_timeout": 30.0}
    victim, survivors, stalled = _start_victim_and_survivors(
        group, d, stage, procs.child_family_write, survivors_n, count, opts)
    assert victim.kill() == -9
    done = procs.recv_all(survivors, "done")
    assert [s.join() for s in survivors] == [0] * survivors_n
    _assert_taken_over_and_whole(d, stage, victim, survivors, stalled, done, count)


def test_a_live_writer_taking_over_a_stalled_rotation_is_not_itself_taken_over(tmp_path, group):
    """The takeover rule must not apply to a rotator that is alive: the
    other waiting writers leave a live taker alone (here: for half a
    rotation_timeout after it took over) instead of taking the rotation from
    it, and from each other, again and again."""
    survivors_n, count, rotation_timeout = 3, 3000, 1.0
    d = str(tmp_path / "fam")
    os.mkdir(d)
    opts = {"segment_size": SMALL, "rotation_timeout": rotation_timeout, "wait_timeout": 30.0}
    victim, survivors, stalled = _start_victim_and_survivors(
        group, d, "linked", procs.child_family_write_pausing_takeover, survivors_n, count, opts)
    assert victim.kill() == -9
    taker = procs.wait_any(survivors)[0]        # the first to take over stops there, alive
    assert taker.expect("taking-over") == (1,)
    others = [s for s in survivors if s is not taker]
    try:
        again = [(s.name, s.recv(0)) for s in procs.wait_any(others, timeout=rotation_timeout / 2)]
    except procs.ChildFailed:
        again = []                              # nothing from the others: nobody took it
    assert again == [], f"{taker.name} (alive) was taken over by {again}"
    taker.send("go on")
    done = procs.recv_all(survivors, "done")
    assert [s.join() for s in survivors] == [0] * survivors_n
    _assert_taken_over_and_whole(d, "linked", victim, survivors, stalled, done, count)


def test_a_writer_moving_to_the_new_live_segment_while_it_is_rotated_again_still_finds_the_live_segment(
        tmp_path, monkeypatch):
    """FamilyWriter._switch opens FAMILY and maps it.  If another writer
    rotates the family in between (simulated here, deterministically, by a
    rotation run from inside the attach of the mapping), the writer must
    still end up on the live segment, not wait for a rotation that already
    happened until RotationTimeout."""
    import logkit.family_prepare as family_mod    # its map_segment() maps the live path

    d = str(tmp_path / "fam")
    a = logkit.open_writer(d, FAMILY, segment_size=SMALL, wait_timeout=1.0)
    b = logkit.open_writer(d, FAMILY, segment_size=SMALL, wait_timeout=1.0)
    written = write_segments(a, 1)              # a rotated X away; b still holds X
    assert (a.rotations, b.segment.uuid == a.segment.uuid) == (1, False)

    real_open = Segment.open
    between = []

    real_from_buffer = Segment.from_buffer

    class RotatingBetween:
        """Segment for family_prepare.py: from_buffer() lets writer `a`
        rotate once right after the first mapping of the live path."""
        open = staticmethod(real_open)

        @staticmethod
        def from_buffer(*args, **kw):
            seg = real_from_buffer(*args, **kw)
            if not between and kw.get("path") == b.path:
                between.append(str(seg.uuid))
                written.extend(write_segments(a, 2, start=len(written)))
            return seg

    monkeypatch.setattr(family_mod, "Segment", RotatingBetween)
    seq = b.write("after the race")             # X is out of service: b moves on, and must land on the live one
    monkeypatch.setattr(family_mod, "Segment", Segment)
    assert len(between) == 1 and a.rotations == 2
    written.append((seq, "after the race"))
    msgs, _, warns = read_family(d)
    assert warns == [] and msgs == sorted(written)
    assert str(b.segment.uuid) == str(a.segment.uuid)   # both on the live segment


# ====================================================================== 4. seek among a thousand segments

T0 = 1_700_000_000_000_000_000


def time_of(i):
    """Distinct, increasing, unevenly spaced message times (ns)."""
    return T0 + i * 1000 + (i % 7) * 10


@pytest.fixture(scope="module")
def thousand(tmp_path_factory):
    """A family of about 1,000 minimum-size segments written by one writer
    with explicit times: (directory, [(sequence, time, text)], [(first, last)
    sequence per segment])."""
    d = str(tmp_path_factory.mktemp("thousand"))
    w = logkit.open_writer(d, FAMILY, segment_size=SMALL)
    written = write_segments(w, 1000, text=lambda i: f"m{i}", time_of=time_of)
    w.close()
    msgs = [(s, time_of(i), t) for i, (s, t) in enumerate(written)]
    bounds = []
    for p in history_segments(d, FAMILY) + [live_path(d)]:
        seqs = [s for s, _ in segment_messages(p)]
        assert seqs, f"{p} is empty"
        bounds.append((seqs[0], seqs[-1]))
    assert len(bounds) >= 1000
    return d, msgs, bounds


def test_the_thousand_segment_family_reads_whole_and_reverse_is_the_forward_order_reversed(thousand):
    d, msgs, bounds = thousand
    r = logkit.open_reader(d, FAMILY)
    forward = [(m.sequence, m.time, m.text) for m in r]
    assert forward == msgs
    assert [s for s, _, _ in msgs] == list(range(1, len(msgs) + 1))
    backward = [(m.sequence, m.time, m.text) for m in r.reverse()]
    assert backward == forward[::-1]
    assert chain_problems(d) == []
    assert r.damaged_segments == 0


def _targets(values, bounds_values, rng, n_segments=150, n_random=300):
    """Targets around the boundaries of the first, last and `n_segments`
    random segments (one before, at, one after each end), the ends of the
    family, one before the first, and random ones."""
    picked = set(range(3)) | set(range(len(bounds_values) - 3, len(bounds_values)))
    picked |= set(rng.sample(range(len(bounds_values)), n_segments))
    t = set()
    for k in picked:
        first, last = bounds_values[k]
        t.update((first - 1, first, first + 1, last - 1, last, last + 1))
    t.update(rng.sample(range(values[0] - 5, values[-1] + 1), n_random))
    t.update((0, values[0] - 1, values[0], values[-1]))
    return sorted(x for x in t if 0 <= x <= values[-1])


def test_seek_by_sequence_lands_on_the_first_message_at_or_after_the_target_in_a_thousand_segments(thousand):
    d, msgs, bounds = thousand
    r = logkit.open_reader(d, FAMILY)
    seqs = [s for s, _, _ in msgs]
    targets = _targets(seqs, bounds, random.Random(1))
    assert 0 in targets and seqs[-1] in targets and len(targets) > 1000
    wrong = []
    for k, target in enumerate(targets):
        m = r.seek(sequence=target)
        j = bisect.bisect_left(seqs, target)
        if (m.sequence, m.time, m.text) != msgs[j]:
            wrong.append((target, m.sequence, msgs[j][0]))
            continue
        if k % 10 == 0:                         # iteration goes on from there
            n = None if k % 300 == 0 else 3     # (to the very end now and then)
            after = [(x.sequence, x.time, x.text) for x in itertools.islice(r, n)]
            if after != (msgs[j:j + 3] if n else msgs[j:]):
                wrong.append((target, "iteration after seek", [a[0] for a in after[:3]]))
    assert wrong == []
    for past in (seqs[-1] + 1, seqs[-1] + 1000, 1 << 62):
        with pytest.raises(NoSuchMessage):
            r.seek(sequence=past)
    r.rewind()
    assert next(iter(r)).sequence == seqs[0]


def test_seek_by_time_lands_on_the_first_message_at_or_after_the_target_in_a_thousand_segments(thousand):
    d, msgs, bounds = thousand
    r = logkit.open_reader(d, FAMILY)
    times = [t for _, t, _ in msgs]
    seqs = [s for s, _, _ in msgs]
    index = {s: i for i, s in enumerate(seqs)}
    tbounds = [(times[index[a]], times[index[b]]) for a, b in bounds]
    targets = _targets(times, tbounds, random.Random(2))
    targets += [times[0] - 10**9, 0]
    wrong = []
    for k, target in enumerate(targets):
        m = r.seek(time=target)
        j = bisect.bisect_left(times, target)
        if (m.sequence, m.time, m.text) != msgs[j]:
            wrong.append((target, m.sequence, msgs[j][0]))
            continue
        if k % 10 == 0:
            after = [(x.sequence, x.time, x.text) for x in itertools.islice(r, 3)]
            if after != msgs[j:j + 3]:
                wrong.append((target, "iteration after seek", [a[0] for a in after]))
    assert wrong == []
    for past in (times[-1] + 1, times[-1] + 10**9):
        with pytest.raises(NoSuchMessage):
            r.seek(time=past)


# ====================================================================== 5. retention and migration

def _small_family(directory, n_history, **options):
    """One writer, minimum-size segments: ([(sequence, text)] written, writer)."""
    w = logkit.open_writer(directory, FAMILY, segment_size=SMALL, **options)
    return write_segments(w, n_history), w


def _assert_reads_exactly_from(dirs, written, first_kept_path):
    """The family reads, with no warning, exactly the written messages from
    the first kept history segment on, and they are exactly what the kept
    segment files hold."""
    dirs = [dirs] if isinstance(dirs, str) else dirs
    with Segment.open(first_kept_path, readonly=True) as first:
        first_base = first.sequence_base
    msgs, r, warns = read_family(dirs)
    assert warns == [] and r.damaged_segments == 0 and r.problems == []
    assert msgs == [m for m in written if m[0] >= first_base]
    files = history_segments(dirs, FAMILY) + [live_path(dirs[0])]
    assert msgs == list(itertools.chain.from_iterable(segment_messages(p) for p in files))
    assert chain_problems(dirs, first_previous=None) == []


@pytest.mark.parametrize("how", ["max_count", "max_size", "max_age"])
def test_retention_deletes_exactly_the_oldest_history_and_the_family_reads_exactly_what_is_kept(tmp_path, how):
    d = str(tmp_path / "fam")
    written, w = _small_family(d, 12)
    if how == "max_age":
        # A second batch of history named for a later second than the first.
        last_old = stamp_of(history_segments(d, FAMILY)[-1])
        # History is named for the wall clock's second (time.time()): wait on that clock.
        wait_until(lambda: time.time() >= last_old + 1, "the clock to pass the last history segment's second", 5)
        old = history_segments(d, FAMILY)
        written += write_segments(w, len(old) + 8, start=len(written))
    hist = history_segments(d, FAMILY)
    if how == "max_count":
        kept = hist[-5:]
        removed = logkit.retain(d, FAMILY, max_count=5)
    elif how == "max_size":
        kept = hist[-7:]
        removed = logkit.retain(d, FAMILY, max_size=7 * SMALL + SMALL // 2)
    else:
        kept = hist[len(old):]
        first_new = stamp_of(kept[0])
        assert first_new > stamp_of(old[-1])
        removed = logkit.retain(d, FAMILY, max_age="1h", now=first_new + 3600 - 0.5)
    assert removed == [p for p in hist if p not in kept]
    assert history_segments(d, FAMILY) == kept
    assert os.path.exists(live_path(d))
    _assert_reads_exactly_from(d, written, kept[0])
    assert logkit.retain(d, FAMILY, max_count=len(kept)) == []     # nothing more to do
    # The family goes on: the writer rotates after retention, and it all still reads.
    written += write_segments(w, len(kept) + 3, start=len(written))
    _assert_reads_exactly_from(d, written, kept[0])


def test_a_writer_with_retain_count_keeps_that_many_history_segments_and_the_family_reads_whole(tmp_path):
    d = str(tmp_path / "fam")
    w = logkit.open_writer(d, FAMILY, segment_size=SMALL, retain_count=4)
    written = []
    for i in range(3000):
        t = f"message {i:06d}"
        written.append((w.write(t), t))
    assert w.rotations > 20
    # Retention runs off the write path, in the writer's preparer thread, after each rotation.
    wait_until(lambda: len(history_segments(d, FAMILY)) == 4, "retention down to 4 history segments",
               detail=lambda: f"{len(history_segments(d, FAMILY))} history segments")
    hist = history_segments(d, FAMILY)
    _assert_reads_exactly_from(d, written, hist[0])


def test_migrate_moves_the_history_relinks_it_and_both_directories_read_the_family_end_to_end(tmp_path):
    d, dest = str(tmp_path / "fam"), str(tmp_path / "archive" / "app")
    written, w = _small_family(d, 15)
    hist = history_segments(d, FAMILY)
    before, _, _ = read_family(d)
    assert before == written
    moved = logkit.migrate(d, FAMILY, dest)
    assert moved == [os.path.join(dest, os.path.basename(p)) for p in hist]
    assert _segment_files(d) == [FAMILY]
    assert history_segments(dest, FAMILY) == moved
    # previous links point at the migrated paths, the live segment's too.
    assert chain_problems([d, dest]) == []
    with Segment.open(live_path(d), readonly=True) as live:
        assert live.previous == moved[-1]
    for dirs in ([d, dest], [dest, d]):
        msgs, r, warns = read_family(dirs)
        assert warns == [] and r.damaged_segments == 0
        assert msgs == written
        assert r.seek(sequence=written[len(written) // 2][0]).text == written[len(written) // 2][1]
    msgs, _, _ = read_family(d)                 # the live segment alone, without the archive
    assert msgs == segment_messages(live_path(d))


def _early_in_a_second():
    """Wait on the clock (at most a second) until a new second has just begun,
    so that what follows, a few milliseconds of work, happens within one second."""
    wait_until(lambda: time.time() % 1 <= 0.2, "the first 0.2 s of a second on the clock", 2)


def test_rotations_right_after_a_migrate_keep_both_directories_readable_end_to_end(tmp_path):
    """History named after a migrate must sort after the migrated history
    (the reader orders the directories' segments by name alone), also when
    it is made within the same second as the last migrated one."""
    d, dest = str(tmp_path / "fam"), str(tmp_path / "archive")
    _early_in_a_second()
    written, w = _small_family(d, 5)
    moved = logkit.migrate(d, FAMILY, dest)
    written += write_segments(w, 3, start=len(written))        # three more rotations right away
    new = history_segments(d, FAMILY)
    assert len(new) == 3
    assert [os.path.basename(p) for p in history_segments([d, dest], FAMILY)] == \
        [os.path.basename(p) for p in moved + new], "name order is not sequence order"
    msgs, r, warns = read_family([d, dest])
    assert strictly_increasing([s for s, _ in msgs])
    assert warns == [] and len(msgs) == len(written)
    assert msgs == written
    assert chain_problems([d, dest]) == []


def test_a_second_migrate_into_the_same_destination_keeps_every_segment_migrated_before(tmp_path):
    d, dest = str(tmp_path / "fam"), str(tmp_path / "archive")
    _early_in_a_second()
    written, w = _small_family(d, 5)
    first = logkit.migrate(d, FAMILY, dest)
    uuids = {str(Segment.open(p, readonly=True).uuid) for p in first}
    written += write_segments(w, 3, start=len(written))
    second = logkit.migrate(d, FAMILY, dest)
    assert len(second) == 3
    archived = history_segments(dest, FAMILY)
    assert len(archived) == 8, f"the archive holds {len(archived)} of 8 segments: {archived}"
    assert uuids <= {str(Segment.open(p, readonly=True).uuid) for p in archived}
    msgs, _, warns = read_family([d, dest])
    assert warns == [] and msgs == written


# ====================================================================== damaged and missing history

def _family_with_history(tmp_path, n_history=10):
    d = str(tmp_path / "fam")
    written, w = _small_family(d, n_history)
    w.close()
    hist = history_segments(d, FAMILY)
    per_segment = {p: segment_messages(p) for p in hist}
    assert all(per_segment.values())
    return d, written, hist, per_segment


def _follow_all(d):
    r = logkit.open_reader(d, FAMILY)
    return [(m.sequence, m.text) for m in r.follow(poll_interval=0.001, idle_timeout=0.3)], r


def test_a_damaged_history_segment_in_the_middle_is_reported_and_reading_goes_on_with_the_next(tmp_path):
    d, written, hist, per_segment = _family_with_history(tmp_path)
    bad = hist[4]
    with open(bad, "r+b") as f:
        f.write(b"NOTLOGKT")                    # overwrite the magic
    lost = set(per_segment[bad])
    with pytest.warns(RuntimeWarning, match=os.path.basename(bad)) as caught:
        r = logkit.open_reader(d, FAMILY)
        msgs = [(m.sequence, m.text) for m in r]
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1
    assert r.damaged_segments == 1
    assert len(r.problems) == 1 and bad in r.problems[0]
    assert msgs == [m for m in written if m not in lost]
    assert msgs[-1] == written[-1]              # it read on past the damage to the end
    with pytest.warns(RuntimeWarning, match=os.path.basename(bad)):
        followed, fr = _follow_all(d)
    assert followed == msgs
    with pytest.warns(RuntimeWarning, match=os.path.basename(bad)):
        r2 = logkit.open_reader(d, FAMILY)
        assert [(m.sequence, m.text) for m in r2.reverse()] == msgs[::-1]


def test_a_missing_history_segment_in_the_middle_loses_only_its_own_messages(tmp_path):
    d, written, hist, per_segment = _family_with_history(tmp_path)
    gone = hist[4]
    os.unlink(gone)
    lost = set(per_segment[gone])
    msgs, r, warns = read_family(d)
    assert r.damaged_segments == 0
    # Not damage, but not hidden either: the hole is noted once.
    assert len(warns) == 1 and warns == r.problems and warns[0].startswith(
        f"sequences {per_segment[gone][0][0]}..{per_segment[gone][-1][0]} are missing"), warns
    assert msgs == [m for m in written if m not in lost]
    assert msgs[-1] == written[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        followed, _ = _follow_all(d)
        assert followed == msgs
        r2 = logkit.open_reader(d, FAMILY)
        assert r2.seek(sequence=per_segment[gone][0][0]).sequence == per_segment[hist[5]][0][0]


def test_a_segment_missing_from_the_middle_of_the_chain_is_reported_not_hidden(tmp_path):
    d = str(tmp_path)
    w = logkit.open_writer(d, FAMILY, segment_size=SMALL)
    written = write_segments(w, 4)
    w.close()
    hist = history_segments(d, FAMILY)
    with Segment.open(hist[2], readonly=True) as s:
        lost = set(range(s.sequence_base, s.sequence_base + s.stats()["reserved"]))
    os.remove(hist[2])
    msgs, r, caught = read_family(d)
    assert [m for m in written if m[0] not in lost] == msgs
    want = (f"sequences {min(lost)}..{max(lost)} are missing: no segment of family {FAMILY} holds them, "
            f"between {hist[1]} and {hist[3]} (its previous segment was {hist[2]})")
    assert r.problems == [want] and caught == [want]
    assert list(r.reverse())[::-1] and r.problems == [want]          # reported once, not per pass
    # Retention takes the oldest: that is no gap.
    os.remove(hist[0])
    msgs, r, caught = read_family(d)
    assert r.problems == [want] and caught == [want]


def test_overlapping_segments_are_reported(tmp_path):
    d = str(tmp_path)
    w = logkit.open_writer(d, FAMILY, segment_size=SMALL)
    write_segments(w, 2)
    w.close()
    hist = history_segments(d, FAMILY)
    with Segment.open(hist[1], readonly=True) as s:
        base, previous = s.sequence_base, s.previous
    os.remove(hist[1])                  # in its place, one that starts 5 sequences too early
    with Segment.create(hist[1], size=SMALL, family=FAMILY, previous=previous, sequence_base=base - 5) as s:
        s.write("an overlapping message")
        s.take_out_of_service()
    msgs, r, caught = read_family(d)
    want = (f"segment {hist[1]} starts at sequence {base - 5}, but {hist[0]} ends at {base - 1}: "
            "the two overlap (a segment copied back?)")
    # ... and the live segment after it then starts past its one message.
    assert r.problems[0] == want and len(r.problems) == 2, r.problems
    assert r.problems[1].startswith(f"sequences {base - 4}..") and "are missing" in r.problems[1]


def test_a_stalled_live_rotator_has_its_new_segment_adopted_and_resumes_without_installing_a_stale_one(
        tmp_path, group):
    """A rotator stopped (alive) after it claimed the install: a writer
    that takes over after rotation_timeout installs THAT rotator's new
    segment (the point family.rotate.adopted) instead of making another, so
    when the rotator resumes its own rename finds nothing and replaces no
    live segment that others have written into.  The family reads whole,
    every message once, before and after the victim goes on."""
    survivors_n, count, after = 2, 2000, 200
    d = str(tmp_path / "fam")
    os.mkdir(d)
    opts = {"segment_size": SMALL, "rotation_timeout": 0.5, "wait_timeout": 30.0}
    go = procs.CTX.Event()
    victim = group.spawn(procs.child_family_rotation_resuming_victim, d, FAMILY, 0, "installing", go, opts, after,
                         name="victim")
    victim.expect("ready")
    survivors = [group.spawn(procs.child_family_write, d, FAMILY, i + 1, count, go, opts, name=f"survivor-{i + 1}")
                 for i in range(survivors_n)]
    procs.recv_all(survivors, "ready")
    go.set()
    _, finished, old_uuid, old_base, _ = victim.expect("stalled")
    done = procs.recv_all(survivors, "done")
    assert sum(d_[2] for d_ in done) == 1, "one survivor takes the stalled rotation over"
    new_live = [n for n in os.listdir(d) if n.startswith(f".{FAMILY}.{victim.pid}.") and n.endswith(".live")]
    assert new_live == [], f"the victim's new segment was not adopted: {new_live}"
    victim.send("go on")
    (vseqs, _, _) = victim.expect("done")
    assert [s.join() for s in survivors] == [0] * survivors_n and victim.join() == 0
    msgs, r, warns = read_family(d)
    assert warns == [] and r.damaged_segments == 0
    assert [s for s, _ in msgs] == list(range(1, len(msgs) + 1))
    expected = {w: count for w in range(1, survivors_n + 1)}
    expected[0] = finished + after            # the write that stalled completes, then the rest
    assert check_writers(msgs, expected) == []
    assert chain_problems(d) == []
    hist = history_segments(d, FAMILY)
    bases = []
    for p in hist:
        with Segment.open(p, readonly=True) as s:
            if str(s.uuid) == old_uuid:
                bases.append(s.sequence_base)
    assert bases == [old_base]                 # the stalled segment went to history once
