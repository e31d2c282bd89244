# Messages, iterators and reservations of the segment core (included by
# _segment.pyx, after Segment): SegmentIterator walks a segment, Message is
# a zero-copy view of one finished message (and its private, authenticated
# copy when sealed), Reservation is the two-step write, and the SIGBUS guard
# (lk_sigbus.h) that keeps a truncated file from killing a reader.


cdef class SegmentIterator:
    """Walks a segment's finished messages, counting what it passes over."""

    def __cinit__(self, Segment seg not None, bint strict=False):
        seg._check_open()
        self.seg = seg
        self.strict = strict
        self.pending = None
        self.pos = LK_HEADER_SIZE
        self.min_seq = _u64(seg.base, LK_H_SEQUENCE_BASE)
        self.min_pos = LK_HEADER_SIZE
        self.bound = lk_read_bound(seg.base, seg.size)
        self.open_reservations = []
        self.gaps = []
        self.damaged = []
        self.abandoned = 0

    def __iter__(self):
        return self

    def pending_writer(self):
        """(pid, reservation time ns) of the HOLDER of the pending reserved
        record (the process that will finish it, also for a copy), or None.
        To judge it, use seg.reservation_alive(it.pending.offset), which also
        checks the holder's start time (pid reuse, pid namespaces)."""
        if self.pending is None or self.pending.kind != "reserved":
            return None
        cdef uint64_t off = self.pending.offset
        return _u32(self.seg.base, off + LK_M_PID), <int64_t>_u64(self.seg.base, off + LK_M_TIME)

    def skip_pending(self):
        """Pass over the record a strict iterator stopped at (its writer is gone),
        counting it as open reservation or gap.  Returns True if it moved."""
        cdef lk_rec r
        cdef Segment seg = self.seg
        seg._check_open()
        self.pending = None
        lk_next_record(seg.base, seg.size, self.pos, self.bound, self.min_seq, self.min_pos, &r)
        if r.kind == LK_REC_RESERVED:
            self.open_reservations.append((r.offset, r.sequence))
            self.min_seq = r.sequence + r.span
            self.min_pos = r.next
        elif r.kind == LK_REC_GAP:
            self.gaps.append((r.offset, r.next))
        else:
            return False
        self.pos = r.next
        return True

    def __next__(self):
        cdef lk_rec r
        cdef Segment seg = self.seg
        if seg.base == NULL:
            raise SegmentClosed(f"segment {seg.path} was closed during iteration")
        self.pending = None
        while True:
            lk_next_record(seg.base, seg.size, self.pos, self.bound, self.min_seq, self.min_pos, &r)
            if r.kind == LK_REC_COMMITTED:
                self.pos = r.next
                self.min_seq = r.sequence + 1
                self.min_pos = r.next
                return Message.make_at(seg, r.offset)
            if r.kind == LK_REC_END:
                # Writers may have allocated more since we looked: look again.
                self.bound = lk_read_bound(seg.base, seg.size)
                if self.bound > self.pos:
                    lk_next_record(seg.base, seg.size, self.pos, self.bound, self.min_seq, self.min_pos, &r)
                    if r.kind != LK_REC_END:
                        continue
                _sigbus_check(seg)    # the end, or zeros where the file shrank (lk_sigbus.h)?
                raise StopIteration
            if self.strict and (r.kind == LK_REC_RESERVED or r.kind == LK_REC_GAP):
                # A follower must not pass a message that may still be finished:
                # stop here; the caller waits, or skip_pending() once it knows
                # the writer is gone.
                self.pending = Record(RECORD_KINDS[r.kind], r.offset, r.next - r.offset,
                                      r.sequence if r.kind == LK_REC_RESERVED else None,
                                      r.span if r.kind == LK_REC_RESERVED else None,
                                      r.state if r.kind == LK_REC_RESERVED else None)
                raise StopIteration
            if r.kind == LK_REC_RESERVED:
                self.open_reservations.append((r.offset, r.sequence))
            elif r.kind == LK_REC_ABANDONED:
                self.abandoned += r.span
            elif r.kind == LK_REC_GAP:
                self.gaps.append((r.offset, r.next))
            else:
                self.damaged.append((r.offset, r.next))
            if r.kind <= LK_REC_ABANDONED:
                self.min_seq = r.sequence + r.span
                self.min_pos = r.next
            self.pos = r.next


