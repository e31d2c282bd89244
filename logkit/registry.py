"""The backend registry: storage and transport backends found by entry point.

Sits between the config file (logkit.config) and the backends: a backend is
a class registered under the entry-point group ``logkit.storage`` or
``logkit.transport``; this module lists them, loads one lazily by name, and
defines the small interface each implements (docs/backends.md).  Its
entry-point loader (entry_points, load_entry_point) is also the one
logkit.formatters uses.
"""
from __future__ import annotations

import difflib
import os
import stat
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Iterator

from logkit.errors import LogkitError

__all__ = [
    "Option", "StorageBackend", "TransportBackend", "Reader", "BackendInfo",
    "BackendNotFound", "GROUPS", "STORAGE_GROUP", "TRANSPORT_GROUP", "available", "load", "suggest",
    "EntryPointError", "entry_points", "load_entry_point", "distribution_name",
    "OptionProblems", "REGULAR_FILE", "NAMED_PIPE", "path_problem", "directory_problem", "read_only_problem",
    "segment_size_problem", "family_name_problem", "key_file_problem",
]

STORAGE_GROUP = "logkit.storage"
TRANSPORT_GROUP = "logkit.transport"
GROUPS = {"storage": STORAGE_GROUP, "transport": TRANSPORT_GROUP}


class EntryPointError(LogkitError, LookupError):
    """No installed package declares that name in that entry-point group, or
    the one declared failed to import (then ``cause`` is the exception it
    raised, else None)."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class BackendNotFound(EntryPointError):
    """No backend of that kind is registered under that name (or it failed to load)."""


def suggest(name: str, candidates: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest candidate, or ''."""
    close = difflib.get_close_matches(str(name), list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass(frozen=True)
class Option:
    """One option a backend accepts.

    kind: 'str', 'int', 'float', 'bool', 'size' (bytes, or '8MiB'),
    'duration' (seconds, or '30s', '5m', '2h', '7d'), 'mode' (an int such as
    0o640 or a string of octal digits such as '0640'), 'path' (a string;
    relative paths are taken from the config file's directory), 'dir' (a path
    that must be an existing directory unless the backend's
    ``create_directory`` option is true), 'choice' (one of ``choices``).
    """
    name: str
    kind: str
    default: Any = None
    required: bool = False
    help: str = ""
    choices: tuple = ()


class Reader:
    """What every storage backend's reader offers (the family reader has it all).

    Iterating yields messages oldest first; each has ``sequence``, ``time``
    (ns), ``severity``, ``process_id``, ``thread_id``, ``text`` (str),
    ``data_class`` (str) and ``data`` (bytes-like).
    """

    def __iter__(self) -> Iterator[Any]:
        raise NotImplementedError

    def reverse(self) -> Iterator[Any]:
        """Messages newest first."""
        raise NotImplementedError

    def seek(self, sequence: int | None = None, time: int | None = None) -> Any:
        """Position at the first message with sequence >= n (or time >= t ns); return it.
        Raises NoSuchMessage when there is none."""
        raise NotImplementedError

    def rewind(self) -> None:
        raise NotImplementedError

    def limits(self):
        """A logkit.Limits (first/last sequence and time), or None when empty."""
        raise NotImplementedError

    def count(self) -> int:
        n = 0
        for _ in self:
            n += 1
        return n


class StorageBackend:
    """Where messages rest.  Subclasses set ``options`` and implement the methods.

    ``__init__(log, **options)`` receives the log's name and every declared
    option, already checked and converted by logkit.config (defaults filled
    in), so a backend never parses config text itself.  A storage object may
    be shared by threads; it must stay usable in a child after ``fork``
    (``after_fork`` is called there).
    """
    name: ClassVar[str] = ""                 # set to the entry-point name when loaded
    options: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, log: str, **options: Any) -> None:
        self.log = log
        self.config = dict(options)

    # writing
    def write(self, text, severity: int = 20, data=b"", data_class: str = "",
              time: int | None = None) -> int | None:
        """Store one message; return its sequence number (None if the backend
        numbers messages only when they are read)."""
        raise NotImplementedError

    def append(self, message) -> int | None:
        """Store a copy of a message read elsewhere, keeping its time,
        severity, process and thread ids (drains and copies use this)."""
        raise NotImplementedError

    def flush(self) -> None:
        """Make finished messages durable (msync / fsync)."""

    def close(self) -> None:
        """Stop writing; messages already stored stay."""

    def after_fork(self) -> None:
        """Called in a forked child before it writes (default: nothing)."""

    def fast_sink(self):
        """A sink logkit.Handler may write through from C instead of calling
        write() from Python, or None (the default: write() is used).  A
        storage that writes into a logkit.family.FamilyWriter returns
        ``logkit._handler.FamilySink(writer)`` when a write needs nothing
        but the segment write (no per-message sync, no other bookkeeping);
        the sink falls back to the writer's Python path when the segment is
        full or rotated."""
        return None

    # reading and inspection
    def reader(self) -> Reader:
        raise NotImplementedError

    def stats(self) -> dict[str, int]:
        """Counters (written, refused, lost, ...); names are the backend's own."""
        return {}

    def describe(self) -> str:
        """One line naming where the messages go (for `logkit config check`)."""
        return f"{self.name} storage for log {self.log}"

    @classmethod
    def check_options(cls, log: str, options: dict[str, Any], writing: bool = True) -> "OptionProblems":
        """What __init__ would refuse in these options, found without opening
        anything: a list of (option name, message), empty when they are fine.

        logkit.config calls it for every log after converting the options, so
        `logkit config check` and logkit.Handler report the same problems,
        each as a ConfigError naming file, table and key.  `writing`: also
        check what only a writer needs (a directory it can create files in,
        not on a read-only file system).  Must not create or change anything;
        the helpers below (path_problem, ...) do the common checks.
        Default: nothing beyond what the option kinds already check."""
        return []


