"""The `partition` storage backend: the laurel/hardy pair (MTB-666) in one file.

A partition file is a 4096-byte partition header and two segment regions
("halves") in one shared mapping.  Writers fill the current half lock-free;
when it fills, the other half becomes current and the full one waits for
`drain()` to copy it into a family, after which it is empty again.  If both
fill before a drain, the older is reused and the loss is counted exactly.
docs/partition-format.md is the byte-level reference; docs/backend-partition.md
the user guide.

How the atomic steps are made (no file lock anywhere on the write path):

* A message: the half's own reservation CAS (Segment.write).
* Who swaps: the half's out-of-service election (Segment.take_out_of_service
  returns True for exactly one caller).
* Every later step of a half's life (swapping, full, draining, empty, being
  reused) is a *state token* in the half's segment-header word at offset 456
  (the family backend's rotation token; a partition half is never rotated,
  so the word is free), moved only by compare-and-swap (Segment.claim_token).
  A token names the process that holds the step, so a step whose holder died
  is taken over by the next process that needs it.  Segment.format zeroes
  the word: a freshly formatted half is LIVE.
* Partition-header words are hints and counters, each written only by the
  holder of the token that covers it (the swapper, or the drainer).

The backend is four modules: partition_file.py (the layout, the tokens,
`Partition`), this one (PartitionStorage: writing and the swap protocol),
partition_drain.py (the drain) and partition_reader.py (reading).
"""

from __future__ import annotations

import json
import os
import threading
import time as _time
from typing import Any

from logkit._segment import Segment, SegmentIterator, token_attempt, token_pid, token_state
from logkit.errors import (
    InvalidArgument,
    LogkitError,
    OutOfService,
    SegmentFull,
)
from logkit import inject
from logkit.family import Backoff, retry_refused_write
from logkit.registry import Option, StorageBackend
from logkit.salvager import salvage, settle_counts
# The names below were all defined here before the split; they stay importable from here.
from logkit.backends.partition_file import (  # noqa: F401
    COPYING, DRAINING, EMPTY, FORMAT_VERSION, FULL, HEADER_SIZE, H_CREATED, H_CURRENT, H_DRAINED,
    H_FAMILY, H_GENERATION, H_HALF0, H_HALF1, H_HALF_SIZE, H_HEADER_SIZE, H_HOLDER, H_IDENTITY_CRC,
    H_INTENT, H_INTENT_EVENTS, H_INTENT_FIRST, H_INTENT_LAST, H_INTENT_LOST, H_INTENT_TOTAL,
    H_LAST_SWAP, H_LOSS_EVENTS, H_LOST, H_MAGIC, H_MARK, H_NEXT_BASE, H_PROGRESS, H_VERSION,
    IDENTITY_END, LIVE, MAGIC, MAX_HALF, MIN_HALF, PAGE, PHASE_NAMES, REUSING, SWAPPING,
    TOKEN_OFFSET, Partition, abandoned_here, claim_and_hold,
    held_here, make_token, release_token, round_half_size)
from logkit.backends.partition_drain import PartitionDrain
from logkit.backends.partition_reader import (  # noqa: F401
    READ_PATIENCE, PartitionMessage, PartitionReader, open_reader)

__all__ = ["PartitionStorage", "PartitionReader", "PartitionMessage", "Partition", "open_reader",
           "PartitionSwapTimeout"]

SYNC_CHOICES = ("never", "close", "always")

LOSS_SEVERITY = 40

# timing
WAIT_TIMEOUT = 30.0      # longest a writer waits for a swap before raising
STALL_TIMEOUT = 10.0     # a live holder whose token does not move for this long is taken over
LIVE_STALL = 1.0         # an out-of-service half nobody claimed (its winner died at once)
DRAIN_WAIT = 5.0         # a swapper waits this long for a live drainer of the half it must reuse
RESERVATION_GRACE = 5.0  # salvage grace for a reservation left open in a full half
SETTLE_TIMEOUT = RESERVATION_GRACE + 3.0   # longest a drain or reuse waits for a full half's
                                           # reservations (salvage abandons a stuck one after the grace)