# ---------------------------------------------------------------- SIGBUS
# A Segment registers the buffer it is attached to with lk_sigbus.h while it
# is open (and the header page it maps for waiting, if any); a fault there
# (the file was truncated under the mapping) reads zeros instead of killing
# the process, and _sigbus_check raises SegmentDamaged naming the file.

cdef int _sigbus_watch(Segment seg, const void *start, uint64_t length) noexcept:
    lk_sigbus_install()          # again, if faulthandler or another took SIGBUS over since
    return lk_sigbus_watch(start, length, <uintptr_t><void *>seg)


cdef void _sigbus_unwatch(Segment seg) noexcept:
    lk_sigbus_unwatch(<uintptr_t><void *>seg)


cdef int _sigbus_check(Segment seg) except -1:
    """SegmentDamaged if a page of `seg`'s mapping was lost (its file shrank)
    since it was attached.  One atomic load when no fault ever happened."""
    cdef uintptr_t first, mstart
    cdef uint64_t n = lk_sigbus_hits(<uintptr_t><void *>seg, &first, &mstart)
    if n == 0:
        return 0
    where = seg.path or "segment"
    raise SegmentDamaged(
        f"{where}: the file shrank under its mapping (truncated by some process?): "
        f"{n} access(es) past its end read zeros, the first at byte {first - mstart} of the "
        "mapping; what lay there is lost, what is still in the file can be salvaged "
        "(logkit salvage)")


def check_mapping(Segment seg not None):
    """Raise SegmentDamaged (naming the file and the first byte lost) if the
    file under `seg` shrank while it was mapped: pages past the new end read
    as zeros in this process instead of killing it with SIGBUS (see
    pyx/include/lk_sigbus.h).  A reader calls it when its walk ends; a
    writer after a write it is about to acknowledge."""
    _sigbus_check(seg)


def sigbus_counts():
    """(faults absorbed in logkit mappings, SIGBUS passed on) in this process."""
    return (lk_sigbus_events, lk_sigbus_chained)


cdef struct _Shape:
    uint32_t tl         # text bytes
    uint16_t cl         # class-name bytes
    uint32_t dl         # data bytes
    bint sealed         # read from the opened private copy (or no key: nothing to read)


cdef const uint8_t *_shape(Message m, _Shape *sh) except? NULL:
    """The payload lengths of `m`, each read ONCE from the mapping into a
    local and checked there, and the base the caller reads the payload at.

    The walk validated the message, but any process that can write the file
    can rewrite its lengths afterwards; a length re-read from the mapping
    would then be used as a raw pointer length (an over-read).  So: one read
    of each field, a check that they agree with the total (also read once)
    and that the total lies inside the region, and only those locals used.
    A sealed message is read from its opened private copy, whose lengths
    were authenticated and bounded by lk_open_message (NULL: no key).
    SegmentDamaged, naming the file and offset, when they do not agree."""
    cdef const uint8_t *p = m._ptr()
    cdef Segment seg = m.segment
    cdef lk_lengths l
    cdef bint agree = lk_read_lengths(p, seg.size - m.offset, seg.sealed, &l)
    _sigbus_check(seg)
    if l.kid != 0 or seg.sealed:
        plain = m._opened()
        sh.sealed = True
        if plain is None:
            # No key: only the class name (authenticated, not encrypted) can
            # be read, in the mapping, with the lengths read above once and
            # checked here (the tag counts in a sealed message's total).
            if not agree:
                raise SegmentDamaged(
                    f"{seg.path or 'segment'}: message at offset {m.offset} changed after it was read "
                    f"(total {l.total}, text {l.tl}, class {l.cl}, data {l.dl} bytes no longer agree): "
                    "another process wrote into it")
            sh.tl, sh.cl, sh.dl = l.tl, l.cl, l.dl
            return NULL
        q = <const uint8_t *><char *>plain
        memcpy(&sh.tl, q + 40, 4)
        memcpy(&sh.dl, q + 44, 4)
        memcpy(&sh.cl, q + 48, 2)
        # lk_open_message checked these against the copy's length; say so again
        # here, where a reader can see it, before they become pointer lengths.
        if LK_MSG_HEADER + <uint64_t>sh.tl + sh.cl + sh.dl + LK_TAG_SIZE > <uint64_t>len(plain):
            raise SegmentDamaged(f"{seg.path or 'segment'}: sealed message at offset {m.offset}: "
                                 "its lengths do not fit the opened message")
        return q
    if not agree:
        raise SegmentDamaged(
            f"{seg.path or 'segment'}: message at offset {m.offset} changed after it was read "
            f"(total {l.total}, text {l.tl}, class {l.cl}, data {l.dl} bytes no longer agree, or pass "
            f"the end of the {seg.size}-byte region): another process wrote into it")
    sh.sealed = False
    sh.tl, sh.cl, sh.dl = l.tl, l.cl, l.dl
    return p


