"""The `logkit` command (also `python -m logkit`): one module per subcommand.

Each subcommand module has `add_parser(subparsers)` and `run(args) -> int`
(the exit status).  Errors that a user can act on (a bad config, a missing
log) print one clear line per problem to stderr and exit 2; a check that
finds something wrong exits 1.
"""
from __future__ import annotations

import argparse
import sys

from logkit.errors import LogkitError

from . import (backends_cmd, config_cmd, display_cmd, drain_cmd, migrate_cmd, monitor_cmd, print_cmd,
               retain_cmd, salvage_cmd, server_cmd, stats_cmd, verify_cmd)

COMMANDS = (print_cmd, monitor_cmd, config_cmd, backends_cmd, drain_cmd, server_cmd, stats_cmd,
            display_cmd, verify_cmd, salvage_cmd, migrate_cmd, retain_cmd)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="logkit",
        description="logkit: lock-free, crash-safe logging into memory-mapped log segments.")
    from logkit import __version__
    p.add_argument("--version", action="version", version=f"logkit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in COMMANDS:
        mod.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except LogkitError as e:
        for line in str(e).splitlines() or [type(e).__name__]:
            print(f"logkit {args.command}: {line}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
