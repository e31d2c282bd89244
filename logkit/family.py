"""Families: a live segment plus its history, in one directory.

Sits on the segment core.  A FamilyWriter writes into the live segment `FAMILY`
and, when it fills, takes part in the one lock-free election that decides who
rotates it into history (`FAMILY.YYYYMMDD.HHMMSS`, UTC, plus a 4-digit suffix
when a second rotates more than once).  A FamilyReader reads the whole history
in sequence order, seeks by sequence or time, and follows it live.
"""
from __future__ import annotations

import os
import re
import threading
import time as _time
import uuid as _uuid
import warnings
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

from logkit._segment import (Limits, Message, Segment, SegmentIterator, check_mapping, parse_size,
                             token_attempt, token_make, token_pid, token_state)
from logkit.errors import (
    InvalidArgument,
    LogkitError,
    NoSuchMessage,
    OutOfService,
    SegmentDamaged,
    SegmentFull,
    SegmentNotFound,
)
from logkit import forking, idledger, inject, safefs
from logkit.console import say
from logkit.crypto import MissingKey, WrongKey, load_key_file
from logkit.salvager import process_alive, salvage

__all__ = [
    "FamilyWriter", "FamilyReader", "RotationTimeout", "open_writer", "open_reader",
    "retain", "retention_plan", "left_service", "migrate", "history_segments", "parse_duration",
    "retry_refused_write",
]

_T = TypeVar("_T")

_FAMILY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]{0,62}")

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

# follow(): while a rotation is under way (the segment it read is out of
# service, its successor not yet in place) it looks again after this pause,
# doubling up to the maximum (and never longer than its poll_interval).
_ROTATION_PAUSE = 50e-6
_ROTATION_PAUSE_MAX = 0.005


class RotationTimeout(LogkitError):
    """The live segment stayed full past the wait timeout and nobody could rotate it."""


def _fresh_lock(w: "FamilyWriter") -> None:
    # A fork taken while another thread held a writer's slow-path lock would
    # leave it locked forever in the child: give every writer a fresh one.
    w._lock = threading.Lock()


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


def _check_family(family: str) -> str:
    if not isinstance(family, str) or not _FAMILY_RE.fullmatch(family):
        raise InvalidArgument(f"family name {family!r}: use 1-63 letters, digits, '_' or '-', "
                              "not starting with '-'")
    return family


def parse_duration(value, what: str = "duration") -> float:
    """Seconds from a number or a string like '90s', '15m', '12h', '7d'."""
    if isinstance(value, bool):
        raise InvalidArgument(f"{what}: {value!r} is not a duration")
    if isinstance(value, (int, float)):
        if value < 0:
            raise InvalidArgument(f"{what}: {value!r} is negative")
        return float(value)
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhdw]?)\s*", str(value), re.ASCII)
    if not m:
        raise InvalidArgument(f"{what}: {value!r} is not a duration (use seconds or e.g. '15m', '12h', '7d')")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


def _history_re(family: str):
    return re.compile(re.escape(family) + r"\.(\d{8})\.(\d{6})(?:\.(\d{4}))?")


def history_segments(directories: str | os.PathLike | Sequence, family: str) -> list[str]:
    """Paths of the family's history segments in all `directories`, oldest first
    (ordered by name alone: a missing or damaged one loses only itself)."""
    _check_family(family)
    dirs = [directories] if isinstance(directories, (str, os.PathLike)) else list(directories)
    pat = _history_re(family)
    found = {}
    for d in dirs:
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            continue
        for n in names:
            if pat.fullmatch(n) and n not in found:
                found[n] = os.path.join(os.fspath(d), n)
    return [found[n] for n in sorted(found)]


