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
"""
from __future__ import annotations

import errno
import json
import mmap
import os
import stat
import struct
import threading
import time as _time
import uuid as _uuid
from typing import Any, Iterator

from logkit._segment import (Limits, Segment, SegmentIterator, crc32c, load_word, parse_size,
                             token_attempt, token_make, token_pid, token_state,
                             store_word)
from logkit.errors import (
    DiskFull,
    InvalidArgument,
    LogkitError,
    NoSuchMessage,
    OutOfService,
    SegmentDamaged,
    SegmentFull,
    SegmentNotFound,
    UnsafePath,
    UnsupportedFormat,
)
from logkit import forking, inject, safefs
from logkit.family import retry_refused_write
from logkit.backends.destination import destination_next, find_copy, flush_destination
from logkit.registry import Option, Reader, StorageBackend
from logkit.salvager import identity_alive, process_alive, process_identity, salvage, settle_counts

__all__ = ["PartitionStorage", "PartitionReader", "PartitionMessage", "Partition", "open_reader",
           "PartitionSwapTimeout"]

SYNC_CHOICES = ("never", "close", "always")

# ---------------------------------------------------------------- on-disk layout
MAGIC = b"LKPART\x00\x01"
FORMAT_VERSION = 1
HEADER_SIZE = 4096
PAGE = 4096
MIN_HALF = 8192
MAX_HALF = (2 ** 32 - 1) * 8 // PAGE * PAGE

# identity block (written once, protected by the identity checksum)
H_MAGIC = 0             # 8 bytes
H_VERSION = 8           # u32
H_HEADER_SIZE = 12      # u32
H_HALF_SIZE = 16        # u64
H_HALF0 = 24            # u64 offset of half 0
H_HALF1 = 32            # u64 offset of half 1
H_CREATED = 40          # u64 ns
H_FAMILY = 48           # 64 bytes, NUL padded
H_IDENTITY_CRC = 112    # u32 CRC-32C of bytes 0..111
IDENTITY_END = 112
# mutable block (u64 words)
H_CURRENT = 128         # half in service after the last swap (hint)
H_GENERATION = 136      # swaps completed since creation
H_LOST = 144            # messages lost to overflow, in total
H_LOSS_EVENTS = 152     # times a full half was reused before its drain
H_DRAINED = 160         # messages copied out by drains, in total
H_PROGRESS = 168        # last sequence copied out (0: none yet)
H_MARK = 176            # first destination sequence that may hold the copy of PROGRESS+1 (0: unknown)
H_NEXT_BASE = 184       # sequence base of the current half (hint)
H_LAST_SWAP = 192       # ns (CLOCK_REALTIME) of the last swap, or of creation
H_INTENT = 200          # 0, or half+1 while that half is being formatted for reuse
H_INTENT_LOST = 208     # messages lost by that reuse
H_INTENT_TOTAL = 216    # what H_LOST becomes once that reuse is done
H_INTENT_FIRST = 224    # first and last sequence lost by that reuse
H_INTENT_LAST = 232
H_INTENT_EVENTS = 240   # what H_LOSS_EVENTS becomes once that reuse is done (0: not recorded)
H_HOLDER = (256, 264)   # per half: (pid << 32) | start of the last process to claim its token

TOKEN_OFFSET = 456      # the half's segment-header word that holds its state token

# half states: the STATE of the half's token (lk_segment.h "Tokens": bits
# 61..63; 32..60 an attempt counter, 0..31 a pid)
LIVE, SWAPPING, FULL, DRAINING, EMPTY, REUSING, COPYING = range(7)
PHASE_NAMES = {LIVE: "live", SWAPPING: "swapping", FULL: "full", DRAINING: "draining",
               EMPTY: "empty", REUSING: "reusing", COPYING: "copying"}
# COPYING is DRAINING with one message in flight: the drainer holds a copy of
# the first finished message above H_PROGRESS, taken while the half was
# provably its own, and is appending it to the destination.

LOSS_SEVERITY = 40

# timing
WAIT_TIMEOUT = 30.0      # longest a writer waits for a swap before raising
STALL_TIMEOUT = 10.0     # a live holder whose token does not move for this long is taken over
LIVE_STALL = 1.0         # an out-of-service half nobody claimed (its winner died at once)
DRAIN_WAIT = 5.0         # a swapper waits this long for a live drainer of the half it must reuse
RESERVATION_GRACE = 5.0  # salvage grace for a reservation left open in a full half
READ_PATIENCE = 2.0       # how long a reader waits for a half being formatted
SETTLE_TIMEOUT = RESERVATION_GRACE + 3.0   # longest a drain or reuse waits for a full half's
                                           # reservations (salvage abandons a stuck one after the grace)


# Tokens held right now by threads of this process (token -> how many claims).
# A token names only a pid, so this is how a thread tells a step another
# thread of its own process is doing from one a thread abandoned (it raised);
# a process-wide fact, hence module state.  Cleared in a forked child.
_held: dict[int, int] = {}
_held_lock = threading.Lock()


def _hold(tok: int) -> None:
    with _held_lock:
        _held[tok] = _held.get(tok, 0) + 1


def _unhold(tok: int) -> None:
    with _held_lock:
        n = _held.get(tok, 0) - 1
        if n > 0:
            _held[tok] = n
        else:
            _held.pop(tok, None)


def _claim(seg: Segment, old: int, new: int) -> bool:
    """CAS a half's token from `old` to `new`, holding `new` (_unhold() it when done)."""
    _hold(new)
    if seg.claim_token(old, new):
        return True
    _unhold(new)
    return False


