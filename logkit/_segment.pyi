# Type stubs for logkit._segment, the compiled segment core (pyx/logkit/_segment.pyx).
# The C-level API for other Cython modules is pyx/logkit/_segment.pxd; see docs/api.md.
import uuid
from os import PathLike
from types import TracebackType
from typing import Any, Callable, Literal, NamedTuple, NoReturn, Self, TypedDict

from _typeshed import ReadableBuffer, StrOrBytesPath, WriteableBuffer

_Name = str | bytes | PathLike[str] | PathLike[bytes] | None
# a KeyRing (logkit.crypto) or a (key_id, log_key) pair, or None
_Key = Any

MAGIC: bytes
FORMAT_VERSION: int
FORMAT_VERSION_SEALED: int
TAG_SIZE: int
HEADER_SIZE: int
STEP_NAMES: tuple[str, ...]   # the steps of Segment.write_steps, in order
MESSAGE_HEADER_SIZE: int
MIN_SEGMENT_SIZE: int
MAX_SEGMENT_SIZE: int  # (2**32 - 1) * 8: 32 GiB - 8
SEVERITY_MIN: int
SEVERITY_MAX: int
CHECKSUM_CRC32C: int
LISTENER_SLOTS: int
WAIT_FUTEX: bool  # wait() sleeps on a futex (Linux build); False: it polls
RECORD_KINDS: dict[int, str]

class Limits(NamedTuple):
    first_sequence: int
    first_time: int
    last_sequence: int
    last_time: int

class Record(NamedTuple):
    kind: Literal["committed", "reserved", "abandoned", "gap", "damaged"]
    offset: int
    length: int
    sequence: int | None
    span: int | None
    state: int | None

RECORD_CLASS: str
RECORD_VERSION: int

class RecordInfo(NamedTuple):
    """What a message carries besides its text (docs/format.md, "The record payload")."""
    logger: str
    module: str
    function: str
    line: int
    path: str
    fields: dict[str, Any]
    traceback: str | None

def fields_json(fields: dict[str, Any] | None) -> bytes:
    """The UTF-8 JSON object text of `fields` as a record payload stores it."""
def record_encode(logger: str | None = "", module: str | None = "", function: str | None = "",
                  line: int = 0, path: str | None = "", fields: dict[str, Any] | None = None,
                  traceback: str | None = None) -> bytes:
    """A record payload: store it as data of class RECORD_CLASS."""
def record_decode(data: ReadableBuffer) -> RecordInfo | None:
    """The RecordInfo of a record payload, or None if the bytes are not one."""
def record_info(data_class: str, data: ReadableBuffer) -> RecordInfo:
    """What a message with this data carries besides its text; never raises on the bytes."""

class _Stats(TypedDict):
    reserved: int
    written: int
    refused_full: int
    refused_too_big: int
    refused_out_of_service: int
    abandoned: int
    in_service: bool
    bytes_used: int
    bytes_total: int
    salvages: int

class _Listener(TypedDict):
    slot: int
    pid: int
    flags: int
    min_interval_ns: int
    last_wake_ns: int

class _Header(TypedDict):
    magic: bytes
    version: int
    flags: int
    key_check: bytes
    key_id: int
    header_size: int
    region_size: int
    uuid: str
    sequence_base: int
    checksum_algorithm: str | int
    created: int
    family: str
    previous: str
    identity_crc: int
    identity_crc_ok: bool
    first_sequence_hint: int
    first_time_hint: int
    last_sequence_hint: int
    last_time_hint: int
    last_offset_hint: int
    out_of_service_time: int
    rotator: int
    reservation_word: int
    in_service: bool
    reserved_count: int
    next_offset: int
    wake_word: int
    waiters: int
    listeners: list[_Listener]

class _WaitStats(TypedDict):
    calls: int
    ready: int
    timeouts: int
    sleeps: int

class _Scan(TypedDict):
    committed: int
    reserved: list[tuple[int, int, int]]
    abandoned: int
    gaps: list[tuple[int, int]]
    damaged: list[tuple[int, int]]

class _MessageDict(TypedDict):
    sequence: int
    time: int
    severity: int
    process_id: int
    thread_id: int
    text: str
    data_class: str
    data: bytes

TOKEN_STATE_SHIFT: int
TOKEN_ATTEMPT_MASK: int

