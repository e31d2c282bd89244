"""Family names: the rules for a family's name and its history segments'
names (`FAMILY.YYYYMMDD.HHMMSS[.NNNN]`), listing a family's history, and the
small file helpers the writer (family.py), the reader (family_reader.py) and
retention (family_retention.py) share.  The lowest of the family modules.
"""
from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Sequence

from logkit._segment import Segment
from logkit.errors import InvalidArgument, LogkitError

if TYPE_CHECKING:
    from logkit.crypto import KeyRing

__all__ = [
    "check_family", "parse_duration", "history_segments", "next_history_name", "left_service",
    "fsync_dir", "previous_field", "open_segment",
]

_FAMILY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]{0,62}")


def check_family(family: str) -> str:
    """`family`, if it is a valid family name (1-63 letters, digits, '_' or
    '-', not starting with '-'); else raises InvalidArgument."""
    if not isinstance(family, str) or not _FAMILY_RE.fullmatch(family):
        raise InvalidArgument(f"family name {family!r}: use 1-63 letters, digits, '_' or '-', "
                              "not starting with '-'")
    return family


def parse_duration(value, what: str = "duration") -> float:
    """Seconds from a number or a string like '90s', '15m', '12h', '7d'."""
    if isinstance(value, bool):
        raise InvalidArgument(f"{what}: {value!r} is not a duration")
    if isinstance(value, (int, float)):
        if value < 0:
            raise InvalidArgument(f"{what}: {value!r} is negative")
        return float(value)
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhdw]?)\s*", str(value), re.ASCII)
    if not m:
        raise InvalidArgument(f"{what}: {value!r} is not a duration (use seconds or e.g. '15m', '12h', '7d')")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


def _history_re(family: str):
    return re.compile(re.escape(family) + r"\.(\d{8})\.(\d{6})(?:\.(\d{4}))?")


def history_segments(directories: str | os.PathLike | Sequence, family: str) -> list[str]:
    """Paths of the family's history segments in all `directories`, oldest first
    (ordered by name alone: a missing or damaged one loses only itself)."""
    check_family(family)
    dirs = [directories] if isinstance(directories, (str, os.PathLike)) else list(directories)
    pat = _history_re(family)
    found = {}
    for d in dirs:
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            continue
        for n in names:
            if pat.fullmatch(n) and n not in found:
                found[n] = os.path.join(os.fspath(d), n)
    return [found[n] for n in sorted(found)]


def _stamp(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y%m%d.%H%M%S")


def next_history_name(directory: str, family: str, when_ns: int, after: str = "") -> str:
    """The history name for a segment taken out of service at `when_ns`: never
    sorting before an existing one (even if the clock stepped back), nor
    before `after`, the name of the segment's predecessor, which may have been
    migrated to another directory."""
    pat = _history_re(family)
    stamp = _stamp(when_ns)
    names = sorted(n for n in os.listdir(directory) + [after] if pat.fullmatch(n))
    if names:
        m = pat.fullmatch(names[-1])
        last_stamp = f"{m.group(1)}.{m.group(2)}"
        if last_stamp >= stamp:
            suffix = int(m.group(3) or 0) + 1
            if suffix > 9999:
                raise LogkitError(f"{directory}/{family}: more than 9999 rotations in one second")
            return f"{family}.{last_stamp}.{suffix:04d}"
    return f"{family}.{stamp}"


def fsync_dir(directory: str) -> None:
    """fsync `directory` itself (so the names created or removed in it last)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def previous_field(path: str) -> str:
    """What a header's previous-segment field (at most 255 bytes) records for
    `path`: the full path, or its name alone when the path is too long."""
    return path if len(os.fsencode(path)) < 256 else os.path.basename(path)


def open_segment(path: str | os.PathLike, readonly: bool, ring: KeyRing | None) -> Segment:
    """Segment.open, with the key ring (logkit.crypto.load_key_file) only when
    there is one (so an unsealed log calls exactly what it always did).
    Raises what Segment.open raises."""
    if ring is None:
        return Segment.open(path, readonly) if readonly else Segment.open(path)
    return Segment.open(path, readonly, key=ring)


def left_service(path: str, family: str) -> float | None:
    """When a history segment of `family` left service, from its name
    (seconds since the epoch, UTC); None for a name that is not one."""
    m = _history_re(family).fullmatch(os.path.basename(path))
    if not m:
        return None
    t = datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
    return t.timestamp()
