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


def _fmt(v, key="") -> str:
    if key == "mode" and isinstance(v, int):
        return oct(v)
    if isinstance(v, str):
        return json.dumps(v)
    if v is None:
        return "(none)"
    return str(v)


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
    for lc in cfg.logs.values():
        print(f"[log.{lc.name}]")
        print(f"storage = {_fmt(lc.storage)}")
        for k, v in lc.storage_options.items():
            print(f"  {k} = {_fmt(v, k)}")
        print(f"transport = {_fmt(lc.transport)}")
        for k, v in lc.transport_options.items():
            print(f"  {k} = {_fmt(v, k)}")
    return 0