def token_make(state: int, attempt: int, pid: int) -> int:
    """The token word of `state` (0..7), claim `attempt` (mod 2**29) and process `pid`."""

def token_state(token: int) -> int: ...
def token_attempt(token: int) -> int: ...
def token_pid(token: int) -> int: ...
def utf8_text(text: str | bytes, what: str = "text") -> bytes:
    """The bytes every write stores for `text` (UTF-8; surrogate-escaped bytes
    restored; any other lone surrogate is InvalidArgument)."""

def crc32c(data: ReadableBuffer, crc: int = 0) -> int:
    """CRC-32C (Castagnoli) of a bytes-like object, continuing from `crc`."""

def load_word(buffer: ReadableBuffer, offset: int) -> int:
    """The 8-byte word at `offset` of a shared buffer, one atomic load (acquire)."""
def store_word(buffer: WriteableBuffer, offset: int, value: int) -> None:
    """Store the 8-byte word at `offset` of a shared buffer, one atomic store (release)."""
def crc32c_uses_hardware() -> bool:
    """True when the SSE4.2 instruction computes the checksum on this machine."""
def process_start(pid: int) -> int:
    """The start time of `pid` as logkit records it beside a pid (low 32 bits
    of /proc/PID/stat field 22, 0 mapped to 1), or 0 if unreadable.  Public
    face: logkit.salvager.process_identity()."""
def identity_gone(pid: int, start: int) -> bool:
    """True only if the process recorded as (pid, start) certainly runs no
    more.  Public face: logkit.salvager.identity_alive()."""
def check_mapping(seg: Segment) -> None:
    """Raise SegmentDamaged if the file under `seg` shrank while mapped
    (pages past its end read as zeros instead of SIGBUS)."""
def sigbus_counts() -> tuple[int, int]:
    """(faults absorbed in logkit mappings, SIGBUS passed on) in this process."""

def _crc32c_force_software(force: bool) -> None: ...
def _wait_force_poll(force: bool) -> None: ...
def _wake_syscalls() -> int: ...
def parse_size(value: int | str, what: str = "size") -> int:
    """Turn 1048576, "1MiB", "64KiB", "8M" or "2GiB" into bytes; InvalidArgument otherwise.

    A string is ASCII digits with an optional unit (B, K/KiB, KB, M/MiB, MB,
    G/GiB, GB; any case), ASCII spaces allowed around them; a bool is refused.
    """

def _validate_size(size: int | str) -> int: ...
def _encode_field(value: _Name, limit: int, what: str) -> bytes: ...