def _stamp(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y%m%d.%H%M%S")


def _next_history_name(directory: str, family: str, when_ns: int, after: str = "") -> str:
    """The history name for a segment taken out of service at `when_ns`: never
    sorting before an existing one (even if the clock stepped back), nor
    before `after`, the name of the segment's predecessor, which may have been
    migrated to another directory."""
    pat = _history_re(family)
    stamp = _stamp(when_ns)
    names = sorted(n for n in os.listdir(directory) + [after] if pat.fullmatch(n))
    if names:
        m = pat.fullmatch(names[-1])
        last_stamp = f"{m.group(1)}.{m.group(2)}"
        if last_stamp >= stamp:
            suffix = int(m.group(3) or 0) + 1
            if suffix > 9999:
                raise LogkitError(f"{directory}/{family}: more than 9999 rotations in one second")
            return f"{family}.{last_stamp}.{suffix:04d}"
    return f"{family}.{stamp}"


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _previous_field(path: str) -> str:
    """What a header's previous-segment field (at most 255 bytes) records for
    `path`: the full path, or its name alone when the path is too long."""
    return path if len(os.fsencode(path)) < 256 else os.path.basename(path)


def _seg_open(path, readonly: bool, ring) -> Segment:
    """Segment.open, with the key ring only when there is one (so an unsealed
    log calls exactly what it always did)."""
    if ring is None:
        return Segment.open(path, readonly) if readonly else Segment.open(path)
    return Segment.open(path, readonly, key=ring)


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
                 create: bool = True, key_file=None):
        # Sealed messages (docs/security.md): with a key file, every segment
        # this writer creates is sealed under the file's current key, and it
        # writes only into sealed segments (an unsealed or unkeyed live
        # segment is rotated first).  The file is loaded now, so a missing
        # or loosely permitted one refuses to open the log, saying why.
        self.key_file = os.fspath(key_file) if key_file is not None else None
        self._ring = load_key_file(self.key_file) if self.key_file is not None else None
        self.directory = os.path.abspath(os.fspath(directory))
        self.family = _check_family(family)
        self.segment_size = parse_size(segment_size, "segment_size")
        self.wait_timeout = float(wait_timeout)
        self.rotation_timeout = float(rotation_timeout)
        self.mode = mode
        self.retention = {"max_age": retain_age, "max_count": retain_count, "max_size": retain_size}
        self.path = os.path.join(self.directory, self.family)
        self.rotations = 0                    # rotations this writer performed
        self.takeovers = 0                    # rotations it finished for a dead rotator
        self.damaged_retired = 0              # live segments retired because their file shrank
        self._lock = threading.Lock()
        self._closed = False
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
        seg = _seg_open(path, False, self._ring)
        if seg.sealed and not seg.has_key:
            if self._ring is None:
                kid = seg.key_id
                seg.close()
                raise MissingKey(f"{path} is sealed (key id {kid}): this writer has no key_file, and "
                                 "writing plain messages into a sealed log is refused")
            seg.close()
            self._ring = load_key_file(self.key_file)
            seg = _seg_open(path, False, self._ring)
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
                                     previous=_previous_field(prev),
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
            start = _time.monotonic()
            deadline = start + self.wait_timeout
            pause = 50e-6
            watch = [None, start]             # rotation token last seen, and since when
            while True:
                if seg.in_service and not seg.closed:
                    # Full but still in service: try to take it out (the election).
                    if seg.take_out_of_service():
                        inject.point("family.rotate.out_of_service")
                        _hook("out-of-service")
                        self._rotate(seg, takeover=False)
                if self._live_moved():
                    return self._switch()
                stale = self._may_take_over(seg, _time.monotonic() - start, watch)
                if stale is not None:
                    self._rotate(seg, takeover=True, expected=stale)
                    if self._live_moved():
                        return self._switch()
                if _time.monotonic() > deadline:
                    raise RotationTimeout(
                        f"{self.path}: the live segment has been out of service for more than "
                        f"{self.wait_timeout:g} s and no new one appeared")
                _time.sleep(pause)
                pause = min(pause * 2, 0.005)

    def _live_moved(self) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (st.st_dev, st.st_ino) != self._ino

    def _switch(self) -> Segment:
        seg, ino = self._open_live(create=False)
        self._seg, self._ino = seg, ino       # the old mapping is freed when unused
        return seg

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
            tmp = os.path.join(self.directory, f".{self.family}.{os.getpid()}.{_uuid.uuid4().hex[:8]}.live")
            new = Segment.create(tmp, size=self.segment_size, family=self.family,
                                 previous=_previous_field(hist), sequence_base=base, mode=self.mode,
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
        _fsync_dir(self.directory)
        inject.point("family.rotate.installed")
        old.claim_token(installing, token_make(_PHASE_DONE, token_attempt(token), token_pid(token)))
        self.rotations += 1
        self._cleanup_temporaries()
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
                    ok = (s.sequence_base == base and s.previous == _previous_field(hist)
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
            name = _next_history_name(self.directory, self.family, old.out_of_service_time or _time.time_ns(),
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
        """Stop writing.  Messages already written stay in the family."""
        self._closed = True

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
    wait_timeout, rotation_timeout, mode, retain_age, retain_count, retain_size, key_file."""
    return FamilyWriter(directory, family, segment_size, **options)


# ------------------------------------------------------------------ reading

class FamilyReader:
    """Reads a family's history and live segment in sequence order.

    Messages are zero-copy views; a segment stays mapped while any of its
    messages is referenced.  A damaged segment is reported once with a
    RuntimeWarning, listed in .problems and counted in .damaged_segments;
    reading goes on with the next.  A missing history segment loses only its
    own messages (follow() notes the gap in .problems).
    """

    def __init__(self, directories, family: str = "log", key_file=None):
        dirs = [directories] if isinstance(directories, (str, os.PathLike)) else list(directories)
        # With a key file, sealed messages read decrypted (each segment under
        # its own key id, so old segments open with old keys of the same
        # file); without one, their text is "[encrypted]".
        self.key_file = os.fspath(key_file) if key_file is not None else None
        self._ring = load_key_file(self.key_file) if self.key_file is not None else None
        if not dirs:
            raise InvalidArgument("open_reader() needs at least one directory")
        self.directories = [os.path.abspath(os.fspath(d)) for d in dirs]
        for d in self.directories:
            if not os.path.isdir(d):
                raise SegmentNotFound(f"family directory {d} does not exist")
        self.family = _check_family(family)
        self.damaged_segments = 0               # distinct segments found damaged
        self.problems: list[str] = []
        self._start: tuple | None = None     # (segment file identity, offset) set by seek()
        self._start_name = ""                           # its history name then ("" if live)
        self._damaged: set[str] = set()
        self._noted: set = set()                # what was reported once: sealed segments without their key, chain breaks
        self._stopped = threading.Event()        # stop(): every follow() of this reader ends
        self._waiting_on: Segment | None = None  # the segment a follow() sleeps on, for stop() to wake
        self._start_seq = 0

    # -------------------------------------------------------------- listing

    def segment_paths(self) -> list[str]:
        """History (oldest first), then the live segment."""
        live = self._live_path()
        paths = history_segments(self.directories, self.family)
        return paths + ([live] if live else [])

    def _live_path(self) -> str | None:
        for d in self.directories:
            live = os.path.join(d, self.family)
            if os.path.exists(live):
                return live
        return None

    def _open_live(self) -> Segment | None:
        """Open the live segment BEFORE listing history: every segment rotated
        before this open is already linked into history (a rotator links
        before it installs), so a listing made after it misses nothing older."""
        live = self._live_path()
        return self._open(live) if live else None

    def _open(self, path: str) -> Segment | None:
        try:
            seg = _seg_open(path, True, self._ring)
            if seg.sealed and not seg.has_key and self._ring is not None:
                self._ring = load_key_file(self.key_file)     # a key added since we loaded it?
                seg.close()
                seg = _seg_open(path, True, self._ring)
                if not seg.has_key:
                    self._note_once(path, f"segment {path} is sealed under key id {seg.key_id}, which "
                                          f"key file {self.key_file} does not hold: its messages read "
                                          "'[encrypted]'")
            return seg
        except WrongKey:
            raise                               # a wrong key is the caller's to fix, not damage
        except FileNotFoundError:
            return None                         # rotated or retained meanwhile
        except (LogkitError, OSError) as e:
            if path not in self._damaged:       # report each damaged segment once (a wrong key: raised above)
                self._damaged.add(path)
                self.damaged_segments = len(self._damaged)
                msg = f"skipping segment {path}: {e}"
                if isinstance(e, SegmentDamaged):
                    # Say plainly what is lost now and what is not: the
                    # messages are still in the file, salvage finds them by
                    # walking the records themselves and rebuilds the header.
                    msg += (f"; none of its messages are read until `logkit salvage "
                            f"{os.path.dirname(path)}` rebuilds its header (they are not lost: "
                            "salvage finds each by its own checksum)")
                self.problems.append(msg)
                warnings.warn(msg, RuntimeWarning, stacklevel=3)
            return None

    def segments(self, after: str = "") -> Iterator[Segment]:
        """The family's segments in order, oldest first, each opened once (the
        live one opened before history is listed, so none rotated meanwhile
        is missed; the previous-segment chain checked): for tools that walk
        segment by segment (``logkit print``'s scan).  Each segment once (a segment seen under two names
        during a rotation is read once, by its file: (st_dev, st_ino), never
        by its UUID, which salvage may have had to rebuild as all zeros, and
        which a copy repeats: a zero or repeated UUID hides no segment).
        History named before
        `after` is not even opened (where a seek() landed)."""
        live = self._open_live()
        seen = set()
        prev = None
        for p in history_segments(self.directories, self.family):
            if after and os.path.basename(p) < after:
                continue
            seg = self._open(p)
            if seg is None:
                prev = None                     # damaged (reported) or just removed: no chain to check
                continue
            if live is not None and seg.file_id == live.file_id:
                continue                        # rotated since we opened it: read it last
            if seg.file_id in seen:
                continue
            seen.add(seg.file_id)
            self.check_chain(prev, seg)
            prev = seg
            yield seg
        if live is not None and live.file_id not in seen:
            self.check_chain(prev, live)
            yield live

    def check_chain(self, prev: Segment | None, seg: Segment) -> None:
        """Note in .problems (once per segment) when `seg` does not start
        where `prev`, the segment before it, ended: a segment of the family
        was removed or lost from the middle (its sequences are missing), or
        two overlap.  Retention removes the oldest only, which is no gap."""
        if prev is None or prev.file_id == seg.file_id:    # the same one under two names (a rotation)
            return
        try:
            end = prev.sequence_base + prev.stats()["reserved"]
            base = seg.sequence_base
        except (LogkitError, OSError, ValueError):
            return
        if base == end:
            return
        if base > end:
            was = f" (its previous segment was {seg.previous})" if getattr(seg, "previous", "") else ""
            msg = (f"sequences {end}..{base - 1} are missing: no segment of family {self.family} "
                   f"holds them, between {prev.path} and {seg.path}{was}")
        else:
            msg = (f"segment {seg.path} starts at sequence {base}, but {prev.path} ends at {end - 1}: "
                   "the two overlap (a segment copied back?)")
        self._note_once(("chain", seg.path), msg)

    def _limits_of(self, seg: Segment) -> Limits | None:
        """seg.limits(), or None (reported) when its file shrank under the mapping."""
        try:
            return seg.limits()
        except SegmentDamaged as e:
            self._note_damage(seg, e)
            return None

    def _note_damage(self, seg: Segment, e: Exception) -> None:
        """A walk of `seg` ended on damage found while reading (its file shrank
        under the mapping): report it once and count the segment damaged."""
        if seg.path not in self._damaged:
            self._damaged.add(seg.path)
            self.damaged_segments = len(self._damaged)
        self._note_once(("damaged", seg.path), f"{e}; reading goes on with the next segment")

    def _note_once(self, key, msg: str) -> None:
        """Report `msg` once per `key` (a path, or a (kind, path) pair)."""
        if key not in self._noted:
            self._noted.add(key)
            self.problems.append(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=4)

    # -------------------------------------------------------------- iteration

    def __iter__(self) -> Iterator[Message]:
        """Finished messages oldest first, starting where seek() put the reader."""
        last = self._start_seq - 1
        start = self._start
        for seg in self.segments(self._start_name if start is not None else ""):
            if start is not None:
                if seg.file_id != start[0]:
                    continue
                it = SegmentIterator(seg)
                it.pos, it.min_pos = start[1], start[1]
                it.min_seq = self._start_seq
                start = None
            else:
                it = SegmentIterator(seg)
            try:
                for m in it:
                    s = m.sequence
                    if s > last:
                        last = s
                        yield m
            except SegmentDamaged as e:        # its file shrank under the mapping
                self._note_damage(seg, e)

    def reverse(self) -> Iterator[Message]:
        """Finished messages newest first (exactly the forward order reversed)."""
        segs = list(self.segments())
        last_seq = None
        for seg in reversed(segs):
            msgs = []
            try:
                for m in SegmentIterator(seg):
                    msgs.append(m)
            except SegmentDamaged as e:
                self._note_damage(seg, e)
            for m in reversed(msgs):
                s = m.sequence
                if last_seq is None or s < last_seq:
                    last_seq = s
                    yield m

    def count(self) -> int:
        """Number of finished messages in the family."""
        n = 0
        for _ in self:
            n += 1
        return n

    # -------------------------------------------------------------- seeking

    def seek(self, sequence: int | None = None, time: int | None = None) -> Message:
        """Position the reader at the first finished message with sequence >=
        `sequence` (or time >= `time`, ns) and return it.  A binary search over
        the segments' header limits, then a walk inside one segment.
        Raises NoSuchMessage if there is none."""
        if (sequence is None) == (time is None):
            raise InvalidArgument("seek() takes exactly one of sequence= or time=")
        live = self._open_live()               # before listing: see _open_live
        paths = history_segments(self.directories, self.family)
        cache: dict[int, Segment | None] = {}
        if live is not None:
            cache[len(paths)] = live
            paths.append(live.path)

        def seg_at(i):
            if i not in cache:
                cache[i] = self._open(paths[i])
            return cache[i]

        def key(i):
            """Sort key of segment i: its base sequence, or its first time."""
            seg = seg_at(i)
            if seg is None:
                return None
            if sequence is not None:
                return seg.sequence_base
            t = seg.header()["first_time_hint"]
            if t == 0 or seg.header()["first_sequence_hint"] == 0:
                lim = self._limits_of(seg)
                return None if lim is None else lim.first_time
            return t

        target = sequence if sequence is not None else time
        lo, hi = 0, len(paths) - 1
        best = 0
        while lo <= hi:                         # last segment whose key <= target
            mid = (lo + hi) // 2
            k, probe = key(mid), mid
            while k is None and probe < hi:       # damaged or empty: look right
                probe += 1
                k = key(probe)
            if k is None:
                hi = mid - 1
                continue
            if k <= target:
                best = probe
                lo = probe + 1
            else:
                hi = mid - 1
        for i in range(best, len(paths)):
            seg = seg_at(i)
            if seg is None:
                continue
            try:
                m = seg.find(sequence=sequence) if sequence is not None else seg.find(time=time)
            except NoSuchMessage:
                continue
            except SegmentDamaged as e:        # its file shrank under the mapping
                self._note_damage(seg, e)
                continue
            self._start = (seg.file_id, m.offset)
            self._start_seq = m.sequence
            name = os.path.basename(paths[i])
            self._start_name = "" if name == self.family else name
            return m
        what = f"sequence >= {sequence}" if sequence is not None else f"time >= {time}"
        raise NoSuchMessage(f"family {self.family} in {', '.join(self.directories)}: no message with {what}")

    def rewind(self) -> None:
        """Undo seek(): iterate from the oldest message again."""
        self._start, self._start_seq, self._start_name = None, 0, ""

    def limits(self) -> Limits | None:
        """First and last sequence and time of the whole family, or None if empty."""
        live = self._open_live()               # before listing: see _open_live
        paths = history_segments(self.directories, self.family)
        segs = [lambda p=p: self._open(p) for p in paths] + ([lambda: live] if live is not None else [])
        first = last = None
        for get in segs:
            seg = get()
            first = self._limits_of(seg) if seg is not None else None
            if first is not None:
                break
        for get in reversed(segs):
            seg = get()
            last = self._limits_of(seg) if seg is not None else None
            if last is not None:
                break
        if first is None or last is None:
            return None
        return Limits(first.first_sequence, first.first_time, last.last_sequence, last.last_time)

    # -------------------------------------------------------------- following

    def follow(self, poll_interval: float = 0.01, pending_grace: float = 5.0,
               stop: threading.Event | None = None, idle_timeout: float | None = None
               ) -> Iterator[Message]:
        """Every finished message once, in sequence order: the existing ones,
        then new ones as writers finish them, across rotations.

        A reservation still being written holds the follower back (order)
        for as long as the process holding it runs (judged by that process,
        pid and start time, never by the pid inside a copied message); once
        it is gone the reservation is passed over.  A claim whose stub was
        never published (no holder to ask) is passed over after
        `pending_grace` seconds.  Each one passed over is listed in
        .problems.  A damaged segment (its file shrank under the mapping) is
        reported there too, and following goes on with the next segment.
        While idle it sleeps in Segment.wait() on
        the live segment, woken by the next finished message or by the
        segment leaving service (rotation); `poll_interval` seconds bound
        each wait (the polling interval where wait() cannot sleep on a
        futex), so `stop`, `idle_timeout` and pending reservations are
        looked at least that often.  Ends when `stop` is set or after
        `idle_timeout` idle seconds, or at once when another thread calls
        stop() on this reader.
        """
        if self._stopped.is_set():
            return
        last = self._start_seq - 1
        seg = None
        it = None
        # Start: the segment seek() chose, else the oldest.
        for s in self.segments(self._start_name if self._start is not None else ""):
            if self._start is not None and s.file_id != self._start[0]:
                continue
            seg = s
            break
        if seg is None:
            seg = self._wait_first_segment(poll_interval, stop, idle_timeout)
            if seg is None:
                return
        it = SegmentIterator(seg, strict=True)
        if self._start is not None:
            it.pos = it.min_pos = self._start[1]
            it.min_seq = self._start_seq
        pending_since = None
        idle_since = _time.monotonic()
        rotating = _ROTATION_PAUSE           # pause while a successor is awaited
        wait_poll = max(poll_interval, 1e-6)  # wait()'s polling fallback interval
        while True:
            out_before_pass = not seg.in_service
            got = False
            try:
                for m in it:
                    got = True
                    s = m.sequence
                    if s > last:
                        last = s
                        yield m
            except SegmentDamaged as e:
                # Its file shrank under the mapping: what is left was read;
                # writers retire it (FamilyWriter._retire), so go on with the
                # segment that follows it as soon as there is one.
                self._note_damage(seg, e)
                out_before_pass = True
            if it.pending is not None and not out_before_pass:
                try:
                    check_mapping(seg)     # held back by zeros where the file shrank?
                except SegmentDamaged as e:
                    self._note_damage(seg, e)
                    out_before_pass = True
            if out_before_pass and seg.path in self._damaged:
                it.pending = None          # nothing there will ever be finished
            if got:
                idle_since = _time.monotonic()
            if (stop is not None and stop.is_set()) or self._stopped.is_set():
                return
            successor_due = False
            if it.pending is not None:
                # Wait for the writer to finish, unless it is gone.
                now = _time.monotonic()
                pending_since = pending_since or now
                why = self._pass_over(seg, it.pending, now - pending_since, pending_grace)
                if why is not None:
                    p = it.pending
                    if it.skip_pending():
                        self.problems.append(
                            f"follow: passed over the {p.kind} record at offset {p.offset} of {seg.path}"
                            + (f" (sequence {p.sequence})" if p.sequence is not None else "")
                            + f": {why}; its message, if it is ever finished, is not followed")
                    pending_since = None
                    continue
            else:
                pending_since = None
                # Leave a segment only after a whole pass that began once it was
                # already out of service: its allocation end was frozen before
                # that pass, so the pass saw every message it will ever hold.
                if out_before_pass:
                    nxt = self._next_segment(seg)
                    if nxt is not None:
                        seg, it = nxt, SegmentIterator(nxt, strict=True)
                        rotating = _ROTATION_PAUSE
                        continue
                    successor_due = True
                elif not seg.in_service:
                    continue
            now = _time.monotonic()
            if idle_timeout is not None and now - idle_since > idle_timeout:
                return
            limit = poll_interval
            if idle_timeout is not None:
                limit = min(limit, idle_since + idle_timeout - now)
            if pending_since is not None and pending_since + pending_grace > now:
                limit = min(limit, pending_since + pending_grace - now)
            limit = max(limit, 0.0)
            if successor_due:
                # Out of service and fully read, but the rotator has not put the
                # next segment in place yet: there is nothing to sleep on, so
                # look again soon (50 us, doubling to 5 ms; the writers' own
                # wait for a rotation backs off the same way).
                _time.sleep(min(rotating, limit))
                rotating = min(rotating * 2, _ROTATION_PAUSE_MAX)
            else:
                # Sleep until a writer finishes the message at it.pos (the one
                # a pending reservation holds back, or the next one) or the
                # segment leaves service: both wake the futex at once.
                self._waiting_on = seg
                try:
                    if self._stopped.is_set():
                        return                   # stop() came before it could see what to wake
                    seg.wait(it.pos, timeout=limit, poll_interval=wait_poll)
                finally:
                    self._waiting_on = None

    @staticmethod
    def _pass_over(seg: Segment, pending, waited: float, grace: float) -> str | None:
        """Why follow() may pass over the record it is held back by, or None
        to keep waiting.  A reservation is judged by the process that HOLDS it
        (Segment.reservation_alive: pid and start time of the holder, which
        for a copy made by a drain or the pipe reader is the copier, not the
        process named in the message): it is never passed over while that
        process runs, however long it takes.  A claim with no stub yet (a
        gap) names no holder: it is waited for `grace` seconds."""
        if pending.kind == "reserved":
            if seg.reservation_alive(pending.offset):
                return None
            if seg.reservation_holder(pending.offset) is None:
                return None                     # finished or abandoned meanwhile: the walk takes it
            return "the process holding the reservation is gone"
        if waited > grace:
            return f"no writer published its stub within {grace:g} s"
        return None

    def _wait_first_segment(self, poll_interval, stop, idle_timeout):
        t0 = _time.monotonic()
        while True:
            for s in self.segments():
                return s
            if stop is not None and stop.is_set():
                return None
            if idle_timeout is not None and _time.monotonic() - t0 > idle_timeout:
                return None
            if self._stopped.wait(poll_interval):
                return None

    def stop(self) -> None:
        """End every follow() of this reader, now and later, at once: the
        wait() a follow() sleeps in is cancelled (Segment.cancel_waits(),
        which no race can make it sleep through).  A `stop` Event passed to
        follow() is noticed within its poll_interval instead."""
        self._stopped.set()
        seg = self._waiting_on
        if seg is not None:
            try:
                seg.cancel_waits()
            except LogkitError:
                pass                             # closed meanwhile: the follow() is ending anyway

    def _next_segment(self, seg: Segment) -> Segment | None:
        """The segment that follows `seg` (out of service and fully read): the
        one with the smallest sequence base above seg's."""
        base = seg.sequence_base
        end = base + seg.stats()["reserved"]
        live = self._open_live()
        best = live if live is not None and live.sequence_base > base else None
        for p in reversed(history_segments(self.directories, self.family)):
            if best is not None and best.sequence_base == end:
                break                           # the direct successor: nothing closer
            s = self._open(p)
            if s is None:
                continue
            b = s.sequence_base
            if b > base and (best is None or b < best.sequence_base):
                best = s
            if b <= base:
                break                           # older ones cannot follow seg
        if best is not None and best.sequence_base != end:
            self.problems.append(f"segment {best.path} starts at sequence {best.sequence_base}, "
                                 f"but {seg.path} ends at {end}: "
                                 + ("overlap" if best.sequence_base < end else "a segment is missing"))
        return best


def open_reader(directories, family: str = "log", key_file=None) -> FamilyReader:
    """Open a family (one directory, or several after migrate) for reading;
    key_file decrypts sealed messages."""
    return FamilyReader(directories, family, key_file=key_file)


# ------------------------------------------------------------------ history tools

def left_service(path: str, family: str) -> float | None:
    """When a history segment of `family` left service, from its name
    (seconds since the epoch, UTC); None for a name that is not one."""
    m = _history_re(family).fullmatch(os.path.basename(path))
    if not m:
        return None
    t = datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
    return t.timestamp()


def retention_plan(directory, family: str, max_age=None, max_count: int | None = None, max_size=None,
                   now: float | None = None) -> list[str]:
    """The history segments retain() would delete now, oldest first: beyond
    the newest `max_count`, older than `max_age`, then the oldest of what is
    left until at most `max_size` bytes remain.  Deletes nothing (the dry
    run of `logkit retain`)."""
    _check_family(family)
    hist = history_segments(directory, family)
    now = _time.time() if now is None else now
    doomed: set[str] = set()
    if max_count is not None:
        if not isinstance(max_count, int) or max_count < 0:
            raise InvalidArgument(f"max_count {max_count!r} must be a whole number >= 0")
        doomed.update(hist[:max(0, len(hist) - max_count)])
    if max_age is not None:
        age = parse_duration(max_age, "max_age")
        for p in hist:
            t = left_service(p, family)
            if t is not None and now - t > age:
                doomed.add(p)
    if max_size is not None:
        limit = parse_size(max_size, "max_size")
        sizes = [(p, os.stat(p).st_size) for p in hist if p not in doomed and os.path.exists(p)]
        total = sum(sz for _, sz in sizes)
        for p, sz in sizes:
            if total <= limit:
                break
            doomed.add(p)
            total -= sz
    return [p for p in hist if p in doomed]


def retain(directory, family: str, max_age=None, max_count: int | None = None, max_size=None,
           now: float | None = None) -> list[str]:
    """Delete the oldest history segments until the family keeps at most
    `max_count` of them, none older than `max_age` (seconds or '7d'; measured
    from when each left service, i.e. its name), and at most `max_size` bytes
    (number or '1GiB') of history.  The live segment is never deleted.
    Returns the paths removed (retention_plan() says which, without deleting)."""
    removed = []
    for p in retention_plan(directory, family, max_age, max_count, max_size, now):
        try:
            os.unlink(p)
            removed.append(p)
        except FileNotFoundError:
            pass
    return removed


def _migrate_one(src_fd: int, dst_fd: int, name: str, path: str, new: str) -> None:
    """Move history segment `name` from the directory src_fd to dst_fd: a
    hard link where both are on one file system, else a copy into an
    unpredictable O_EXCL temporary that is then linked to `name` (link(2)
    never replaces), fsynced before the source goes."""
    try:
        os.link(name, name, src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
        safefs.unlink_in(src_fd, name)
        return
    except FileExistsError:
        a = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
        b = os.stat(name, dir_fd=dst_fd, follow_symlinks=False)
        if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino):
            raise LogkitError(f"cannot migrate {path}: {new} already exists (a different file "
                              "of the same name); nothing was overwritten") from None
        safefs.unlink_in(src_fd, name)           # an interrupted migrate linked it already: resume
        return
    except OSError as e:
        if e.errno != 18:                        # EXDEV: another file system
            raise safefs.translate_error(e, new, "link") from None
    src = safefs.open_in(src_fd, name, os.O_RDONLY, path=path)
    try:
        st = os.fstat(src)
        out, tmp = safefs.create_temporary(dst_fd, name, mode=st.st_mode & 0o777, path_dir=os.path.dirname(new))
        try:
            try:
                while True:
                    chunk = os.read(src, 1 << 20)
                    if not chunk:
                        break
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(out, view):]
                os.fsync(out)
            finally:
                os.close(out)
            try:
                os.link(tmp, name, src_dir_fd=dst_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
            except FileExistsError:
                raise LogkitError(f"cannot migrate {path}: {new} already exists; nothing was "
                                  "overwritten") from None
        finally:
            safefs.unlink_in(dst_fd, tmp)
    except OSError as e:
        raise safefs.translate_error(e, new, "copy to") from None
    finally:
        os.close(src)
    os.fsync(dst_fd)
    safefs.unlink_in(src_fd, name)


def migrate(directory, family: str, destination) -> list[str]:
    """Move the family's history segments from `directory` to `destination`
    (created if needed) and update previous-segment links, so that
    open_reader([directory, destination], family) reads the family end to end.
    The live segment stays.  Returns the new paths."""
    _check_family(family)
    directory = os.path.abspath(os.fspath(directory))
    destination = os.path.abspath(os.fspath(destination))
    safefs.make_directories(destination)
    moved = {}
    # Every name is opened relative to its directory's descriptor, never
    # following a link (safefs): a name planted in either directory (a link
    # to /etc/shadow where the copy is written) is refused, never written
    # through.  Nothing already at the destination is ever replaced.
    # A sealed segment's identity goes with it: its ledger records first, so
    # an interrupted migrate leaves them in both directories, never in neither.
    idledger.copy_ledger(directory, destination, family)
    src_fd = safefs.open_directory(directory, writing=True)
    try:
        dst_fd = safefs.open_directory(destination, writing=True)
        try:
            for p in history_segments(directory, family):
                name = os.path.basename(p)
                new = os.path.join(destination, name)
                _migrate_one(src_fd, dst_fd, name, p, new)
                moved[p] = new
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)
    _fsync_dir(destination)
    _fsync_dir(directory)
    # Links: any segment (moved or live) whose previous was a moved one.
    candidates = list(moved.values()) + [os.path.join(directory, family)]
    for p in candidates:
        if not os.path.exists(p):
            continue
        try:
            seg = Segment.open(p)
        except LogkitError:
            continue
        with seg:
            prev = seg.previous
            full = prev if os.path.isabs(prev) else os.path.join(directory, prev)
            if full in moved:
                target = moved[full]
                seg.set_previous(_previous_field(target))
    return list(moved.values())
