# Type stubs for logkit._bench (pyx/logkit/_bench.pyx): benchmark loops written
# against the C-level API of logkit._segment.  Each function takes an open,
# writable Segment and returns a status code or a count.  None raises TypeError;
# a closed or read-only segment raises ValueError.
from logkit._segment import Segment

def bare_write(seg: Segment, payload: bytes) -> int:
    """One bare reserve + copy + commit (no checksum), called from Python.  Returns the status.

    The message carries no checksum, so readers report it as damaged.
    """

def bare_loop(seg: Segment, payload: bytes, n: int) -> int:
    """n bare steps (no checksum) in a Cython loop; returns how many succeeded."""

def write_loop(seg: Segment, payload: bytes, n: int, severity: int = 20) -> int:
    """n full writes (reserve, copy, checksum, commit) in a Cython loop; returns how many succeeded."""

def shared_word_loop(buf: memoryview | bytearray, n: int) -> int:
    """n CAS increments of the u64 at the start of a writable shared buffer, with
    the reservation loop of lk_reserve_at and nothing else; returns the failed CAS count."""
