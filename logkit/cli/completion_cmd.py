"""`logkit completion bash|zsh`: a shell completion script for the `logkit` command.

Made from the argument definitions (argdefs.py), so every subcommand and
option is there as the parser defines it.  The script is static: completing
runs no Python, only the shell's own functions.
"""
from __future__ import annotations

import re

from .argdefs import Command, Opt, logkit_commands

SHELLS = ("bash", "zsh")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "completion", help="print a shell completion script (bash or zsh)",
        description="Print a completion script for SHELL on standard output: subcommands, their "
                    "options, the choices of options that have them, and files for LOG and FILE "
                    "arguments. Load it for this shell with `source <(logkit completion bash)` "
                    "(zsh: `source <(logkit completion zsh)`), or install it: `logkit completion bash "
                    "> ~/.local/share/bash-completion/completions/logkit`, `logkit completion zsh > "
                    "~/.zfunc/_logkit` (a directory in $fpath).")
    p.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash or zsh")
    p.set_defaults(run=run)


def run(args) -> int:
    print(script(args.shell), end="")
    return 0


def script(shell: str) -> str:
    """The completion script for `shell` ("bash" or "zsh")."""
    tree = logkit_commands()
    return bash_script(tree) if shell == "bash" else zsh_script(tree)


# ---------------------------------------------------------------- bash

def _words(ws) -> str:
    return " ".join(ws)


def _bash_case_values(opts: list[Opt], indent: str) -> list[str]:
    """case arms completing the value of an option that takes one (prev word)."""
    lines = []
    for o in opts:
        if o.flag:
            continue
        pattern = "|".join(o.strings)
        if o.choices:
            action = f'COMPREPLY=($(compgen -W "{_words(o.choices)}" -- "$cur")); return 0;;'
        elif o.file:
            action = 'COMPREPLY=($(compgen -f -- "$cur")); return 0;;'
        else:
            action = "return 0;;"            # a value the shell cannot guess (a time, a number)
        lines.append(f"{indent}{pattern}) {action}")
    return lines


def _bash_command(c: Command, indent: str) -> list[str]:
    lines = [f"{indent}case \"$prev\" in"]
    lines += _bash_case_values(c.options, indent + "    ")
    lines.append(f"{indent}esac")
    words = c.option_strings()
    if c.commands:
        names = [s.name for s in c.commands]
        lines.append(f"{indent}local sub=\"\" j")
        lines.append(f"{indent}for ((j=i+1; j<COMP_CWORD; j++)); do")
        lines.append(f"{indent}    case \"${{COMP_WORDS[j]}}\" in -*) ;; *) sub=\"${{COMP_WORDS[j]}}\"; break;; esac")
        lines.append(f"{indent}done")
        lines.append(f"{indent}case \"$sub\" in")
        for s in c.commands:
            lines.append(f"{indent}    {s.name})")
            lines += _bash_command(s, indent + "        ")
            lines.append(f"{indent}        ;;")
        lines.append(f"{indent}    *)")
        lines.append(f"{indent}        COMPREPLY=($(compgen -W \"{_words(names + words)}\" -- \"$cur\")); return 0;;")
        lines.append(f"{indent}esac")
        return lines
    choices = [ch for p in c.positionals for ch in p.choices]
    lines.append(f"{indent}if [[ $cur == -* ]]; then")
    lines.append(f"{indent}    COMPREPLY=($(compgen -W \"{_words(words)}\" -- \"$cur\"))")
    if choices:
        lines.append(f"{indent}else")
        lines.append(f"{indent}    COMPREPLY=($(compgen -W \"{_words(choices)}\" -- \"$cur\"))")
    elif c.positionals:
        lines.append(f"{indent}else")
        lines.append(f"{indent}    COMPREPLY=($(compgen -f -- \"$cur\"))")
    lines.append(f"{indent}fi")
    lines.append(f"{indent}return 0")
    return lines


