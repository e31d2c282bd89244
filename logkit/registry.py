"""The backend registry: storage and transport backends found by entry point.

Sits between the config file (logkit.config) and the backends: a backend is
a class registered under the entry-point group ``logkit.storage`` or
``logkit.transport``; this module lists them, loads one lazily by name, and
defines the small interface each implements (docs/backends.md).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Iterator

from logkit.errors import LogkitError

__all__ = [
    "Option", "StorageBackend", "TransportBackend", "Reader", "BackendInfo",
    "BackendNotFound", "GROUPS", "STORAGE_GROUP", "TRANSPORT_GROUP", "available", "load", "suggest",
]

STORAGE_GROUP = "logkit.storage"
TRANSPORT_GROUP = "logkit.transport"
GROUPS = {"storage": STORAGE_GROUP, "transport": TRANSPORT_GROUP}


class BackendNotFound(LogkitError, LookupError):
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

    # reading and inspection
    def reader(self) -> Reader:
        raise NotImplementedError

    def stats(self) -> dict[str, int]:
        """Counters (written, refused, lost, ...); names are the backend's own."""
        return {}

    def describe(self) -> str:
        """One line naming where the messages go (for `logkit config check`)."""
        return f"{self.name} storage for log {self.log}"


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

    def stats(self) -> dict[str, int]:
        return {}


@dataclass(frozen=True)
class BackendInfo:
    kind: str            # 'storage' or 'transport'
    name: str
    value: str           # 'module:Class'
    distribution: str    # the installed package that declares it


_cache: dict[tuple[str, str], type] = {}


def _entry_points(kind: str):
    group = GROUPS.get(kind)
    if group is None:
        raise ValueError(f"backend kind must be 'storage' or 'transport', not {kind!r}")
    import importlib.metadata as _md   # imported when needed: it costs ~15 ms at start-up
    return _md.entry_points(group=group)


def available(kind: str) -> list[BackendInfo]:
    """Every backend of `kind` that installed packages declare, by name."""
    out = []
    for ep in _entry_points(kind):
        dist = getattr(ep, "dist", None)
        out.append(BackendInfo(kind, ep.name, ep.value, dist.name if dist is not None else "?"))
    return sorted(out, key=lambda b: b.name)


def load(kind: str, name: str) -> type:
    """The backend class registered as `name`; BackendNotFound (with the
    closest name) when no package declares it or it fails to import."""
    key = (kind, name)
    if key in _cache:
        return _cache[key]
    eps = {ep.name: ep for ep in _entry_points(kind)}
    ep = eps.get(name)
    if ep is None:
        known = ", ".join(sorted(eps)) or "none"
        raise BackendNotFound(f"no {kind} backend named '{name}'{suggest(name, eps)}; "
                              f"registered: {known}")
    try:
        cls = ep.load()
    except Exception as e:   # a broken third-party package must not look like a typo
        raise BackendNotFound(f"{kind} backend '{name}' ({ep.value}) failed to load: "
                              f"{type(e).__name__}: {e}") from e
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