cdef class Message:
    """A finished message, read in place (zero-copy).  Fields are read from the
    mapping on access; text is decoded only when asked for."""

    @staticmethod
    cdef Message make_at(Segment seg, uint64_t offset):
        cdef Message m = Message.__new__(Message)
        m.segment = seg
        m.offset = offset
        return m

    def __cinit__(self):
        self.segment = None
        self._plain = None

    cdef const uint8_t *_ptr(self) except NULL:
        if self.segment is None:
            raise SegmentClosed("this Message is not attached to a segment")
        if self.segment.base == NULL:
            raise SegmentClosed(f"message at offset {self.offset}: its segment {self.segment.path} is closed")
        return self.segment.base + self.offset

    @property
    def sequence(self):
        return _u64(self._ptr(), 16)

    @property
    def time(self):
        """ns since the epoch, as given by the writer."""
        return <int64_t>_u64(self._ptr(), 24)

    @property
    def severity(self):
        """-250..250; SegmentDamaged if it changed to anything else since the
        walk validated the message (formatters index tables by it)."""
        cdef int16_t s
        memcpy(&s, self._ptr() + 12, 2)
        if s < LK_SEVERITY_MIN or s > LK_SEVERITY_MAX:
            raise SegmentDamaged(
                f"{self.segment.path or 'segment'}: message at offset {self.offset} changed after it "
                f"was read (severity {s} is outside {LK_SEVERITY_MIN}..{LK_SEVERITY_MAX}): another "
                "process wrote into it")
        return s

    @property
    def process_id(self):
        return _u32(self._ptr(), 32)

    @property
    def thread_id(self):
        return _u32(self._ptr(), 36)

    @property
    def key_id(self):
        return _u16(self._ptr(), 50)

    @property
    def sealed(self):
        """True if the message is sealed (encrypted and authenticated; key id != 0)."""
        return _u16(self._ptr(), 50) != 0

    cdef object _opened(self):
        """The plaintext of a sealed message: a private copy of the whole
        message, verified and decrypted (never in place in the mapping), or
        None when its segment has no key.  MessageTampered when it fails
        authentication, or when a sealed segment holds an unsealed message."""
        cdef const uint8_t *p = self._ptr()
        cdef Segment seg = self.segment
        cdef uint16_t kid = _u16(p, LK_M_KEY_ID)
        if self._plain is not None:
            return self._plain
        where = f"{seg.path or 'segment'}: message {_u64(p, LK_M_SEQUENCE)} at offset {self.offset}"
        if kid == 0:
            from logkit.errors import MessageTampered
            raise MessageTampered(f"{where} is not sealed, but its segment is: a plain message "
                                  "stands where a sealed one should")
        if not seg.has_key:
            return None
        # The length is read ONCE into a local, bounded by the region, and only
        # the local is used: another process can rewrite +8 at any moment.
        cdef uint64_t total = _u32(p, LK_M_TOTAL)
        cdef int rc
        if kid != seg.seal_key_id or total < LK_MSG_HEADER or total > seg.size - self.offset:
            rc = LK_SEAL_BAD_TAG
        else:
            buf = bytearray((<const char *>p)[:total])
            rc = lk_open_message(seg.seal_key, <uint8_t *><char *>buf, total)
        if rc != LK_SEAL_OK:
            from logkit.errors import MessageTampered
            raise MessageTampered(f"{where} failed authentication under key id {seg.seal_key_id} "
                                  "(a byte of its header, class name, text, data or tag was changed)")
        self._plain = buf
        return buf

    @property
    def size(self):
        """Bytes the message occupies in the segment, header and padding included."""
        return _u32(self._ptr(), 8)

    @property
    def text(self):
        """The text, decoded from UTF-8 (undecodable bytes become U+FFFD).
        Sealed: decrypted if the segment has its key, else "[encrypted]".
        SegmentDamaged if the message's lengths changed since it was read."""
        cdef _Shape sh
        cdef const uint8_t *p = _shape(self, &sh)
        if sh.sealed:
            return "[encrypted]" if p == NULL else PyUnicode_DecodeUTF8(
                <const char *>(p + LK_MSG_HEADER), sh.tl, "replace")
        return PyUnicode_DecodeUTF8(<const char *>(p + LK_MSG_HEADER), sh.tl, "replace")

    @property
    def text_bytes(self):
        """The text as a read-only memoryview into the segment (zero-copy);
        sealed: into the decrypted private copy (empty without the key)."""
        cdef _Shape sh
        cdef const uint8_t *p = _shape(self, &sh)
        if sh.sealed:
            if p == NULL:
                return memoryview(b"")
            return memoryview(self._plain)[LK_MSG_HEADER:LK_MSG_HEADER + sh.tl].toreadonly()
        cdef uint64_t a = self.segment._region_offset + self.offset + LK_MSG_HEADER
        return self.segment._memoryview()[a:a + sh.tl].toreadonly()

    @property
    def data_class(self):
        """The name of the formatter of the data (sealed: readable without the
        key, it is authenticated but not encrypted)."""
        cdef _Shape sh
        cdef const uint8_t *p = _shape(self, &sh)
        if sh.cl == 0:
            return ""
        if p == NULL:
            p = self._ptr()                  # sealed, no key: the mapping, lengths checked by _shape
        return PyUnicode_DecodeUTF8(<const char *>(p + LK_MSG_HEADER + sh.tl), sh.cl, "replace")

    @property
    def data(self):
        """The binary data as a read-only memoryview into the segment (zero-copy);
        sealed: into the decrypted private copy (empty without the key)."""
        cdef _Shape sh
        cdef const uint8_t *p = _shape(self, &sh)
        cdef uint64_t d = LK_MSG_HEADER + <uint64_t>sh.tl + sh.cl
        if sh.sealed:
            if p == NULL:
                return memoryview(b"")
            return memoryview(self._plain)[d:d + sh.dl].toreadonly()
        cdef uint64_t a = self.segment._region_offset + self.offset + d
        return self.segment._memoryview()[a:a + sh.dl].toreadonly()

    @property
    def record(self):
        """What the message carries besides its text (logger name, source
        location, fields, traceback) as a RecordInfo: record_info() of its
        data class and data.  Never raises on the data's bytes."""
        return record_info(self.data_class, self.data)

    @property
    def logger(self):
        """The name of the logger that wrote it ("" when none was stored)."""
        return self.record.logger

    @property
    def fields(self):
        """Its fields (extra=, logkit.bind/context, exc_type...): a dict whose
        values keep their JSON types ({} when none)."""
        return self.record.fields

    @property
    def traceback(self):
        """The traceback (or stack) text stored with it, else None."""
        return self.record.traceback

    def checksum_ok(self):
        """Verify the checksum again (the reader already did when it yielded this)."""
        # Every length read ONCE into a local and bounded by the total and the
        # region before it becomes the checksum's length (a co-writer may have
        # rewritten +40/+44 since the walk: re-reading them over-read past the
        # mapping).  Lengths that no longer agree: the checksum does not hold.
        cdef const uint8_t *p = self._ptr()
        cdef Segment seg = self.segment
        cdef lk_lengths l
        cdef uint32_t stored
        cdef bint agree = lk_read_lengths(p, seg.size - self.offset, 0, &l)
        memcpy(&stored, p + 60, 4)
        _sigbus_check(seg)
        if not agree:
            return False
        return stored == lk_message_checksum_n(p, <uint64_t>l.tl + l.dl + l.cl + (LK_TAG_SIZE if l.kid else 0))

    def to_dict(self):
        """A copy of every field, independent of the segment."""
        return {"sequence": self.sequence, "time": self.time, "severity": self.severity,
                "process_id": self.process_id, "thread_id": self.thread_id, "text": self.text,
                "data_class": self.data_class, "data": bytes(self.data)}

    def __repr__(self):
        if self.segment is None or self.segment.base == NULL:
            return f"<logkit.Message at {self.offset} (segment closed)>"
        return f"<logkit.Message seq={self.sequence} sev={self.severity} text={self.text!r}>"


