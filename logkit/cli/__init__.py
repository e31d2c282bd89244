"""The `logkit` command (also `python -m logkit`): one module per subcommand.

Each subcommand module has `add_parser(subparsers)` and `run(args) -> int`
(the exit status).  Errors that a user can act on (a bad config, a missing
log) print one clear line per problem to stderr and exit 2; a check that
finds something wrong exits 1.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from logkit.errors import LogkitError
from logkit.console import say

# Subcommand NAME lives in logkit/cli/NAME_cmd.py.  Only the module of the
# command being run is imported (a reading tool starts without the server,
# the config machinery or the backends it does not use); `logkit --help`
# imports them all.
COMMAND_NAMES = ("print", "monitor", "display", "verify", "stats", "salvage", "migrate", "retain",
                 "drain", "server", "config", "backends")


def command_module(name: str):
    return importlib.import_module(f"logkit.cli.{name}_cmd")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or of `only` (the one being run)."""
    p = argparse.ArgumentParser(
        prog="logkit",
        description="logkit: lock-free, crash-safe logging into memory-mapped log segments.")
    from logkit import __version__
    p.add_argument("--version", action="version", version=f"logkit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_NAMES:
        if only is None or name == only:
            command_module(name).add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(first if first in COMMAND_NAMES else None)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except LogkitError as e:
        for line in str(e).splitlines() or [type(e).__name__]:
            say(f"logkit {args.command}: {line}")
        return 2
    except BrokenPipeError:
        return 0