class Segment:
    """A log segment: a header plus sequentially allocated messages in a shared mapping."""

    @property
    def readonly(self) -> bool: ...
    @property
    def path(self) -> str | bytes | None: ...
    @property
    def file_id(self) -> tuple[int, int] | None:
        """(st_dev, st_ino) of the file this segment maps, or None for a region of a buffer."""
    @staticmethod
    def create(
        path: StrOrBytesPath,
        size: int | str = 1048576,
        family: _Name = "",
        previous: _Name = "",
        sequence_base: int = 1,
        mode: int = 0o640,
        segment_uuid: uuid.UUID | None = None,
        key: tuple[int, bytes] | None = None,
    ) -> Segment:
        """Create a new segment file of `size` bytes and open it for writing;
        key=(key_id, log_key) makes it sealed (format version 2).

        Raises SegmentExists, SegmentNotFound (no such directory), DiskFull, InvalidArgument.
        """

    @staticmethod
    def open(path: StrOrBytesPath, readonly: bool = False, key: _Key = None, *,
             check_header: bool = True) -> Segment:
        """Open an existing segment file (key: a KeyRing or (key_id, log_key)
        for a sealed segment; WrongKey when its key check differs).
        check_header=False: attach whatever the header holds (no key then);
        judge it with header_problem().

        Raises SegmentNotFound, SegmentDamaged (naming what is wrong with the
        header), UnsupportedFormat (a sound header of another format version).
        """

    @staticmethod
    def format(
        buffer: WriteableBuffer,
        offset: int = 0,
        length: int | None = None,
        family: _Name = "",
        previous: _Name = "",
        sequence_base: int = 1,
        segment_uuid: uuid.UUID | None = None,
        key: tuple[int, bytes] | None = None,
        *,
        zeroed: bool = False,
    ) -> Segment:
        """Format a region of a writable buffer (e.g. an mmap) as an empty segment.
        zeroed=True: the caller vouches that every byte after the header is
        zero (a new file): only the header is written.

        Raises InvalidArgument when the region lies outside the buffer, is
        misaligned, smaller than 8192 bytes, larger than MAX_SEGMENT_SIZE or
        not a multiple of 8.
        """

    @staticmethod
    def from_buffer(
        buffer: ReadableBuffer, offset: int = 0, length: int | None = None, readonly: bool = False,
        key: _Key = None, *, path: str | None = None, close_buffer: bool = False,
        check_header: bool = True,
    ) -> Segment:
        """Attach to a segment already formatted in a region of `buffer`
        (path: the name errors use; close_buffer: the buffer is an mmap this
        segment closes; check_header=False: as for open()).

        Raises SegmentDamaged, UnsupportedFormat or InvalidArgument as open() and format() do.
        """

    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def sealed(self) -> bool:
        """A sealed segment (format version 2)."""
    @property
    def has_key(self) -> bool:
        """It was given its key: reads decrypt, writes seal."""
    @property
    def key_id(self) -> int:
        """The key id a sealed segment is sealed under; 0 if not sealed."""
    @property
    def key_check_problem(self) -> str | None:
        """None, or why the key was taken though the header's key check
        differs (a message authenticated under it: the check is damaged)."""
    def use_key(self, key: _Key) -> Exception | None:
        """Give a sealed segment its key (WrongKey if its check differs); a key
        without the segment's key id returns the MissingKey error instead."""
    def rekey(self, key: _Key | None = None) -> Exception | None:
        """Read the header's sealing again and derive the key anew (a region
        formatted again in place); `key` or else the one given before."""
    def key_stale(self) -> bool:
        """True if the header's sealing no longer matches the derived key."""
    def header_problem(self) -> str | None:
        """None if the identity is sound, else what is wrong; raises UnsupportedFormat."""
    def store_hints(
        self, first_seq: int, first_time: int, last_seq: int, last_time: int, last_offset: int
    ) -> None:
        """Store the header's hints (392..431); relaxed, readers validate them."""
    def token(self) -> int:
        """The token word at header offset 456 (acquire); take it apart with
        token_state, token_attempt, token_pid."""
    def claim_token(self, expected: int, desired: int) -> bool:
        """CAS the token from `expected` to `desired`; True if this call changed it."""
    def _refuse_unkeyed(self) -> NoReturn: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...

    # header
    @property
    def size(self) -> int: ...
    @property
    def family(self) -> str: ...
    @property
    def previous(self) -> str: ...
    def set_previous(self, previous: _Name) -> None: ...
    @property
    def uuid(self) -> uuid.UUID: ...
    @property
    def sequence_base(self) -> int: ...
    @property
    def created(self) -> int: ...
    @property
    def in_service(self) -> bool: ...
    @property
    def out_of_service_time(self) -> int | None: ...
    def take_out_of_service(self) -> bool: ...
    def put_in_service(self) -> bool: ...
    def used(self) -> int: ...
    def stats(self) -> _Stats: ...
    def header(self) -> _Header: ...

    # writing
    def write_as(
        self,
        text: str | ReadableBuffer,
        severity: int,
        data: ReadableBuffer | None,
        data_class: str | None,
        time: int,
        process_id: int,
        thread_id: int,
    ) -> int:
        """Store a copy of a message made elsewhere, keeping its time, severity
        and writer's process and thread ids; returns the new sequence number.
        Raises as write() does."""
    def write(
        self,
        text: str | bytes,
        severity: int = 20,
        data: ReadableBuffer | None = b"",
        data_class: str | None = "",
        time: int | None = None,
    ) -> int:
        """Append one message and return its sequence number.

        Raises SegmentFull, MessageTooBig, OutOfService,
        ReservationWordDamaged (a damaged reservation word: nothing written,
        the segment taken out of service; a SegmentDamaged and an
        OutOfService), MessageLost (the claim was abandoned or its region
        formatted again while this writer was paused), InvalidArgument (a severity that is not an
        int -- float, NaN, Decimal are refused, never truncated -- or an int
        outside -250..250; text not str or bytes; a true data_class that is
        not a str).
        """

    def reserve(self, text_len: int, data_len: int = 0, data_class: str | None = "") -> Reservation:
        """Claim space for a message; fill r.text and r.data, then r.finish().

        The stub is published with its stub checksum (format.md).  Raises what
        write() raises; InvalidArgument for a negative length or a data_class
        that is neither a str nor None (None means no class).
        """
    def write_steps(
        self,
        text: str | bytes,
        severity: int = 20,
        data: ReadableBuffer | None = b"",
        data_class: str | None = "",
        time: int | None = None,
        on_step: Callable[[str], object] | None = None,
        process_id: int | None = None,
        thread_id: int | None = None,
    ) -> int:
        """TEST ONLY: write() through the same inline C writer, calling
        on_step(name) after each step ("claimed", "stub", "copied",
        "committed"); what on_step raises is raised once the write returns.
        logkit.inject.write_stepwise passes its injection points."""
    def sync(self) -> None: ...

    # who holds a reservation (docs/format.md, "Who holds a reservation")
    def reservation_holder(self, offset: int) -> tuple[int, int, int] | None:
        """(pid, start, reserved_ns) of the process holding the open
        reservation at `offset`, or None if none is open there."""
    def reservation_alive(self, offset: int, grace: float | None = None) -> bool:
        """True while the reservation at `offset` may still be finished: open,
        its holder (pid and start time) still running, and (with `grace`)
        reserved less than `grace` seconds ago.  The one liveness test."""
    def unfinished_claims(self) -> list[tuple[int, int, str]]:
        """(offset, end, "reserved" | "gap") of every claim not yet finished
        nor abandoned, found by walking; empty: settled, whatever the counters say."""

    # waiting (docs/api.md, "Waiting for messages")
    def wait(self, offset: int, timeout: float | None = None, poll_interval: float = 0.01) -> bool:
        """Block until the record at `offset` is finished or the segment leaves
        service (True), or `timeout` seconds pass (False).  Futex on Linux,
        polling every `poll_interval` seconds elsewhere; releases the GIL."""
    def listen(self, min_interval: float = 0.0) -> int | None:
        """Register in the listener table (slot index, or None if it is full)."""
    def unlisten(self) -> None: ...
    @property
    def listener_slot(self) -> int | None: ...
    def cancel_waits(self) -> None: ...
    def wait_stats(self) -> _WaitStats: ...

    # reading
    def __iter__(self) -> SegmentIterator: ...
    def messages(self) -> SegmentIterator: ...
    def records(self, whole_region: bool = False) -> list[Record]: ...
    def find(self, sequence: int | None = None, time: int | None = None) -> Message:
        """The first finished message with sequence >= `sequence` (or time >= `time`, ns).

        Exactly one of the two (else InvalidArgument); any int, so a sequence
        of 0 or below gives the first message.  Raises NoSuchMessage when
        there is none.
        """

    def limits(self) -> Limits | None: ...
    def scan(self) -> _Scan: ...

    # internals of the module itself
    @staticmethod
    def _attach(
        owner: ReadableBuffer,
        offset: int,
        length: int | None,
        readonly: bool,
        path: str | bytes | None,
        mm: Any,
        check: bool = True,
    ) -> Segment: ...
    @staticmethod
    def _open_file(path: StrOrBytesPath, readonly: bool, check: bool) -> Segment: ...
    def prefault(self) -> None:
        """Fault every page of the mapping in now (MADV_POPULATE_WRITE), without the GIL."""
    def _memoryview(self) -> memoryview: ...

