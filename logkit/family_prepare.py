"""Preparing a family's next segment ahead of time, so that the write that
fills the live segment only installs a ready one (issue 15, "never stall the
caller").  Sits between family_names and the writer (family.py): the writer
takes a prepared file at rotation; a daemon thread per writer prepares it,
premaps it, and does the rotation's chores (directory fsync, retention).

The files, all beside the live segment (docs/format.md, "Prepared segments"):

* ``.FAMILY.prepare``: the preparers' lock (an empty file, never removed).
  Exactly one process prepares at a time: the one holding flock(LOCK_EX) on
  it.  The kernel releases the lock of a process that dies, so a preparer
  killed at any step is "taken over" by the next one that tries, at once.
* ``.FAMILY.prep.PID.START.RANDOM``: a file being prepared (O_EXCL,
  unpredictable name) by the process PID started at START: created,
  allocated, pre-faulted.  Its header is zeros: no reader, verify or salvage
  takes it for a segment.  A dead preparer's is removed by the next one.
* ``.FAMILY.next``: the prepared file, ready (full size, allocated, its pages
  in memory, header still zeros).  Published with link(2), which never
  replaces: there is never more than one.

At rotation the installer takes ``.FAMILY.next`` by renaming it to its own
``.FAMILY.PID.RANDOM.new`` (one rename succeeds), writes the header (the
identity: sequence base, previous name, creation time, UUID, sealing) with
Segment.format(zeroed=True), and renames it to ``.FAMILY.PID.RANDOM.live``,
the name the rotation protocol installs from.  So a ``.live`` file is
always a formatted segment, as before.
"""
from __future__ import annotations

import fcntl
import mmap
import os
import threading
import time as _time
import uuid as _uuid
import weakref

from logkit import inject
from logkit._segment import Segment
from logkit.family_names import fsync_dir
from logkit.salvager import identity_alive, process_identity

__all__ = ["next_path", "lock_path", "prepare_next", "take_prepared", "remove_dead_preparations",
           "map_segment", "Preparer", "DEFAULT_PREPARE_AT"]

DEFAULT_PREPARE_AT = 0.5          # prepare the next segment once the live one is half full
_POLL_LONGEST = 0.25              # the thread looks at the live segment at least this often
_POLL_SHORTEST = 0.002


def next_path(directory: str, family: str) -> str:
    """The path of the family's prepared next segment, ``.FAMILY.next``."""
    return os.path.join(directory, f".{family}.next")


def lock_path(directory: str, family: str) -> str:
    """The path of the preparers' lock file, ``.FAMILY.prepare``."""
    return os.path.join(directory, f".{family}.prepare")


def _prep_prefix(family: str) -> str:
    return f".{family}.prep."


def remove_dead_preparations(directory: str, family: str) -> list[str]:
    """Remove the files being prepared by processes that no longer run
    (judged by pid and start time, from the name).  Returns the paths removed."""
    prefix = _prep_prefix(family)
    removed = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return removed
    for n in names:
        if not n.startswith(prefix):
            continue
        parts = n[len(prefix):].split(".")
        try:
            pid, start = int(parts[0]), int(parts[1])
        except (IndexError, ValueError):
            continue
        if identity_alive(pid, start):
            continue
        try:
            os.unlink(os.path.join(directory, n))
            removed.append(os.path.join(directory, n))
        except FileNotFoundError:
            pass
    return removed


def _populate(mm: mmap.mmap) -> None:
    """Fault every page of a writable mapping in, without holding the GIL."""
    seg = Segment.from_buffer(mm, check_header=False)
    try:
        seg.prefault()
    finally:
        seg.close()