def bash_script(tree: Command) -> str:
    names = [c.name for c in tree.commands]
    out = ["# bash completion for logkit (made by `logkit completion bash` from its argument definitions)",
           "_logkit() {",
           "    local cur prev i cmd=\"\"",
           "    COMPREPLY=()",
           "    cur=\"${COMP_WORDS[COMP_CWORD]}\"",
           "    prev=\"${COMP_WORDS[COMP_CWORD-1]}\"",
           "    for ((i=1; i<COMP_CWORD; i++)); do",
           "        case \"${COMP_WORDS[i]}\" in -*) ;; *) cmd=\"${COMP_WORDS[i]}\"; break;; esac",
           "    done",
           "    case \"$cmd\" in"]
    for c in tree.commands:
        out.append(f"        {c.name})")
        out += _bash_command(c, " " * 12)
        out.append("            ;;")
    out += ["        *)",
            f"            COMPREPLY=($(compgen -W \"{_words(names + tree.option_strings())}\" -- \"$cur\"))",
            "            ;;",
            "    esac",
            "    return 0",
            "}",
            "complete -o default -F _logkit logkit",
            ""]
    return "\n".join(out)


# ---------------------------------------------------------------- zsh

def _zsh_quote(text: str) -> str:
    """Text inside a single-quoted _arguments spec: no quotes, brackets or colons."""
    text = " ".join(text.split())
    text = text.replace("'", "").replace("[", "(").replace("]", ")").replace(":", ";")
    return text.replace("\\", "").replace("`", "")


def _first_sentence(text: str, limit: int = 70) -> str:
    s = re.split(r"(?<=[a-z)])[.;] ", " ".join(text.split()), maxsplit=1)[0]
    return s if len(s) <= limit else s[:limit - 3].rstrip() + "..."


def _zsh_option(o: Opt) -> str:
    desc = _zsh_quote(_first_sentence(o.help))
    star = "*" if o.repeats else ""
    if o.flag:
        value = ""
    else:
        if o.choices:
            action = "(" + " ".join(o.choices) + ")"
        elif o.file:
            action = "_files"
        else:
            action = " "
        value = f":{_zsh_quote(o.metavar)}:{action}"
    if len(o.strings) == 1:
        s = o.strings[0]
        sep = "=" if not o.flag and s.startswith("--") else ""
        return f"'{star}{s}{sep}[{desc}]{value}'"
    excl = " ".join(o.strings)
    parts = ",".join(o.strings)
    return f"'{star}({excl})'{{{parts}}}'[{desc}]{value}'"


def _zsh_arguments(c: Command, indent: str) -> list[str]:
    specs = [_zsh_option(o) for o in c.options]
    for p in c.positionals:
        desc = _zsh_quote(p.name)
        action = "(" + " ".join(p.choices) + ")" if p.choices else "_files"
        many = p.takes in ("*", "+")
        specs.append(f"'{'*' if many else ''}:{desc}:{action}'")
    lines = [f"{indent}_arguments -s \\"]
    lines += [f"{indent}    {s} \\" for s in specs[:-1]]
    if specs:
        lines.append(f"{indent}    {specs[-1]}")
    else:
        lines[-1] = f"{indent}_arguments -s"
    return lines


def _zsh_function(c: Command, fname: str) -> list[str]:
    lines = [f"{fname}() {{"]
    if c.commands:
        lines.append("    local -a commands")
        lines.append("    commands=(")
        for s in c.commands:
            lines.append(f"        '{s.name}:{_zsh_quote(_first_sentence(s.help or s.description))}'")
        lines.append("    )")
        lines.append("    if (( CURRENT == 2 )); then")
        lines.append(f"        _describe -t commands '{_zsh_quote(c.name)} command' commands")
        lines.append("        return")
        lines.append("    fi")
        lines.append("    local cmd=${words[2]}")
        lines.append("    shift words")
        lines.append("    (( CURRENT-- ))")
        lines.append("    case $cmd in")
        for s in c.commands:
            lines.append(f"        {s.name}) {fname}_{s.name.replace('-', '_')} ;;")
        lines.append("    esac")
    else:
        lines += _zsh_arguments(c, "    ")
    lines.append("}")
    for s in c.commands:
        lines.append("")
        lines += _zsh_function(s, f"{fname}_{s.name.replace('-', '_')}")
    return lines


def zsh_script(tree: Command) -> str:
    out = ["#compdef logkit",
           "# zsh completion for logkit (made by `logkit completion zsh` from its argument definitions)",
           ""]
    out += _zsh_function(tree, "_logkit")
    out += ["", 'if [[ $zsh_eval_context[-1] == loadautofunc ]]; then',
            '    _logkit "$@"',
            "else",
            "    compdef _logkit logkit",
            "fi",
            ""]
    return "\n".join(out)