class SegmentRepair:
    """The repair primitives of one segment (salvage's): SegmentRepair(seg).
    Each assumes the segment is out of service or the caller owns the region
    (docs/api.md, "Repair primitives")."""

    segment: Segment
    def __init__(self, segment: Segment) -> None: ...
    def word_at(self, offset: int) -> int:
        """The 8-byte word at `offset` (8-aligned, inside the region)."""
    def fillable(self, start: int, end: int) -> bool:
        """True if [start, end) holds nothing but unpublished claims: first word
        zero, bytes 60..63 not the record's valid checksum (a claim keeps its
        holder's start time there), every other byte zero except bytes 8..63
        of a partly stored stub and the data-class name that stub stores.
        Salvage fills only such gaps."""
    def message_pid(self, offset: int) -> tuple[int, int]:
        """(pid at +32, time at +24) of the record at `offset`."""
    def set_written_count(self, n: int) -> None:
        """The written counter set to n (a segment out of service, settled)."""
    def abandon(self, offset: int) -> bool:
        """CAS the reserved stub at `offset` to abandoned ([S1]); True if this call did."""
    def write_filler(self, offset: int, length: int, sequence: int, span: int) -> None:
        """An abandoned filler record over [offset, offset+length) for `span` numbers from `sequence`."""
    def rebuild_identity(self, sequence_base: int, sealed_hint: bool = False,
                         identity: tuple[bytes, int, bytes, int, int, bytes] | None = None) -> bool:
        """Rewrite a damaged identity block; True if `identity` (a ledger's) was taken."""
    def raise_word(self, min_next: int, min_count: int, out_of_service: bool) -> bool:
        """Raise NEXT and COUNT to at least the given values (never lower), COUNT
        saturating; optionally take out of service in the same CAS."""
    def set_abandoned_count(self, n: int) -> None: ...
    def note_salvage(self) -> None:
        """Count one salvage and store its time in the header."""
    def probe_first_sequence(self) -> int | None:
        """The sequence of the first checksum-valid message found by sentinel."""
    def probe_sequence_base(self) -> int | None:
        """The smallest sequence base consistent with that message."""
    def probe_sealed(self) -> bool:
        """True if a checksum-valid message found by sentinel is sealed."""

