# Reading a segment (included by _segment.pyx): the bodies of
# Segment.records, find, limits and scan, and the last-offset hint they
# start from.  Iteration itself is SegmentIterator (segment_message.pxi).


cdef object _segment_records(Segment self, whole_region):
    self._check_open()
    cdef lk_rec r
    cdef uint64_t bound = self.size if whole_region else lk_read_bound(self.base, self.size)
    cdef uint64_t pos = LK_HEADER_SIZE
    cdef uint64_t min_seq = _u64(self.base, LK_H_SEQUENCE_BASE)
    cdef uint64_t min_pos = LK_HEADER_SIZE
    out = []
    while True:
        self._check_open()
        lk_next_record(self.base, self.size, pos, bound, min_seq, min_pos, &r)
        if r.kind == LK_REC_END:
            break
        if r.kind == LK_REC_GAP and r.next >= bound and whole_region:
            break   # the never-used tail of the region
        out.append(Record(RECORD_KINDS[r.kind], r.offset, r.next - r.offset,
                          r.sequence if r.kind <= LK_REC_ABANDONED else None,
                          r.span if r.kind <= LK_REC_ABANDONED else None,
                          r.state if r.kind <= LK_REC_ABANDONED else None))
        if r.kind <= LK_REC_ABANDONED:
            min_seq = r.sequence + r.span
            min_pos = r.next
        pos = r.next
    return out


cdef uint64_t _segment_committed_hint(Segment self, uint64_t min_seq, uint64_t min_pos, uint64_t max_seq):
    """Offset of the committed message the header's last-offset hint names,
    if it is valid after (min_seq, min_pos) with sequence <= max_seq;
    else 0.  Lets find() and limits() skip most of a segment."""
    cdef uint64_t hint = lk_hint_load_relaxed(<uint64_t *>(self.base + LK_H_LAST_OFFSET))
    cdef uint32_t total, span, state
    cdef uint64_t seq
    if hint > min_pos and hint < self.size and hint % 8 == 0 and lk_valid_record(
            self.base, self.size, hint, min_seq, min_pos, &total, &seq, &span, &state) \
            and state == LK_STATE_COMMITTED and seq <= max_seq:
        return hint
    return 0


cdef object _segment_find(Segment self, sequence, time):
    self._check_open()
    if (sequence is None) == (time is None):
        raise InvalidArgument("find() takes exactly one of sequence= or time=")
    cdef uint64_t want_seq = 0
    cdef int64_t want_time = 0
    cdef bint by_seq = sequence is not None
    if by_seq:
        want_seq = max(0, min(sequence, (1 << 64) - 1))
    else:
        want_time = max(min(time, (1 << 63) - 1), -(1 << 63))
    cdef lk_rec r
    cdef uint64_t pos = LK_HEADER_SIZE
    cdef uint64_t min_seq = _u64(self.base, LK_H_SEQUENCE_BASE)
    cdef uint64_t min_pos = LK_HEADER_SIZE
    cdef uint64_t bound = lk_read_bound(self.base, self.size)
    cdef uint64_t hint
    if by_seq:
        # Start from the last-offset hint when it is not past the target.
        hint = _segment_committed_hint(self, min_seq, min_pos, want_seq)
        if hint:
            pos = min_pos = hint
            min_seq = _u64(self.base, hint + LK_M_SEQUENCE)
    while True:
        lk_next_record(self.base, self.size, pos, bound, min_seq, min_pos, &r)
        if r.kind == LK_REC_END:
            break
        if r.kind == LK_REC_COMMITTED:
            if (r.sequence >= want_seq) if by_seq else (<int64_t>_u64(self.base, r.offset + LK_M_TIME) >= want_time):
                return Message.make_at(self, r.offset)
        if r.kind <= LK_REC_ABANDONED:
            min_seq = r.sequence + r.span
            min_pos = r.next
        pos = r.next
    what = f"sequence >= {sequence}" if by_seq else f"time >= {time}"
    raise NoSuchMessage(f"{self.path or 'segment'}: no finished message with {what}")


cdef object _segment_limits(Segment self):
    self._check_open()
    cdef SegmentIterator it = SegmentIterator(self)
    cdef Message first = next(it, None)
    if first is None:
        return None
    cdef Message last = first
    cdef uint64_t hint = _segment_committed_hint(self, it.min_seq, it.min_pos, UINT64_MAX)
    if hint:
        last = Message.make_at(self, hint)
        it.pos = it.min_pos = hint + _u32(self.base, hint + LK_M_TOTAL)
        it.min_seq = _u64(self.base, hint + LK_M_SEQUENCE) + 1
    for m in it:
        last = m
    return Limits(first.sequence, first.time, last.sequence, last.time)


cdef object _segment_scan(Segment self):
    self._check_open()
    report = {"committed": 0, "reserved": [], "abandoned": 0, "gaps": [], "damaged": []}
    for rec in self.records():
        if rec.kind == "committed":
            report["committed"] += 1
        elif rec.kind == "reserved":
            report["reserved"].append((rec.offset, rec.sequence, _u32(self.base, rec.offset + LK_M_PID)))
        elif rec.kind == "abandoned":
            report["abandoned"] += rec.span
        elif rec.kind == "gap":
            report["gaps"].append((rec.offset, rec.offset + rec.length))
        else:
            report["damaged"].append((rec.offset, rec.offset + rec.length))
    return report

# ------------------------------------------------------------ salvage internals
