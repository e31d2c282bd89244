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
    RecordInfo,
    Reservation,
    Segment,
    SegmentIterator,
    SegmentRepair,
    crc32c,
    parse_size,
    record_encode,
    record_info,
)
from logkit.errors import (
    DiskFull,
    InvalidArgument,
    LogkitError,
    MessageLost,
    MessageTampered,
    MissingKey,
    WrongKey,
    MessageTooBig,
    NoSuchMessage,
    OutOfService,
    ReadOnlyFileSystem,
    ReadOnlySegment,
    ReservationWordDamaged,
    SegmentClosed,
    SegmentDamaged,
    SegmentExists,
    SegmentFull,
    SegmentNotFound,
    UnsafePath,
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

# Imported on first use (PEP 562): the command-line tools start in a fraction
# of the time when `import logkit` does not pull in logging, TOML, the entry
# point machinery and the formatters.
_LAZY = {
    "ConfigError": "logkit.config",
    "BackendNotFound": "logkit.registry",
    "Handler": "logkit.handler",
    "format_message": "logkit.formatters",
    "bind": "logkit.contextfields",
    "unbind": "logkit.contextfields",
    "context": "logkit.contextfields",
}


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'logkit' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def get_include() -> str:
    """The directory of logkit's C headers (lk_segment.h and the headers it
    includes), for a Cython extension that cimports logkit._segment: pass it
    in the extension's include_dirs.  Installed, the headers are in
    logkit/include and the .pxd files beside the modules; in a source checkout
    (an editable install), pyx/include, with the .pxd files in pyx/logkit."""
    import os
    here = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(here, "include")
    if os.path.isdir(installed):
        return installed
    return os.path.join(os.path.dirname(here), "pyx", "include")


__version__ = "0.1.0"

__all__ = [
    "format_message",
    "FORMAT_VERSION", "HEADER_SIZE", "MAX_SEGMENT_SIZE", "MIN_SEGMENT_SIZE",
    "SEVERITY_MAX", "SEVERITY_MIN",
    "Limits", "Message", "Record", "RecordInfo", "record_encode", "record_info",
    "bind", "unbind", "context", "Reservation", "Segment", "SegmentIterator", "SegmentRepair",
    "crc32c", "get_include", "parse_size", "salvage", "SalvageReport",
    "open_writer", "open_reader", "FamilyWriter", "FamilyReader", "retain", "migrate",
    "RotationTimeout", "Handler", "ConfigError", "BackendNotFound",
    "LogkitError", "InvalidArgument", "SegmentFull", "SegmentDamaged", "OutOfService",
    "NoSuchMessage", "MessageTooBig", "MessageLost", "SegmentClosed", "SegmentNotFound",
    "SegmentExists", "DiskFull", "ReadOnlySegment", "UnsupportedFormat",
    "UnsafePath", "ReadOnlyFileSystem", "ReservationWordDamaged",
    "MissingKey", "WrongKey", "MessageTampered",
]
