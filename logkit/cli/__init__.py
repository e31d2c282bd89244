"""The `logkit` command (also `python -m logkit`): one module per subcommand.

Each subcommand module has `add_parser(subparsers)` and `run(args) -> int`
(the exit status).  Errors that a user can act on (a bad config, a missing
log) print one clear line per problem to stderr and exit 2; a check that
finds something wrong exits 1.
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys

from logkit.errors import LogkitError
from logkit.console import say
from logkit.cli import argdefs

# Subcommand NAME lives in logkit/cli/NAME_cmd.py.  Only the module of the
# command being run is imported (a reading tool starts without the server,
# the config machinery or the backends it does not use); `logkit --help`
# imports them all.
COMMAND_NAMES = ("print", "monitor", "display", "verify", "stats", "salvage", "migrate", "retain",
                 "drain", "server", "config", "backends", "completion", "man")


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


# A value such as -2h (a relative time) or -5:0 (a severity range): argparse
# takes it for an option unless it is joined with '=' (it only accepts plain
# negative numbers, -5 or -2.5, as values).
_NEGATIVE_VALUE = re.compile(r"^-\d")


def join_negative_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """argv with each value that starts with '-' and a digit joined to the
    option it follows: `--from -2h` becomes `--from=-2h`, and
    `--severity -5:0 10` becomes `--severity=-5:0 --severity=10` (a list
    option takes repeats).  Options are those of the subcommand being run."""
    subs = argdefs.subcommands(parser)
    first = next((a for a in argv if not a.startswith("-")), None)
    if first not in subs:
        return argv
    takes = {}                      # option string -> its action's nargs (single values and lists)
    for a in argdefs.actions(subs[first]):
        if a.option_strings and a.nargs in (None, "+", "*"):
            takes.update(dict.fromkeys(a.option_strings, a.nargs))
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok == "--":
            out += argv[i - 1:]
            break
        if tok not in takes:
            out.append(tok)
            continue
        if takes[tok] is None:
            if i < len(argv) and _NEGATIVE_VALUE.match(argv[i]):
                out.append(f"{tok}={argv[i]}")
                i += 1
            else:
                out.append(tok)
            continue
        values = []
        while i < len(argv) and (_NEGATIVE_VALUE.match(argv[i]) or not argv[i].startswith("-")):
            values.append(argv[i])
            i += 1
        if any(_NEGATIVE_VALUE.match(v) for v in values):
            out += [f"{tok}={v}" for v in values]
        else:
            out += [tok, *values]
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(first if first in COMMAND_NAMES else None)
    args = parser.parse_args(join_negative_values(parser, argv))
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
