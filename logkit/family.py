"""Families: a live segment plus its history, in one directory.

Sits on the segment core.  A FamilyWriter writes into the live segment `FAMILY`
and, when it fills, takes part in the one lock-free election that decides who
rotates it into history (`FAMILY.YYYYMMDD.HHMMSS`, UTC, plus a 4-digit suffix
when a second rotates more than once).  The rest of the family lives beside
it, and every public name is exported from here too: names and history
listing in family_names.py, the reader (seek, follow) in family_reader.py,
retention and migration in family_retention.py.
"""
from __future__ import annotations

import json
import mmap
import os
import threading
import time as _time
import uuid as _uuid
from typing import Callable, TypeVar

from logkit._segment import (Segment, parse_size, token_attempt, token_make, token_pid, token_state)
from logkit.errors import (
    InvalidArgument,
    LogkitError,
    OutOfService,
    SegmentDamaged,
    SegmentFull,
    SegmentNotFound,
)
from logkit import forking, idledger, inject
from logkit.console import say
from logkit.crypto import MissingKey, load_key_file
from logkit.family_names import (check_family, history_segments, left_service, next_history_name,
                                 open_segment, parse_duration, previous_field)
from logkit.family_prepare import (DEFAULT_PREPARE_AT, Preparer, map_segment, remove_dead_preparations,
                                   take_prepared)
from logkit.family_reader import FamilyReader, open_reader
from logkit.family_retention import migrate, retain, retention_plan
from logkit.salvager import process_alive, salvage

__all__ = [
    "FamilyWriter", "FamilyReader", "RotationTimeout", "open_writer", "open_reader",
    "retain", "retention_plan", "left_service", "migrate", "history_segments", "parse_duration",
    "retry_refused_write", "Backoff",
]

_T = TypeVar("_T")

# Rotation phases: the STATE of the segment's token (header offset 456,
# token_make; lk_segment.h "Tokens").  Even codes: tokens written before the
# one token layout had a 2-bit phase at bit 62 (1, 2, 3), and read the same.
_PHASE_ROTATING = 2
_PHASE_INSTALLING = 4
_PHASE_DONE = 6
ROTATION_PHASES = {0: "not rotated", _PHASE_ROTATING: "rotating",
                   _PHASE_INSTALLING: "installing its successor", _PHASE_DONE: "rotation done"}

# Test hook: called as _rotation_hook(stage) at "out-of-service", "linked",
# "created" and "installing".  Tests use it to stop a rotator mid-rotation.
# Each stage is also an injection point (logkit.inject), named
# family.rotate.<stage> with "_" for "-", plus family.rotate.installed (after
# the rename, before the token says done) and family.rotate.adopted (a
# takeover that installs a stalled rotator's new segment).
_rotation_hook = None

# The severity and data class of the message that reports records a writer
# could not write (RotationTimeout), as the partition reports its losses.
LOSS_SEVERITY = 40


class RotationTimeout(LogkitError):
    """The live segment stayed full past the wait timeout and nobody could rotate it."""


def _fresh_lock(w: "FamilyWriter") -> None:
    # A fork taken while another thread held a writer's slow-path lock would
    # leave it locked forever in the child: give every writer a fresh one.
    # The preparer's thread did not survive the fork: a new one starts.
    w._lock = threading.Lock()
    w._preparer.after_fork()
    if not w._closed:
        w._preparer.start()


class Backoff:
    """The wait between looks while another process rotates or swaps: starts
    at 50 us and doubles up to 5 ms, until `timeout` seconds have passed
    since it was made.  One loop shape for the writers that wait
    (FamilyWriter._advance, PartitionStorage._advance): look, then
    ``if b.expired(): raise ...``, then ``b.pause()``."""

    FIRST = 50e-6
    LONGEST = 0.005
    __slots__ = ("start", "deadline", "_next")

    def __init__(self, timeout: float) -> None:
        self.start = _time.monotonic()
        self.deadline = self.start + timeout
        self._next = self.FIRST

    def elapsed(self) -> float:
        """Seconds since this wait began."""
        return _time.monotonic() - self.start

    def expired(self) -> bool:
        """True once the timeout has passed."""
        return _time.monotonic() > self.deadline

    def pause(self) -> None:
        """Sleep the next pause of the series (the pace of the looks)."""
        _time.sleep(self._next)
        self._next = min(self._next * 2, self.LONGEST)


