"""`logkit config check [FILE]`: print the resolved configuration, or every error."""
from __future__ import annotations

import json

from logkit import config as _config
from logkit.console import say


def add_parser(sub) -> None:
    p = sub.add_parser("config", help="inspect configuration files",
                       description="Inspect logkit configuration files.")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    c = csub.add_parser("check", help="validate a config file and print what it resolves to",
                        description="Validate a config file and print each log's resolved storage and "
                                    "transport with every option (defaults filled in).  Without FILE, "
                                    "the file found by the search order ($LOGKIT_CONFIG, ./logkit.toml, "
                                    "~/.config/logkit/logkit.toml, /etc/logkit/logkit.toml).  Valid means "
                                    "a logkit.Handler would accept each log (the same checks: sizes, "
                                    "names, key files, paths and their directories, a writable file "
                                    "system).  Exit 0 if valid, 1 if not (each problem on its own line, "
                                    "naming file, table and key).")
    c.add_argument("file", nargs="?", help="the config file (default: the search order)")
    c.add_argument("--json", action="store_true", help="print the resolved configuration as JSON")
    c.set_defaults(run=run_check)


_BINARY_UNITS = (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))


def toml_value(v, kind: str = "") -> str | None:
    """v written as TOML (None: no value, the key is left out).  A size
    (an option of kind 'size') that is a whole number of KiB, MiB or GiB is
    written in that unit, as the config file writes it ("8MiB"); a mode in
    octal (0o640)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if kind == "size" and isinstance(v, str):
        from logkit._segment import parse_size
        v = parse_size(v, "size")
    if kind == "size" and isinstance(v, int) and v > 0:
        for unit, n in _BINARY_UNITS:
            if v % n == 0:
                return json.dumps(f"{v // n}{unit}")
        return str(v)
    if kind == "mode" and isinstance(v, int):
        return f"0o{v:o}"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) or '""' for x in v) + "]"
    return json.dumps(str(v) if not isinstance(v, str) else v)


def _kinds(kind: str, backend: str) -> dict[str, str]:
    """Each option's kind ('size', 'mode', ...) of a registered backend."""
    from logkit.registry import load
    try:
        return {o.name: o.kind for o in load(kind, backend).options}
    except Exception:          # a backend that loads for the check loads here too; if not, no units
        return {}


def _option_lines(options: dict, kinds: dict[str, str]) -> list[str]:
    out = []
    for k, v in options.items():
        t = toml_value(v, kinds.get(k, ""))
        out.append(f"{k} = {t}" if t is not None else f"# {k} is not set")
    return out


def run_check(args) -> int:
    try:
        # Checked for writing, as logkit.Handler checks its log: valid here
        # means a Handler accepts it (directories exist and are writable,
        # key files load, sizes and names are in range).
        cfg = _config.load(args.file, writing=True)
    except _config.ConfigError as e:
        for p in e.problems:
            say(f"error: {p}")
        n = len(e.problems)
        say(f"{n} problem{'s' if n != 1 else ''} found")
        return 1
    if args.json:
        print(json.dumps({"file": cfg.path, "logs": [lc.as_dict() for lc in cfg.logs.values()]}, indent=2))
        return 0
    print(f"# {cfg.path}: {len(cfg.logs)} log{'s' if len(cfg.logs) != 1 else ''}, valid")
    # Valid TOML a config file could hold: each log's two backends as tables
    # of their own ([log.NAME.storage] with `backend`, docs/config.md).
    for lc in cfg.logs.values():
        print(f"\n[log.{lc.name}.storage]")
        print(f"backend = {toml_value(lc.storage)}")
        print("\n".join(_option_lines(lc.storage_options, _kinds("storage", lc.storage))))
        print(f"\n[log.{lc.name}.transport]")
        print(f"backend = {toml_value(lc.transport)}")
        lines = _option_lines(lc.transport_options, _kinds("transport", lc.transport))
        if lines:
            print("\n".join(lines))
    return 0