class PartitionSwapTimeout(LogkitError):
    """The current half stayed full past the wait timeout and no swap completed."""


# ====================================================================== the backend

class PartitionStorage(PartitionDrain, StorageBackend):
    """Messages rest in a two-half partition file until drain() copies them to a family."""

    options = (
        Option("path", "path", required=True, help="the partition file"),
        Option("size", "size", "1MiB", help="bytes in each half (rounded up to 4 KiB)"),
        Option("directory", "path", None, help="family directory drain() copies into"),
        Option("family", "str", None, help="destination family name (default: the log's name)"),
        Option("segment_size", "size", "8MiB", help="segment size of the destination family"),
        Option("swap_interval", "duration", None,
               help="swap at least this often when the other half is empty (default: never)"),
        Option("mode", "mode", 0o640, help="permissions of a new partition file"),
        Option("sync", "choice", "close", choices=SYNC_CHOICES,
               help="msync: never, on close/flush, or after every message"),
        Option("key_file", "path", None,
               help="seal (encrypt and authenticate) messages with this key file (mode 0600); "
                    "the drain's family is sealed with it too"),
    )

    def __init__(self, log: str, **options: Any):
        super().__init__(log, **options)
        o = self.config
        if not o.get("path"):
            raise InvalidArgument(f"partition storage for log {log}: the `path` option is required")
        self.path = os.path.abspath(os.fspath(o["path"]))
        self.size = round_half_size(o.get("size") or "1MiB")
        d = o.get("directory")
        self.directory = os.fspath(d) if d is not None else None
        self.family = o.get("family") or log
        self.segment_size = o.get("segment_size") or "8MiB"
        iv = o.get("swap_interval")
        self.swap_interval = float(iv) if iv is not None else None
        self.mode = o.get("mode", 0o640) if o.get("mode") is not None else 0o640
        self.sync = o.get("sync") or "close"
        if self.sync not in SYNC_CHOICES:
            raise InvalidArgument(f"partition storage for log {log}: sync {self.sync!r} is not one of "
                                  f"{', '.join(SYNC_CHOICES)}")
        self.key_file = os.fspath(o["key_file"]) if o.get("key_file") is not None else None
        self._p = Partition(self.path, self.size, family=self.family, mode=self.mode,
                            key_file=self.key_file)
        try:
            self._check_sealing()
        except BaseException:
            self._p.close()
            raise
        self.size = self._p.half_size            # an existing file keeps its own size
        self._lock = threading.Lock()            # slow path (swap) only
        self._drain_lock = threading.Lock()      # one drain at a time in this process
        self._closed = False
        self._next_check = 0.0
        self._watch: dict[int, float] = {}       # token -> when first seen unchanged
        self.swaps_here = 0
        self.takeovers = 0
        self.settle_timeouts = 0                 # settles that gave up (_settle)
        self.count_mismatches = 0                # settled halves whose counters still disagree
        self.problems: list[str] = []            # what went wrong, in words (bounded)
        self._repair()
        cur = self._p.current_index()
        self._cur = self._p.halves[cur if cur is not None else 0]
        self.swap(reason="open")                  # swap on open: only if the other half is empty

    def _check_sealing(self) -> None:
        """A partition is sealed or not for its whole life: a writer's key_file
        must agree with the file it opens (never plain text into a sealed
        partition, never silently plain text when a key_file is configured)."""
        p = self._p
        sealed = p.sealed()
        if sealed and p.missing_key is not None:
            raise p.missing_key
        if sealed is False and self.key_file is not None:
            raise InvalidArgument(f"partition {self.path} was created without encryption, but log "
                                  f"{self.log} has key_file {self.key_file}: drain it and remove the file "
                                  "(or use another path) to start a sealed partition")

    # ------------------------------------------------------------ writing

    def write(self, text, severity=20, data=b"", data_class="", time=None):
        if self.swap_interval is not None:
            self._periodic()
        seg = self._cur
        try:
            seq = seg.write(text, severity, data, data_class, time)
        except (SegmentFull, OutOfService) as e:
            seq = retry_refused_write(seg, lambda s: s.write(text, severity, data, data_class, time),
                                      self._advance, full=isinstance(e, SegmentFull))
        if self.sync == "always":
            self._cur.sync()
        return seq

    def append(self, message):
        args = (message.text, message.severity, message.data, message.data_class, message.time,
                message.process_id, message.thread_id)
        if self.swap_interval is not None:
            self._periodic()
        seg = self._cur
        try:
            seq = seg.write_as(*args)
        except (SegmentFull, OutOfService) as e:
            seq = retry_refused_write(seg, lambda s: s.write_as(*args), self._advance,
                                      full=isinstance(e, SegmentFull))
        if self.sync == "always":
            self._cur.sync()
        return seq

    def _advance(self, seg: Segment, full: bool) -> Segment:
        """`seg` refused a write: swap it out (if this caller wins the
        election) or wait for whoever does; return the current half."""
        if self._closed:
            raise LogkitError(f"partition {self.path} is closed")
        p = self._p
        with self._lock:
            if self._cur is not seg:
                return self._cur                   # another thread moved on
            wait = Backoff(WAIT_TIMEOUT)
            while True:
                if full and seg.in_service:
                    full = False
                    if seg.take_out_of_service():  # the election: exactly one caller swaps
                        i = p.halves.index(seg)
                        tok = make_token(SWAPPING, 1)
                        if self._claim_half(i, 0, tok):
                            self._do_swap(i, tok)
                cur = self._ready_current()
                if cur is not None and (cur is not seg or seg.in_service):
                    self._cur = cur
                    return cur
                self._take_over_stalled()
                if wait.expired():
                    raise PartitionSwapTimeout(
                        f"partition {self.path}: no half has been in service for {WAIT_TIMEOUT:g} s "
                        f"(half states: {self._phases()})")
                wait.pause()

    def _claim_half(self, i: int, old: int, new: int) -> bool:
        """claim_and_hold() of half i's token, our identity recorded first (note_holder)."""
        self._p.note_holder(i)
        return claim_and_hold(self._p.halves[i], old, new)

    def _ready_current(self) -> Segment | None:
        """The current half once its swap is published (the old half has left SWAPPING)."""
        p = self._p
        cur = p.current_index()
        if cur is None or p.phase(1 - cur) == SWAPPING:
            return None
        return p.halves[cur]

    def _phases(self) -> str:
        p = self._p
        return ", ".join(f"{i}: {PHASE_NAMES.get(p.phase(i), '?')}" for i in (0, 1))

    def _stale(self, i: int, tok: int) -> bool:
        """Is the step half i's token holds abandoned?  Its holder is dead, or
        is this process but no thread of it holds it (see held_here), or it has
        not moved for STALL_TIMEOUT."""
        holder = token_pid(tok)
        if holder == os.getpid():
            return not held_here(tok)
        if not self._p.holder_alive(i, tok):
            return True
        now = _time.monotonic()
        since = self._watch.setdefault(tok, now)
        if len(self._watch) > 64:
            self._watch = {tok: since}
        return now - since >= STALL_TIMEOUT

    def _take_over_stalled(self) -> bool:
        """Finish a swap whose holder died (or stalled).  Caller holds self._lock."""
        p = self._p
        for i in (0, 1):
            h = p.halves[i]
            if not p.sound(i):
                continue
            tok = h.token()
            ph = token_state(tok)
            if ph == SWAPPING and self._stale(i, tok):
                new = make_token(SWAPPING, token_attempt(tok) + 1)
                if self._claim_half(i, tok, new):
                    self.takeovers += 1
                    self._do_swap(i, new)
                    return True
            elif ph == LIVE and not h.in_service and p.current_index() is None:
                # Taken out of service, but its election winner died before claiming the swap.
                oos = h.out_of_service_time
                if oos is not None and (_time.time_ns() - oos) / 1e9 >= LIVE_STALL:
                    new = make_token(SWAPPING, 1)
                    if self._claim_half(i, 0, new):
                        self.takeovers += 1
                        self._do_swap(i, new)
                        return True
        return False

    # ------------------------------------------------------------ swapping

    def _do_swap(self, c: int, tok: int) -> bool:
        """As holder of half c's SWAPPING token `tok` (c is out of service,
        `tok` claimed with claim_and_hold()): make the other half current.  Every step
        can be repeated by a process that takes over.  Returns False if the
        token was taken from us."""
        try:
            return self._swap_steps(c, tok)
        finally:
            release_token(tok)

    def _swap_steps(self, c: int, tok: int) -> bool:
        p = self._p
        C, o = p.halves[c], 1 - c
        O = p.halves[o]
        base = C.sequence_base + C.stats()["reserved"]   # frozen: C is out of service
        done = p.sound(o) and O.in_service and O.sequence_base == base
        if done and p.intent_half() == o:
            # A swapper died after formatting o and before its loss
            # bookkeeping: finish that first (H_LOST, the report, H_INTENT),
            # or the loss is never counted and readers keep treating o as
            # being formatted.
            if not self._finish_reuse(c, o, tok):
                return False
        if not done:
            claimed = self._claim_for_reuse(o, c, tok)
            if claimed is None:
                return False
            prev_phase, otok = claimed
            try:
                return self._reuse(c, o, tok, base, prev_phase)
            finally:
                release_token(otok)
        return self._publish(c, o, tok, base)

    def _reuse(self, c: int, o: int, tok: int, base: int, prev_phase: int) -> bool:
        """Format half o (ours: REUSING) as the new current half, counting and
        reporting what it held that no drain copied."""
        p = self._p
        C = p.halves[c]
        # If intent names O, a swapper died while reusing it: its loss is
        # already reckoned in the intent fields (_finish_reuse uses them).
        if p.intent_half() != o:
            n, first, last = (0, 0, 0) if prev_phase == EMPTY else self._undrained(
                o, settle=True, in_flight=prev_phase == COPYING)
            total = p.header_word(H_LOST) + n
            p.set_header_word(H_INTENT_LOST, n)
            p.set_header_word(H_INTENT_TOTAL, total)
            p.set_header_word(H_INTENT_FIRST, first)
            p.set_header_word(H_INTENT_LAST, last)
            p.set_header_word(H_INTENT_EVENTS, p.header_word(H_LOSS_EVENTS) + 1 if n else p.header_word(H_LOSS_EVENTS))
            p.set_header_word(H_INTENT, o + 1)      # from here O's header may be torn: readers skip it
        if C.token() != tok:
            return False
        key = p.key.for_new_half() if p.key is not None else None
        Segment.format(p.mm, p.offsets[o], p.half_size, family=p.family[:63],
                       sequence_base=base, key=key).close()
        inject.point("partition.swap.formatted")      # o formatted; its loss not yet recorded
        p.refresh_keys()                 # our object of half o derives its new key
        if not self._finish_reuse(c, o, tok):
            return False
        return self._publish(c, o, tok, base)

    def _finish_reuse(self, c: int, o: int, tok: int) -> bool:
        """The bookkeeping of a reuse whose half o is formatted, from the
        intent fields, each step repeatable by a taker-over: the loss report
        (written unless o already holds it), `lost` and `loss events` (stored
        from the intent fields: idempotent), then `intent = 0`.  False if
        our swap token was taken meanwhile."""
        p = self._p
        C, O = p.halves[c], p.halves[o]
        if p.intent_half() != o:
            return True
        n, total = p.header_word(H_INTENT_LOST), p.header_word(H_INTENT_TOTAL)
        first, last = p.header_word(H_INTENT_FIRST), p.header_word(H_INTENT_LAST)
        events = p.header_word(H_INTENT_EVENTS) or p.header_word(H_LOSS_EVENTS) + 1
        if n:
            text = (f"{n} messages lost: both halves of partition {p.path} were full before a drain "
                    f"(sequences {first}..{last})")
            data = json.dumps({"lost": n, "first_sequence": first, "last_sequence": last}).encode()
            p.refresh_keys()             # a sealed o formatted by a dead swapper: derive its key
            if not self._holds_report(O, data):
                if C.token() != tok:
                    return False
                try:
                    O.write(text, LOSS_SEVERITY, data, "json")
                except LogkitError:
                    pass                 # a swap must never fail for its report
            inject.point("partition.swap.reported")
            p.set_header_word(H_LOSS_EVENTS, events)
        if C.token() != tok:
            return False
        p.set_header_word(H_LOST, total)            # idempotent: a taker stores the same total
        inject.point("partition.swap.losses-recorded")
        p.set_header_word(H_INTENT, 0)
        return True

    @staticmethod
    def _holds_report(h: Segment, data: bytes) -> bool:
        """Does half h already hold the loss report with this data (a swapper
        died after writing it)?  It is among the first messages, if there."""
        try:
            for k, m in enumerate(SegmentIterator(h)):
                if m.severity == LOSS_SEVERITY and m.data_class == "json" and bytes(m.data) == data:
                    return True
                if k >= 64:
                    break
        except LogkitError:
            pass
        return False

    def _publish(self, c: int, o: int, tok: int, base: int) -> bool:
        """The swap's last step: the old half leaves SWAPPING (writers waiting
        switch only now, so a loss report is the new half's first message)."""
        p = self._p
        C, O = p.halves[c], p.halves[o]
        if not C.claim_token(tok, make_token(FULL, token_attempt(tok))):
            return False
        p.set_header_word(H_CURRENT, o)
        p.set_header_word(H_GENERATION, p.header_word(H_GENERATION) + 1)
        p.set_header_word(H_NEXT_BASE, base)
        p.set_header_word(H_LAST_SWAP, _time.time_ns())
        self.swaps_here += 1
        self._cur = O
        return True

    def _claim_for_reuse(self, o: int, c: int, swap_tok: int):
        """Move half o's token to REUSING(us).  Waits (bounded) for a live
        drainer to finish.  Returns (phase before, new token), or None if our
        swap token was taken over meanwhile."""
        p = self._p
        O, C = p.halves[o], p.halves[c]
        t0 = _time.monotonic()
        while True:
            if C.token() != swap_tok:
                return None
            tok = O.token()
            ph = token_state(tok)
            take = False
            if ph in (FULL, EMPTY, LIVE, SWAPPING):
                take = True
            elif ph in (DRAINING, COPYING, REUSING):
                holder = token_pid(tok)
                take = (abandoned_here(tok) or (holder != os.getpid() and not p.holder_alive(o, tok))
                        or _time.monotonic() - t0 > DRAIN_WAIT)
            else:
                take = True                  # a damaged token: the half is ours to reformat
            if take:
                new = make_token(REUSING, token_attempt(tok) + 1)
                if self._claim_half(o, tok, new):
                    return ph, new
                continue
            _time.sleep(0.001)

    def _undrained(self, i: int, settle: bool, in_flight: bool = False) -> tuple[int, int, int]:
        """(count, first, last) of the finished messages of half i not yet
        copied out.  in_flight: the half was taken from a drainer in COPYING,
        which holds a proved copy of the first message above progress and
        appends it: that one counts as copied (recorded here, so progress
        covers it whichever of us stores it first; the same value)."""
        p = self._p
        if not p.sound(i):
            return 0, 0, 0
        h = p.halves[i]
        if settle:
            self._settle(h)
        progress = p.header_word(H_PROGRESS)
        n = first = last = 0
        for m in SegmentIterator(h):
            s = m.sequence
            if s > progress:
                if in_flight:
                    in_flight = False
                    progress = s
                    p.set_header_word(H_PROGRESS, s)
                    continue
                n += 1
                first = first or s
                last = s
        return n, first, last

    def _settle(self, h: Segment) -> bool:
        """Wait until every reservation in the out-of-service half `h` is
        finished or abandoned (salvage abandons those of dead writers, and
        of stuck ones after RESERVATION_GRACE).  Decided by walking the
        half's records (salvager.settle_counts), never by its counters: a
        writer killed between its commit and the written counter, or a
        damaged COUNT, leaves the counters unbalanced for ever, and used to
        cost every drain and reuse the whole timeout.  Bounded by
        SETTLE_TIMEOUT (a little more than the grace after which salvage
        abandons a live but stuck reservation); a timeout, and counters
        that stay unbalanced once the walk says settled, are noted in
        `problems` and counted in stats() (never silence).  False on
        timeout."""
        i = self._p.halves.index(h)
        deadline = _time.monotonic() + SETTLE_TIMEOUT
        next_salvage = _time.monotonic() + 0.02
        while True:
            if settle_counts(h):
                st = h.stats()
                if st["reserved"] != st["written"] + st["abandoned"]:
                    self.count_mismatches += 1
                    self._problem(f"partition {self.path}: half {i} at offset {self._p.offsets[i]}: its "
                                  f"counters do not balance (reserved {st['reserved']}, written "
                                  f"{st['written']}, abandoned {st['abandoned']}) though every record "
                                  "in it is finished: the reservation word's COUNT is damaged; the walk "
                                  "of its records decides")
                return True
            now = _time.monotonic()
            if now >= next_salvage:
                salvage(h, grace=RESERVATION_GRACE, settle=1.0)
                next_salvage = now + 0.05
            if now > deadline:
                self.settle_timeouts += 1
                self._problem(f"partition {self.path}: half {i} at offset {self._p.offsets[i]}: "
                              f"reservations still open after {SETTLE_TIMEOUT:g} s; went on without them")
                return False
            _time.sleep(0.001)

    def _problem(self, note: str) -> None:
        """Note a problem once (the list is bounded: the newest 64)."""
        if note not in self.problems:
            self.problems.append(note)
            del self.problems[:-64]

    def swap(self, reason: str = "request") -> bool:
        """Swap now if the current half holds messages and the other half is
        empty (a swap that never loses anything: open, close, interval,
        drain).  Returns True if this call swapped."""
        p = self._p
        with self._lock:
            cur = p.current_index()
            if cur is None:
                return False
            C = p.halves[cur]
            if C.stats()["written"] == 0 or p.phase(1 - cur) != EMPTY or p.phase(cur) != LIVE:
                return False
            if not C.take_out_of_service():
                return False
            inject.point("partition.swap.out-of-service")   # elected, the swap not yet claimed
            tok = make_token(SWAPPING, 1)
            if not self._claim_half(cur, 0, tok):
                # Taken over while we stalled past LIVE_STALL: the swap is
                # the taker's now.  Never put the half back in service: it
                # may be full, draining or reused by now (duplicate sequences).
                return False
            # The swap is ours and is finished whatever the other half holds:
            # it can only have stopped being empty if C was swapped out and
            # reused since the check above (the partition is overflowing),
            # and giving C back could not be made atomic with our token.
            return self._do_swap(cur, tok)

    def _periodic(self) -> None:
        now = _time.monotonic()
        if now < self._next_check:
            return
        iv = self.swap_interval
        self._next_check = now + min(max(iv / 8, 0.001), 1.0)
        if _time.time_ns() - self._p.header_word(H_LAST_SWAP) >= iv * 1e9:
            self.swap(reason="interval")

    def _repair(self) -> None:
        """Finish what dead processes left: a swap whose new half is already
        current (mark the old half full), a stalled swap, a dead drainer's
        claim stays for drain() to take over."""
        p = self._p
        if p.readonly:
            return
        with self._lock:
            for i in (0, 1):
                if not p.sound(i):
                    continue
                tok = p.token(i)
                if token_state(tok) == SWAPPING and not p.holder_alive(i, tok):
                    # Finish the dead swapper's swap: every step is repeatable
                    # (also its loss bookkeeping, which a plain "mark it full"
                    # skipped when it died after formatting the new half).
                    new = make_token(SWAPPING, token_attempt(tok) + 1)
                    if self._claim_half(i, tok, new):
                        self.takeovers += 1
                        self._do_swap(i, new)
            if p.current_index() is None:
                self._take_over_stalled()

    # ------------------------------------------------------------ the rest

    def flush(self) -> None:
        if self.sync != "never" and not self._closed:
            self._p.mm.flush()

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.swap(reason="close")
        except LogkitError:
            pass
        self.flush()
        self._closed = True
        self._p.close()

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._watch = {}

    def reader(self) -> PartitionReader:
        return PartitionReader(self._p)

    @property
    def partition(self) -> Partition:
        return self._p

    def stats(self) -> dict[str, int]:
        p = self._p
        out: dict[str, int] = {}
        written = reserved = 0
        for i in (0, 1):
            st = p.halves[i].stats()
            out[f"half{i}_reserved"] = int(st["reserved"])
            out[f"half{i}_written"] = int(st["written"])
            out[f"half{i}_abandoned"] = int(st["abandoned"])
            out[f"half{i}_phase"] = p.phase(i)
            out[f"half{i}_sequence_base"] = int(p.halves[i].sequence_base)
            written += int(st["written"])
            reserved += int(st["reserved"])
        cur = p.current_index()
        out.update({
            "written": written,
            "reserved": reserved,
            "lost": p.header_word(H_LOST),
            "loss_events": p.header_word(H_LOSS_EVENTS),
            "swaps": p.header_word(H_GENERATION),
            "drained": p.header_word(H_DRAINED),
            "drain_progress": p.header_word(H_PROGRESS),
            "current": -1 if cur is None else cur,
            "half_size": p.half_size,
            "takeovers": self.takeovers,
            "settle_timeouts": self.settle_timeouts,
            "count_mismatches": self.count_mismatches,
        })
        return out

    def describe(self) -> str:
        dest = (f"drains into family '{self.family}' in {self.directory}" if self.directory
                else "no drain directory set")
        sealed = f", sealed with {self.key_file}" if self.key_file else ""
        return f"partition {self.path} (two halves of {self.size} bytes; {dest}{sealed})"

    @classmethod
    def check_options(cls, log, options, writing=True):
        """What opening would refuse, named by option, found without opening
        (logkit.config runs it for `logkit config check` and the Handler
        alike): a path that is not a partition file or has no directory, a
        half too big, a bad family name, segment size or key file."""
        from logkit.registry import (REGULAR_FILE, directory_problem, family_name_problem,
                                     key_file_problem, path_problem, segment_size_problem)
        o = options
        path = os.fspath(o["path"])
        out = [("path", path_problem(path, REGULAR_FILE, writing))]
        if out[0][1] is None and os.path.exists(path):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
                try:
                    size, head = os.fstat(fd).st_size, os.pread(fd, len(MAGIC), 0)
                finally:
                    os.close(fd)
            except OSError as e:
                out.append(("path", f"{path} cannot be read: {e.strerror}"))
            else:
                if size < HEADER_SIZE:
                    out.append(("path", f"{path} is {size} bytes, shorter than the {HEADER_SIZE}-byte "
                                        "partition header: not a partition file"))
                elif head != MAGIC:
                    out.append(("path", f"{path} is not a partition file (it does not start with {MAGIC!r})"))
        try:
            round_half_size(o.get("size") or "1MiB")
        except InvalidArgument as e:
            out.append(("size", str(e)))
        out.append(("family", family_name_problem(o.get("family") or log)))
        if o.get("segment_size") is not None:
            out.append(("segment_size", segment_size_problem(o["segment_size"])))
        if o.get("key_file") is not None:
            out.append(("key_file", key_file_problem(o["key_file"])))
        if writing and o.get("directory") is not None:
            out.append(("directory", directory_problem(os.fspath(o["directory"]), create=True)))
        return [(key, problem) for key, problem in out if problem]
