"""Salvage: recover whatever is valid in a segment after a crash or damage.

Sits beside the segment core: it walks every record by sentinel (never
trusting the header's offsets), abandons reservations whose writer is gone,
accounts for claims that left no stub, and rebuilds the header limits.  It
never rewrites a finished message and never renumbers one.
"""
from __future__ import annotations

import os
import time as _time
from dataclasses import dataclass, field

from logkit import idledger, inject
from logkit._segment import HEADER_SIZE, Segment, SegmentRepair, identity_gone, process_start
from logkit.errors import LogkitError, SegmentDamaged

__all__ = ["salvage", "rebuild_identity", "SalvageReport", "process_alive", "process_identity", "identity_alive",
           "settle_counts"]


@dataclass
class SalvageReport:
    """What salvage found and did.  Byte ranges are (start, end) offsets."""

    path: str | None
    kept: int = 0                                   # finished messages, checksums good
    abandoned: int = 0                              # reservations abandoned by this salvage
    abandoned_before: int = 0                       # sequence numbers already abandoned
    open: list[tuple[int, int, int]] = field(default_factory=list)  # (offset, sequence, pid) still being written
    gaps: list[tuple[int, int, int | None]] = field(default_factory=list)  # (start, end, missing sequences)
    filled: list[tuple[int, int, int]] = field(default_factory=list)  # (start, end, sequences) accounted by fillers
    damaged: list[tuple[int, int]] = field(default_factory=list)
    header_rebuilt: bool = False
    word_repaired: bool = False
    taken_out_of_service: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when nothing is left for a salvager to do or report."""
        return not (self.open or self.damaged or self.header_rebuilt or self.word_repaired
                    or any(g for g in self.gaps if (g[0], g[1]) not in {(f[0], f[1]) for f in self.filled}))

    def __str__(self) -> str:
        lines = [f"salvage of {self.path or 'segment'}:",
                 f"  kept {self.kept} finished messages",
                 f"  abandoned {self.abandoned} reservations of dead or stalled writers"
                 f" ({self.abandoned_before} already abandoned)"]
        for off, seq, pid in self.open:
            lines.append(f"  open reservation at offset {off}: sequence {seq}, writer pid {pid} still alive")
        for a, b, n in self.gaps:
            lines.append(f"  gap {a}..{b} ({b - a} bytes): claims with no stub"
                         + (f", {n} sequence number(s)" if n is not None else ""))
        for a, b, n in self.filled:
            lines.append(f"  accounted for gap {a}..{b} with a filler record covering {n} sequence number(s)")
        for a, b in self.damaged:
            lines.append(f"  damaged bytes {a}..{b} ({b - a} bytes)")
        if self.header_rebuilt:
            lines.append("  header identity was damaged and has been rebuilt")
        if self.word_repaired:
            lines.append("  reservation word was behind the records found and has been raised")
        if self.taken_out_of_service:
            lines.append("  segment taken out of service (damaged segments are rotated, not written on)")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


def process_alive(pid: int) -> bool:
    """True if a process with this pid exists and is not a zombie."""
    if pid <= 0 or pid > 4194304:     # beyond Linux's largest pid_max: a damaged field
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] not in (b"Z", b"X")
    except (OSError, ValueError):
        return True


def process_identity(pid: int | None = None) -> tuple[int, int]:
    """(pid, start) of a process (default: this one): its pid and its start
    time as logkit records it (low 32 bits of /proc/PID/stat field 22, 0
    mapped to 1; 0 when it cannot be read).  Store both wherever a token or
    slot names its holder, and judge it with identity_alive(): a pid alone is
    fooled by pid reuse and by pid namespaces (docs/security.md, "Sharing a
    log across containers")."""
    if pid is None:
        pid = os.getpid()
    return pid, process_start(pid)


def identity_alive(pid: int, start: int) -> bool:
    """True unless the process recorded as (pid, start) certainly runs no
    more: no process has that pid, or it is a zombie, or the process that has
    it started at another time (the pid was reused, or it belongs to another
    pid namespace).  start 0 (not recorded) judges by the pid alone."""
    if pid <= 0 or pid > 4194304:     # beyond Linux's largest pid_max: a damaged field
        return False
    return not identity_gone(pid, start & 0xFFFFFFFF)


def settle_counts(seg: Segment) -> bool:
    """True when every reservation made in `seg` so far is committed or
    abandoned, judged by walking the segment (Segment.unfinished_claims),
    not by the counters: a writer killed between its commit and the written
    counter leaves reserved > written + abandoned for ever, and a settle that
    waits for the counters to balance then waits out its whole timeout.
    When the segment is out of service and settled, the written counter is
    corrected to the committed messages found, so the counters balance
    again.  Partition settling and rotation use this."""
    if seg.unfinished_claims():
        return False
    if not seg.in_service and not seg.readonly:
        st = seg.stats()
        if st["reserved"] != st["written"] + st["abandoned"]:
            kept = sum(1 for r in seg.records() if r.kind == "committed")
            SegmentRepair(seg).set_written_count(kept)
    return True


def salvage(target, grace: float = 60.0, settle: float = 1.0) -> SalvageReport:
    """Salvage a segment file (path) or an open writable Segment.

    grace: seconds after which a reservation is abandoned even if its writer
    still lives (a writer stopped in a debugger, or stuck).  settle: seconds
    a segment must have been out of service before salvage writes filler
    records over claims that never got a stub.  Returns a
    SalvageReport; raises SegmentNotFound, or SegmentDamaged only when the
    region is too small to be a segment at all.
    """
    if isinstance(target, Segment):
        seg, own, path = target, False, target.path
    else:
        path = os.fspath(target)
        seg, own = Segment.open(path, check_header=False), True
    try:
        return _salvage(seg, path, grace, settle)
    finally:
        if own:
            seg.close()


def _header_problem_settled(seg: Segment):
    """The header's problem, looked at again after a short pause if there is
    one: a concurrent set_previous() (migrate) or format rewrites the identity
    block and its CRC in two steps, so one look can catch it half-written
    (Segment.open retries the same way)."""
    problem = seg.header_problem()
    for delay in (0.001, 0.01, 0.05):
        if problem is None:
            break
        _time.sleep(delay)
        problem = seg.header_problem()
    return problem


def rebuild_identity(seg: Segment) -> tuple[bool, int, bool]:
    """Rebuild the damaged header identity of a writable `seg` from its
    messages: take it out of service, then set the sequence base to the
    smallest one consistent with the first checksum-valid message found (1
    if none) and the format version to what its messages say (sealed or
    not).  Returns (whether this call took it out of service, the base,
    whether the identity came from the family's ledger: a sealed segment
    whose header page was lost gets its UUID, key id and key check back from
    ``FAMILY.ids``, logkit.idledger).  salvage() does this; the read-only tools (display, verify) do it in a
    private copy-on-write mapping, so they walk a headerless segment with
    the sequence numbers its messages carry."""
    # Out of service FIRST: a writer reserving while the sequence base is
    # rebuilt would get a number already used under the same UUID (nonce
    # reuse in a sealed segment, a duplicate otherwise).  The CAS [O1]
    # orders every earlier claim before the rebuild; none can follow it.
    fix = SegmentRepair(seg)
    taken = bool(fix.raise_word(HEADER_SIZE, 0, True))
    inject.point("salvage.header.rebuilding")
    base = fix.probe_sequence_base() or 1
    sealed = fix.probe_sealed()
    ident = None
    first = fix.probe_first_sequence() if sealed and seg.path else None
    if first is not None:
        # A sealed family records each segment's identity in its ledger: the
        # one place the UUID (the segment key's input) survives a lost header page.
        try:
            found = idledger.identity_for(seg.path, first)
        except LogkitError:
            found = None                  # a ledger we may not read (a planted link): as if none
        if found is not None:
            _, fam = idledger.family_of(seg.path)
            ident = (found.uuid, found.key_id, found.key_check, found.sequence_base, found.created,
                     fam.encode("utf-8", "surrogateescape"))
    from_ledger = bool(fix.rebuild_identity(base, sealed, ident))
    if from_ledger:
        base = ident[3]
    return taken, base, from_ledger


def _salvage(seg: Segment, path, grace: float, settle: float) -> SalvageReport:
    rep = SalvageReport(path=path)
    fix = SegmentRepair(seg)
    problem = _header_problem_settled(seg)
    if problem is not None:
        taken, base, from_ledger = rebuild_identity(seg)
        rep.taken_out_of_service = taken
        rep.header_rebuilt = True
        if from_ledger:
            rep.notes.append(f"header: {problem}; UUID, key id, key check and sequence base {base} "
                             f"restored from the family's identity ledger")
        else:
            rep.notes.append(f"header: {problem}; sequence base set to {base} from the messages found")
        if seg.sealed and seg.uuid.int == 0:
            rep.notes.append("header: the UUID of this sealed segment was lost with its header page and no "
                             "identity ledger (FAMILY.ids beside it) records it: its messages are kept but "
                             "cannot be opened with any key (the segment key derives from the UUID)")
        if seg.sealed:
            # docs/security.md: a sealed segment whose identity was rebuilt is
            # never put back in service for sealed writes (it is rotated).
            rep.notes.append("header: the segment is sealed (format version 2) and stays so; "
                             "it must not be written again (rotate it)")
    if seg.header_problem() is not None:   # pragma: no cover - rebuild always succeeds
        raise SegmentDamaged(f"{path}: header could not be rebuilt")

    base = seg.sequence_base
    records = seg.records(whole_region=True)
    hdr = seg.header()
    word_next = hdr["next_offset"] if HEADER_SIZE <= hdr["next_offset"] <= seg.size else HEADER_SIZE
    word_seq_next = base + hdr["reserved_count"]

    first = last = None
    expected = base            # next sequence number the walk expects
    seq_end = base             # one past the highest sequence accounted for
    end = HEADER_SIZE          # end of the last record found
    pending = []               # gaps waiting for the next record's sequence
    gap_first = {}             # gap start -> first sequence number it accounts for
    for rec in records:
        if rec.kind == "damaged":
            rep.damaged.append((rec.offset, rec.offset + rec.length))
            rep.gaps.extend((a, b, None) for a, b in pending)   # count unknown across damage
            pending = []
            continue
        if rec.kind == "gap":
            pending.append((rec.offset, rec.offset + rec.length))
            continue
        if pending:
            # Only a single gap between two records has a provable count.
            n = rec.sequence - expected if len(pending) == 1 else None
            rep.gaps.extend((a, b, n) for a, b in pending)
            gap_first[pending[0][0]] = expected
            pending = []
        if rec.kind == "committed":
            rep.kept += 1
            if first is None:
                first = rec
            last = rec
        elif rec.kind == "reserved":
            # Judged by the HOLDER of the reservation (a copy's stub names the
            # copier, not the original writer), pid and start time together.
            holder = seg.reservation_holder(rec.offset)
            pid = holder[0] if holder else 0
            if holder is not None and not seg.reservation_alive(rec.offset, grace):
                if fix.abandon(rec.offset):
                    rep.abandoned += 1
                else:   # its writer finished it meanwhile
                    rep.kept += 1
            elif holder is None:    # finished (or abandoned) since the walk saw it
                rep.kept += 1 if fix.word_at(rec.offset) >> 32 == 2 else 0
            else:
                rep.open.append((rec.offset, rec.sequence, pid))
        else:
            rep.abandoned_before += rec.span
        expected = rec.sequence + rec.span
        seq_end = max(seq_end, expected)
        end = rec.offset + rec.length
    rep.gaps.extend((a, b, None) for a, b in pending)
    walk_end = max([end] + [b for _, b in rep.damaged] + [b for _, b, _ in rep.gaps])
    # Claims after the last item, up to the word's NEXT, whose writers never
    # published a stub.  Their count is provable only if no damage follows the
    # last record.
    if word_next > walk_end:
        n = word_seq_next - expected if walk_end == end else 0
        rep.gaps.append((walk_end, word_next, n if n > 0 else None))
        gap_first[walk_end] = expected

    # The reservation word must cover every record found.
    if end > word_next or seq_end > word_seq_next:
        if fix.raise_word(end, seq_end - base, True):
            rep.word_repaired = True
            rep.taken_out_of_service = True
    if rep.damaged and seg.in_service:
        seg.take_out_of_service()
        rep.taken_out_of_service = True

    # Claims with no stub are accounted for by filler records, but only once
    # no writer can still be about to store one: out of service for `settle`
    # seconds.  A filler goes only over a range whose first word is zero (no
    # state was ever published there) and whose other bytes are zero or a
    # partly stored stub (Segment._fillable), so it never covers a message.
    oos = seg.out_of_service_time
    settled = not seg.in_service and (_time.time_ns() - oos >= settle * 1e9 if oos is not None
                                      else settle <= 0)
    if settled:
        for a, b, n in rep.gaps:
            if n and a in gap_first and b - a >= 64 * n and fix.fillable(a, b):
                fix.write_filler(a, b - a, gap_first[a], n)
                rep.filled.append((a, b, n))
    elif rep.gaps:
        rep.notes.append("gaps left as they are: the segment is in service (or only just out of it), "
                         "so a writer may still be storing its stub; salvage accounts for them once "
                         f"it has been out of service for {settle:g} s")

    abandoned_total = rep.abandoned_before + rep.abandoned + sum(n for _, _, n in rep.filled)
    fix.set_abandoned_count(abandoned_total)
    # The written counter: a writer killed between its commit [W2] and the
    # counter [W5] left it one short for ever.  Recount it from the walk once
    # nobody can add to it (out of service, no open reservation, no gap).
    if settled and not rep.open and not seg.unfinished_claims():
        fix.set_written_count(rep.kept)
    if first is not None:
        seg.store_hints(first.sequence, fix.message_pid(first.offset)[1],
                        last.sequence, fix.message_pid(last.offset)[1], last.offset)
    fix.note_salvage()
    return rep
