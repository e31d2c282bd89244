"""The config file: one TOML table per log, naming its storage and transport.

Sits between the user and the registry: logkit.Handler, the CLI and any tool
read logs through load()/resolve() here, so every one of them understands the
same file the same way.  Every problem is reported with the file, the table
and the key, and the closest valid name (docs/config.md is the reference).
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from typing import Any, Iterable

from logkit._segment import parse_size
from logkit.errors import InvalidArgument, LogkitError
from logkit.family import parse_duration
from logkit.registry import BackendNotFound, Option, StorageBackend, TransportBackend, load as _load_backend, suggest

__all__ = [
    "ConfigError", "Problem", "LogConfig", "Config", "ENV_VAR", "search_path", "find_config",
    "load", "resolve", "from_options", "DEFAULT_STORAGE", "DEFAULT_TRANSPORT",
]

ENV_VAR = "LOGKIT_CONFIG"
DEFAULT_STORAGE = "family"
DEFAULT_TRANSPORT = "shm"
# Keys of a [log.NAME] table that belong to the log itself, not to a backend.
LOG_KEYS = ("storage", "transport")
# Encryption is an option of the storage: `key_file` is declared by storages
# that seal (family); anywhere else it is refused by name, never ignored.
KEY_FILE = "key_file"


def search_path() -> list[str]:
    """Where a config file is looked for, in order: $LOGKIT_CONFIG,
    ./logkit.toml, ~/.config/logkit/logkit.toml, /etc/logkit/logkit.toml."""
    out = []
    env = os.environ.get(ENV_VAR)
    if env:
        out.append(env)
    out += [os.path.join(os.getcwd(), "logkit.toml"),
            os.path.join(os.path.expanduser("~"), ".config", "logkit", "logkit.toml"),
            "/etc/logkit/logkit.toml"]
    return out


def find_config() -> str | None:
    """The first config file of search_path() that exists.  A $LOGKIT_CONFIG
    that names a missing file is an error, not a silent fall-through."""
    env = os.environ.get(ENV_VAR)
    if env and not os.path.isfile(env):
        raise ConfigError([Problem(env, None, None, f"${ENV_VAR} names {env}, which does not exist")])
    for p in search_path():
        if os.path.isfile(p):
            return p
    return None


@dataclass(frozen=True)
class Problem:
    file: str | None
    table: str | None
    key: str | None
    message: str

    def __str__(self) -> str:
        head = self.file or "<options>"
        if self.table:
            head += f" [{self.table}]"
        return ": ".join([head] + ([self.key] if self.key else []) + [self.message])


class ConfigError(LogkitError, ValueError):
    """A config file (or the options given in code) is not valid; .problems
    lists every problem found, each naming the file, the table and the key."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass
class LogConfig:
    """One log's resolved configuration: backend names and converted options."""
    name: str
    file: str | None
    storage: str
    transport: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    transport_options: dict[str, Any] = field(default_factory=dict)

    def open_storage(self) -> StorageBackend:
        cls = _load_backend("storage", self.storage)
        return cls(self.name, **self.storage_options)

    def open(self) -> TransportBackend:
        """Open the storage, then the transport in front of it."""
        storage = self.open_storage()
        try:
            cls = _load_backend("transport", self.transport)
            return cls(storage, self.name, **self.transport_options)
        except BaseException:
            storage.close()
            raise

    def as_dict(self) -> dict:
        return {"log": self.name, "file": self.file,
                "storage": {"backend": self.storage, **self.storage_options},
                "transport": {"backend": self.transport, **self.transport_options}}


@dataclass
class Config:
    path: str | None
    logs: dict[str, LogConfig]

    def get(self, name: str | None) -> LogConfig:
        """The log `name`; with None, the only log of the file."""
        if name is None:
            if len(self.logs) == 1:
                return next(iter(self.logs.values()))
            if not self.logs:
                raise ConfigError([Problem(self.path, None, None, "defines no log (add a [log.NAME] table)")])
            raise ConfigError([Problem(self.path, None, None,
                                       f"defines {len(self.logs)} logs ({', '.join(sorted(self.logs))}): "
                                       "say which one (log=...)")])
        if name not in self.logs:
            raise ConfigError([Problem(self.path, f"log.{name}", None,
                                       f"no such log{suggest(name, self.logs)}; defined: "
                                       f"{', '.join(sorted(self.logs)) or 'none'}")])
        return self.logs[name]


