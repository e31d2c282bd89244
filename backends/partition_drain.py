"""The drain of a partition (backends/partition.py): copying a full half
into a destination family, message by message, its progress and mark words
kept so that a drain killed anywhere resumes without a duplicate or a loss.
`PartitionDrain` is a base class of PartitionStorage (its drain() methods).
"""
from __future__ import annotations

import os

from logkit._segment import SegmentIterator, token_attempt, token_pid, token_state
from logkit.errors import InvalidArgument
from logkit import inject
from logkit.backends.destination import destination_next, find_copy, flush_destination
from logkit.backends.partition_file import (COPYING, DRAINING, EMPTY, FULL, H_DRAINED, H_MARK,
                                            H_PROGRESS, abandoned_here,
                                            hold_token, make_token,
                                            release_token)
from logkit.backends.partition_reader import PartitionMessage



class PartitionDrain:
    """PartitionStorage's drain: the methods that copy a full half out.  It
    uses the storage's partition (`_p`), its drain lock, `_repair`, `swap`,
    `_claim_half` and `_settle` (backends/partition.py)."""

    def drain(self, into=None, everything: bool = False) -> int:
        """Copy every finished message of the full (non-current) half into
        `into` (a StorageBackend or FamilyWriter: anything with
        .append(message)), in sequence order, then empty that half.  With
        everything=True also swap (if the other half is then empty) and copy
        the current half.  Progress is recorded in the partition header after
        each message, so a drain killed anywhere resumes without copying a
        message twice or losing one.  into=None: open_drain_target().
        Returns the number of messages copied."""
        own = into is None
        if own:
            into = self.open_drain_target()
        try:
            with self._drain_lock:
                self._repair()
                n = self._drain_full(into)
                if everything and self.swap(reason="drain"):
                    n += self._drain_full(into)
                return n
        finally:
            if own:
                into.close()

    def _drain_full(self, into) -> int:
        p = self._p
        n = 0
        order = sorted((0, 1), key=lambda i: p.halves[i].sequence_base)
        for i in order:
            if not p.sound(i):
                continue
            h = p.halves[i]
            tok = h.token()
            ph = token_state(tok)
            if ph == FULL or (ph in (DRAINING, COPYING) and (abandoned_here(tok) or (
                    token_pid(tok) != os.getpid() and not p.holder_alive(i, tok)))):
                new = make_token(DRAINING, token_attempt(tok) + 1)
                if self._claim_half(i, tok, new):
                    try:
                        n += self._copy_half(i, new, into, in_flight=ph == COPYING)
                    finally:
                        release_token(new)
        return n

    def _copy_half(self, i: int, tok: int, into, in_flight: bool = False) -> int:
        """Copy half i (ours: DRAINING `tok`) out.  Each message is copied
        privately while the half is provably ours (the CAS from DRAINING to
        COPYING after the copy proves no swapper took it during the copy:
        a reuser must CAS the token before it formats), appended from that
        copy, and recorded with the sequence it was copied under, never
        one re-read from the mapping.  in_flight: we resume a drainer that
        died in COPYING, so the first message above progress may already be
        in the destination (_reconcile)."""
        p = self._p
        h = p.halves[i]
        p.require_key(i)
        self._settle(h)
        progress = p.header_word(H_PROGRESS)
        copying = make_token(COPYING, token_attempt(tok), token_pid(tok))
        count = 0
        mark = None
        for m in SegmentIterator(h):
            s = m.sequence
            if s <= progress:
                continue
            pm = PartitionMessage.copy_of(m, s)
            inject.point("partition.drain.copied")         # a private copy, not yet proved
            if in_flight:
                in_flight = False
                if self._reconcile(into, pm):
                    progress = s
                    continue
            if mark is None:
                mark = destination_next(into)
                p.set_header_word(H_MARK, mark)
            hold_token(copying)
            if not h.claim_token(tok, copying):
                release_token(copying)
                break                # a swapper took the half (overflow): the copy may be torn; s is its loss
            try:
                fseq = into.append(pm)
            except BaseException:
                release_token(copying)     # left COPYING: the next drain resumes it (_reconcile)
                raise
            inject.point("partition.drain.appended")       # in the destination, not yet recorded
            if h.token() != copying or p.header_word(H_PROGRESS) != progress:
                # Taken from COPYING while we appended: the swapper counted
                # s as copied and recorded it; only the count is ours.  (And
                # never store a progress over one that moved meanwhile: it
                # would go backwards.  Header words have no CAS, so a stall
                # between this check and the store below is the one window
                # left: docs/partition-format.md, "Draining".)
                release_token(copying)
                p.set_header_word(H_DRAINED, p.header_word(H_DRAINED) + 1)
                count += 1
                break
            # Progress first, then the mark: a kill between them leaves an older
            # mark, which only makes the next reconcile search further back.
            p.set_header_word(H_PROGRESS, s)
            mark = fseq + 1 if isinstance(fseq, int) and fseq > 0 else mark + 1 if mark else 0
            p.set_header_word(H_MARK, mark)
            p.set_header_word(H_DRAINED, p.header_word(H_DRAINED) + 1)
            progress = s
            count += 1
            back = h.claim_token(copying, tok)
            release_token(copying)
            if not back:
                break                # taken after we recorded s: nothing in flight
        else:
            flush_destination(into)
            h.claim_token(tok, make_token(EMPTY, token_attempt(tok)))
            return count
        flush_destination(into)
        return count

    def _reconcile(self, into, first: "PartitionMessage") -> bool:
        """Resuming a drainer killed in COPYING with `first` in flight: if
        the destination holds its copy at or after the mark (the position
        right after the previous copy), record it as copied and return True.
        Consulted only for that one message (identity: it was in flight, at
        that position), never for a message that was not: content alone
        never makes a message count as copied."""
        p = self._p
        fm = find_copy(into, p.header_word(H_MARK), first)
        if fm is None:
            return False
        p.set_header_word(H_PROGRESS, first.sequence)
        p.set_header_word(H_MARK, fm.sequence + 1)
        p.set_header_word(H_DRAINED, p.header_word(H_DRAINED) + 1)
        return True

    def open_drain_target(self):
        """The destination family storage (backends/family.py) built from the
        options directory, family, segment_size, mode and sync; the directory
        is created if missing.  Raises InvalidArgument when `directory` is unset."""
        if self.directory is None:
            raise InvalidArgument(f"partition {self.path}: the `directory` option is not set, "
                                  "so there is nowhere to drain into")
        from logkit.backends.family import FamilyStorage
        return FamilyStorage(self.log, directory=self.directory, family=self.family,
                             segment_size=self.segment_size, create_directory=True, mode=self.mode,
                             sync=self.sync, key_file=self.key_file)
