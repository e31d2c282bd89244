"""The logkit error hierarchy: every error a caller can see derives from LogkitError.

Messages name the thing that is wrong (the file, the segment and offset, the
argument), so a log line alone is enough to act on.
"""
from __future__ import annotations

__all__ = [
    "LogkitError",
    "InvalidArgument",
    "SegmentFull",
    "SegmentDamaged",
    "OutOfService",
    "NoSuchMessage",
    "MessageTooBig",
    "MessageLost",
    "SegmentClosed",
    "SegmentNotFound",
    "SegmentExists",
    "DiskFull",
    "ReadOnlySegment",
    "UnsupportedFormat",
    "UnsafePath",
    "ReadOnlyFileSystem",
    "ReservationWordDamaged",
    "MissingKey",
    "WrongKey",
    "MessageTampered",
]


class LogkitError(Exception):
    """Base class of every error logkit raises."""


class InvalidArgument(LogkitError, ValueError):
    """An argument is out of range or of the wrong kind (size, severity, name)."""


class SegmentFull(LogkitError):
    """The segment has no room left for this message (a smaller one may still fit)."""


class SegmentDamaged(LogkitError):
    """The segment's bytes are not a valid segment; salvage may recover its messages."""


class OutOfService(LogkitError):
    """The segment has been taken out of service; no new reservation is accepted."""


class NoSuchMessage(LogkitError, LookupError):
    """No message matches the sequence number or time asked for."""


class MessageTooBig(LogkitError):
    """The message is larger than this segment could ever hold."""


class MessageLost(LogkitError):
    """A reservation was abandoned (by salvage) before its writer finished it."""


class SegmentClosed(LogkitError):
    """The segment was closed; views into it can no longer be read."""


class SegmentNotFound(LogkitError, FileNotFoundError):
    """No segment file at the given path."""


class SegmentExists(LogkitError, FileExistsError):
    """A file already exists where a new segment was to be created."""


class DiskFull(LogkitError, OSError):
    """The file system has no room for a new segment; nothing was created."""


class ReadOnlySegment(LogkitError):
    """A write was attempted on a segment opened read-only."""


class UnsupportedFormat(LogkitError):
    """The segment is sound but of a format version this logkit does not read."""


class UnsafePath(LogkitError, PermissionError):
    """A name in a log directory is a symbolic link or the wrong kind of file,
    or the directory lets every user replace its files (world-writable without
    the sticky bit); logkit.safefs refuses to use it.  The message names it."""


class ReadOnlyFileSystem(LogkitError, OSError):
    """A file could not be created or written because its directory is on a
    read-only file system; the message names the directory."""


class ReservationWordDamaged(SegmentDamaged, OutOfService):
    """A write found the segment's reservation word (header offset 512)
    scribbled: nothing was written through it, and the write took the segment
    out of service, so a family rotates past it (it is an OutOfService too);
    salvage repairs the word later."""


class MissingKey(LogkitError, LookupError):
    """A message was sealed under a key id that the key file does not hold.
    (Also logkit.crypto.MissingKey.)"""


class WrongKey(LogkitError):
    """The key file holds a key with the message's key id, but not the key it
    was sealed with (every message fails authentication, or the segment's key
    check differs).  (Also logkit.crypto.WrongKey.)"""


class MessageTampered(LogkitError):
    """A sealed message failed authentication: a byte of it was changed.
    (Also logkit.crypto.MessageTampered.)"""
