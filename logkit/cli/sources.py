"""What a LOG argument of the reading commands names, and a reader for it.

`logkit print`, `monitor`, `verify`, `stats` and `display` take LOG
arguments; each is, in this order of trying:

1. a log name of the configuration (``[log.NAME]``), read through its storage;
2. a directory: the family in it (the only one, or the one named by
   ``--family-name``; a directory with several families is an error that
   lists them);
3. a segment file (magic ``LOGKITSG``): with ``single=False`` (the default,
   print_sys_log's ``-family``) the whole family the segment belongs to
   (its directory and family name), with ``single=True`` that segment only;
4. a partition file (magic ``LKPART``);
5. a plain file of the ``plainfile`` storage (text or JSON lines).

A config log whose storage is a partition with a drain ``directory`` is
read whole (backends/partition_log.py): its destination family, then what
the partition holds that no drain has copied yet, numbered as the family
will number it.  A partition file given by path is read alone.

Anything else is a LogkitError that names the argument and what was tried.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from logkit.errors import InvalidArgument, LogkitError, SegmentNotFound

SEGMENT_MAGIC = b"LOGKITSG"
PARTITION_MAGIC = b"LKPART\x00\x01"
_HISTORY = re.compile(r"^(?P<family>.+)\.(\d{8})\.(\d{6})(?:\.(\d{4}))?$")


class LogNotFound(LogkitError):
    """A LOG argument that names no log."""


@dataclass
class Source:
    """One log to read.

    kind: "family", "segment", "partition" or "plainfile"; name: the family
    (or file) name shown by --call and the header; path: the family
    directory, or the file; reader: a registry.Reader (iteration, reverse(),
    seek(), limits(), count()); key_file: what decrypts it, if anything;
    family: the family name (family and segment kinds; a partition log's
    destination family when it has one).
    """

    spec: str
    kind: str
    name: str
    path: str
    reader: Any
    key_file: str | None = None
    family: str | None = None
    log: str | None = None              # the config log name, when it came from the config
    _storage: Any = field(default=None, repr=False)
    lc: Any = field(default=None, repr=False)   # its logkit.config log, when it came from the config

    @property
    def storage(self):
        """The log's storage backend, opened on first use (config logs only).
        Reading never needs it for the built-in storages, so a read-only tool
        creates nothing (opening a family storage creates its live segment)."""
        if self._storage is None and self.lc is not None:
            self._storage = self.lc.open_storage()
        return self._storage

    def segment_paths(self) -> list[str]:
        """The segment files, oldest first (family and segment kinds), else []."""
        if self.kind == "segment":
            return [self.path]
        if self.kind == "family":
            return self.reader.segment_paths()
        return []

    def files(self) -> list[str]:
        """The files that make up the log, each inspected on its own
        (logkit.cli.inspectors): a family's segments, oldest first (none
        yet: []), else the one file."""
        if self.kind in ("segment", "family"):
            return self.segment_paths()
        return [self.path]

    def close(self) -> None:
        st = self._storage
        if st is not None:
            self._storage = None
            try:
                st.close()
            except LogkitError:
                pass


def families_in(directory: str) -> list[str]:
    """The family names with a live or history segment in `directory`."""
    names = set()
    unreadable = []
    try:
        entries = os.listdir(directory)
    except OSError as e:
        raise LogNotFound(f"{directory}: cannot list the directory: {e.strerror}") from None
    for n in entries:
        if n.startswith("."):
            continue
        p = os.path.join(directory, n)
        if not os.path.isfile(p):
            continue
        if not os.access(p, os.R_OK):
            unreadable.append(n)
            continue
        if _magic(p) != SEGMENT_MAGIC:
            continue
        m = _HISTORY.match(n)
        names.add(m.group("family") if m else n)
    if not names and unreadable:
        raise LogNotFound(f"{directory}: permission denied: cannot read "
                          f"{', '.join(sorted(unreadable)[:5])}{' ...' if len(unreadable) > 5 else ''}")
    return sorted(names)


def _magic(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(8)
    except OSError:
        return b""


def _family_of_segment(path: str) -> str:
    """The family a segment file belongs to: its header's family name, else
    its file name without the history stamp."""
    try:
        from logkit import Segment
        seg = Segment.open(path, readonly=True)
        try:
            fam = seg.family
        finally:
            seg.close()
        if fam:
            return fam
    except LogkitError:
        pass
    n = os.path.basename(path)
    m = _HISTORY.match(n)
    return m.group("family") if m else n


def _looks_like_text(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start > len(head) - 4      # a character cut at the end of the sample
    return True


def resolve(spec: str, *, config=None, key_file=None, single: bool = False,
            family_name: str | None = None, not_yet: bool = False) -> Source:
    """The Source a LOG argument names (see the module docstring).  `config`
    is a loaded logkit.config.Config or None; key_file decrypts sealed logs
    given by path (a config log uses its own key_file unless one is given).
    not_yet: a config log with family storage whose directory does not
    exist yet is still a Source, with reader None until it appears (what
    monitor waits for)."""
    from logkit.backends.partition import open_reader as partition_reader
    from logkit.backends.plainfile import open_reader as plain_reader
    from logkit.family import FamilyReader

    if config is not None and spec in getattr(config, "logs", {}):
        lc = config.get(spec)
        so = lc.storage_options
        kf = key_file or so.get("key_file")
        if lc.storage == "family":
            d = os.path.abspath(os.fspath(so["directory"]))
            fam = so.get("family") or lc.name
            if not os.path.isdir(d):
                if not_yet:
                    return Source(spec, "family", fam, d, None, kf, fam, lc.name, lc=lc)
                raise LogNotFound(f"log {spec}: its directory {d} does not exist (nothing was logged yet?)")
            return Source(spec, "family", fam, d, FamilyReader(d, fam, key_file=kf), kf, fam, lc.name, lc=lc)
        if lc.storage in ("partition", "plainfile") and so.get("path"):
            path = os.path.abspath(os.fspath(so["path"]))
            fam = None
            if lc.storage == "partition":
                if not os.path.exists(path):
                    raise LogNotFound(f"log {spec}: its partition {path} does not exist")
                if so.get("directory"):
                    # The whole log: the destination family, then what is not
                    # drained yet, numbered as the family will number it.
                    from logkit.backends.partition_log import open_log_reader
                    fam = so.get("family") or lc.name
                    rd = open_log_reader(path, os.path.abspath(os.fspath(so["directory"])), fam, key_file=kf)
                else:
                    rd = partition_reader(path, key_file=kf)
            else:
                rd = plain_reader(path)
            return Source(spec, lc.storage, lc.name, path, rd, kf, fam, lc.name, lc=lc)
        src = Source(spec, lc.storage, lc.name, spec, None, kf, None, lc.name, lc=lc)
        try:
            src.reader = src.storage.reader()     # a third-party storage: its own reader
            src.path = os.path.abspath(os.fspath(getattr(src.storage, "path", "") or spec))
        except BaseException:
            src.close()
            raise
        return src
    path = os.path.abspath(os.path.expanduser(spec))
    if os.path.isdir(path):
        fams = families_in(path)
        if family_name is not None:
            if family_name not in fams:
                raise LogNotFound(f"{spec}: no family {family_name!r} in the directory"
                                  + (f" (it holds {', '.join(fams)})" if fams else " (it holds no segments)"))
            fams = [family_name]
        if not fams:
            raise LogNotFound(f"{spec}: the directory holds no log segments")
        if len(fams) > 1:
            raise LogNotFound(f"{spec}: the directory holds several families ({', '.join(fams)}); "
                              f"name one: {os.path.join(spec, fams[0])}")
        return Source(spec, "family", fams[0], path, FamilyReader(path, fams[0], key_file=key_file),
                      key_file, fams[0])
    if not os.path.exists(path):
        raise LogNotFound(f"{spec}: {no_such_log(spec, config)}")
    if not os.path.isfile(path):
        raise LogNotFound(f"{spec}: not a regular file or a directory")
    if not os.access(path, os.R_OK):
        raise LogNotFound(f"{spec}: permission denied (cannot read the file)")
    magic = _magic(path)
    if magic == SEGMENT_MAGIC:
        fam = _family_of_segment(path)
        d = os.path.dirname(path)
        if single:
            return Source(spec, "segment", fam, path, _SegmentReader(path, key_file), key_file, fam)
        return Source(spec, "family", fam, d, FamilyReader(d, fam, key_file=key_file), key_file, fam)
    if magic == PARTITION_MAGIC:
        return Source(spec, "partition", os.path.basename(path), path,
                      partition_reader(path, key_file=key_file), key_file)
    if _looks_like_text(path):
        return Source(spec, "plainfile", os.path.basename(path), path, plain_reader(path), None)
    raise LogNotFound(f"{spec}: not a log (no segment or partition magic at offset 0, "
                      f"and not a plain text log file)")


def no_such_log(spec: str, config) -> str:
    """Why `spec`, which is no path, names no log: no config file was found
    (and where it was looked for), or the config has no log of that name
    (the closest one, and the ones it has)."""
    what = "no such file or directory"
    if config is None:
        from logkit.config import search_path
        return f"{what}, and no config file found to name a log (looked in {', '.join(search_path())})"
    logs = sorted(getattr(config, "logs", None) or ())
    if not logs:
        return f"{what}, and {config.path} has no [log.NAME] tables"
    from logkit.registry import suggest
    return f"{what}, and no log of that name in {config.path} (logs: {', '.join(logs)}){suggest(spec, logs)}"


def family_location(spec: str, family: str | None, config_path=None, command: str = "") -> tuple[str, str]:
    """(directory, family) for the tools that work on a family's files
    (retain, migrate): DIRECTORY and FAMILY as given; or a log name of the
    configuration (a family log's directory and family, a partition log's
    destination family); or a directory that holds one family.  LogNotFound
    or InvalidArgument naming what is wrong."""
    if family is not None:
        return os.path.abspath(os.path.expanduser(spec)), family
    cfg = load_config_quietly(config_path, [spec])
    if cfg is not None and spec in getattr(cfg, "logs", {}):
        lc = cfg.get(spec)
        so = lc.storage_options
        if lc.storage == "family":
            return os.path.abspath(os.fspath(so["directory"])), so.get("family") or lc.name
        if lc.storage == "partition":
            if not so.get("directory"):
                raise InvalidArgument(f"log {spec}: its partition has no `directory` to drain into, "
                                      f"so it has no family for {command or 'this command'}")
            return os.path.abspath(os.fspath(so["directory"])), so.get("family") or lc.name
        raise InvalidArgument(f"log {spec}: its storage is {lc.storage!r}, not a family "
                              f"({command or 'this command'} works on a family's segments)")
    path = os.path.abspath(os.path.expanduser(spec))
    if os.path.isdir(path):
        fams = families_in(path)
        if len(fams) == 1:
            return path, fams[0]
        if not fams:
            raise LogNotFound(f"{spec}: the directory holds no log segments")
        raise InvalidArgument(f"{spec}: the directory holds several families ({', '.join(fams)}); "
                              f"name one: {command} {spec} {fams[0]}".replace("  ", " "))
    if os.path.exists(path):
        raise InvalidArgument(f"{spec}: not a directory ({command or 'this command'} takes a config log "
                              "name, or a family's directory and the family's name)")
    raise LogNotFound(f"{spec}: {no_such_log(spec, cfg)}")


def log_specs(logs, cfg) -> list[str]:
    """The LOG arguments given, or else every log of the configuration
    (LogNotFound when there is neither)."""
    specs = list(logs)
    if specs:
        return specs
    if cfg is None or not getattr(cfg, "logs", None):
        raise LogNotFound("no LOG given and no configuration with logs (give a family "
                          "directory, a segment, a partition or a plain file)")
    return sorted(cfg.logs)


def resolve_all(specs, *, config=None, key_file=None, single=False, family_name=None,
                not_yet=False) -> list[Source]:
    """resolve() each spec; closes what it opened if one fails."""
    out: list[Source] = []
    try:
        for s in specs:
            out.append(resolve(s, config=config, key_file=key_file, single=single, family_name=family_name,
                               not_yet=not_yet))
    except BaseException:
        for s in out:
            s.close()
        raise
    return out


def load_config_quietly(path, specs=None):
    """The configuration for resolving log names: the given file (errors
    raised), or the search order's file if there is one (None if none).
    When every LOG given is an existing path, no configuration is needed
    and none is read (None)."""
    if path is None and specs and all(os.path.exists(os.path.expanduser(s)) for s in specs):
        return None
    from logkit import config as _config
    if path is not None:
        return _config.load(path)
    try:
        return _config.load(None)
    except _config.ConfigError as e:
        if "no config file" in str(e).lower() or "not found" in str(e).lower():
            return None
        raise
    except (SegmentNotFound, FileNotFoundError):
        return None


class _SegmentReader:
    """A registry.Reader over one segment file (`--single`)."""

    def __init__(self, path: str, key_file=None):
        from logkit.crypto import load_key_file
        self.path = path
        self.key_file = key_file
        self._ring = load_key_file(key_file) if key_file is not None else None
        self._start: int | None = None

    def segment_paths(self) -> list[str]:
        return [self.path]

    def _open(self):
        from logkit import Segment
        return Segment.open(self.path, readonly=True, key=self._ring)

    def __iter__(self):
        seg = self._open()
        start = self._start
        for m in seg:
            if start is None or m.sequence >= start:
                yield m

    def reverse(self):
        return iter(list(self)[::-1])

    def seek(self, sequence=None, time=None):
        seg = self._open()
        m = seg.find(sequence=sequence, time=time)
        self._start = m.sequence
        return m

    def rewind(self) -> None:
        self._start = None

    def limits(self):
        return self._open().limits()

    def count(self) -> int:
        return sum(1 for _ in self)


def check_key_file(key_file) -> str | None:
    """A key file given on the command line: its path, or InvalidArgument."""
    if key_file is None:
        return None
    p = os.path.abspath(os.path.expanduser(key_file))
    if not os.path.exists(p):
        raise InvalidArgument(f"--key-file {key_file}: no such file")
    return p