def retry_refused_write(seg: Segment, attempt: Callable[[Segment], _T],
                        advance: Callable[[Segment, bool], Segment],
                        retire: Callable[[Segment], None] | None = None, full: bool = True) -> _T:
    """The slow path of a write into a segment that refused it, shared by
    FamilyWriter and the partition storage (backends/partition.py).

    The caller makes the first attempt itself, as a plain call (the common
    write pays for nothing here), and calls this only once `seg` refused:
    `full` True for SegmentFull, False for OutOfService (or a retired,
    damaged segment).  Then, until an attempt succeeds: ``seg = advance(seg,
    full)`` (rotate or swap `seg` out, or wait for whoever does; it bounds
    the wait and raises when no segment took over in time, e.g.
    RotationTimeout or PartitionSwapTimeout, and LogkitError once the writer
    is closed), and return ``attempt(seg)``.  An attempt refused with
    SegmentFull or OutOfService goes round again; one refused with
    SegmentDamaged calls ``retire(seg)`` and goes round again if `retire` is
    given, else it propagates, as does every other error of `attempt`."""
    damaged = SegmentDamaged if retire is not None else ()
    while True:
        seg = advance(seg, full)
        try:
            return attempt(seg)
        except SegmentFull:
            full = True
        except OutOfService:
            full = False
        except damaged:
            retire(seg)
            full = False


def _hook(stage: str) -> None:
    if _rotation_hook is not None:
        _rotation_hook(stage)


def _alive_token(token: int) -> bool:
    return process_alive(token_pid(token))


