"""`logkit man`: the manual page logkit(1), made from the argument definitions.

page() writes roff from what build_parser() defines (argdefs.py): every
subcommand with its usage, description, options and epilog.  setup.py runs
this module when it builds the package (`python -m logkit.cli.man_cmd FILE`),
so the page installed as package data, logkit/man/logkit.1, is the one of the
version installed; `logkit man` shows the page of the code that runs.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from logkit.console import say

from .argdefs import Command, Opt, logkit_commands

INSTALLED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "man", "logkit.1")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "man", help="show the manual page logkit(1)",
        description="Show the manual page logkit(1), made from the same argument definitions as "
                    "--help: through man(1) on a terminal, else as roff on standard output (`logkit "
                    "man > logkit.1`). The page is also installed with the package; --path prints "
                    "where (`man -l \"$(logkit man --path)\"`).")
    p.add_argument("--path", action="store_true", help="print the path of the installed page instead")
    p.add_argument("--roff", action="store_true", help="print roff even on a terminal")
    p.set_defaults(run=run)


def run(args) -> int:
    from logkit.errors import LogkitError
    if args.path:
        if not os.path.isfile(INSTALLED):
            raise LogkitError(f"no installed page at {INSTALLED} (it is made when the package is "
                              "built: `make build` or `pip install`); `logkit man --roff` prints it")
        print(INSTALLED)
        return 0
    text = page()
    if not args.roff and sys.stdout.isatty() and shutil.which("man"):
        return subprocess.run(["man", "-l", "-"], input=text.encode()).returncode
    sys.stdout.write(text)
    return 0


def _esc(text: str) -> str:
    """Plain text as roff: backslashes and hyphens escaped, no line starting
    with a control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in text.split("\n"):
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def _para(text: str) -> list[str]:
    text = " ".join(text.split())
    return [_esc(text)] if text else []


def _option(o: Opt) -> list[str]:
    if o.flag:
        head = ", ".join(f"\\fB{_esc(s)}\\fR" for s in o.strings)
    else:
        sep = " "
        head = ", ".join(f"\\fB{_esc(s)}\\fR{sep}\\fI{_esc(o.metavar)}\\fR" for s in o.strings)
        if o.takes in ("*", "+"):
            head += " ..."
    out = [".TP", head]
    h = o.help
    if o.choices and "{" in o.metavar:
        h = f"{h} (one of: {', '.join(o.choices)})".strip()
    out += _para(h) or ["\\&"]
    return out


def _command(c: Command, prefix: str) -> list[str]:
    name = f"{prefix} {c.name}".strip()
    out = [".SS " + _esc(f'"{name}"'), "\\fB" + _esc(c.usage.replace("usage: ", "", 1)) + "\\fR", ".PP"]
    out += _para(c.description or c.help)
    for p in c.positionals:
        if p.help:
            out += [".TP", f"\\fI{_esc(p.name)}\\fR"] + _para(p.help)
    for title, desc, opts in c.groups:
        opts = [o for o in opts if "-h" not in o.strings]
        if not opts:
            continue
        out += [".PP", f"\\fI{_esc(title)}\\fR"]
        if desc:
            out += [".PP"] + _para(desc)
        for o in opts:
            out += _option(o)
    if c.epilog:
        out += [".PP"] + _para(c.epilog)
    for s in c.commands:
        out += _command(s, name)
    return out


def page(tree: Command | None = None, date: str | None = None) -> str:
    """logkit(1) in roff."""
    from logkit import __version__
    tree = tree or logkit_commands()
    if date is None:
        # SOURCE_DATE_EPOCH makes the page of a build reproducible.
        t = int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))
        date = time.strftime("%Y-%m-%d", time.gmtime(t))
    out = [
        '.\\" Made by `logkit man` from the argument definitions of the logkit command; do not edit.',
        f'.TH LOGKIT 1 "{date}" "logkit {__version__}" "User Commands"',
        ".SH NAME",
        "logkit \\- " + _esc(tree.help),
        ".SH SYNOPSIS",
        "\\fBlogkit\\fR \\fICOMMAND\\fR [\\fIOPTION\\fR ...] [\\fIARGUMENT\\fR ...]",
        ".br",
        "\\fBpython \\-m logkit\\fR \\fICOMMAND\\fR ...",
        ".SH DESCRIPTION",
    ]
    out += _para(tree.description)
    out += [".PP"] + _para(
        "Every command has --help. Exit status: 0 all well; 1 a check found a problem; 2 an error "
        "that stopped the command, printed as one line per problem on standard error, each prefixed "
        "with `logkit COMMAND:`; 130 interrupted.")
    out += [".SH COMMANDS"]
    for c in tree.commands:
        out += [".TP", f"\\fB{_esc(c.name)}\\fR"] + (_para(c.help) or ["\\&"])
    out += [".SH OPTIONS"]
    for o in tree.options:
        if "-h" not in o.strings:
            out += _option(o)
    out += [".SH COMMAND REFERENCE"]
    for c in tree.commands:
        out += _command(c, "logkit")
    out += [".SH ENVIRONMENT",
            ".TP", "\\fBLOGKIT_CONFIG\\fR",
            "the config file, before ./logkit.toml, ~/.config/logkit/logkit.toml and "
            "/etc/logkit/logkit.toml",
            ".TP", "\\fBNO_COLOR\\fR", "no colour with \\-\\-colour auto",
            ".SH SEE ALSO",
            "The documentation in docs/ of the logkit sources: cli.md, config.md, format.md.",
            ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """`python -m logkit.cli.man_cmd FILE`: write the page to FILE (setup.py)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        say("usage: python -m logkit.cli.man_cmd FILE")
        return 2
    os.makedirs(os.path.dirname(os.path.abspath(argv[0])), exist_ok=True)
    tmp = argv[0] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page())
    os.replace(tmp, argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
