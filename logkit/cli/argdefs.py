"""The `logkit` command's argument definitions, read back from argparse.

Shell completion (completion_cmd.py) and the man page (man_cmd.py) are both
made from what build_parser() defines, so neither repeats an option by hand:
a new option of any subcommand appears in both.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field


@dataclass
class Opt:
    """One option: its spellings, whether it takes a value (and how many),
    the value's name, its choices, whether it may repeat, and its help."""

    strings: list[str]
    takes: str | int | None         # argparse nargs: None (one value), 0 (a flag), "?", "*", "+"
    metavar: str
    choices: list[str]
    repeats: bool
    help: str
    file: bool                      # its value names a file

    @property
    def flag(self) -> bool:
        return self.takes == 0


@dataclass
class Positional:
    name: str
    takes: str | int | None
    help: str
    choices: list[str]


@dataclass
class Command:
    """A subcommand (or, for `config`, a subcommand of a subcommand)."""

    name: str
    help: str
    description: str
    epilog: str
    usage: str
    options: list[Opt] = field(default_factory=list)
    positionals: list[Positional] = field(default_factory=list)
    groups: list[tuple[str, str, list[Opt]]] = field(default_factory=list)   # (title, description, options)
    commands: list["Command"] = field(default_factory=list)

    def option_strings(self) -> list[str]:
        return [s for o in self.options for s in o.strings]


# Options whose value names a file or a directory (completed as paths).
_FILE_DESTS = {"config", "key_file", "file", "directory", "destination"}


def _metavar(a: argparse.Action) -> str:
    mv = a.metavar
    if isinstance(mv, tuple):
        mv = " ".join(mv)
    if mv:
        return str(mv)
    if a.choices:
        return "{" + ",".join(map(str, a.choices)) + "}"
    return (a.dest or "VALUE").upper()


def _help(a: argparse.Action) -> str:
    h = a.help or ""
    if h == argparse.SUPPRESS:
        return ""
    try:
        return h % {"default": a.default, "prog": "logkit", "dest": a.dest}
    except (KeyError, ValueError, TypeError):
        return h


def _opt(a: argparse.Action) -> Opt:
    takes = a.nargs
    if isinstance(a, (argparse._StoreConstAction, argparse._StoreTrueAction, argparse._StoreFalseAction,
                      argparse._CountAction, argparse._HelpAction, argparse._VersionAction,
                      argparse._AppendConstAction)) or a.nargs == 0:
        takes = 0
    repeats = isinstance(a, (argparse._AppendAction, argparse._ExtendAction, argparse._CountAction))
    return Opt(list(a.option_strings), takes, _metavar(a), [str(c) for c in a.choices or ()],
               repeats, _help(a), a.dest in _FILE_DESTS)


def describe(parser: argparse.ArgumentParser, name: str = "logkit", help: str = "") -> Command:
    """The Command tree of `parser` and its subparsers."""
    fmt = parser._get_formatter()
    fmt.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    cmd = Command(name, help, parser.description or "", parser.epilog or "", " ".join(fmt.format_help().split()))
    seen: dict[int, Opt] = {}
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            helps = {c.dest: c.help or "" for c in a._choices_actions}
            for sub_name, sub in a.choices.items():
                cmd.commands.append(describe(sub, sub_name, helps.get(sub_name, "")))
        elif a.option_strings:
            o = _opt(a)
            seen[id(a)] = o
            cmd.options.append(o)
        elif a.help != argparse.SUPPRESS:
            cmd.positionals.append(Positional(_metavar(a), a.nargs, _help(a),
                                              [str(c) for c in a.choices or ()]))
    for g in parser._action_groups:
        opts = [seen[id(a)] for a in g._group_actions if id(a) in seen]
        if opts:
            cmd.groups.append((g.title or "options", g.description or "", opts))
    return cmd


def actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Every action `parser` defines.  argparse has no public call for it:
    this module is the one place that reads argparse's internals
    (tests/test_layering.py allows it here and nowhere else)."""
    return list(parser._actions)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommand parsers of `parser` by name ({} without subcommands)."""
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


def logkit_commands() -> Command:
    """Every subcommand of `logkit`, as defined now."""
    from logkit.cli import build_parser
    return describe(build_parser(), "logkit",
                    "lock-free, crash-safe logging into memory-mapped log segments")