# ------------------------------------------------------------------ conversion

_KIND_WORDS = {
    "str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
    "size": "a size (bytes, or a string like '8MiB')", "duration": "a duration (seconds, or '30s', '5m', '2h', '7d')",
    "mode": "a file mode (an integer, or octal digits like '0640')", "path": "a path (string)",
    "dir": "a directory path (string)", "choice": "one of",
}


def _convert(opt: Option, value: Any, base_dir: str) -> Any:
    """The option's value converted to what the backend receives; ValueError
    (with a message meant for the user) when it does not fit."""
    k = opt.kind
    if value is None:
        return None
    if k == "str":
        if not isinstance(value, str):
            raise ValueError(f"expected {_KIND_WORDS[k]}, got {value!r}")
        return value
    if k == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected {_KIND_WORDS[k]}, got {value!r}")
        if value < 0:
            raise ValueError(f"must not be negative, got {value}")
        return value
    if k == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected {_KIND_WORDS[k]}, got {value!r}")
        return float(value)
    if k == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"expected {_KIND_WORDS[k]}, got {value!r}")
        return value
    if k == "size":
        try:
            n = parse_size(value, opt.name)
        except InvalidArgument as e:
            raise ValueError(str(e).split(": ", 1)[-1]) from None
        if n < 0:
            raise ValueError(f"must not be negative, got {value!r}")
        return n
    if k == "duration":
        try:
            return parse_duration(value, opt.name)
        except InvalidArgument as e:
            raise ValueError(str(e).split(": ", 1)[-1]) from None
    if k == "mode":
        if isinstance(value, bool):
            raise ValueError(f"expected {_KIND_WORDS[k]}, got {value!r}")
        if isinstance(value, str):
            try:
                value = int(value, 8)
            except ValueError:
                raise ValueError(f"{value!r} is not octal digits (e.g. '0640')") from None
        if not isinstance(value, int) or not 0 <= value <= 0o7777:
            raise ValueError(f"expected {_KIND_WORDS[k]} in 0..0o7777, got {value!r}")
        return value
    if k in ("path", "dir"):
        if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
            raise ValueError(f"expected {_KIND_WORDS[k]}, got {value!r}")
        return os.path.normpath(os.path.join(base_dir, os.path.expanduser(os.fspath(value))))
    if k == "choice":
        if value not in opt.choices:
            raise ValueError(f"{value!r} is not one of {', '.join(map(repr, opt.choices))}"
                             f"{suggest(str(value), opt.choices)}")
        return value
    raise ValueError(f"the backend declares option kind {k!r}, which logkit does not know")


def _backend_options(kind: str, cls, given: dict[str, Any], file, table, base_dir, problems) -> dict:
    """Check and convert `given` against cls.options; defaults for the rest."""
    declared = {o.name: o for o in cls.options}
    out: dict[str, Any] = {}
    for key, value in given.items():
        opt = declared.get(key)
        if opt is None:        # callers only pass declared keys; kept for subtables
            problems.append(Problem(file, table, key, f"{kind} backend '{cls.name}' has no option "
                                    f"'{key}'{suggest(key, declared)}; it takes: "
                                    f"{', '.join(declared) or 'no options'}"))
            continue
        try:
            out[key] = _convert(opt, value, base_dir)
        except ValueError as e:
            problems.append(Problem(file, table, key, str(e)))
    for name, opt in declared.items():
        if name in out or name in given:
            continue
        if opt.required:
            problems.append(Problem(file, table, name, f"missing: {kind} backend '{cls.name}' needs "
                                    f"'{name}' ({opt.help or _KIND_WORDS.get(opt.kind, opt.kind)})"))
        else:
            out[name] = opt.default
    # A 'dir' must exist, unless the backend is told to create it.
    for name, opt in declared.items():
        if opt.kind == "dir" and out.get(name) is not None and not os.path.isdir(out[name]) \
                and not out.get("create_directory"):
            problems.append(Problem(file, table, name, f"directory {out[name]} does not exist "
                                    "(create it, or set create_directory = true)"))
    return out


