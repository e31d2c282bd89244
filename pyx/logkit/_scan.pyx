# cython: binding=True, embedsignature=True
"""The scan and print loop of `logkit print` and `logkit monitor`, in C.

A Scan holds one selection (logkit.select.Selection: steps 1-7 of the
print_sys_log order) and walks segments record by record with the core's
own walker (lk_next_record: every committed record passes its checksum
before it is looked at).  Per record it applies, with no Python object:

  1 --to, 2 --from, 3 --for DURATION, 4 --last TIME   (positional, by
     sequence or time, exactly as Selection.apply: state carries across
     segments, so a family is one walk)
  5 --severity                                         (a 501-byte mask)
  6 --exclude, 7 --match                               (the plain strings,
     memmem over the text bytes)

What it cannot decide in C it leaves to Python, marked "undecided": a
regular expression, a sealed message (its text is ciphertext in the
mapping), the data tests (8, 9).  The caller then builds a Message for that
record only.

Output (emit_*): for a record decided in C whose text is printable ASCII,
the text line of logkit.formatters.format_message is produced here, byte
for byte the same (the tests compare the two); any other record calls back
into format_message.  Nothing here writes to a file: the caller takes the
bytes (take()) and writes them.

The segment must stay open while a Scan walks it (the caller holds it).
"""
from libc.stdint cimport int16_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE

from logkit._segment cimport (
    Segment, Message, lk_rec, lk_next_record, lk_read_bound, lk_lengths, lk_read_lengths,
    LK_HEADER_SIZE, LK_MSG_HEADER, LK_H_SEQUENCE_BASE,
    LK_REC_COMMITTED, LK_REC_END, LK_REC_RESERVED, LK_REC_ABANDONED, LK_REC_GAP,
    lk_record_view, lk_record_parse,
)

from logkit._segment import check_mapping as _check_mapping

cdef extern from "<sys/mman.h>":
    int madvise(void *addr, size_t length, int advice) nogil

# MADV_POPULATE_READ (Linux >= 5.14; older kernels answer EINVAL and the walk
# faults pages in one by one, as before): one call maps every page of the
# part to walk, several times faster than a page fault per 4 KiB.
DEF MADV_POPULATE_READ = 22
DEF POPULATE_MIN = 1 << 20

cdef extern from "<string.h>":
    void *memmem(const void *haystack, size_t hl, const void *needle, size_t nl) nogil
    void *memchr(const void *s, int c, size_t n) nogil


cdef inline bint _contains(const uint8_t *h, size_t hl, const char *n, size_t nl) noexcept nogil:
    """Does h[0:hl] contain n[0:nl]?  A log text is short (tens of bytes):
    memchr for the needle's first byte, then compare, costs a few ns where
    memmem's set-up costs tens; long texts use memmem."""
    if nl == 0:
        return True
    if nl > hl:
        return False
    if hl > 256:
        return memmem(h, hl, n, nl) != NULL
    cdef const uint8_t *p = h
    cdef const uint8_t *end = h + hl - nl + 1     # last place a match can start, plus one
    cdef uint8_t first = <uint8_t>n[0]
    while p < end:
        p = <const uint8_t *>memchr(p, first, <size_t>(end - p))
        if p == NULL:
            return False
        if memcmp(p + 1, n + 1, nl - 1) == 0:
            return True
        p += 1
    return False

# Results of the per-record test.
cdef enum:
    R_SKIP = 0        # not selected
    R_TAKE = 1        # selected, decided in C
    R_UNDECIDED = 2   # passed steps 1-5 (and the plain parts of 6-7); Python decides the rest
    R_STOP = 3        # steps 1 or 3 or 4 (reverse) end the walk
    R_CHANGED = 4     # its fields no longer agree with what the walk validated: passed over

DEF MAX_NEEDLES = 64