def prepare_next(directory: str, family: str, size: int, mode: int = 0o640,
                 keep_mapping: bool = False):
    """Prepare ``.FAMILY.next`` unless it exists or another process is
    preparing it: create, allocate and pre-fault a file of `size` bytes under
    a temporary name, then publish it.  Returns the path published, or None
    if this call published nothing; with keep_mapping, (path, (dev, ino),
    mmap) or None: the identity is the mapped file's own (fstat of the
    descriptor mapped), never what `path` names later, when another process
    may already have taken that file and published a new one.
    Raises OSError (e.g. ENOSPC) after removing its temporary."""
    nxt = next_path(directory, family)
    if os.path.exists(nxt):
        return None
    lfd = os.open(lock_path(directory, family), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        try:
            fcntl.flock(lfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None                        # another process is preparing it
        inject.point("family.prepare.locked")
        if os.path.exists(nxt):
            return None                        # prepared while we took the lock
        remove_dead_preparations(directory, family)
        pid, start = process_identity()
        tmp = os.path.join(directory, f"{_prep_prefix(family)}{pid}.{start}.{_uuid.uuid4().hex[:8]}")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
        mm = None
        try:
            os.fchmod(fd, mode)
            st = os.fstat(fd)
            inject.point("family.prepare.created")
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as e:
                if e.errno not in (95, 22):    # no fallocate on this file system: fall back
                    raise
                os.ftruncate(fd, size)
            inject.point("family.prepare.allocated")
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            _populate(mm)
            inject.point("family.prepare.prefaulted")
            try:
                os.link(tmp, nxt)              # never replaces: one prepared file at most
            except FileExistsError:
                mm.close()
                return None
            inject.point("family.prepare.published")
        except BaseException:
            if mm is not None:
                mm.close()
            os.close(fd)
            fd = -1
            os.unlink(tmp)
            raise
        finally:
            if fd >= 0:
                os.close(fd)
        os.unlink(tmp)
        if keep_mapping:
            return nxt, (st.st_dev, st.st_ino), mm
        mm.close()
        return nxt
    finally:
        os.close(lfd)                          # releases the lock


def take_prepared(directory: str, family: str) -> str | None:
    """Take the prepared next segment for installing: rename it to a name of
    this process's own (``.FAMILY.PID.RANDOM.new``) and return that path, or
    None if there is none (or another installer took it first)."""
    mine = os.path.join(directory, f".{family}.{os.getpid()}.{_uuid.uuid4().hex[:8]}.new")
    try:
        os.rename(next_path(directory, family), mine)
    except FileNotFoundError:
        return None
    return mine


def map_segment(path: str, ring=None, mm: mmap.mmap | None = None,
                ident: tuple[int, int] | None = None) -> tuple[Segment, tuple[int, int]]:
    """Open the segment at `path` for writing without pre-faulting it (the
    preparer thread does that off the write path): ``(segment, (dev, ino))``.
    `mm` and `ident`: a mapping made earlier (premapped) of the file `ident`
    (dev, ino), used instead of opening `path` (the segment is that file's,
    whatever `path` names now).  Raises what Segment.from_buffer raises,
    SegmentNotFound."""
    from logkit.errors import SegmentNotFound
    if mm is None:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SegmentNotFound(f"no segment at {path}") from None
        try:
            st = os.fstat(fd)
            mm = mmap.mmap(fd, st.st_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        ident = (st.st_dev, st.st_ino)
    try:
        if ring is None:
            seg = Segment.from_buffer(mm, path=path, close_buffer=True)
        else:
            seg = Segment.from_buffer(mm, path=path, close_buffer=True, key=ring)
    except BaseException:
        try:
            mm.close()
        except BufferError:
            pass
        raise
    return seg, ident


# How long FamilyWriter.close() waits for a preparation in progress to end
# (creating, allocating and faulting in one segment: milliseconds for 8 MiB).
STOP_TIMEOUT = 10.0


class Preparer:
    """The background side of one FamilyWriter: a daemon thread, started on
    first use, that prepares the family's next segment once the live one is
    `prepare_at` full, maps it into this process and faults it in (so the
    switch to it costs no page faults either), and runs the chores a
    rotation leaves (fsync of the directory, retention, old temporaries).

    Holds the writer weakly: the thread ends when the writer is closed or
    freed, and never keeps the interpreter from exiting (daemon).  In a
    forked child the thread is gone: logkit.forking resets this object and
    the next use starts a new thread."""

    def __init__(self, writer) -> None:
        self._writer = weakref.ref(writer)
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._chores: set[str] = set()
        self.premapped: tuple[tuple[int, int], mmap.mmap] | None = None   # ((dev, ino), mapping) of .FAMILY.next
        self.prepared = 0                 # next segments this process prepared
        self.errors = 0                   # preparations that failed (e.g. disk full); the writer falls back
        self.last_error: BaseException | None = None

    # ------------------------------------------------------------- control

    def start(self) -> None:
        """Start the thread if it is not running (first use, or after a fork)."""
        t = self._thread
        if t is not None and t.is_alive():
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            w = self._writer()
            name = f"logkit-prepare-{w.family if w is not None else '?'}"
            t = threading.Thread(target=_run, args=(self._writer, self), name=name, daemon=True)
            self._thread = t
            t.start()

    def kick(self, *chores: str) -> None:
        """Wake the thread now (starting it if needed), with chores to do:
        "fsync", "retain", "populate"."""
        with self._lock:
            self._chores.update(chores)
        self._wake.set()
        self.start()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """The writer closed: wake the thread and wait (up to `timeout`
        seconds) until it has ended, so that once close() returns nothing
        of this process creates or changes a file in the family's directory
        any more (a step in progress finishes first: it leaves a whole
        .FAMILY.next or nothing); release the premapped file."""
        self._wake.set()
        t = self._thread
        if t is not None and t is not threading.current_thread() and t.is_alive():
            t.join(timeout)
        with self._lock:
            pm, self.premapped = self.premapped, None
        if pm is not None:
            try:
                pm[1].close()
            except BufferError:
                pass

    def take_premapped(self, ident: tuple[int, int]) -> mmap.mmap | None:
        """The mapping of the file `ident` (dev, ino) if the thread premapped
        it (and forget it); else None."""
        with self._lock:
            pm = self.premapped
            if pm is not None and pm[0] == ident:
                self.premapped = None
                return pm[1]
        return None

    def after_fork(self) -> None:
        """In a forked child: no thread runs; start one on next use."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None

    @property
    def running(self) -> bool:
        """True while the thread runs."""
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------- the work

    def _step(self, w) -> float:
        """One look: chores, then the next segment.  Returns seconds until the next look."""
        with self._lock:
            chores, self._chores = self._chores, set()
        if "fsync" in chores:
            fsync_dir(w.directory)
        if "retain" in chores:
            w.after_rotation_chores()
        seg = w.segment
        if "populate" in chores and seg is not None and not seg.closed:
            try:
                seg.prefault()
            except Exception:
                pass
        size = seg.size if seg is not None and not seg.closed else 0
        try:
            used = seg.used() if size else 0
        except Exception:
            used = 0
        if size and used >= w.prepare_at * size:
            self._make_ready(w)
            return _POLL_LONGEST
        # Not yet: look again about when the live segment may cross the mark.
        now = _time.monotonic()
        last = getattr(self, "_sample", None)
        self._sample = (now, used, id(seg))
        if last is not None and last[2] == id(seg) and used > last[1] and now > last[0]:
            rate = (used - last[1]) / (now - last[0])
            return min(_POLL_LONGEST, max(_POLL_SHORTEST, (w.prepare_at * size - used) / rate / 2))
        return 0.01

    def _make_ready(self, w) -> None:
        nxt = next_path(w.directory, w.family)
        try:
            st = os.stat(nxt)
        except FileNotFoundError:
            st = None
        if st is None:
            try:
                got = prepare_next(w.directory, w.family, w.segment_size, w.mode, keep_mapping=True)
            except OSError as e:
                self.errors += 1
                self.last_error = e
                return
            inject.point("family.prepare.unlocked")
            if got is None:
                return
            _path, ident, mm = got
            self.prepared += 1
            self._keep(ident, mm)
            return
        ident = (st.st_dev, st.st_ino)
        pm = self.premapped
        if pm is not None and pm[0] == ident:
            return
        # Prepared by another process: map it here too and fault it in.
        try:
            fd = os.open(nxt, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except (FileNotFoundError, OSError):
            return
        try:
            st = os.fstat(fd)
            if st.st_size != w.segment_size:
                return
            mm = mmap.mmap(fd, st.st_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        _populate(mm)
        self._keep((st.st_dev, st.st_ino), mm)

    def _keep(self, ident, mm) -> None:
        with self._lock:
            old, self.premapped = self.premapped, (ident, mm)
        if old is not None:
            try:
                old[1].close()
            except BufferError:
                pass


def _run(ref, prep: Preparer) -> None:
    wake = prep._wake
    while True:
        w = ref()
        if w is None or w.closed:
            return
        try:
            timeout = prep._step(w)
        except Exception as e:             # never die: the writer falls back to creating inline
            prep.errors += 1
            prep.last_error = e
            timeout = _POLL_LONGEST
        del w
        if wake.wait(timeout):
            wake.clear()
        if prep._wake is not wake:          # reset after a fork (not reached: no thread in a child)
            return