def _check_backend(kind: str, cls, log: str, options: dict, writing: bool, file, table, subtables,
                   problems: list) -> None:
    """The backend's own checks (cls.check_options), each as a Problem naming
    file, table and key: the one validation `logkit config check` and
    logkit.Handler share."""
    try:
        found = cls.check_options(log, options, writing=writing)
    except Exception as e:                  # a third-party backend's bug must not look like a crash here
        problems.append(Problem(file, table, None, f"{kind} backend '{cls.name}': check_options failed: "
                                f"{type(e).__name__}: {e}"))
        return
    for key, message in found:
        t = f"{table}.{kind}" if kind in subtables and key in subtables[kind] else table
        problems.append(Problem(file, t, key, message))


def _resolve_log(name: str, table: Any, file: str | None, base_dir: str,
                 writing: bool = False) -> tuple[LogConfig | None, list[Problem]]:
    problems: list[Problem] = []
    tname = f"log.{name}"
    if name is not None and not isinstance(name, str):
        name = str(name)
    if not isinstance(table, dict):
        return None, [Problem(file, None, tname, f"must be a table ([{tname}]), got {table!r}")]
    storage_name = table.get("storage", DEFAULT_STORAGE)
    transport_name = table.get("transport", DEFAULT_TRANSPORT)
    classes = {}
    for kind, bname in (("storage", storage_name), ("transport", transport_name)):
        if isinstance(bname, dict):      # a [log.NAME.storage] table names its backend with `backend`
            bname = bname.get("backend", DEFAULT_STORAGE if kind == "storage" else DEFAULT_TRANSPORT)
        if not isinstance(bname, str):
            problems.append(Problem(file, tname, kind, f"expected a backend name (string), got {bname!r}"))
            continue
        try:
            classes[kind] = _load_backend(kind, bname)
        except BackendNotFound as e:
            problems.append(Problem(file, tname, kind, str(e)))
    subtables = {k: table[k] for k in ("storage", "transport") if isinstance(table.get(k), dict)}
    plain = {k: v for k, v in table.items() if k not in LOG_KEYS and k not in subtables}
    given = {"storage": {}, "transport": {}}
    names = {kind: {o.name for o in cls.options} for kind, cls in classes.items()}
    for key, value in plain.items():
        owners = [kind for kind in ("storage", "transport") if key in names.get(kind, ())]
        if key == KEY_FILE and not owners and "storage" in classes:
            sealing = sorted(n for n in ("family", "partition") if n != classes["storage"].name)
            problems.append(Problem(file, tname, key, f"storage backend '{classes['storage'].name}' "
                                    "cannot encrypt (it has no key_file option); sealed messages "
                                    f"need storage = {' or '.join(repr(n) for n in sealing)}; remove "
                                    "key_file rather than log in plain text unknowingly"))
            continue
        # With a backend that failed to load, its keys cannot be told from typos.
        if not owners and len(classes) == 2:
            valid = set(LOG_KEYS) | names["storage"] | names["transport"]
            problems.append(Problem(file, tname, key, f"unknown key{suggest(key, valid)}; valid keys here: "
                                    f"{', '.join(sorted(valid))}"))
        for kind in owners:
            given[kind][key] = value
    for kind, sub in subtables.items():
        if kind in classes:
            for key, value in sub.items():
                if key != "backend":
                    given[kind][key] = value
    opts = {}
    for kind, cls in classes.items():
        sub_table = f"{tname}.{kind}" if kind in subtables and any(k in subtables[kind] for k in given[kind]) else tname
        opts[kind] = _backend_options(kind, cls, given[kind], file, sub_table, base_dir, problems)
    if problems:
        return None, problems
    storage_opts = opts["storage"]
    if "family" in storage_opts and storage_opts["family"] is None:
        storage_opts["family"] = name
    for kind, cls in classes.items():
        _check_backend(kind, cls, name, opts[kind], writing, file, tname, subtables, problems)
    if problems:
        return None, problems
    return LogConfig(name, file, classes["storage"].name, classes["transport"].name,
                     storage_opts, opts["transport"]), []