cdef inline uint64_t _u64(const uint8_t *p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return v


cdef class Scan:
    """One selection's C state.  Scan(selection) with a logkit.select.Selection
    (reverse is not handled here: the caller uses the Python pipeline)."""

    # steps 1-4
    cdef bint has_to, to_seq, has_from, from_seq, started
    cdef uint64_t to_v_seq, from_v_seq
    cdef int64_t to_v_time, from_v_time
    cdef bint has_for_ns, for_limit_set
    cdef int64_t for_ns, for_limit
    cdef bint has_last_time, last_started
    cdef int64_t last_time
    # step 5
    cdef bint has_sev
    cdef uint8_t sev_mask[501]
    # steps 6-7 (plain strings only; regexes leave the record undecided)
    cdef list _keep                      # the bytes objects the pointers below point into
    cdef int n_ex, n_match
    cdef const char *ex_p[MAX_NEEDLES]
    cdef size_t ex_n[MAX_NEEDLES]
    cdef const char *m_p[MAX_NEEDLES]
    cdef size_t m_n[MAX_NEEDLES]
    cdef bint has_match, match_regex, exclude_regex, python_tests
    # the walk's results
    cdef uint64_t *offs
    cdef uint8_t *kinds
    cdef size_t n, cap
    cdef public bint done                # the walk can end: later records cannot be selected
    cdef public uint64_t damaged_bytes, damaged_ranges, open_reservations, abandoned, examined
    cdef public list problems            # (offset, next, kind) of ranges passed over in the last walk
    cdef public uint64_t last_seq        # highest sequence examined: a record at or below it is a
                                         # copy a later segment repeats (as FamilyReader skips it)

    def __cinit__(self):
        self.offs = NULL
        self.kinds = NULL
        self.n = 0
        self.cap = 0

    def __dealloc__(self):
        free(self.offs)
        free(self.kinds)

    def __init__(self, selection):
        s = selection
        if s.reverse:
            raise ValueError("Scan walks forward; a reverse selection uses the Python pipeline")
        self._keep = []
        self.problems = []
        self.has_to = s.to is not None
        if self.has_to:
            self.to_seq = s.to.kind == "sequence"
            if self.to_seq:
                self.to_v_seq = s.to.value
            else:
                self.to_v_time = s.to.value
        self.has_from = s.from_ is not None
        self.started = not self.has_from
        if self.has_from:
            self.from_seq = s.from_.kind == "sequence"
            if self.from_seq:
                self.from_v_seq = s.from_.value
            else:
                self.from_v_time = s.from_.value
        self.has_for_ns = s.for_ is not None and s.for_.kind == "duration"
        if self.has_for_ns:
            self.for_ns = s.for_.value
        self.for_limit_set = False
        lt = s.last_time()
        self.has_last_time = lt is not None
        self.last_started = not self.has_last_time
        if self.has_last_time:
            self.last_time = lt
        self.has_sev = s.severities is not None
        if self.has_sev:
            mask = s.severities.mask()
            memcpy(self.sev_mask, <const char *>mask, 501)
        self.n_ex = self._needles(s.exclude, True)
        self.has_match = s.match is not None
        self.n_match = self._needles(s.match, False)
        self.match_regex = s.match is not None and len(s.match.regexes) > 0
        self.exclude_regex = s.exclude is not None and len(s.exclude.regexes) > 0
        self.python_tests = self.match_regex or self.exclude_regex or s.needs_data
        self.done = False
        self.damaged_bytes = self.damaged_ranges = self.open_reservations = 0
        self.abandoned = self.examined = 0
        self.last_seq = 0

    cdef int _needles(self, pats, bint exclude) except -1:
        if pats is None:
            return 0
        plain = list(pats.plain)
        if len(plain) > MAX_NEEDLES:
            raise ValueError(f"at most {MAX_NEEDLES} plain strings per option")
        cdef int i = 0
        for b in plain:
            b = bytes(b)
            self._keep.append(b)
            if exclude:
                self.ex_p[i] = PyBytes_AS_STRING(b)
                self.ex_n[i] = PyBytes_GET_SIZE(b)
            else:
                self.m_p[i] = PyBytes_AS_STRING(b)
                self.m_n[i] = PyBytes_GET_SIZE(b)
            i += 1
        return i

    @property
    def needs_python(self):
        """True if some records will be left undecided (regexes, data tests)."""
        return self.python_tests

    cdef inline int _test(self, const uint8_t *m, uint64_t seq, uint64_t total) noexcept nogil:
        """Steps 1-7 for the committed record at m (sequence seq, `total`
        bytes long as the walk validated it).  Another process can rewrite
        the record at any moment, so each field is read ONCE into a local,
        checked, and only the local used (severity indexes a table, the text
        length bounds a search): a field out of range gives R_CHANGED."""
        cdef int64_t t
        cdef int16_t sev
        cdef uint32_t tl
        memcpy(&t, m + 24, 8)
        memcpy(&sev, m + 12, 2)
        memcpy(&tl, m + 40, 4)
        if sev < -250 or sev > 250 or LK_MSG_HEADER + <uint64_t>tl > total:
            return R_CHANGED
        if self.has_to:                                                        # 1
            if (seq > self.to_v_seq) if self.to_seq else (t > self.to_v_time):
                self.done = True
                return R_STOP
        if not self.started:                                                   # 2
            if (seq < self.from_v_seq) if self.from_seq else (t < self.from_v_time):
                return R_SKIP
            self.started = True
        if self.has_for_ns:                                                    # 3
            if not self.for_limit_set:
                self.for_limit = (self.from_v_time if (self.has_from and not self.from_seq) else t) + self.for_ns
                self.for_limit_set = True
            if t > self.for_limit:
                self.done = True
                return R_STOP
        if not self.last_started:                                              # 4
            if t < self.last_time:
                return R_SKIP
            self.last_started = True
        if self.has_sev and not self.sev_mask[<int>sev + 250]:                 # 5
            return R_SKIP
        cdef uint16_t kid
        memcpy(&kid, m + 50, 2)
        if kid != 0:
            return R_UNDECIDED          # sealed: the text in the mapping is ciphertext
        cdef const uint8_t *text = m + LK_MSG_HEADER
        cdef int i
        for i in range(self.n_ex):                                             # 6 (plain)
            if _contains(text, tl, self.ex_p[i], self.ex_n[i]):
                return R_SKIP
        cdef bint matched
        if self.has_match:                                                     # 7 (plain)
            matched = False
            for i in range(self.n_match):
                if _contains(text, tl, self.m_p[i], self.m_n[i]):
                    matched = True
                    break
            if not matched and not self.match_regex:
                return R_SKIP
            if not matched:
                return R_UNDECIDED      # a regex may still match
        if self.python_tests:
            return R_UNDECIDED          # exclude regexes, data tests
        return R_TAKE

    cdef int _push(self, uint64_t off, uint8_t kind) except -1:
        cdef size_t nc
        if self.n == self.cap:
            nc = self.cap * 2 if self.cap else 4096
            p = <uint64_t *>realloc(self.offs, nc * sizeof(uint64_t))
            if p == NULL:
                raise MemoryError()
            self.offs = p
            k = <uint8_t *>realloc(self.kinds, nc)
            if k == NULL:
                raise MemoryError()
            self.kinds = k
            self.cap = nc
        self.offs[self.n] = off
        self.kinds[self.n] = kind
        self.n += 1
        return 0

    cdef public uint64_t next_min_seq    # after walk(): what a walk continuing at its result expects

    def walk(self, Segment seg not None, uint64_t start=0, uint64_t min_seq=0, uint64_t limit=0,
             bint strict=False):
        """Walk `seg` from byte `start` (0: the first record; else a position
        an earlier walk returned, with its next_min_seq as `min_seq`); record
        the selected offsets (offsets()).  Stops at the end, when `done`,
        after `limit` records selected (0: no limit), or, if `strict` (a
        follower), at a reservation still open or a claim not yet published,
        which may still be finished.  Returns the position where a later
        walk of the same segment continues.  A record whose fields changed
        after its checksum was verified is passed over, listed in `problems`
        as "changed".  SegmentDamaged (after the walk, its selection kept)
        if the file shrank under the mapping (pages past its end read as
        zeros; see pyx/include/lk_sigbus.h)."""
        if seg.base == NULL:
            raise ValueError("segment is closed")
        cdef const uint8_t *base = seg.base
        cdef uint64_t size = seg.size
        cdef uint64_t pos = start if start else LK_HEADER_SIZE
        cdef uint64_t bound = lk_read_bound(base, size)
        if not start:
            min_seq = _u64(base + LK_H_SEQUENCE_BASE)
        cdef uint64_t min_pos = pos
        cdef lk_rec r
        cdef int res
        cdef size_t a0
        self.n = 0
        self.problems = []
        if bound > pos + POPULATE_MIN:
            a0 = (<size_t>(base + pos)) & ~(<size_t>4095)
            with nogil:
                madvise(<void *>a0, <size_t>(base + bound) - a0, MADV_POPULATE_READ)
        while not self.done:
            lk_next_record(base, size, pos, bound, min_seq, min_pos, &r)
            if r.kind == LK_REC_END:
                break
            if strict and (r.kind == LK_REC_RESERVED or r.kind == LK_REC_GAP):
                break
            pos = r.next
            if r.kind == LK_REC_COMMITTED:
                min_seq = r.sequence + 1
                min_pos = r.next
                if r.sequence <= self.last_seq:
                    continue
                self.last_seq = r.sequence
                self.examined += 1
                res = self._test(base + r.offset, r.sequence, r.next - r.offset)
                if res == R_STOP:
                    break
                if res == R_CHANGED:
                    self.damaged_ranges += 1
                    self.damaged_bytes += r.next - r.offset
                    self.problems.append((r.offset, r.next, "changed"))
                    continue
                if res != R_SKIP:
                    self._push(r.offset, <uint8_t>res)
                    if limit and self.n >= limit:
                        break
            elif r.kind == LK_REC_RESERVED:
                min_seq = r.sequence + r.span
                min_pos = r.next
                self.open_reservations += 1
            elif r.kind == LK_REC_ABANDONED:
                min_seq = r.sequence + r.span
                min_pos = r.next
                self.abandoned += r.span
            elif r.kind == LK_REC_GAP:
                self.problems.append((r.offset, r.next, "gap"))
            else:
                self.damaged_ranges += 1
                self.damaged_bytes += r.next - r.offset
                self.problems.append((r.offset, r.next, "damaged"))
        self.next_min_seq = min_seq
        # Zeros where the file shrank under the mapping end a walk like free
        # space: say so (SegmentDamaged naming the file; what the walk selected
        # before stays selected).
        _check_mapping(seg)
        return pos

    def count(self):
        """Records selected by the last walk."""
        return self.n

    def offsets(self, size_t first=0):
        """The offsets selected by the last walk (from index `first`), as a list."""
        return [self.offs[i] for i in range(first, self.n)]

    def undecided(self):
        """Indexes (into offsets()) of the records Python must decide."""
        return [i for i in range(self.n) if self.kinds[i] == R_UNDECIDED]

    def keep_only(self, list indexes):
        """Keep only the selected records at these indexes (in order): what
        Python decided among the undecided, with every decided one."""
        cdef size_t j = 0
        for i in indexes:
            self.offs[j] = self.offs[<size_t>i]
            self.kinds[j] = R_TAKE
            j += 1
        self.n = j

    def drop_first(self, size_t k):
        """Forget the first k selected records (--last COUNT keeps the last N)."""
        if k >= self.n:
            self.n = 0
            return
        cdef size_t i
        for i in range(self.n - k):
            self.offs[i] = self.offs[i + k]
            self.kinds[i] = self.kinds[i + k]
        self.n -= k

    def truncate(self, size_t k):
        """Keep only the first k selected records (--for COUNT)."""
        if k < self.n:
            self.n = k


def message_at(Segment seg not None, uint64_t offset):
    """The Message at `offset` (an offset a walk selected)."""
    if seg.base == NULL:
        raise ValueError("segment is closed")
    return Message.make_at(seg, offset)


# ---------------------------------------------------------------- output

cdef inline bint _copy_printable(char *dst, const uint8_t *src, uint32_t n) noexcept:
    """Copy n bytes from the mapping, then test the COPY (another process
    may rewrite the mapping meanwhile): True if every byte is printable
    ASCII, so the C printer may print it as it is."""
    cdef uint32_t k
    memcpy(dst, src, n)
    for k in range(n):
        if <uint8_t>dst[k] < 0x20 or <uint8_t>dst[k] > 0x7e:
            return False
    return True


cdef class Printer:
    """Formats selected records as logkit.formatters.format_message does,
    into a buffer the caller take()s and writes.

    Printer(fmt, colour, duplicates, expand_any, fallback) with fmt "text" or
    "short" (other formats: every record through `fallback`); duplicates:
    print "=" for a text equal to the previous one printed; expand_any:
    records with data go through `fallback` (expansion); fallback(seg,
    offset, prev_text) -> (line str, text str) formats one record in Python.
    """
    cdef bint text_fmt, short_fmt, colour, dups, expand_any
    cdef object fallback
    cdef char *buf
    cdef size_t len, cap
    # the previous text printed (for "="), as UTF-8 bytes
    cdef object _prev
    # the clock of the last second seen: (second, prefix bytes, offset bytes, short bytes)
    cdef int64_t clock_sec
    cdef bint clock_ok
    cdef bytes clock_prefix, clock_off, clock_short
    cdef list sev_padded, sev_colour
    cdef public uint64_t lines, fallbacks

    def __cinit__(self):
        self.buf = NULL
        self.len = 0
        self.cap = 0

    def __dealloc__(self):
        free(self.buf)

    def __init__(self, fmt, bint colour, bint duplicates, bint expand_any, fallback):
        from logkit import formatters as F
        self.text_fmt = fmt == "text"
        self.short_fmt = fmt == "short"
        self.colour = colour
        self.dups = duplicates
        self.expand_any = expand_any
        self.fallback = fallback
        self._prev = None
        self.clock_ok = False
        self.sev_padded = [x.encode("ascii") for x in F._SEV_PADDED]
        self.sev_colour = [x.encode("ascii") for x in F._SEV_COLOUR]
        self.lines = self.fallbacks = 0

    property prev_text:
        """The text of the previous message printed (str or None), for "="."""
        def __get__(self):
            return None if self._prev is None else (<bytes>self._prev).decode("utf-8", "replace")
        def __set__(self, v):
            self._prev = None if v is None else (<str>v).encode("utf-8", "surrogatepass")

    cdef int _room(self, size_t need) except -1:
        cdef size_t nc
        cdef char *p
        if self.len + need > self.cap:
            nc = self.cap * 2 if self.cap else (1 << 20)
            while nc < self.len + need:
                nc *= 2
            p = <char *>realloc(self.buf, nc)
            if p == NULL:
                raise MemoryError()
            self.buf = p
            self.cap = nc
        return 0

    cdef inline void _put(self, const char *p, size_t n) noexcept:
        memcpy(self.buf + self.len, p, n)
        self.len += n

    cdef int _clock(self, int64_t sec) except -1:
        from logkit import formatters as F
        c = F.local_clock(sec)
        self.clock_prefix = c[2].encode("ascii", "replace")
        self.clock_off = c[3].encode("ascii", "replace")
        self.clock_short = c[4].encode("ascii", "replace")
        self.clock_sec = sec
        self.clock_ok = True
        return 0

    def take(self):
        """The bytes formatted since the last take()."""
        b = PyBytes_FromStringAndSize(self.buf, self.len)
        self.len = 0
        return b

    @property
    def pending(self):
        return self.len

    def add_line(self, str line, text):
        """A line formatted in Python (its text for "=" next time)."""
        b = line.encode("utf-8", "surrogateescape")
        self._room(len(b) + 1)
        self._put(PyBytes_AS_STRING(b), len(b))
        self._put("\n", 1)
        self.lines += 1
        self._prev = None if text is None else text.encode("utf-8", "surrogatepass")

    def emit(self, Segment seg not None, Scan scan not None):
        """Format every record the scan's last walk selected."""
        cdef size_t i
        for i in range(scan.n):
            self._one(seg, scan.offs[i])

    def emit_offsets(self, Segment seg not None, offsets):
        """Format the records at these offsets (offsets a walk selected)."""
        for off in offsets:
            self._one(seg, off)

    cdef int _fallback(self, Segment seg, uint64_t off) except -1:
        """Format the record at `off` in Python; the callback returns None for
        a record it reported instead (one that changed under the reader)."""
        res = self.fallback(seg, off, self.prev_text if self.dups else None)
        self.fallbacks += 1
        if res is not None:
            line, txt = res
            self.add_line(line, txt)
        return 0

    cdef int _one(self, Segment seg, uint64_t off) except -1:
        # Every field is read ONCE from the mapping into a local and checked
        # there (another process can rewrite the record after the walk
        # validated it); the text is copied into the output buffer first and
        # tested there, so what is printed is what was tested.
        if seg.base == NULL:
            raise ValueError("segment is closed")
        if off < LK_HEADER_SIZE or off + LK_MSG_HEADER > seg.size:
            raise ValueError(f"offset {off} is no message position in the {seg.size}-byte segment")
        cdef const uint8_t *m = seg.base + off
        cdef lk_lengths l
        cdef uint32_t tl
        cdef int16_t sev
        cdef int64_t t, us, sec
        cdef uint64_t seq
        cdef const uint8_t *text = m + LK_MSG_HEADER
        cdef bint plain = self.text_fmt or self.short_fmt
        cdef bint agree = lk_read_lengths(m, seg.size - off, 0, &l)
        memcpy(&sev, m + 12, 2)
        memcpy(&seq, m + 16, 8)
        memcpy(&t, m + 24, 8)
        tl = l.tl
        if not agree or sev < -250 or sev > 250:
            return self._fallback(seg, off)      # changed since the walk: Python says what
        if not plain or l.kid != 0 or (self.expand_any and l.dl) or t < 0:
            return self._fallback(seg, off)
        us = t // 1000
        sec = us // 1000000
        if not self.clock_ok or sec != self.clock_sec:
            try:
                self._clock(sec)
            except (OverflowError, OSError, ValueError):
                self.clock_ok = False
                return self._fallback(seg, off)
        cdef size_t start = self.len
        cdef bint dup = False
        cdef bytes prev
        cdef char *copy
        cdef bytes sp = <bytes>self.sev_padded[sev + 250]
        cdef bytes col = <bytes>self.sev_colour[sev + 250] if self.colour else b""
        cdef char num[32]
        cdef int nd, w
        cdef uint64_t q
        cdef int64_t frac
        # A record payload (logkit.Handler's): its logger's name is printed
        # before the text, as format_message does ("NAME: text").
        cdef lk_record_view rv
        cdef const uint8_t *dat = m + LK_MSG_HEADER + tl
        cdef uint32_t lgn = 0
        cdef const uint8_t *lgp = NULL
        if l.cl == 6 and l.dl and memcmp(dat, b"record", 6) == 0:
            if lk_record_parse(dat + 6, l.dl, &rv):
                lgn = rv.logger_len
                lgp = dat + 6 + rv.logger
        self._room(160 + tl + lgn)
        if PyBytes_GET_SIZE(col):
            self._put(PyBytes_AS_STRING(col), PyBytes_GET_SIZE(col))
        if self.text_fmt:
            self._put(PyBytes_AS_STRING(self.clock_prefix), PyBytes_GET_SIZE(self.clock_prefix))
            frac = us - sec * 1000000
            for w in range(5, -1, -1):
                num[w] = <char>(48 + frac % 10)
                frac //= 10
            self._put(num, 6)
            self._put(PyBytes_AS_STRING(self.clock_off), PyBytes_GET_SIZE(self.clock_off))
            self._put("  ", 2)
            q = seq
            nd = 0
            while True:
                num[31 - nd] = <char>(48 + q % 10)
                q //= 10
                nd += 1
                if q == 0:
                    break
            for w in range(nd, 7):
                self._put(" ", 1)
            self._put(num + 32 - nd, nd)
            self._put("  ", 2)
            self._put(PyBytes_AS_STRING(sp), PyBytes_GET_SIZE(sp))
            self._put("  ", 2)
        else:
            self._put(PyBytes_AS_STRING(self.clock_short), PyBytes_GET_SIZE(self.clock_short))
            self._put(" ", 1)
            self._put(PyBytes_AS_STRING(sp), PyBytes_GET_SIZE(sp))
            self._put(" ", 1)
        if lgn:
            if not _copy_printable(self.buf + self.len, lgp, lgn):
                self.len = start                 # not printable ASCII: Python formats it
                return self._fallback(seg, off)
            self.len += lgn
            self._put(": ", 2)
        # The text: copied once, then tested and compared in the copy.
        copy = self.buf + self.len
        if not _copy_printable(copy, text, tl):
            self.len = start                     # not printable ASCII: Python formats it
            return self._fallback(seg, off)
        if self.dups and self._prev is not None:
            prev = <bytes>self._prev
            dup = <size_t>PyBytes_GET_SIZE(prev) == tl and memcmp(PyBytes_AS_STRING(prev), copy, tl) == 0
        if dup:
            self._put("=", 1)
        else:
            if self.dups:
                self._prev = PyBytes_FromStringAndSize(copy, tl)
            self.len += tl
        if PyBytes_GET_SIZE(col):
            self._put("\x1b[0m", 4)
        self._put("\n", 1)
        self.lines += 1
        return 0