def _abandoned_here(tok: int) -> bool:
    """A token of this process that no thread of it holds any more."""
    return _holder(tok) == os.getpid() and tok not in _held


@forking.after_fork_in_child             # module state: before any object is told of the fork
def _forget_held_in_child() -> None:
    global _held_lock, _me
    _held_lock = threading.Lock()        # a fork taken while another thread held it
    _held.clear()                        # the parent's threads are not ours
    _me = None


_me: int | None = None                   # this process's holder word (see Partition.note_holder)


def _my_holder_word() -> int:
    global _me
    if _me is None:
        pid, start = process_identity()
        _me = ((pid & 0xFFFFFFFF) << 32) | (start & 0xFFFFFFFF)
    return _me


def _token(phase: int, attempt: int = 0, pid: int | None = None) -> int:
    return token_make(phase, attempt, os.getpid() if pid is None else pid)


_phase = token_state
_attempt = token_attempt
_holder = token_pid


class _KeyFile:
    """The key file of a sealed partition, reloaded when a key id it lacks is
    asked for (another process rotated the file's keys, and the half it
    reused is sealed under the new one).  Quacks as a KeyRing for
    Segment.use_key/rekey."""

    def __init__(self, path):
        from logkit.crypto import load_key_file
        self.path = os.path.abspath(os.fspath(path))
        self._load = load_key_file
        self.ring = load_key_file(self.path)

    def key(self, key_id: int) -> bytes:
        from logkit.crypto import MissingKey
        try:
            return self.ring.key(key_id)
        except MissingKey:
            self.ring = self._load(self.path)
            return self.ring.key(key_id)

    def for_new_half(self) -> tuple[int, bytes]:
        """(key id, key) a half formatted now is sealed under: the file's
        current key, reread (rotation takes effect at the next swap)."""
        self.ring = self._load(self.path)
        return self.ring.current, self.ring.current_key


class PartitionSwapTimeout(LogkitError):
    """The current half stayed full past the wait timeout and no swap completed."""


class PartitionMessage:
    """A message read from a partition: a private copy (a half is reused, so
    readers never hold views into it).  Has the fields of a logkit.Message.
    checksum_ok() is real: the source message's checksum as verified when the
    copy was taken, and a CRC-32C of the copied fields taken then, checked
    again now."""
    __slots__ = ("sequence", "time", "severity", "process_id", "thread_id", "text", "data_class", "data",
                 "_source_ok", "_crc")

    def __init__(self, sequence, time, severity, process_id, thread_id, text, data_class, data,
                 source_ok: bool = True):
        self.sequence, self.time, self.severity = sequence, time, severity
        self.process_id, self.thread_id = process_id, thread_id
        self.text, self.data_class, self.data = text, data_class, data
        self._source_ok = bool(source_ok)
        self._crc = self._fields_crc()

    @classmethod
    def copy_of(cls, m, sequence: int | None = None) -> "PartitionMessage":
        """Copy every field of `m` (a Message in a half) now.  `sequence`: the
        sequence the caller already read from it (read once, never again)."""
        text, data_class, data = m.text, m.data_class, bytes(m.data)
        return cls(m.sequence if sequence is None else sequence, m.time, m.severity, m.process_id,
                   m.thread_id, text, data_class, data, m.checksum_ok())

    def _fields_crc(self) -> int:
        head = struct.pack("<QQQQQ", *(int(v) & 0xFFFFFFFFFFFFFFFF for v in (
            self.sequence, self.time, self.severity, self.process_id, self.thread_id)))
        return crc32c(bytes(self.data), crc32c((self.data_class or "").encode("utf-8", "surrogatepass") + b"\0",
                                               crc32c(str(self.text).encode("utf-8", "surrogatepass") + b"\0",
                                                      crc32c(head))))

    def checksum_ok(self) -> bool:
        """The source's checksum was good when copied, and no field of this
        copy changed since."""
        return self._source_ok and self._crc == self._fields_crc()

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__ if not k.startswith("_")}

    def __repr__(self) -> str:
        return f"PartitionMessage(sequence={self.sequence}, severity={self.severity}, text={self.text!r:.60})"


