# Type stubs for logkit._scan (pyx/logkit/_scan.pyx): the scan and print loop
# of `logkit print` and `logkit monitor`, in C.

from logkit._segment import Message, Segment

class Scan:
    """Scan(selection): one logkit.select.Selection's C state, steps 1-7 of
    print_sys_log's order per record (a forward selection only)."""

    done: bool
    damaged_bytes: int
    damaged_ranges: int
    open_reservations: int
    abandoned: int
    examined: int
    problems: list[tuple[int, int, str]]
    last_seq: int
    next_min_seq: int
    @property
    def needs_python(self) -> bool: ...
    def walk(self, seg: Segment, start: int = 0, min_seq: int = 0, limit: int = 0,
             strict: bool = False) -> int: ...
    def count(self) -> int: ...
    def offsets(self, first: int = 0) -> list[int]: ...
    def undecided(self) -> list[int]: ...
    def keep_only(self, indexes: list[int]) -> None: ...
    def drop_first(self, k: int) -> None: ...
    def truncate(self, k: int) -> None: ...

def message_at(seg: Segment, offset: int) -> Message: ...

class Printer:
    """Printer(fmt, colour, duplicates, expand_any, fallback): format_message's
    text and short lines, made in C, into a buffer; fallback(seg, offset,
    prev_text) -> (line, text) formats in Python what C does not."""

    lines: int
    fallbacks: int
    prev_text: str | None
    def take(self) -> bytes: ...
    @property
    def pending(self) -> int: ...
    def add_line(self, line: str, text: str | None) -> None: ...
    def emit(self, seg: Segment, scan: Scan) -> None: ...