class TransportBackend:
    """How messages get from the logging process to the storage.

    ``__init__(storage, log, **options)``: `storage` is the log's storage
    backend (already opened).  ``write`` takes the same arguments as
    StorageBackend.write.
    """
    name: ClassVar[str] = ""
    options: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, storage: StorageBackend, log: str, **options: Any) -> None:
        self.storage = storage
        self.log = log
        self.config = dict(options)

    def write(self, text, severity: int = 20, data=b"", data_class: str = "",
              time: int | None = None) -> int | None:
        raise NotImplementedError

    def flush(self) -> None:
        self.storage.flush()

    def close(self) -> None:
        self.storage.close()

    def after_fork(self) -> None:
        self.storage.after_fork()

    def fast_sink(self):
        """The sink logkit.Handler writes through instead of write(), or None
        (the default).  A transport that adds nothing between the caller and
        the storage (shm) passes on the storage's fast_sink()."""
        return None

    def stats(self) -> dict[str, int]:
        return {}

    @classmethod
    def check_options(cls, log: str, options: dict[str, Any], writing: bool = True) -> "OptionProblems":
        """As StorageBackend.check_options, for the transport's options."""
        return []


# ------------------------------------------------------- option checks for backends
#
# Each returns a message naming the thing and what is wrong, or None.  They
# look (stat, statvfs, read) and never create, so `logkit config check` can
# run them on a production config.