def _half_size(size) -> int:
    n = parse_size(size, "size")
    n = max(MIN_HALF, -(-n // PAGE) * PAGE)
    if n > MAX_HALF:
        raise InvalidArgument(f"size {size!r}: a partition half holds at most {MAX_HALF} bytes")
    return n


# ====================================================================== the file

class Partition:
    """One partition file mapped: its header and its two halves.

    Creating is atomic (prepared under a temporary name, then hard-linked into
    place), so nobody ever opens a half-made partition.  Raises
    SegmentNotFound (no file and create=False, or no directory),
    SegmentDamaged (naming the file and the offset), UnsupportedFormat,
    DiskFull.
    """

    def __init__(self, path, size="1MiB", family: str = "", mode: int = 0o640,
                 create: bool = True, readonly: bool = False, key_file=None):
        self.path = os.path.abspath(os.fspath(path))
        self.readonly = readonly
        self.family = family or ""
        # Sealed partitions (docs/security.md): both halves are formatted
        # sealed under the key file's current key, at creation and at every
        # reuse; a half reused by another process has a new UUID, so each
        # process derives that half's key again (refresh_keys, [K1]).
        self.key = _KeyFile(key_file) if key_file is not None else None
        fd = None
        while fd is None:
            # Never through a link (safefs: O_NOFOLLOW, a regular file only):
            # a dangling link used to send this loop round for ever, each
            # pass creating a temporary file the size of the partition.
            try:
                fd = safefs.open_file(self.path, os.O_RDONLY if readonly else os.O_RDWR)
            except FileNotFoundError:
                if not create or readonly:
                    raise SegmentNotFound(f"no partition file {self.path}") from None
                self._create(_half_size(size), mode)
        try:
            st = os.fstat(fd)
            if st.st_size < HEADER_SIZE:
                raise SegmentDamaged(f"{self.path}: {st.st_size} bytes is shorter than the "
                                     f"{HEADER_SIZE}-byte partition header at offset 0")
            self.mm = mmap.mmap(fd, st.st_size, mmap.MAP_SHARED,
                                mmap.PROT_READ if readonly else mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self.file_size = st.st_size
        self.file_id = (st.st_dev, st.st_ino)
        try:
            self._check_identity()
            self.half_size = self._u64(H_HALF_SIZE)
            self.offsets = (self._u64(H_HALF0), self._u64(H_HALF1))
            if not self.family:
                self.family = bytes(self.mm[H_FAMILY:H_FAMILY + 64]).split(b"\0", 1)[0].decode("utf-8", "replace")
            self.halves = [Segment.from_buffer(self.mm, off, self.half_size, readonly,
                                               path=f"{self.path}@{off}", check_header=False)
                           for off in self.offsets]
            self.missing_key = None
            self.refresh_keys(force=True)
        except BaseException:
            self._release()
            raise
        self.closed = False

    # ------------------------------------------------------------ creation

    def _create(self, half: int, mode: int) -> None:
        d, name = os.path.split(self.path)
        if not os.path.isdir(d):
            raise SegmentNotFound(f"partition {self.path}: directory {d} does not exist")
        for n in os.listdir(d):             # left by creators that died before linking
            parts = n.split(".")
            if n.startswith(f".{name}.") and n.endswith(".tmp") and len(parts) >= 4:
                try:
                    if not process_alive(int(parts[-3])):
                        os.unlink(os.path.join(d, n))
                except (ValueError, OSError):
                    pass
        tmp = os.path.join(d, f".{name}.{os.getpid()}.{_uuid.uuid4().hex[:8]}.tmp")
        total = HEADER_SIZE + 2 * half
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.fchmod(fd, mode)              # exactly, no umask
            try:
                os.posix_fallocate(fd, 0, total)
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise DiskFull(f"partition {self.path}: no room for {total} bytes") from e
                os.ftruncate(fd, total)      # file systems without fallocate
            mm = mmap.mmap(fd, total)
            try:
                fam = self.family.encode("utf-8")[:63]
                ident = bytearray(IDENTITY_END)
                ident[0:8] = MAGIC
                struct.pack_into("<IIQQQQ", ident, H_VERSION, FORMAT_VERSION, HEADER_SIZE, half,
                                 HEADER_SIZE, HEADER_SIZE + half, _time.time_ns())
                ident[H_FAMILY:H_FAMILY + len(fam)] = fam
                mm[0:IDENTITY_END] = bytes(ident)
                struct.pack_into("<I", mm, H_IDENTITY_CRC, crc32c(bytes(ident)))
                struct.pack_into("<QQ", mm, H_NEXT_BASE, 1, _time.time_ns())
                key = self.key.for_new_half() if self.key is not None else None
                h0 = Segment.format(mm, HEADER_SIZE, half, family=fam.decode("utf-8", "ignore"),
                                    sequence_base=1, key=key)
                h1 = Segment.format(mm, HEADER_SIZE + half, half, family=fam.decode("utf-8", "ignore"),
                                    sequence_base=1, key=key)
                h1.take_out_of_service()
                h1.claim_token(0, _token(EMPTY))
                h0.close()
                h1.close()
                mm.flush()
            finally:
                mm.close()
            os.fsync(fd)
            try:
                os.link(tmp, self.path)      # atomic: the name appears complete or not at all
            except FileExistsError:
                # Another process created it first: open that one -- unless the
                # name is not a regular file (a link, dangling or not, or
                # anything else): refuse it rather than loop.
                try:
                    st = os.lstat(self.path)
                except FileNotFoundError:
                    st = None                # gone again: the caller's loop retries
                if st is not None and not stat.S_ISREG(st.st_mode):
                    kind = "symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
                    raise UnsafePath(f"partition {self.path} is a {kind}: refusing to create or "
                                     "open a partition through it") from None
        finally:
            os.close(fd)
            os.unlink(tmp)

    # ------------------------------------------------------------ header access

    def _u64(self, off: int) -> int:
        return load_word(self.mm, off)

    def _put(self, off: int, v: int) -> None:
        # One atomic 8-byte store: struct.pack_into zeroes the field, then
        # writes it byte by byte, so a drainer killed in between left its
        # progress 0 and the next drain copied every message again.
        store_word(self.mm, off, v & 0xFFFFFFFFFFFFFFFF)

    def _check_identity(self) -> None:
        b = self.mm
        magic = bytes(b[0:8])
        if magic != MAGIC:
            raise SegmentDamaged(f"{self.path}: not a partition file (bad magic {magic!r} at offset 0)")
        crc = struct.unpack_from("<I", b, H_IDENTITY_CRC)[0]
        if crc32c(bytes(b[0:IDENTITY_END])) != crc:
            raise SegmentDamaged(f"{self.path}: partition header identity checksum mismatch "
                                 f"(bytes 0..{IDENTITY_END - 1}, checksum at offset {H_IDENTITY_CRC})")
        version = struct.unpack_from("<I", b, H_VERSION)[0]
        if version != FORMAT_VERSION:
            raise UnsupportedFormat(f"{self.path}: partition format version {version} "
                                    f"(this logkit reads version {FORMAT_VERSION})")
        hs = struct.unpack_from("<I", b, H_HEADER_SIZE)[0]
        half = self._u64(H_HALF_SIZE)
        o0, o1 = self._u64(H_HALF0), self._u64(H_HALF1)
        if hs != HEADER_SIZE:
            raise SegmentDamaged(f"{self.path}: partition header size {hs} at offset {H_HEADER_SIZE} "
                                 f"(expected {HEADER_SIZE})")
        if half < MIN_HALF or half % PAGE or half > MAX_HALF:
            raise SegmentDamaged(f"{self.path}: half size {half} at offset {H_HALF_SIZE} is not a "
                                 f"multiple of {PAGE} between {MIN_HALF} and {MAX_HALF}")
        if o0 != HEADER_SIZE or o1 != HEADER_SIZE + half:
            raise SegmentDamaged(f"{self.path}: half offsets {o0}, {o1} at offsets {H_HALF0}, {H_HALF1} "
                                 f"do not follow the header")
        if self.file_size < o1 + half:
            raise SegmentDamaged(f"{self.path}: file of {self.file_size} bytes is shorter than its "
                                 f"second half (offset {o1}, {half} bytes)")

    def refresh_keys(self, force: bool = False) -> None:
        """Derive again the segment key of each sound half formatted since its
        key was derived (or every half, with force).  Raises WrongKey; a key
        id the key file lacks (or no key file) leaves that half keyless and
        sets `missing_key` to the MissingKey error: readers show
        "[encrypted]", writers and drains refuse."""
        for i, h in enumerate(self.halves):
            if not (force or h.key_stale()) or not self.sound(i):
                continue
            err = h.rekey(self.key)
            if err is not None:
                self.missing_key = err
            elif h.sealed and self.key is None:
                from logkit.crypto import MissingKey
                self.missing_key = MissingKey(f"partition {self.path} is sealed (half {i}, key id "
                                              f"{h.key_id}): give its key_file to read or write it")

    def sealed(self) -> bool | None:
        """Whether the partition's halves are sealed (None: no sound half)."""
        for i, h in enumerate(self.halves):
            if self.sound(i):
                return bool(h.sealed)
        return None

    def require_key(self, i: int) -> None:
        """Before copying half i out: MissingKey unless its messages can be
        opened (a drain never copies "[encrypted]" as if it were the text)."""
        self.refresh_keys()
        h = self.halves[i]
        if h.sealed and not h.has_key:
            from logkit.crypto import MissingKey
            raise MissingKey(f"partition {self.path}: half {i} is sealed under key id {h.key_id}, "
                             f"which {'no key_file was given for' if self.key is None else self.key.path + ' does not hold'}"
                             "; nothing was copied")

    def check(self) -> None:
        """Raise SegmentDamaged (naming the offset) if the header is not sound."""
        if self.closed:
            raise LogkitError(f"partition {self.path} is closed")
        self._check_identity()

    def half_problem(self, i: int) -> str | None:
        """None if half i's segment header is sound, else what is wrong."""
        try:
            return self.halves[i].header_problem()
        except UnsupportedFormat as e:
            return str(e)

    def sound(self, i: int) -> bool:
        return self.half_problem(i) is None

    def swaps(self) -> int:
        """How many swaps this partition has had (its generation word): a
        watcher that sees it change knows a half was swapped out, even if
        it was reused before the watcher looked."""
        return self._u64(H_GENERATION)

    def token(self, i: int) -> int:
        return self.halves[i].token()

    def phase(self, i: int) -> int:
        return _phase(self.halves[i].token())

    def current_index(self) -> int | None:
        """The half in service (the one writers fill), or None while a swap is
        between taking the old half out of service and formatting the new one."""
        best = None
        for i, h in enumerate(self.halves):
            if self.sound(i) and h.in_service:
                if best is None or h.sequence_base > self.halves[best].sequence_base:
                    best = i
        return best

    def note_holder(self, i: int) -> None:
        """Before claiming half i's token: record who we are, pid and start
        time (docs/partition-format.md, "Who holds a token")."""
        self._put(H_HOLDER[i], _my_holder_word())

    def holder_alive(self, i: int, tok: int) -> bool:
        """Does the process named by half i's token `tok` still run?  Judged
        with its start time when the holder word names the same pid (a pid
        alone is fooled by pid reuse and by pid namespaces), else by the pid
        alone (a claimer whose word a racing loser overwrote, or a file
        written before the word existed)."""
        pid = _holder(tok)
        w = self._u64(H_HOLDER[i])
        if w >> 32 == pid and w & 0xFFFFFFFF:
            return identity_alive(pid, w & 0xFFFFFFFF)
        return process_alive(pid)

    def intent_half(self) -> int | None:
        v = self._u64(H_INTENT)
        return v - 1 if v in (1, 2) else None

    def intent_swapper_alive(self) -> bool:
        """Is the half named by intent being formatted by a live swapper?  The
        swapper holds the other half's SWAPPING token while it formats (and
        until it clears intent); an intent whose swapper is gone (killed, or a
        damaged word) is stale: readers read that half as found at once
        instead of waiting for a format that will not come."""
        k = self.intent_half()
        if k is None:
            return False
        c = 1 - k
        tok = self.token(c)
        return _phase(tok) == SWAPPING and self.holder_alive(c, tok)

    # ------------------------------------------------------------ closing

    def _release(self) -> None:
        for h in getattr(self, "halves", ()):
            h.close()
        try:
            self.mm.close()
        except BufferError:
            pass                         # a view is still alive; the mapping goes with it
        except AttributeError:
            pass

    def close(self) -> None:
        if not getattr(self, "closed", True):
            self.closed = True
            self._release()


# ====================================================================== reading

class _Reformatted(Exception):
    """A half was reformatted while a reader copied it (internal)."""


class PartitionReader(Reader):
    """The undrained messages of both halves in sequence order (registry.Reader).

    Each pass takes a fresh look at the partition, so it sees what writers
    added since.  Raises SegmentDamaged, naming the file and the offset, for
    a damaged partition header or half (a half that a swapper died while
    formatting counts as empty: its messages were already counted as lost).
    """

    def __init__(self, partition: Partition):
        self.partition = partition
        self._start: int | None = None
        self.problems: list[str] = []

    def _snapshot_once(self, last_try: bool) -> list[PartitionMessage]:
        p = self.partition
        p.check()
        p.refresh_keys()
        progress = p._u64(H_PROGRESS)
        halves = []
        top = 0
        for i in (0, 1):
            problem = p.half_problem(i)
            if problem is not None:
                if p.intent_half() == i:
                    note = f"{p.path}: half {i} at offset {p.offsets[i]} was being formatted; read as empty"
                    if note not in self.problems:
                        self.problems.append(note)
                    continue
                raise SegmentDamaged(f"{p.path}: half {i} at offset {p.offsets[i]}: {problem}")
            h = p.halves[i]
            top = max(top, h.sequence_base + h.stats()["reserved"])
            if p.phase(i) != EMPTY:
                halves.append(h)
        if progress >= top + (1 << 32):
            raise SegmentDamaged(f"{p.path}: drain progress {progress} at offset {H_PROGRESS} is beyond "
                                 f"every sequence the halves hold (below {top})")
        halves.sort(key=lambda h: h.sequence_base)
        out = []
        last = progress
        for h in halves:
            # Private copies, kept only if the half was not reformatted while
            # they were taken (a swapper sets `intent` to it before it formats
            # it, and the format gives it a new UUID): a torn or foreign
            # message never reaches the caller.  Until intent is set, a half
            # being claimed for reuse (REUSING) is intact.
            k = p.halves.index(h)
            before = h.uuid
            if p.intent_half() == k and not last_try:
                raise _Reformatted()     # being formatted right now: wait for it
            copies = []
            try:
                for m in SegmentIterator(h):
                    s = m.sequence
                    if s > last:
                        inject.point("partition.read.message")      # its sequence read, the rest not yet
                        copies.append(PartitionMessage.copy_of(m, s))
                        last = s
            except SegmentDamaged:
                if h.uuid == before and p.intent_half() != k:
                    raise                # damage, not a reuse under us
                raise _Reformatted() from None
            inject.point("partition.read.copied")
            if h.uuid != before or (p.intent_half() == k and not last_try):
                raise _Reformatted()
            if p.intent_half() == k:
                note = (f"{p.path}: half {k} at offset {p.offsets[k]} is still named by intent (a swapper "
                        "stopped or died while reusing it); read as found")
                if note not in self.problems:
                    self.problems.append(note)
            out.extend(copies)
        return out

    def _snapshot(self) -> list[PartitionMessage]:
        # A reuse formats a half in well under a second; a half still named by
        # intent after READ_PATIENCE is read as found (its UUID stable over
        # the read), one reformatted under every read raises.
        deadline = _time.monotonic() + READ_PATIENCE
        pause = 0.001
        reformatted = 0
        while True:
            # No live swapper behind an intent: nothing to wait for.
            last_try = _time.monotonic() >= deadline or not self.partition.intent_swapper_alive()
            try:
                return self._snapshot_once(last_try)
            except _Reformatted:
                reformatted += 1         # a half was reused while we read it: look again
            if _time.monotonic() >= deadline and reformatted > 64:
                raise SegmentDamaged(f"{self.partition.path}: a half was reformatted under {reformatted} reads "
                                     "in a row (the partition overflows faster than it can be read)")
            _time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def __iter__(self) -> Iterator[PartitionMessage]:
        msgs = self._snapshot()
        start = self._start
        for m in msgs:
            if start is None or m.sequence >= start:
                yield m

    def reverse(self) -> Iterator[PartitionMessage]:
        return iter(self._snapshot()[::-1])

    def seek(self, sequence: int | None = None, time: int | None = None) -> PartitionMessage:
        if (sequence is None) == (time is None):
            raise InvalidArgument("seek() takes exactly one of sequence= or time=")
        for m in self._snapshot():
            if (m.sequence >= sequence) if sequence is not None else (m.time >= time):
                self._start = m.sequence
                return m
        what = f"sequence >= {sequence}" if sequence is not None else f"time >= {time}"
        raise NoSuchMessage(f"partition {self.partition.path}: no undrained message with {what}")

    def rewind(self) -> None:
        self._start = None

    def limits(self) -> Limits | None:
        msgs = self._snapshot()
        if not msgs:
            return None
        return Limits(msgs[0].sequence, msgs[0].time, msgs[-1].sequence, msgs[-1].time)

    def count(self) -> int:
        return sum(1 for _ in self)


def open_reader(path, key_file=None) -> PartitionReader:
    """A reader over an existing partition file, mapped read-only (for tools);
    key_file decrypts a sealed partition (without it: "[encrypted]").
    Raises SegmentNotFound, SegmentDamaged, UnsupportedFormat, WrongKey."""
    return PartitionReader(Partition(path, create=False, readonly=True, key_file=key_file))


# ====================================================================== the backend

class PartitionStorage(StorageBackend):
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
        self.size = _half_size(o.get("size") or "1MiB")
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
            deadline = _time.monotonic() + WAIT_TIMEOUT
            pause = 50e-6
            while True:
                if full and seg.in_service:
                    full = False
                    if seg.take_out_of_service():  # the election: exactly one caller swaps
                        i = p.halves.index(seg)
                        tok = _token(SWAPPING, 1)
                        if self._claim_half(i, 0, tok):
                            self._do_swap(i, tok)
                cur = self._ready_current()
                if cur is not None and (cur is not seg or seg.in_service):
                    self._cur = cur
                    return cur
                self._take_over_stalled()
                if _time.monotonic() > deadline:
                    raise PartitionSwapTimeout(
                        f"partition {self.path}: no half has been in service for {WAIT_TIMEOUT:g} s "
                        f"(half states: {self._phases()})")
                _time.sleep(pause)
                pause = min(pause * 2, 0.005)

    def _claim_half(self, i: int, old: int, new: int) -> bool:
        """_claim() of half i's token, our identity recorded first (note_holder)."""
        self._p.note_holder(i)
        return _claim(self._p.halves[i], old, new)

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
        is this process but no thread of it holds it (see _held), or it has
        not moved for STALL_TIMEOUT."""
        holder = _holder(tok)
        if holder == os.getpid():
            return tok not in _held
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
            ph = _phase(tok)
            if ph == SWAPPING and self._stale(i, tok):
                new = _token(SWAPPING, _attempt(tok) + 1)
                if self._claim_half(i, tok, new):
                    self.takeovers += 1
                    self._do_swap(i, new)
                    return True
            elif ph == LIVE and not h.in_service and p.current_index() is None:
                # Taken out of service, but its election winner died before claiming the swap.
                oos = h.out_of_service_time
                if oos is not None and (_time.time_ns() - oos) / 1e9 >= LIVE_STALL:
                    new = _token(SWAPPING, 1)
                    if self._claim_half(i, 0, new):
                        self.takeovers += 1
                        self._do_swap(i, new)
                        return True
        return False

    # ------------------------------------------------------------ swapping

    def _do_swap(self, c: int, tok: int) -> bool:
        """As holder of half c's SWAPPING token `tok` (c is out of service,
        `tok` claimed with _claim()): make the other half current.  Every step
        can be repeated by a process that takes over.  Returns False if the
        token was taken from us."""
        try:
            return self._swap_steps(c, tok)
        finally:
            _unhold(tok)

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
                _unhold(otok)
        return self._publish(c, o, tok, base)

    def _reuse(self, c: int, o: int, tok: int, base: int, prev_phase: int) -> bool:
        """Format half o (ours: REUSING) as the new current half, counting and
        reporting what it held that no drain copied."""
        p = self._p
        C, O = p.halves[c], p.halves[o]
        # If intent names O, a swapper died while reusing it: its loss is
        # already reckoned in the intent fields (_finish_reuse uses them).
        if p.intent_half() != o:
            n, first, last = (0, 0, 0) if prev_phase == EMPTY else self._undrained(
                o, settle=True, in_flight=prev_phase == COPYING)
            total = p._u64(H_LOST) + n
            p._put(H_INTENT_LOST, n)
            p._put(H_INTENT_TOTAL, total)
            p._put(H_INTENT_FIRST, first)
            p._put(H_INTENT_LAST, last)
            p._put(H_INTENT_EVENTS, p._u64(H_LOSS_EVENTS) + 1 if n else p._u64(H_LOSS_EVENTS))
            p._put(H_INTENT, o + 1)      # from here O's header may be torn: readers skip it
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
        n, total = p._u64(H_INTENT_LOST), p._u64(H_INTENT_TOTAL)
        first, last = p._u64(H_INTENT_FIRST), p._u64(H_INTENT_LAST)
        events = p._u64(H_INTENT_EVENTS) or p._u64(H_LOSS_EVENTS) + 1
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
            p._put(H_LOSS_EVENTS, events)
        if C.token() != tok:
            return False
        p._put(H_LOST, total)            # idempotent: a taker stores the same total
        inject.point("partition.swap.losses-recorded")
        p._put(H_INTENT, 0)
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
        if not C.claim_token(tok, _token(FULL, _attempt(tok))):
            return False
        p._put(H_CURRENT, o)
        p._put(H_GENERATION, p._u64(H_GENERATION) + 1)
        p._put(H_NEXT_BASE, base)
        p._put(H_LAST_SWAP, _time.time_ns())
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
            ph = _phase(tok)
            take = False
            if ph in (FULL, EMPTY, LIVE, SWAPPING):
                take = True
            elif ph in (DRAINING, COPYING, REUSING):
                holder = _holder(tok)
                take = (_abandoned_here(tok) or (holder != os.getpid() and not p.holder_alive(o, tok))
                        or _time.monotonic() - t0 > DRAIN_WAIT)
            else:
                take = True                  # a damaged token: the half is ours to reformat
            if take:
                new = _token(REUSING, _attempt(tok) + 1)
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
        progress = p._u64(H_PROGRESS)
        n = first = last = 0
        for m in SegmentIterator(h):
            s = m.sequence
            if s > progress:
                if in_flight:
                    in_flight = False
                    progress = s
                    p._put(H_PROGRESS, s)
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
            tok = _token(SWAPPING, 1)
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
        if _time.time_ns() - self._p._u64(H_LAST_SWAP) >= iv * 1e9:
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
                if _phase(tok) == SWAPPING and not p.holder_alive(i, tok):
                    # Finish the dead swapper's swap: every step is repeatable
                    # (also its loss bookkeeping, which a plain "mark it full"
                    # skipped when it died after formatting the new half).
                    new = _token(SWAPPING, _attempt(tok) + 1)
                    if self._claim_half(i, tok, new):
                        self.takeovers += 1
                        self._do_swap(i, new)
            if p.current_index() is None:
                self._take_over_stalled()

    # ------------------------------------------------------------ draining

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
            ph = _phase(tok)
            if ph == FULL or (ph in (DRAINING, COPYING) and (_abandoned_here(tok) or (
                    _holder(tok) != os.getpid() and not p.holder_alive(i, tok)))):
                new = _token(DRAINING, _attempt(tok) + 1)
                if self._claim_half(i, tok, new):
                    try:
                        n += self._copy_half(i, new, into, in_flight=ph == COPYING)
                    finally:
                        _unhold(new)
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
        progress = p._u64(H_PROGRESS)
        copying = _token(COPYING, _attempt(tok), _holder(tok))
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
                p._put(H_MARK, mark)
            _hold(copying)
            if not h.claim_token(tok, copying):
                _unhold(copying)
                break                # a swapper took the half (overflow): the copy may be torn; s is its loss
            try:
                fseq = into.append(pm)
            except BaseException:
                _unhold(copying)     # left COPYING: the next drain resumes it (_reconcile)
                raise
            inject.point("partition.drain.appended")       # in the destination, not yet recorded
            if h.token() != copying or p._u64(H_PROGRESS) != progress:
                # Taken from COPYING while we appended: the swapper counted
                # s as copied and recorded it; only the count is ours.  (And
                # never store a progress over one that moved meanwhile: it
                # would go backwards.  Header words have no CAS, so a stall
                # between this check and the store below is the one window
                # left: docs/partition-format.md, "Draining".)
                _unhold(copying)
                p._put(H_DRAINED, p._u64(H_DRAINED) + 1)
                count += 1
                break
            # Progress first, then the mark: a kill between them leaves an older
            # mark, which only makes the next reconcile search further back.
            p._put(H_PROGRESS, s)
            mark = fseq + 1 if isinstance(fseq, int) and fseq > 0 else mark + 1 if mark else 0
            p._put(H_MARK, mark)
            p._put(H_DRAINED, p._u64(H_DRAINED) + 1)
            progress = s
            count += 1
            back = h.claim_token(copying, tok)
            _unhold(copying)
            if not back:
                break                # taken after we recorded s: nothing in flight
        else:
            flush_destination(into)
            h.claim_token(tok, _token(EMPTY, _attempt(tok)))
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
        fm = find_copy(into, p._u64(H_MARK), first)
        if fm is None:
            return False
        p._put(H_PROGRESS, first.sequence)
        p._put(H_MARK, fm.sequence + 1)
        p._put(H_DRAINED, p._u64(H_DRAINED) + 1)
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
            "lost": p._u64(H_LOST),
            "loss_events": p._u64(H_LOSS_EVENTS),
            "swaps": p._u64(H_GENERATION),
            "drained": p._u64(H_DRAINED),
            "drain_progress": p._u64(H_PROGRESS),
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
            _half_size(o.get("size") or "1MiB")
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
