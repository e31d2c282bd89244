"""logkit: lock-free, crash-safe logging into memory-mapped log segments.

The segment core (logkit._segment, compiled from pyx/) is the foundation;
salvage recovers what is valid after damage.
"""
from logkit._segment import (
    FORMAT_VERSION,
    HEADER_SIZE,
    MAX_SEGMENT_SIZE,
    MIN_SEGMENT_SIZE,
    SEVERITY_MAX,
    SEVERITY_MIN,
    Limits,
    Message,
    Record,
    Reservation,
    Segment,
    SegmentIterator,
    crc32c,
    parse_size,
)
from logkit.errors import (
    DiskFull,
    InvalidArgument,
    LogkitError,
    MessageLost,
    MessageTooBig,
    NoSuchMessage,
    OutOfService,
    ReadOnlySegment,
    SegmentClosed,
    SegmentDamaged,
    SegmentExists,
    SegmentFull,
    SegmentNotFound,
    UnsupportedFormat,
)
from logkit.family import (
    FamilyReader,
    FamilyWriter,
    RotationTimeout,
    migrate,
    open_reader,
    open_writer,
    retain,
)
from logkit.salvager import SalvageReport, salvage
from logkit.config import ConfigError
from logkit.registry import BackendNotFound
from logkit.handler import Handler
from logkit.formatters import format_message

__version__ = "0.1.0"

__all__ = [
    "format_message",
    "FORMAT_VERSION", "HEADER_SIZE", "MAX_SEGMENT_SIZE", "MIN_SEGMENT_SIZE",
    "SEVERITY_MAX", "SEVERITY_MIN",
    "Limits", "Message", "Record", "Reservation", "Segment", "SegmentIterator",
    "crc32c", "parse_size", "salvage", "SalvageReport",
    "open_writer", "open_reader", "FamilyWriter", "FamilyReader", "retain", "migrate",
    "RotationTimeout", "Handler", "ConfigError", "BackendNotFound",
    "LogkitError", "InvalidArgument", "SegmentFull", "SegmentDamaged", "OutOfService",
    "NoSuchMessage", "MessageTooBig", "MessageLost", "SegmentClosed", "SegmentNotFound",
    "SegmentExists", "DiskFull", "ReadOnlySegment", "UnsupportedFormat",
]
