"""Retention and migration of a family's history: which history segments
retain() deletes (by count, age, size), and migrate() to move history to
another directory.  Sits on family_names; the writer (family.py) calls retain().
"""
from __future__ import annotations

import os
import time as _time

from logkit._segment import Segment, parse_size
from logkit.errors import InvalidArgument, LogkitError
from logkit import idledger, safefs
from logkit.family_names import (check_family, fsync_dir, history_segments, left_service, parse_duration,
                                 previous_field)

__all__ = ["retention_plan", "retain", "migrate"]


def retention_plan(directory, family: str, max_age=None, max_count: int | None = None, max_size=None,
                   now: float | None = None) -> list[str]:
    """The history segments retain() would delete now, oldest first: beyond
    the newest `max_count`, older than `max_age`, then the oldest of what is
    left until at most `max_size` bytes remain.  Deletes nothing (the dry
    run of `logkit retain`)."""
    check_family(family)
    hist = history_segments(directory, family)
    now = _time.time() if now is None else now
    doomed: set[str] = set()
    if max_count is not None:
        if not isinstance(max_count, int) or max_count < 0:
            raise InvalidArgument(f"max_count {max_count!r} must be a whole number >= 0")
        doomed.update(hist[:max(0, len(hist) - max_count)])
    if max_age is not None:
        age = parse_duration(max_age, "max_age")
        for p in hist:
            t = left_service(p, family)
            if t is not None and now - t > age:
                doomed.add(p)
    if max_size is not None:
        limit = parse_size(max_size, "max_size")
        sizes = [(p, os.stat(p).st_size) for p in hist if p not in doomed and os.path.exists(p)]
        total = sum(sz for _, sz in sizes)
        for p, sz in sizes:
            if total <= limit:
                break
            doomed.add(p)
            total -= sz
    return [p for p in hist if p in doomed]


def retain(directory, family: str, max_age=None, max_count: int | None = None, max_size=None,
           now: float | None = None) -> list[str]:
    """Delete the oldest history segments until the family keeps at most
    `max_count` of them, none older than `max_age` (seconds or '7d'; measured
    from when each left service, i.e. its name), and at most `max_size` bytes
    (number or '1GiB') of history.  The live segment is never deleted.
    Returns the paths removed (retention_plan() says which, without deleting)."""
    removed = []
    for p in retention_plan(directory, family, max_age, max_count, max_size, now):
        try:
            os.unlink(p)
            removed.append(p)
        except FileNotFoundError:
            pass
    return removed


def _migrate_one(src_fd: int, dst_fd: int, name: str, path: str, new: str) -> None:
    """Move history segment `name` from the directory src_fd to dst_fd: a
    hard link where both are on one file system, else a copy into an
    unpredictable O_EXCL temporary that is then linked to `name` (link(2)
    never replaces), fsynced before the source goes."""
    try:
        os.link(name, name, src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
        safefs.unlink_in(src_fd, name)
        return
    except FileExistsError:
        a = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
        b = os.stat(name, dir_fd=dst_fd, follow_symlinks=False)
        if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino):
            raise LogkitError(f"cannot migrate {path}: {new} already exists (a different file "
                              "of the same name); nothing was overwritten") from None
        safefs.unlink_in(src_fd, name)           # an interrupted migrate linked it already: resume
        return
    except OSError as e:
        if e.errno != 18:                        # EXDEV: another file system
            raise safefs.translate_error(e, new, "link") from None
    src = safefs.open_in(src_fd, name, os.O_RDONLY, path=path)
    try:
        st = os.fstat(src)
        out, tmp = safefs.create_temporary(dst_fd, name, mode=st.st_mode & 0o777, path_dir=os.path.dirname(new))
        try:
            try:
                while True:
                    chunk = os.read(src, 1 << 20)
                    if not chunk:
                        break
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(out, view):]
                os.fsync(out)
            finally:
                os.close(out)
            try:
                os.link(tmp, name, src_dir_fd=dst_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
            except FileExistsError:
                raise LogkitError(f"cannot migrate {path}: {new} already exists; nothing was "
                                  "overwritten") from None
        finally:
            safefs.unlink_in(dst_fd, tmp)
    except OSError as e:
        raise safefs.translate_error(e, new, "copy to") from None
    finally:
        os.close(src)
    os.fsync(dst_fd)
    safefs.unlink_in(src_fd, name)


def migrate(directory, family: str, destination) -> list[str]:
    """Move the family's history segments from `directory` to `destination`
    (created if needed) and update previous-segment links, so that
    open_reader([directory, destination], family) reads the family end to end.
    The live segment stays.  Returns the new paths."""
    check_family(family)
    directory = os.path.abspath(os.fspath(directory))
    destination = os.path.abspath(os.fspath(destination))
    safefs.make_directories(destination)
    moved = {}
    # Every name is opened relative to its directory's descriptor, never
    # following a link (safefs): a name planted in either directory (a link
    # to /etc/shadow where the copy is written) is refused, never written
    # through.  Nothing already at the destination is ever replaced.
    # A sealed segment's identity goes with it: its ledger records first, so
    # an interrupted migrate leaves them in both directories, never in neither.
    idledger.copy_ledger(directory, destination, family)
    src_fd = safefs.open_directory(directory, writing=True)
    try:
        dst_fd = safefs.open_directory(destination, writing=True)
        try:
            for p in history_segments(directory, family):
                name = os.path.basename(p)
                new = os.path.join(destination, name)
                _migrate_one(src_fd, dst_fd, name, p, new)
                moved[p] = new
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)
    fsync_dir(destination)
    fsync_dir(directory)
    # Links: any segment (moved or live) whose previous was a moved one.
    candidates = list(moved.values()) + [os.path.join(directory, family)]
    for p in candidates:
        if not os.path.exists(p):
            continue
        try:
            seg = Segment.open(p)
        except LogkitError:
            continue
        with seg:
            prev = seg.previous
            full = prev if os.path.isabs(prev) else os.path.join(directory, prev)
            if full in moved:
                target = moved[full]
                seg.set_previous(previous_field(target))
    return list(moved.values())