cdef class Reservation:
    """Space claimed in a segment: fill .text and .data, then finish()."""

    def __cinit__(self):
        self.segment = None
        self._done = True     # a Reservation not made by Segment.reserve() is inert

    def __dealloc__(self):
        # A sealed reservation dropped unfinished may hold plaintext its owner
        # copied in: give it up now ([P1], [S1], wipe) rather than leave the
        # plaintext on disk until salvage (docs/security.md).  Unsealed ones
        # are left open, as before (salvage abandons them).
        if not self._done and self._sealed and self.segment is not None \
                and self.segment.base != NULL and not self.segment.readonly:
            lk_abandon_claim(self.segment.base, &self._claim)

    @property
    def text(self):
        """Writable memoryview of exactly text_len bytes (UTF-8 text goes here)."""
        if self._done or self.segment is None:
            raise InvalidArgument(f"reservation {self.sequence} is already finished")
        if self._text_view is None:
            a = self.segment._region_offset + self.offset + LK_MSG_HEADER
            self._text_view = self.segment._memoryview()[a:a + self._text_len]
        return self._text_view

    @property
    def data(self):
        """Writable memoryview of exactly data_len bytes."""
        if self._done or self.segment is None:
            raise InvalidArgument(f"reservation {self.sequence} is already finished")
        if self._data_view is None:
            a = self.segment._region_offset + self.offset + LK_MSG_HEADER + self._text_len + self._cls_len
            self._data_view = self.segment._memoryview()[a:a + self._data_len]
        return self._data_view

    cdef _release_views(self):
        for v in (self._text_view, self._data_view):
            if v is not None:
                try:
                    v.release()
                except BufferError:
                    pass
        self._text_view = None
        self._data_view = None

    def finish(self, severity=20, time=None):
        """Checksum and publish the message.  Raises MessageLost if salvage
        abandoned the reservation first."""
        if self.segment is None:
            raise InvalidArgument("this Reservation was not made by Segment.reserve()")
        if self._done:
            raise InvalidArgument(f"reservation {self.sequence} is already finished")
        cdef long sev = _severity(severity)
        self.segment._check_writable()
        cdef int64_t t = lk_now_ns() if time is None else time
        self._release_views()
        self._done = True
        cdef int rc
        cdef Segment seg = self.segment
        if not self._sealed:
            rc = lk_finish_claim(seg.base, seg.size, &self._claim, <int16_t>sev, t, NULL, NULL, NULL)
        else:
            if not seg.has_key:     # closed and reopened meanwhile: never seal without the key
                lk_abandon_claim(seg.base, &self._claim)    # and leave no plaintext behind
                seg._refuse_unkeyed()
            if memcmp(self._claim.uuid, seg.seal_uuid, 16) != 0:
                lk_abandon_claim(seg.base, &self._claim)
                raise MessageLost(f"{seg.path or 'segment'}: the segment key changed while reservation "
                                  f"{self.sequence} was open; it is lost")
            # lk_finish_claim re-proves the claim ([P1]): a region formatted
            # again meanwhile (a partition half reused) gives LK_LOST.
            rc = lk_finish_claim(seg.base, seg.size, &self._claim, <int16_t>sev, t, seg.seal_key, NULL, NULL)
        if rc != LK_OK:
            self.segment.raise_status(rc, 0)
        _sigbus_check(seg)        # finished in a page the file lost: not acknowledged (lk_sigbus.h)
        return self.sequence

    def abandon(self):
        """Give the reservation up: readers pass over it and count it abandoned."""
        if self._done or self.segment is None:
            return
        self._release_views()
        self._done = True
        self.segment._check_writable()
        lk_abandon_claim(self.segment.base, &self._claim)   # [P1], then [S1]; a sealed payload is wiped

    @property
    def finished(self):
        return self._done

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abandon()
        elif not self._done:
            self.finish()
