"""Reading a family: FamilyReader reads its history and live segment in
sequence order, seeks by sequence or time, and follows it live across
rotations.  Sits on the segment core and family_names; writes nothing.
"""
from __future__ import annotations

import os
import threading
import time as _time
import warnings
from typing import Iterator

from logkit._segment import Limits, Message, Segment, SegmentIterator, check_mapping
from logkit.errors import InvalidArgument, LogkitError, NoSuchMessage, SegmentDamaged, SegmentNotFound
from logkit.crypto import WrongKey, load_key_file
from logkit.family_names import check_family, history_segments, open_segment

__all__ = ["FamilyReader", "open_reader"]

# follow(): while a rotation is under way (the segment it read is out of
# service, its successor not yet in place) it looks again after this pause,
# doubling up to the maximum (and never longer than its poll_interval).
_ROTATION_PAUSE = 50e-6
_ROTATION_PAUSE_MAX = 0.005


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
        self.family = check_family(family)
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
            seg = open_segment(path, True, self._ring)
            if seg.sealed and not seg.has_key and self._ring is not None:
                self._ring = load_key_file(self.key_file)     # a key added since we loaded it?
                seg.close()
                seg = open_segment(path, True, self._ring)
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