OptionProblems = list  # of (option name or None, message)
REGULAR_FILE = "regular file"
NAMED_PIPE = "named pipe"
_KINDS = ((stat.S_ISREG, REGULAR_FILE), (stat.S_ISFIFO, NAMED_PIPE), (stat.S_ISDIR, "directory"),
          (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "special file"


def _existing_ancestor(path: str) -> str:
    p = os.path.abspath(path)
    while not os.path.lexists(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return p


def read_only_problem(path: str) -> str | None:
    """`path` (or, if missing, the directory it would be made in) is on a
    read-only file system."""
    where = _existing_ancestor(path)
    try:
        ro = os.statvfs(where).f_flag & os.ST_RDONLY
    except OSError:
        return None                  # cannot tell: the open will say
    if ro:
        return f"{path} is on a read-only file system ({where} is mounted read-only); nothing can be written there"
    return None


def _writable_directory_problem(directory: str) -> str | None:
    from logkit import safefs       # the same refusal the backends' opens make
    try:
        safefs.check_directory(directory)
    except LogkitError as e:
        return str(e)
    except OSError:
        return None
    return read_only_problem(directory)


def directory_problem(path: str, create: bool = False, writing: bool = True) -> str | None:
    """`path` must be a directory, or (with `create`) be creatable: its nearest
    existing ancestor a directory.  `writing`: and on a writable file system,
    not writable by every user without the sticky bit."""
    if os.path.isdir(path):
        return _writable_directory_problem(path) if writing else None
    if os.path.lexists(path):
        return f"{path} is not a directory"
    if not create:
        return f"directory {path} does not exist"
    anc = _existing_ancestor(path)
    if not os.path.isdir(anc):
        return f"directory {path} cannot be created: {anc} is not a directory"
    return read_only_problem(path) if writing else None


def path_problem(path: str, kind: str = REGULAR_FILE, writing: bool = True,
                 create_directory: bool = False) -> str | None:
    """A file the backend opens or creates at `path`: if it exists it must be
    a `kind` (REGULAR_FILE or NAMED_PIPE).  `writing`: its directory must
    exist (or, with `create_directory`, be creatable), see directory_problem;
    a tool that only reads does not need it (a /run directory made when the
    service starts, say)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        return f"{path} cannot be examined: {e.strerror}"
    if st is not None and _kind(st.st_mode) != kind:
        return f"{path} is a {_kind(st.st_mode)}, not a {kind}"
    d = os.path.dirname(os.path.abspath(path))
    if st is None and not os.path.isdir(d):
        if os.path.lexists(d):
            return f"{d} (the directory of {path}) is not a directory"
        if writing and not create_directory:
            return f"directory {d} (for {path}) does not exist"
    return directory_problem(d, create=create_directory, writing=True) if writing else None


def segment_size_problem(size: int | str) -> str | None:
    """A segment size (bytes, or a string like '8MiB') out of the core's
    range (logkit.MIN_SEGMENT_SIZE .. MAX_SEGMENT_SIZE, a multiple of 8
    bytes: docs/format.md)."""
    from logkit._segment import MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE, parse_size
    try:
        size = parse_size(size)
    except LogkitError as e:
        return str(e)
    if size < MIN_SEGMENT_SIZE:
        return f"{size} bytes is below the minimum segment size of {MIN_SEGMENT_SIZE} bytes"
    if size > MAX_SEGMENT_SIZE:
        return f"{size} bytes is above the maximum segment size of {MAX_SEGMENT_SIZE} bytes (32 GiB)"
    if size % 8:
        return f"{size} bytes is not a multiple of 8 bytes (segment sizes are; e.g. {size - size % 8})"
    return None


def family_name_problem(name: str) -> str | None:
    """A family name the family layer refuses (it names files in the log
    directory: 1-63 letters, digits, '_' or '-', not starting with '-')."""
    from logkit.family import history_segments
    try:
        history_segments([], name)    # checks the name exactly as every family function does
    except LogkitError as e:
        return str(e)
    return None


def key_file_problem(path: str) -> str | None:
    """A key file that cannot be used: missing, not mode 0600, malformed."""
    from logkit.crypto import load_key_file
    try:
        load_key_file(path)
    except LogkitError as e:
        return str(e)
    return None


@dataclass(frozen=True)
class BackendInfo:
    kind: str            # 'storage' or 'transport'
    name: str
    value: str           # 'module:Class'
    distribution: str    # the installed package that declares it


# ------------------------------------------------------- entry points
#
# The one way logkit finds plug-ins: backends (here) and data-class
# formatters (logkit.formatters) alike.


def distribution_name(ep: Any) -> str:
    """The name of the installed package that declares entry point `ep` ('?' if unknown)."""
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else "?"


def entry_points(group: str, rank: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """The entry points installed packages declare in `group` (e.g.
    'logkit.storage'), by name.  When several declare one name, the first by
    `rank(ep)` wins (default: by the declaring package's name), so the choice
    is reproducible.  Read afresh on every call; callers cache."""
    import importlib.metadata as _md   # imported when needed: it costs ~15 ms at start-up
    table: dict[str, Any] = {}
    for ep in sorted(_md.entry_points(group=group), key=rank or distribution_name):
        table.setdefault(ep.name, ep)
    return table


def load_entry_point(group: str, name: str, what: str | None = None,
                     table: dict[str, Any] | None = None, error: type[EntryPointError] = EntryPointError) -> Any:
    """Load the object entry point `name` of `group` names.  `what` names the
    kind of thing in messages (default "'GROUP' entry point"); `table` is the
    group's entry points by name if the caller has them (entry_points(group)).

    Raises `error` (an EntryPointError subclass): "no WHAT named 'NAME' (did
    you mean 'X'?); registered: A, B" when no package declares it, or "WHAT
    'NAME' (module:attr) failed to load: ErrorType: message", with ``cause``
    set, when importing it raised: a broken package must not look like a typo."""
    what = what or f"'{group}' entry point"
    eps = entry_points(group) if table is None else table
    ep = eps.get(name)
    if ep is None:
        known = ", ".join(sorted(eps)) or "none"
        raise error(f"no {what} named '{name}'{suggest(name, eps)}; registered: {known}")
    try:
        return ep.load()
    except Exception as e:
        raise error(f"{what} '{name}' ({ep.value}) failed to load: {type(e).__name__}: {e}", e) from e


_cache: dict[tuple[str, str], type] = {}


def _group(kind: str) -> str:
    group = GROUPS.get(kind)
    if group is None:
        raise ValueError(f"backend kind must be 'storage' or 'transport', not {kind!r}")
    return group


def available(kind: str) -> list[BackendInfo]:
    """Every backend of `kind` that installed packages declare, by name."""
    return [BackendInfo(kind, ep.name, ep.value, distribution_name(ep))
            for name, ep in sorted(entry_points(_group(kind)).items())]


def load(kind: str, name: str) -> type:
    """The backend class registered as `name`; BackendNotFound (with the
    closest name) when no package declares it or it fails to import."""
    key = (kind, name)
    if key in _cache:
        return _cache[key]
    group = _group(kind)
    eps = entry_points(group)
    cls = load_entry_point(group, name, f"{kind} backend", eps, BackendNotFound)
    ep = eps[name]
    base = StorageBackend if kind == "storage" else TransportBackend
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise BackendNotFound(f"{kind} backend '{name}' ({ep.value}) is not a "
                              f"logkit.registry.{base.__name__} subclass")
    cls.name = name
    _cache[key] = cls
    return cls


def clear_cache() -> None:
    """Forget loaded classes (tests that install a package mid-run use this)."""
    _cache.clear()
