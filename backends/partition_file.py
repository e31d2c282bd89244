"""The partition file (backends/partition.py's storage keeps its messages in
it): the byte layout, the half-state tokens and who holds them, and
`Partition`, one file mapped (creation, header access, keys).  The swap
protocol is backends/partition.py, the drain partition_drain.py, reading
partition_reader.py; docs/partition-format.md is the byte-level reference.
"""
from __future__ import annotations

import errno
import mmap
import os
import stat
import struct
import threading
import time as _time
import uuid as _uuid

from logkit._segment import (Segment, crc32c, load_word, parse_size, token_attempt, token_make,
                             token_pid, token_state, store_word)
from logkit.errors import (
    DiskFull,
    InvalidArgument,
    LogkitError,
    SegmentDamaged,
    SegmentNotFound,
    UnsafePath,
    UnsupportedFormat,
)
from logkit import forking, safefs
from logkit.salvager import identity_alive, process_alive, process_identity

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


# Tokens held right now by threads of this process (token -> how many claims).
# A token names only a pid, so this is how a thread tells a step another
# thread of its own process is doing from one a thread abandoned (it raised);
# a process-wide fact, hence module state.  Cleared in a forked child.
_held: dict[int, int] = {}
_held_lock = threading.Lock()


def hold_token(tok: int) -> None:
    """Note that a thread of this process holds `tok` (release_token() it
    when done): what tells a step in progress here from an abandoned one."""
    with _held_lock:
        _held[tok] = _held.get(tok, 0) + 1


def release_token(tok: int) -> None:
    """Undo one hold_token(tok)."""
    with _held_lock:
        n = _held.get(tok, 0) - 1
        if n > 0:
            _held[tok] = n
        else:
            _held.pop(tok, None)


def claim_and_hold(seg: Segment, old: int, new: int) -> bool:
    """CAS a half's token from `old` to `new`, holding `new` (release_token()
    it when done).  False, holding nothing, if the token was not `old`."""
    hold_token(new)
    if seg.claim_token(old, new):
        return True
    release_token(new)
    return False


def held_here(tok: int) -> bool:
    """Does a thread of this process hold `tok` right now (hold_token)?"""
    return tok in _held


def abandoned_here(tok: int) -> bool:
    """A token of this process that no thread of it holds any more."""
    return token_pid(tok) == os.getpid() and tok not in _held


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


def make_token(phase: int, attempt: int = 0, pid: int | None = None) -> int:
    """A half's state token: `phase`, `attempt`, and `pid` (default: this process)."""
    return token_make(phase, attempt, os.getpid() if pid is None else pid)


_token = make_token


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


def round_half_size(size) -> int:
    """The bytes of a half for the `size` option: rounded up to whole pages,
    at least MIN_HALF.  Raises InvalidArgument (naming `size`) above MAX_HALF."""
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
                self._create(round_half_size(size), mode)
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
            self.half_size = self.header_word(H_HALF_SIZE)
            self.offsets = (self.header_word(H_HALF0), self.header_word(H_HALF1))
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
                h1.claim_token(0, make_token(EMPTY))
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

    def header_word(self, off: int) -> int:
        """The u64 partition-header word at byte offset `off` (an H_* name), one atomic load."""
        return load_word(self.mm, off)

    def set_header_word(self, off: int, v: int) -> None:
        """Store the u64 partition-header word at `off` (an H_* name): only the
        holder of the token that covers the word writes it (module docstring)."""
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
        half = self.header_word(H_HALF_SIZE)
        o0, o1 = self.header_word(H_HALF0), self.header_word(H_HALF1)
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
        return self.header_word(H_GENERATION)

    def token(self, i: int) -> int:
        return self.halves[i].token()

    def phase(self, i: int) -> int:
        return token_state(self.halves[i].token())

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
        self.set_header_word(H_HOLDER[i], _my_holder_word())

    def holder_alive(self, i: int, tok: int) -> bool:
        """Does the process named by half i's token `tok` still run?  Judged
        with its start time when the holder word names the same pid (a pid
        alone is fooled by pid reuse and by pid namespaces), else by the pid
        alone (a claimer whose word a racing loser overwrote, or a file
        written before the word existed)."""
        pid = token_pid(tok)
        w = self.header_word(H_HOLDER[i])
        if w >> 32 == pid and w & 0xFFFFFFFF:
            return identity_alive(pid, w & 0xFFFFFFFF)
        return process_alive(pid)

    def intent_half(self) -> int | None:
        v = self.header_word(H_INTENT)
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
        return token_state(tok) == SWAPPING and self.holder_alive(c, tok)

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