def parse(text: str, file: str | None = None, *, writing: bool = False) -> Config:
    """A Config from TOML text (file names the source in errors).  Every
    backend's check_options runs on every log; `writing` adds the checks only
    a writer needs (its files can be created: not on a read-only file
    system), as for logkit.Handler and `logkit config check`."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([Problem(file, None, None, f"not valid TOML: {e}")]) from None
    base_dir = os.path.dirname(os.path.abspath(file)) if file else os.getcwd()
    problems: list[Problem] = []
    for key in doc:
        if key != "log":
            problems.append(Problem(file, None, key, f"unknown top-level key{suggest(key, ['log'])}; "
                                    "a config file holds [log.NAME] tables"))
    logs_table = doc.get("log", {})
    logs: dict[str, LogConfig] = {}
    if not isinstance(logs_table, dict):
        problems.append(Problem(file, None, "log", "must be a table of [log.NAME] tables"))
        logs_table = {}
    for name, table in logs_table.items():
        lc, probs = _resolve_log(name, table, file, base_dir, writing)
        problems += probs
        if lc is not None:
            logs[name] = lc
    if problems:
        raise ConfigError(problems)
    return Config(file, logs)


def load(path: str | os.PathLike | None = None, *, writing: bool = False) -> Config:
    """Read and validate a config file (default: the first of search_path()).
    Raises ConfigError listing every problem, or naming the places searched.
    `writing`: as for parse()."""
    if path is None:
        path = find_config()
        if path is None:
            raise ConfigError([Problem(None, None, None, "no config file found; looked in: "
                                       + ", ".join(search_path()))])
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(path, None, None, "config file does not exist")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([Problem(path, None, None, f"cannot be read: {e}")]) from None
    return parse(text, path, writing=writing)


def from_options(log: str, *, writing: bool = False, **options: Any) -> LogConfig:
    """A LogConfig from keyword options, checked exactly as a [log.NAME] table
    would be (`storage` and `transport` name the backends; other keys are
    their options; relative paths are taken from the current directory).
    `writing`: as for parse()."""
    lc, problems = _resolve_log(log, dict(options), None, os.getcwd(), writing)
    if problems:
        raise ConfigError(problems)
    return lc


def resolve(log: str | None = None, config: str | os.PathLike | None = None, *, writing: bool = True,
            **options: Any) -> LogConfig:
    """The configuration a Handler (or a tool) uses, checked for writing
    unless `writing` is False (see parse()).

    * config given: that file; the log `log` in it (or its only log), with
      any keyword options laid over its table.
    * no config but options: the options alone (log name `log` or 'default').
    * neither: the first file of search_path(); ConfigError if there is none.
    """
    if config is None and options:
        return from_options(log or "default", writing=writing, **options)
    cfg = load(config)
    lc = cfg.get(log)
    if options or writing:
        # This log alone is checked for writing (another log of the file may
        # be one this process only reads, on a read-only archive, say).
        with open(cfg.path, "rb") as f:
            table = dict(tomllib.load(f)["log"][lc.name])
        table.update(options)
        base_dir = os.path.dirname(os.path.abspath(cfg.path))
        merged, problems = _resolve_log(lc.name, table, cfg.path, base_dir, writing)
        if problems:
            raise ConfigError(problems)
        return merged
    return lc


def describe_options(cls) -> Iterable[str]:
    """Lines describing a backend's options (for `logkit backends -v`)."""
    for o in cls.options:
        default = oct(o.default) if o.kind == "mode" and isinstance(o.default, int) else repr(o.default)
        req = "required" if o.required else f"default {default}"
        extra = f" ({', '.join(o.choices)})" if o.choices else ""
        yield f"{o.name:<18} {o.kind:<9} {req:<22} {o.help}{extra}"