class FamilyWriter:
    """Writes into a family's live segment from any number of threads and
    processes; rotates it into history when it fills.  Not a lock on the hot
    path: a write is one seg.write(); only the rare slow path (full, rotated)
    takes a per-writer lock."""

    def __init__(self, directory, family: str = "log", segment_size="8MiB",
                 wait_timeout: float = 30.0, rotation_timeout: float = 5.0, mode: int = 0o640,
                 retain_age=None, retain_count: int | None = None, retain_size=None,
                 create: bool = True, key_file=None, prepare_at: float = DEFAULT_PREPARE_AT):
        # Sealed messages (docs/security.md): with a key file, every segment
        # this writer creates is sealed under the file's current key, and it
        # writes only into sealed segments (an unsealed or unkeyed live
        # segment is rotated first).  The file is loaded now, so a missing
        # or loosely permitted one refuses to open the log, saying why.
        self.key_file = os.fspath(key_file) if key_file is not None else None
        self._ring = load_key_file(self.key_file) if self.key_file is not None else None
        self.directory = os.path.abspath(os.fspath(directory))
        self.family = check_family(family)
        self.segment_size = parse_size(segment_size, "segment_size")
        self.wait_timeout = float(wait_timeout)
        self.rotation_timeout = float(rotation_timeout)
        self.mode = mode
        self.retention = {"max_age": retain_age, "max_count": retain_count, "max_size": retain_size}
        self.path = os.path.join(self.directory, self.family)
        self.rotations = 0                    # rotations this writer performed
        self.takeovers = 0                    # rotations it finished for a dead rotator
        self.damaged_retired = 0              # live segments retired because their file shrank
        self.unprepared_rotations = 0         # rotations that found no prepared segment and made one inline
        self.lost = 0                         # records this writer could not write (RotationTimeout)
        self.loss_reports = 0                 # loss reports written into the family
        self._lost_pending = None             # [count, first ns, last ns] not yet reported
        if isinstance(prepare_at, bool) or not isinstance(prepare_at, (int, float)) \
                or not 0 <= prepare_at <= 1:
            raise InvalidArgument(f"prepare_at {prepare_at!r}: a fraction of the segment, 0 to 1")
        self.prepare_at = float(prepare_at)
        self._lock = threading.Lock()
        self._closed = False
        self._installed = None                # ((dev, ino), mmap) of the segment this writer just installed
        self._preparer = Preparer(self)
        if not os.path.isdir(self.directory):
            if not create:
                raise SegmentNotFound(f"family directory {self.directory} does not exist")
            os.makedirs(self.directory, exist_ok=True)
        self._seg, self._ino = self._open_live(create)
        if self._ring is not None and not self._seg.has_key:
            # Encryption was just configured (an unsealed live segment), or the
            # live segment is sealed under a key this file lacks: never write
            # plain text into the log, move on to a new, sealed segment.
            self._seg = self._advance(self._seg)
        forking.track(self, _fresh_lock)
        self._preparer.start()

    def _key_for_new_segment(self):
        """(key_id, log_key) of the current key, reloading the key file
        (rotation by key id takes effect at the next segment), or None."""
        if self.key_file is None:
            return None
        self._ring = load_key_file(self.key_file)
        return (self._ring.current, self._ring.current_key)

    def _open_segment(self, path):
        """Open a live segment for writing, with the key ring when sealing.
        A sealed segment under a key id the ring lacks reloads the file once
        (another process rotated to a newer key).  A writer without a key
        file refuses a sealed live segment."""
        seg = open_segment(path, False, self._ring)
        if seg.sealed and not seg.has_key:
            if self._ring is None:
                kid = seg.key_id
                seg.close()
                raise MissingKey(f"{path} is sealed (key id {kid}): this writer has no key_file, and "
                                 "writing plain messages into a sealed log is refused")
            seg.close()
            self._ring = load_key_file(self.key_file)
            seg = open_segment(path, False, self._ring)
        if seg.sealed:
            # A segment whose creator died before recording it (or made before
            # the ledger existed) is recorded by the next writer to open it.
            self._record_identity(seg)
        return seg

    def _record_identity(self, seg: Segment) -> None:
        """Put a sealed segment's identity in the family's ledger (FAMILY.ids,
        logkit.idledger): the one copy of its UUID outside its header page."""
        try:
            idledger.record(self.directory, self.family, seg, self.mode)
        except (LogkitError, OSError) as e:
            # Not a reason to lose messages: say it once and write on.
            say(f"logkit: {self.family}: could not record segment {seg.uuid} in the identity ledger: {e}")

    # -------------------------------------------------------------- live segment

    def _open_live(self, create: bool):
        """Open FAMILY (creating the family's first segment if there is none)."""
        deadline = _time.monotonic() + self.wait_timeout
        while True:
            try:
                seg = self._open_segment(self.path)
                return seg, seg.file_id        # of the file mapped, not of whatever the name is now
            except SegmentNotFound:
                if not create:
                    raise
            try:
                hist = history_segments(self.directory, self.family)
                base, prev = 1, ""
                if hist:
                    # A family whose live segment was lost: continue after the history.
                    with Segment.open(hist[-1], readonly=True) as last:
                        base = last.sequence_base + last.stats()["reserved"]
                        prev = hist[-1]
                seg = Segment.create(self.path, size=self.segment_size, family=self.family,
                                     previous=previous_field(prev),
                                     sequence_base=base, mode=self.mode, key=self._key_for_new_segment())
                if seg.sealed:
                    self._record_identity(seg)
                return seg, seg.file_id
            except FileExistsError:
                pass                          # another process created it first: open that
            if _time.monotonic() > deadline:
                raise RotationTimeout(f"{self.path}: could not open or create the live segment")

    @property
    def segment(self) -> Segment:
        """The live segment this writer currently writes into."""
        return self._seg

    def write(self, text, severity: int = 20, data=b"", data_class: str = "", time=None) -> int:
        """Append one message to the family and return its sequence number.

        Rotates the live segment when it is full (or waits, bounded by
        wait_timeout, for whoever does).  Raises MessageTooBig, InvalidArgument,
        RotationTimeout.
        """
        seg = self._seg
        try:
            return seg.write(text, severity, data, data_class, time)
        except (SegmentFull, OutOfService):
            pass
        except SegmentDamaged:
            self._retire(seg)
        return retry_refused_write(seg, lambda s: s.write(text, severity, data, data_class, time),
                                   self._advance_after, self._retire)

    def write_as(self, text, severity: int, data, data_class: str, time: int,
                 process_id: int, thread_id: int) -> int:
        """Append a copy of a message made elsewhere, keeping its time,
        severity, process and thread ids (see Segment.write_as); rotates
        like write()."""
        seg = self._seg
        try:
            return seg.write_as(text, severity, data, data_class, time, process_id, thread_id)
        except (SegmentFull, OutOfService):
            pass
        except SegmentDamaged:
            self._retire(seg)
        return retry_refused_write(
            seg, lambda s: s.write_as(text, severity, data, data_class, time, process_id, thread_id),
            self._advance_after, self._retire)

    def append(self, message) -> int:
        """write_as() with every field taken from `message` (a Message, or any
        object with the same attributes)."""
        return self.write_as(message.text, message.severity, message.data, message.data_class,
                             message.time, message.process_id, message.thread_id)

    def reserve(self, text_len: int, data_len: int = 0, data_class: str = ""):
        """Claim space for a message in the live segment (see Segment.reserve),
        rotating first if it is full."""
        seg = self._seg
        try:
            return seg.reserve(text_len, data_len, data_class)
        except (SegmentFull, OutOfService):
            pass
        return retry_refused_write(seg, lambda s: s.reserve(text_len, data_len, data_class),
                                   self._advance_after)

    def _retire(self, seg: Segment) -> None:
        """A write into `seg` was refused as damaged (its file shrank under the
        mapping: the message landed in a page the file no longer has, so it
        was not acknowledged).  Take it out of service, so that _advance()
        rotates it and this writer and every other one moves on to a new
        live segment; what was finished in the pages the file still has stays
        readable in history.  A header page that was lost too reads as zeros
        (already out of service): _advance() then takes the rotation over as
        from a dead rotator."""
        try:
            seg.take_out_of_service()
        except LogkitError:
            pass
        self.damaged_retired += 1

    def _advance_after(self, seg: Segment, full: bool) -> Segment:
        # retry_refused_write's `advance`: rotation does not depend on why `seg` refused.
        return self._advance(seg)

    def _advance(self, seg: Segment) -> Segment:
        """`seg` refused a write: rotate it, or wait for the new live segment."""
        if self._closed:
            raise LogkitError(f"family writer for {self.path} is closed")
        with self._lock:
            if self._seg is not seg:          # another thread already moved on
                return self._seg
            wait = Backoff(self.wait_timeout)
            watch = [None, wait.start]        # rotation token last seen, and since when
            while True:
                if seg.in_service and not seg.closed:
                    # Full but still in service: try to take it out (the election).
                    if seg.take_out_of_service():
                        inject.point("family.rotate.out_of_service")
                        _hook("out-of-service")
                        self._rotate(seg, takeover=False)
                if self._live_moved():
                    return self._switch()
                stale = self._may_take_over(seg, wait.elapsed(), watch)
                if stale is not None:
                    self._rotate(seg, takeover=True, expected=stale)
                    if self._live_moved():
                        return self._switch()
                if wait.expired():
                    self._note_loss()
                    raise RotationTimeout(
                        f"{self.path}: the live segment has been out of service for more than "
                        f"{self.wait_timeout:g} s and no new one appeared")
                wait.pause()

    def _live_moved(self) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (st.st_dev, st.st_ino) != self._ino

    def _switch(self) -> Segment:
        """Move on to the segment now at FAMILY, mapped without faulting it
        in on this call: the mapping this writer installed or its preparer
        premapped (already faulted in), or a new one the preparer then
        faults in.  Writes a pending loss report first thing."""
        seg = ino = None
        try:
            st = os.stat(self.path)
            ident = (st.st_dev, st.st_ino)
            mm = None
            if self._installed is not None and self._installed[0] == ident:
                mm = self._installed[1]
                self._installed = None
            if mm is None:
                mm = self._preparer.take_premapped(ident)
            if mm is not None:
                seg, ino = map_segment(self.path, self._ring, mm, ident)
                populate = False
            else:
                seg, ino = map_segment(self.path, self._ring)
                populate = True
            if seg.sealed and not seg.has_key:
                seg.close()
                seg = None
        except (FileNotFoundError, LogkitError):
            seg = None
        self._drop_installed()
        if seg is None:
            seg, ino = self._open_live(create=False)      # the full path: key reload, errors
        else:
            if seg.sealed:
                self._record_identity(seg)
            if populate:
                self._preparer.kick("populate")
        if self._lost_pending is not None:
            self._report_losses(seg)
        self._seg, self._ino = seg, ino       # the old mapping is freed when unused
        return seg

    def _drop_installed(self) -> None:
        if self._installed is not None:
            try:
                self._installed[1].close()
            except BufferError:
                pass
            self._installed = None

    def _note_loss(self) -> None:
        """A record could not be written (the wait for a new live segment
        timed out): count it, to be reported by the next switch."""
        now = _time.time_ns()
        self.lost += 1
        if self._lost_pending is None:
            self._lost_pending = [1, now, now]
        else:
            self._lost_pending[0] += 1
            self._lost_pending[2] = now

    def _report_losses(self, seg: Segment) -> None:
        """Write the loss report into `seg`, the new live segment, before
        anything else of this writer: severity 40, data class "json", data
        {"lost": N, "first_time": ns, "last_time": ns}."""
        n, first, last = self._lost_pending
        text = (f"{n} messages lost: the live segment of family {self.family} in {self.directory} "
                f"stayed full for more than wait_timeout ({self.wait_timeout:g} s) and no new one appeared")
        data = json.dumps({"lost": n, "first_time": first, "last_time": last}).encode()
        try:
            seg.write(text, LOSS_SEVERITY, data, "json")
        except LogkitError:
            return                            # reported by the next switch
        self._lost_pending = None
        self.loss_reports += 1

    def _may_take_over(self, seg: Segment, waited: float, watch: list) -> int | None:
        """A rotation that stalled past rotation_timeout is finished by the next
        writer.  Stalled: the segment has been out of service that long
        (measured from its out-of-service time or, if its rotator died before
        storing that, from when this writer started waiting), and its rotation
        token is unclaimed, or held by a dead process, or has not changed for
        rotation_timeout as this writer watched it (a live but stuck rotator).
        Returns the token judged stale (the CAS must replace exactly that one),
        or None."""
        if seg.in_service:
            return None
        oos = seg.out_of_service_time
        stalled = (_time.time_ns() - oos) / 1e9 if oos is not None else waited
        if stalled < self.rotation_timeout:
            return None
        token = seg.token()
        now = _time.monotonic()
        if token != watch[0]:
            watch[0], watch[1] = token, now
        if token_state(token) == _PHASE_DONE:
            return None
        if token == 0 or not _alive_token(token):
            return token
        # A live rotator stuck this long is taken over, whatever its phase.
        # ROTATING: it will find its token gone and back out.  INSTALLING: it
        # may still rename its new segment into place when it resumes (a
        # SIGSTOP, a debugger, a frozen cgroup), so the takeover installs
        # that same segment (_stalled_new_segment) and the resumed rename
        # finds nothing; if a file of the stalled rotator cannot be vouched
        # for, nobody installs anything and the writers' wait ends with
        # RotationTimeout naming the family.  Recovery then: resume or kill
        # the stalled process (`kill -CONT PID` / `kill PID`), or remove its
        # `.FAMILY.PID.*.live` file; the next write rotates.
        if now - watch[1] >= self.rotation_timeout:
            return token
        return None

    # -------------------------------------------------------------- rotation

    def _rotate(self, old: Segment, takeover: bool, expected: int | None = None) -> None:
        """Move `old` (out of service, still at FAMILY) into history and put a
        new live segment in its place.  Every step is safe to repeat, so a
        writer that takes over from a dead rotator simply runs them again.
        A takeover claims the token only if it still is `expected`, the value
        judged stale: never from a rotator that claimed it meanwhile."""
        observed = old.token() if expected is None else expected
        if token_state(observed) == _PHASE_DONE:
            return
        token = token_make(_PHASE_ROTATING, token_attempt(observed) + 1, os.getpid())
        if not old.claim_token(observed, token):
            return                            # someone else is on it
        if takeover:
            self.takeovers += 1
            # Abandon what dead writers left open, account for their claims.
            salvage(old, grace=self.rotation_timeout, settle=0)
        hist = self._link_history(old)
        inject.point("family.rotate.linked")
        _hook("linked")
        try:
            lim = old.limits()
            if lim is not None:
                old.store_hints(lim.first_sequence, lim.first_time, lim.last_sequence, lim.last_time,
                                old.find(sequence=lim.last_sequence).offset)
        except SegmentDamaged:
            pass                              # its file shrank: no hints, readers walk what is left
        base = old.sequence_base + old.stats()["reserved"]
        tmp = None
        if token_state(observed) == _PHASE_INSTALLING and _alive_token(observed):
            # Taking over from a rotator stalled after it claimed the install
            # (stopped, not dead): it may still rename its new segment into
            # place when it resumes, so install THAT segment now instead of
            # making another one; when it resumes, its rename finds nothing.
            # (A dead one can rename nothing: a fresh segment is made, and its
            # temporary is removed by _cleanup_temporaries later.)
            tmp = self._stalled_new_segment(token_pid(observed), base, hist)
            if tmp is None:
                return                        # one we cannot vouch for is there: leave it
            if tmp:
                inject.point("family.rotate.adopted")
        if not tmp:
            tmp = self._install_prepared(hist, base)
        if not tmp:
            # Nothing prepared (the preparer is behind, failed, or stopped):
            # make one here, as before preparing existed; counted.
            self.unprepared_rotations += 1
            self._preparer.kick()
            tmp = os.path.join(self.directory, f".{self.family}.{os.getpid()}.{_uuid.uuid4().hex[:8]}.live")
            new = Segment.create(tmp, size=self.segment_size, family=self.family,
                                 previous=previous_field(hist), sequence_base=base, mode=self.mode,
                                 key=self._key_for_new_segment())
            if new.sealed:
                self._record_identity(new)    # before it is installed: before any message
            new.close()
        inject.point("family.rotate.created")
        _hook("created")
        installing = token_make(_PHASE_INSTALLING, token_attempt(token), token_pid(token))
        if not old.claim_token(token, installing):
            if os.path.basename(tmp).startswith(f".{self.family}.{os.getpid()}."):
                os.unlink(tmp)                # taken over meanwhile: the other one installs
            return
        inject.point("family.rotate.installing")
        _hook("installing")
        try:
            os.rename(tmp, self.path)         # atomic: FAMILY is never missing
        except FileNotFoundError:
            # Stalled here past rotation_timeout, a writer took over and
            # installed this very file (_stalled_new_segment): nothing to do.
            pass
        inject.point("family.rotate.installed")
        old.claim_token(installing, token_make(_PHASE_DONE, token_attempt(token), token_pid(token)))
        self.rotations += 1
        # Off the write path: the directory's fsync (the names just made
        # last), retention, old temporaries (Preparer, after_rotation_chores).
        self._preparer.kick("fsync", "retain")

    def _install_prepared(self, hist: str, base: int) -> str | None:
        """Take the prepared next segment (family_prepare), write its
        identity (sequence base `base`, previous `hist`, created now, a new
        UUID, sealed under the current key) and give it the name a rotation
        installs from, ``.FAMILY.PID.RANDOM.live``.  None if there is none
        ready, or it could not be used (then it is removed)."""
        taken = take_prepared(self.directory, self.family)
        if taken is None:
            return None
        inject.point("family.prepare.taken")
        mm = None
        try:
            fd = os.open(taken, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
            try:
                st = os.fstat(fd)
                ident = (st.st_dev, st.st_ino)
                mm = self._preparer.take_premapped(ident)
                if mm is None:
                    mm = mmap.mmap(fd, st.st_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            finally:
                os.close(fd)
            new = Segment.format(mm, family=self.family, previous=previous_field(hist), sequence_base=base,
                                 key=self._key_for_new_segment(), zeroed=True)
            try:
                if new.sealed:
                    self._record_identity(new)    # before it is installed: before any message
            finally:
                new.close()
            inject.point("family.prepare.formatted")
            live = taken[:-len(".new")] + ".live"
            os.rename(taken, live)
        except (OSError, LogkitError, ValueError):
            if mm is not None:
                mm.close()
            try:
                os.unlink(taken)
            except FileNotFoundError:
                pass
            return None
        self._drop_installed()
        self._installed = (ident, mm)
        return live

    def after_rotation_chores(self) -> None:
        """What a rotation leaves, done by the preparer thread: temporaries
        of dead rotators and preparers, then retention."""
        self._cleanup_temporaries()
        remove_dead_preparations(self.directory, self.family)
        if any(v is not None for v in self.retention.values()):
            retain(self.directory, self.family, **self.retention)

    def _stalled_new_segment(self, pid: int, base: int, hist: str) -> str | None:
        """The new live segment a rotator (process `pid`) stalled in the
        INSTALLING phase made: its temporary `.FAMILY.PID.*.live`, verified
        to be exactly what that rotation creates (sequence base `base`,
        previous `hist`, nothing reserved yet).  "" when it has none (it can
        never install anything then: a fresh segment is safe), None when
        there is a file of that rotator this cannot vouch for."""
        prefix = f".{self.family}.{pid}."
        found = []
        for n in os.listdir(self.directory):
            if not (n.startswith(prefix) and n.endswith(".live")):
                continue
            p = os.path.join(self.directory, n)
            try:
                with Segment.open(p, readonly=True) as s:
                    ok = (s.sequence_base == base and s.previous == previous_field(hist)
                          and s.stats()["reserved"] == 0 and s.family == self.family)
            except FileNotFoundError:
                continue                      # renamed into place or cleaned up meanwhile
            except (LogkitError, OSError):
                ok = False
            if not ok:
                return None
            found.append(p)
        if len(found) > 1:
            return None
        return found[0] if found else ""

    def _link_history(self, old: Segment) -> str:
        """Give the live file its history name (a second hard link; FAMILY keeps
        pointing at it until the new live segment replaces it)."""
        st = os.stat(self.path)
        if (st.st_dev, st.st_ino) != self._ino:
            raise LogkitError(f"{self.path}: the live segment changed during rotation")
        if st.st_nlink > 1:                   # a dead rotator got this far: find its link
            for p in reversed(history_segments(self.directory, self.family)):
                if os.stat(p).st_ino == st.st_ino:
                    return p
        while True:
            name = next_history_name(self.directory, self.family, old.out_of_service_time or _time.time_ns(),
                                      after=os.path.basename(old.previous))
            hist = os.path.join(self.directory, name)
            try:
                os.link(self.path, hist)
                return hist
            except FileExistsError:
                continue

    def _cleanup_temporaries(self) -> None:
        """Remove new-segment files left by rotators that died before installing."""
        prefix = f".{self.family}."
        now = _time.time()
        for n in os.listdir(self.directory):
            if n.startswith(prefix) and (n.endswith(".live") or n.endswith(".new")):
                p = os.path.join(self.directory, n)
                try:
                    if now - os.stat(p).st_mtime > max(60.0, 4 * self.rotation_timeout):
                        os.unlink(p)
                except FileNotFoundError:
                    pass

    def sync(self) -> None:
        """msync the live segment."""
        self._seg.sync()

    def close(self) -> None:
        """Stop writing.  Messages already written stay in the family (and
        a prepared next segment stays for the next writer)."""
        self._closed = True
        self._preparer.stop()                 # its thread sees the writer closed and ends
        with self._lock:
            self._drop_installed()

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_writer(directory, family: str = "log", segment_size="8MiB", **options) -> FamilyWriter:
    """Open (creating if needed) a family for writing.  See FamilyWriter for options:
    wait_timeout, rotation_timeout, mode, retain_age, retain_count, retain_size, key_file,
    prepare_at."""
    return FamilyWriter(directory, family, segment_size, **options)