class SegmentIterator:
    """Walks a segment's finished messages, counting what it passes over.

    strict=True: stop (StopIteration) at an open reservation or a gap instead
    of passing it, leaving it in .pending; the next next() looks again.
    """

    pos: int
    min_seq: int
    min_pos: int
    open_reservations: list[tuple[int, int]]
    gaps: list[tuple[int, int]]
    damaged: list[tuple[int, int]]
    abandoned: int
    strict: bool
    pending: Record | None
    def __init__(self, seg: Segment, strict: bool = False) -> None: ...
    def __iter__(self) -> Self: ...
    def __next__(self) -> Message: ...
    def pending_writer(self) -> tuple[int, int] | None:
        """(pid, reservation time ns) of the pending reserved record, or None."""

    def skip_pending(self) -> bool:
        """Pass over the pending record (counted as open reservation or gap); True if it moved."""

class Message:
    """A finished message, read in place (zero-copy).

    Made by iteration, find() and limits(); Message() itself is detached (its
    segment is None and its fields raise SegmentClosed).
    """

    @property
    def segment(self) -> Segment | None: ...
    @property
    def offset(self) -> int: ...
    @property
    def sequence(self) -> int: ...
    @property
    def time(self) -> int: ...
    @property
    def severity(self) -> int: ...
    @property
    def process_id(self) -> int: ...
    @property
    def thread_id(self) -> int: ...
    @property
    def key_id(self) -> int: ...
    @property
    def sealed(self) -> bool:
        """Sealed (key id != 0): text and data decrypt with the segment's key."""
    @property
    def size(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def text_bytes(self) -> memoryview: ...
    @property
    def data_class(self) -> str: ...
    @property
    def data(self) -> memoryview: ...
    def checksum_ok(self) -> bool: ...
    def to_dict(self) -> _MessageDict: ...
    @property
    def record(self) -> RecordInfo: ...
    @property
    def logger(self) -> str: ...
    @property
    def fields(self) -> dict[str, Any]: ...
    @property
    def traceback(self) -> str | None: ...

class Reservation:
    """Space claimed in a segment: fill .text and .data, then finish().

    Made by Segment.reserve(); Reservation() itself is inert (segment None,
    finished True).
    """

    @property
    def segment(self) -> Segment | None: ...
    @property
    def offset(self) -> int: ...
    @property
    def sequence(self) -> int: ...
    @property
    def text(self) -> memoryview: ...
    @property
    def data(self) -> memoryview: ...
    def finish(self, severity: int = 20, time: int | None = None) -> int:
        """Checksum and publish the message.  Raises MessageLost if salvage
        abandoned it first; InvalidArgument if already finished or for a
        severity write() would refuse."""

    def abandon(self) -> None: ...
    @property
    def finished(self) -> bool: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
