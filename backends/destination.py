"""Where a drain copies to: the helpers the partition drain and the pipe
journal share (logkit.backends.destination).

Both copy messages into a destination storage (a family, a plain file, any
backend with ``append``) and, after a crash, must tell whether the one
message they had in flight reached it.  They do it the same way: from the
destination's next sequence number recorded just before the copy (the
*mark*), they look for a message that is a copy of it.  Content alone never
makes a message count as copied: only the message that was in flight at
that position is looked for (docs/partition-format.md, "Draining").
"""
from __future__ import annotations

from logkit.errors import LogkitError, NoSuchMessage

__all__ = ["copy_identity", "destination_reader", "destination_next", "find_copy", "flush_destination"]


def copy_identity(m) -> tuple:
    """What identifies a copy of message `m` in the destination: its time,
    pid, tid, severity, text, data class and data (a copy keeps all of them;
    its sequence number is the destination's own)."""
    return (m.time, m.process_id, m.thread_id, m.severity, m.text, m.data_class or "", bytes(m.data))


def destination_reader(into):
    """A reader over what `into` stores (its ``reader()``, or a family
    reader for a storage with ``directory`` and ``family``), or None if it
    cannot be read."""
    try:
        if hasattr(into, "reader"):
            return into.reader()
        if hasattr(into, "directory") and hasattr(into, "family"):
            from logkit.family import open_reader as _family_reader
            return _family_reader(into.directory, into.family)
    except (LogkitError, OSError):
        return None
    return None


def destination_next(into) -> int:
    """The sequence number the next message appended to `into` will get at
    the least (0: `into` cannot say): the mark a copy records before it
    appends, where a search for that copy starts."""
    r = destination_reader(into)
    if r is None:
        return 0
    try:
        lim = r.limits()
    except (LogkitError, OSError):
        return 0
    return lim.last_sequence + 1 if lim is not None else 1


def find_copy(into, mark: int, message):
    """The destination's copy of `message` at or after sequence `mark` (the
    mark recorded before it was appended), or None: not there, or `into`
    cannot be read."""
    if not mark:
        return None
    r = destination_reader(into)
    if r is None:
        return None
    want = copy_identity(message)
    try:
        r.seek(sequence=mark)
        for m in r:
            if copy_identity(m) == want:
                return m
    except (NoSuchMessage, LogkitError, OSError):
        return None
    return None


def flush_destination(into) -> None:
    """Make what was appended to `into` durable as it defines it (flush or sync)."""
    f = getattr(into, "flush", None) or getattr(into, "sync", None)
    if f is not None:
        f()
