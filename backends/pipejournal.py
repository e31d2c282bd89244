"""The pipe reader's journal: what makes draining a FIFO exactly once.

A FIFO hands each byte to one read() and forgets it, so a reader killed
between reading bytes and storing the records in them would lose those
records.  The reader therefore never consumes a byte it has not first put
in its journal, an ordinary file beside the FIFO (`FIFO.journal`):

1. **peek**: tee(2) duplicates the bytes at the head of the FIFO into a
   private pipe without consuming them; the reader reads that copy;
2. **journal**: the bytes are written at the journal's end, then the end
   word is stored (one atomic 8-byte store);
3. **consume**: exactly those bytes are read out of the FIFO;
4. **confirm**: the batch word is moved up to the end;
5. **apply**: frames are decoded from the bytes and each record is stored,
   with the journal position of its last frame recorded as progress after
   each one, as the partition drain records its sequence.

A reader killed between 2 and 4 leaves a batch in the journal that may or
may not still be at the head of the FIFO: the next reader peeks, and if the
FIFO begins with exactly the batch's bytes it consumes them without
journaling them again (frames carry their writer's pid, thread id and a
nanosecond time, so a new batch equal to the old one byte for byte does not
occur).  A reader killed during 5 leaves at most one record whose copy is
not recorded: the next reader looks for it in the destination from the
destination sequence recorded with the progress (the mark).  Fragments of a
large record that has not yet completed stay in the journal, so they
survive a kill too: the next reader decodes again from the first byte not
yet resolved.

The header layout is in docs/pipe-format.md ("The reader's journal").
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import struct

from logkit import inject, safefs
from logkit._segment import load_word, store_word
from logkit.errors import DiskFull, LogkitError, NoSuchMessage

from logkit.backends.destination import destination_next, find_copy

__all__ = ["PipeJournal", "JournalDamaged", "JOURNAL_MAGIC", "JOURNAL_VERSION", "HEADER_SIZE",
           "read_journal_header", "header_problem", "POSITION_MAX", "TORN_LIMIT", "COUNTER_MAX"]

JOURNAL_MAGIC = b"LKPJ"
JOURNAL_VERSION = 1
HEADER_SIZE = 4096                      # one page; the data starts here

# The header words: 8-byte little-endian, each stored with one atomic
# release store and loaded with an acquire load (logkit._segment.store_word
# / load_word), so a reader killed at any instant leaves each word either
# old or new, never a mixture.  Positions are journal positions: they only
# grow; position p is at file offset HEADER_SIZE + p - BASE.
W_BASE = 16           # position of the byte at file offset HEADER_SIZE
W_END = 24            # end of the journaled bytes
W_BATCH = 32          # start of the last batch not yet known consumed from the FIFO (== END once it is)
W_APPLIED = 40        # end position of the last frame whose record is stored
W_RESOLVE = 48        # decoding resumes here: no byte before it is still needed
W_MARK = 56           # the destination's sequence at or after which the next record's copy would be (0: unknown)
W_STORED = 64         # records stored from the journal (lifetime; after each record's progress)
W_RECONSUMED = 72     # batches found still in the FIFO at start-up and consumed without journaling again
W_RECONCILED = 80     # records found already in the destination at start-up (a kill after the copy)
WORDS = {"base": W_BASE, "end": W_END, "batch": W_BATCH, "applied": W_APPLIED, "resolve": W_RESOLVE,
         "mark": W_MARK, "stored": W_STORED, "reconsumed": W_RECONSUMED, "reconciled": W_RECONCILED}
PREFIX = struct.Struct("<4sIII")        # magic, version, header size, flags (0)

# Bounds on the header words (docs/pipe-format.md, "Bounds"): any process that
# can write the file can write its header, so no word is trusted before it
# is checked against these and the file's real size.
POSITION_MAX = 1 << 62                  # positions count bytes taken from a FIFO: 4 EiB is never reached
TORN_LIMIT = 64 << 20                   # most data a machine crash can have left unwritten behind `end`
COUNTER_MAX = (1 << 64) - 1             # statistics words stop here (saturate), never overflow
TRUNCATE_ABOVE = 4 << 20                # give the file's bytes back once it holds this much dead data
# A fragment set left incomplete (its writer met a full pipe half-way and
# spilled the record whole, then went quiet) holds every byte after its
# first fragment in the journal until it expires.  Once that is more than
# LAG_LIMIT bytes, sets older than STALE_SET_AGE seconds are dropped: a
# writer sends a record's fragments back to back, so a set that old is not
# being sent any more.
LAG_LIMIT = 32 << 20
STALE_SET_AGE = 1.0
READ_CHUNK = 1 << 20

SPLICE_F_NONBLOCK = 2
_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def _load_tee():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        tee = libc.tee
    except (OSError, AttributeError):
        return None
    tee.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint]
    tee.restype = ctypes.c_ssize_t
    return tee


_tee = _load_tee()


class JournalDamaged(LogkitError):
    """The journal file is not one this version can continue safely."""


def header_problem(words: dict, file_bytes: int) -> str | None:
    """What makes these header words impossible for a journal of
    `file_bytes` bytes (a sentence naming the word and its value), or None.
    Checked before any word is used to allocate, read or loop: positions at
    most POSITION_MAX, base <= batch <= end, base <= resolve <= end,
    applied <= end, and at most TORN_LIMIT bytes between the file's end and
    `end` (docs/pipe-format.md, "Bounds")."""
    base, end, batch, resolve, applied = (words[k] for k in ("base", "end", "batch", "resolve", "applied"))
    data = max(0, file_bytes - HEADER_SIZE)
    for k in ("base", "end", "batch", "resolve", "applied"):
        if words[k] > POSITION_MAX:
            return f"word {k} at offset {WORDS[k]} is {words[k]}, beyond any position a journal reaches ({POSITION_MAX})"
    if not (base <= batch <= end and base <= resolve <= end):
        return (f"base {base}, batch {batch}, resolve {resolve}, end {end} break base <= batch <= end "
                "and base <= resolve <= end")
    if applied > end:
        return f"word applied at offset {W_APPLIED} is {applied}, beyond end {end}"
    if end - base > data + TORN_LIMIT:
        return (f"word end at offset {W_END} is {end}: {end - base} bytes after base {base}, but the file "
                f"holds {data} data bytes (a crash leaves at most {TORN_LIMIT} unwritten)")
    return None


def read_journal_header(path) -> dict:
    """The journal's header words as a dict (for stats and display), with
    "problem": header_problem()'s sentence or None; raises JournalDamaged
    when the file is not a version-1 journal.  The file is opened with
    O_NOFOLLOW (logkit.safefs)."""
    try:
        fd = safefs.open_file(os.fspath(path), os.O_RDONLY)
    except FileNotFoundError:
        raise
    with os.fdopen(fd, "rb") as f:
        head = f.read(HEADER_SIZE)
        size = os.fstat(f.fileno()).st_size
    if len(head) < HEADER_SIZE:
        raise JournalDamaged(f"pipe journal {path} is {len(head)} bytes, shorter than its {HEADER_SIZE}-byte header")
    magic, version, hsize, _flags = PREFIX.unpack_from(head, 0)
    if magic != JOURNAL_MAGIC:
        raise JournalDamaged(f"{path} is not a logkit pipe journal (magic {magic!r}, not {JOURNAL_MAGIC!r})")
    if version != JOURNAL_VERSION or hsize != HEADER_SIZE:
        raise JournalDamaged(f"pipe journal {path} has version {version} and header size {hsize}; "
                             f"this logkit reads version {JOURNAL_VERSION} with a {HEADER_SIZE}-byte header")
    out = {k: int.from_bytes(head[o:o + 8], "little") for k, o in WORDS.items()}
    out["version"] = version
    out["file_bytes"] = size
    problem = header_problem(out, size)
    if problem is not None:           # only when there is one: callers test for the key
        out["problem"] = f"pipe journal {path} is damaged: {problem}; move it aside to start a new one"
    out["pending_bytes"] = max(0, out["end"] - out["resolve"])
    return out


class PipeJournal:
    """The reader side of one FIFO: peek, journal, consume, apply.

    `rfd` is the FIFO's read end (non-blocking); `storage` gets each record
    with .append(record); `decoder` is a FrameDecoder (backends/pipe.py).
    Only one journal may be open per FIFO: the file is locked (flock), and a
    second reader is refused with a clear error.  Without tee(2) (not
    Linux, or a kernel that refuses it on this FIFO) the journal falls back
    to read-then-journal, which leaves a window of a few microseconds per
    read in which a kill loses the bytes read: `.peeking` says which."""

    def __init__(self, path: str, rfd: int, storage, decoder, mode: int = 0o600, scrub: bool = False):
        self.path = path
        self.rfd = rfd
        self.storage = storage
        self.dec = decoder
        self.scrub = scrub                   # cut stored bytes off the file at once (a sealed log)
        # O_NOFOLLOW relative to the directory, a regular file, exactly `mode`:
        # a link planted at this name is refused, never followed (safefs).
        self.fd = safefs.open_file(path, os.O_RDWR | os.O_CREAT, mode)
        try:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LogkitError(f"another process is reading this FIFO: its journal {path} is locked "
                                  "(one reader per FIFO)") from None
            self.mm = self._map()
            self._check()
        except BaseException:
            os.close(self.fd)
            raise
        self._pr = self._pw = None
        self.peeking = _tee is not None
        self._cap = self._pipe_size(rfd)
        if self.peeking:
            self._pr, self._pw = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                fcntl.fcntl(self._pw, _F_SETPIPE_SZ, self._cap)
            except OSError:
                pass
            self._cap = min(self._cap, self._pipe_size(self._pw))
        self._file_bytes = os.fstat(self.fd).st_size
        self._in_doubt = False               # set while recover() re-applies the journal
        self._marked = False
        self.session_stored = 0

    # ------------------------------------------------------------ the file

    def _map(self) -> mmap.mmap:
        size = os.fstat(self.fd).st_size
        fresh = size == 0
        if size < HEADER_SIZE:
            if not fresh and any(os.pread(self.fd, size, 0)):
                raise JournalDamaged(f"pipe journal {self.path} is {size} bytes, shorter than its "
                                     f"{HEADER_SIZE}-byte header: move it aside to start a new one")
            # Write the page rather than ftruncate it: a page of a sparse file
            # is allocated on first touch through the mapping, and on a full
            # disk that touch is a SIGBUS; pwrite fails with ENOSPC instead.
            try:
                os.pwrite(self.fd, bytes(HEADER_SIZE), 0)
            except OSError as e:
                raise safefs.translate_error(e, self.path, "create the pipe journal") from None
            fresh = True
        mm = mmap.mmap(self.fd, HEADER_SIZE)
        if fresh or mm[:4] == b"\0\0\0\0" and not any(mm[:HEADER_SIZE]):
            # A new journal (or one whose creator died before its magic was
            # written: all zeros).  The magic goes last.
            PREFIX.pack_into(mm, 0, b"\0\0\0\0", JOURNAL_VERSION, HEADER_SIZE, 0)
            mm[:4] = JOURNAL_MAGIC
        return mm

    def _check(self) -> None:
        magic, version, hsize, _flags = PREFIX.unpack_from(self.mm, 0)
        where = f"pipe journal {self.path}"
        if magic != JOURNAL_MAGIC:
            raise JournalDamaged(f"{self.path} is not a logkit pipe journal (magic {magic!r}): "
                                 "move it aside to start a new one")
        if version != JOURNAL_VERSION or hsize != HEADER_SIZE:
            raise JournalDamaged(f"{where} has version {version} (header {hsize} bytes); this logkit "
                                 f"continues only version {JOURNAL_VERSION}")
        words = {k: self._w(o) for k, o in WORDS.items()}
        base, end = words["base"], words["end"]
        size = os.fstat(self.fd).st_size
        problem = header_problem(words, size)
        if problem is not None:
            raise JournalDamaged(f"{where} is damaged: {problem}; move it aside to start a new one "
                                 "(records it held that were not stored are then lost)")
        # Fewer data bytes than the end word says: a machine crash wrote the
        # header page back but not all of the data.  The missing bytes read
        # as zeros (the decoder passes over them, counting them); what they
        # held was in flight, and went with the FIFO's contents.
        self.torn_bytes = max(0, HEADER_SIZE + (end - base) - size)

    def _w(self, off: int) -> int:
        return load_word(self.mm, off)

    def _put(self, off: int, v: int) -> None:
        store_word(self.mm, off, v)

    def _bump(self, off: int) -> None:
        # One writer (the flock holder): no lost update.  A statistics word
        # saturates: a counter must never stop the pipe.
        self._put(off, min(self._w(off) + 1, COUNTER_MAX))

    def _pread(self, start: int, end: int) -> bytes:
        base = self._w(W_BASE)
        out = bytearray()
        while start < end:
            chunk = os.pread(self.fd, min(end - start, READ_CHUNK), HEADER_SIZE + start - base)
            if not chunk:
                chunk = bytes(end - start)    # torn by a crash: see _check
            out += chunk
            start += len(chunk)
        return bytes(out)

    @staticmethod
    def _pipe_size(fd: int) -> int:
        try:
            return fcntl.fcntl(fd, _F_GETPIPE_SZ)
        except OSError:
            return 1 << 16

    # ------------------------------------------------------------ the FIFO

    def _peek(self, n: int) -> bytes:
        """Up to n bytes from the head of the FIFO, not consumed; b'' if it
        is empty.  The private pipe is read empty again before it returns."""
        got = _tee(self.rfd, self._pw, n, SPLICE_F_NONBLOCK)
        if got < 0:
            e = ctypes.get_errno()
            if e in (errno.EAGAIN, errno.EINTR):
                return b""
            if e in (errno.EINVAL, errno.ENOSYS):
                self.peeking = False          # fall back to read-then-journal
                return b""
            raise OSError(e, f"tee on FIFO for {self.path}: {os.strerror(e)}")
        out = bytearray()
        while len(out) < got:
            out += os.read(self._pr, got - len(out))
        return bytes(out)

    def _consume(self, n: int) -> None:
        left = n
        while left:
            try:
                chunk = os.read(self.rfd, left)
            except BlockingIOError:
                chunk = b""
            if not chunk:
                raise LogkitError(f"the FIFO of journal {self.path} holds fewer bytes than were peeked: "
                                  "another process reads it")
            left -= len(chunk)

    # ------------------------------------------------------------ the cycle

    def recover(self) -> int:
        """Start-up: settle a batch left unconfirmed by a killed reader, then
        apply what the journal holds beyond the progress.  Returns the number
        of records stored."""
        end, batch = self._w(W_END), self._w(W_BATCH)
        if batch < end:
            want = self._pread(batch, end)
            if self.peeking and self._peek(len(want)) == want:
                self._consume(len(want))      # killed before consuming: consume, do not journal twice
                inject.point("pipejournal.recover.reconsumed")
                self._bump(W_RECONSUMED)
            self._put(W_BATCH, end)
            inject.point("pipejournal.recover.confirmed")
        resolve = self._w(W_RESOLVE)
        self.dec.base = resolve
        self.dec.buf.clear()
        n = 0
        pos = resolve
        self._in_doubt = True
        try:
            while pos < end:
                nxt = min(end, pos + READ_CHUNK)
                n += self._apply(self.dec.feed_at(self._pread(pos, nxt)))
                pos = nxt
        finally:
            self._in_doubt = False
        self._settle()
        return n

    def pump(self) -> int:
        """One batch: peek (or read), journal, consume, apply.  Returns the
        number of bytes taken from the FIFO (0: it was empty); the records
        stored are counted in .session_stored."""
        if self.peeking:
            data = self._peek(self._cap)
            if not data:
                if self.peeking:
                    return 0
                return self.pump()            # tee was refused just now: read instead
        else:
            try:
                data = os.read(self.rfd, self._cap)
            except BlockingIOError:
                return 0
            if not data:
                return 0
        inject.point("pipejournal.peeked")
        end = self._w(W_END)
        base = self._w(W_BASE)
        at = HEADER_SIZE + end - base
        view = memoryview(data)
        try:
            while view:
                k = os.pwrite(self.fd, view, at)
                view, at = view[k:], at + k
        except OSError as e:
            # Nothing is lost: the end word has not moved, and with tee the
            # bytes are still in the FIFO for the next try.
            where = "they are still in the FIFO" if self.peeking else \
                f"the {len(data)} bytes just read are lost"
            err = safefs.translate_error(e, f"the pipe journal {self.path}", "write")
            if isinstance(err, DiskFull):
                err = DiskFull(f"cannot write the pipe journal {self.path}: no space left on the device "
                               f"({where}; the reader can go on when space returns)")
                err.errno = e.errno
                raise err from e
            raise LogkitError(f"cannot write the pipe journal {self.path}: {e.strerror or e} "
                              f"({where})") from e
        self._file_bytes = max(self._file_bytes, at)
        inject.point("pipejournal.written")           # in the file, the end word not yet moved
        self._put(W_END, end + len(data))     # journaled: the batch is [BATCH, END)
        inject.point("pipejournal.journaled")         # journaled, still in the FIFO
        if self.peeking:
            self._consume(len(data))
        inject.point("pipejournal.consumed")          # out of the FIFO, the batch not confirmed
        self._put(W_BATCH, end + len(data))   # consumed
        inject.point("pipejournal.confirmed")
        self._apply(self.dec.feed_at(data))
        inject.point("pipejournal.applied")
        self._settle()
        inject.point("pipejournal.settled")
        return len(data)

    def _apply(self, pairs) -> int:
        n = 0
        applied = self._w(W_APPLIED)
        fseq = None
        put = store_word
        mm = self.mm
        append = self.storage.append if pairs else None
        stored = self._w(W_STORED)            # one writer (the flock holder): kept here
        for rec, end in pairs:
            if end <= applied:
                continue                      # stored before the last start-up
            if self._in_doubt:
                # The first record past the progress at start-up: a reader
                # killed after storing it and before recording that did so.
                self._in_doubt = False
                if self._already_stored(rec):
                    self._put(W_APPLIED, end)
                    self._bump(W_RECONCILED)
                    applied = end
                    continue
            if not self._marked:
                self._marked = True           # once per session: a reader opened on the destination
                if not self._w(W_MARK):
                    self._put(W_MARK, destination_next(self.storage))
            fseq = append(rec)
            inject.point("pipejournal.apply.appended")     # stored, its progress not recorded
            put(mm, W_APPLIED, end)           # the progress, after every record
            inject.point("pipejournal.apply.progress")     # progress recorded, not yet counted
            stored = min(stored + 1, COUNTER_MAX)   # saturates: never blocks the pipe
            put(mm, W_STORED, stored)         # a kill just before this leaves it one short
            applied = end
            n += 1
        if n:
            # Once per batch: the mark stays at or below every later copy's
            # sequence (the destination only grows), which is all the search
            # at start-up needs; it starts at most a batch further back.
            # A storage that gives no sequence (plainfile) keeps the mark
            # taken from its reader at the start of the session.
            if isinstance(fseq, int) and fseq > 0:
                self._put(W_MARK, fseq + 1)
        self.session_stored += n
        return n

    def _settle(self) -> None:
        """Record how far decoding is resolved; when nothing is pending, let
        the file's bytes go (the base moves up to the end)."""
        end = self._w(W_END)
        resolve = min(self.dec.unresolved(), end)
        if resolve > self._w(W_RESOLVE):
            self._put(W_RESOLVE, resolve)
        if resolve == end and self._w(W_BATCH) == end and self._w(W_BASE) != end:
            self._put(W_BASE, end)            # one store: every byte before END is dead
            inject.point("pipejournal.settle.based")
            if self._file_bytes > (HEADER_SIZE if self.scrub else TRUNCATE_ABOVE):
                os.ftruncate(self.fd, HEADER_SIZE)
                self._file_bytes = HEADER_SIZE

    def expire(self, force: bool = False, now_: bool = False) -> None:
        if self._w(W_END) - self._w(W_RESOLVE) > LAG_LIMIT:
            self.dec.expire(force=force, now_=True, max_age=STALE_SET_AGE)
        else:
            self.dec.expire(force=force, now_=now_)
        self._settle()

    # ------------------------------------------------------------ reconciling

    def _already_stored(self, rec) -> bool:
        return find_copy(self.storage, self._w(W_MARK), rec) is not None

    # ------------------------------------------------------------ the rest

    def counters(self) -> dict[str, int]:
        out = {f"journal_{k}": self._w(o) for k, o in WORDS.items()
               if k in ("stored", "reconsumed", "reconciled")}
        out["journal_pending_bytes"] = self._w(W_END) - self._w(W_RESOLVE)
        out["journal_torn_bytes"] = self.torn_bytes
        out["exactly_once"] = int(self.peeking)
        return out

    def close(self) -> None:
        for fd in (self._pr, self._pw):
            if fd is not None:
                os.close(fd)
        self._pr = self._pw = None
        try:
            self.mm.close()
        finally:
            os.close(self.fd)
