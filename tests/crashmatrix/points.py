"""Discover the named injection points (logkit.inject) from the source.

The crash matrix never keeps its own list of points: it scans the sources of
logkit/, backends/ and pyx/ for ``inject.point("...")`` calls, so a point
added anywhere is part of the next run without editing the harness (and the
C writer's steps, core.write.<step>, from the core's STEP_NAMES).  An
f-string argument with a fixed prefix (``inject.point(f"pipe.frame.{kind}")``)
is recorded as a *prefix*: the names it can take are learnt at run time (the
census, harness.census), and each one found is a point like any other.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE_DIRS = ("logkit", "backends", "pyx")
SOURCE_EXTS = (".py", ".pyx", ".pxi", ".pxd")

# inject.point( "name" ) or ( f"prefix{...}" ), either quote, under any alias
# of the module whose name ends in "inject" (inject.point, _inject.point).
_CALL = re.compile(r"""\b\w*inject\.point\(\s*(f?)(["'])([^"'\n]*)\2""")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]+)+")
# Every call of the point function, however its argument is written (the
# cross-check that the pattern above missed nothing).
_ANY_CALL = re.compile(r"\b\w*inject\.point\(")


@dataclass(frozen=True)
class Site:
    name: str            # the point's name, or the fixed prefix of an f-string
    prefix: bool         # True: name is a prefix (an f-string)
    path: str            # relative to ROOT
    line: int

    @property
    def layer(self) -> str:
        return layer_of(self.name)


def layer_of(name: str) -> str:
    """The layer a point belongs to: the first dotted component ("core",
    "family", "partition", "pipejournal", "server", ...)."""
    return name.split(".", 1)[0]


def _files(root: str):
    for d in SOURCE_DIRS:
        top = os.path.join(root, d)
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [n for n in dirnames if n not in ("__pycache__", "build")]
            for n in sorted(filenames):
                if n.endswith(SOURCE_EXTS) and n != "inject.py":
                    yield os.path.join(dirpath, n)


def scan(root: str = ROOT) -> tuple[list[Site], list[tuple[str, int, str]]]:
    """(sites found, calls not understood).  A call not understood is an
    ``inject.point(`` whose argument is not a literal or an f-string with a
    dotted fixed prefix: (path, line, source line)."""
    sites: list[Site] = []
    odd: list[tuple[str, int, str]] = []
    for path in _files(root):
        rel = os.path.relpath(path, root)
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().split("\n")
        for no, text in enumerate(lines, 1):
            stripped = text.lstrip()
            if stripped.startswith("#"):
                continue
            found = 0
            for m in _CALL.finditer(text):
                fmark, _, arg = m.groups()
                if fmark:
                    pre = arg.split("{", 1)[0]
                    if "." not in pre.rstrip("."):
                        odd.append((rel, no, stripped))
                        continue
                    sites.append(Site(pre, True, rel, no))
                else:
                    if not _NAME.fullmatch(arg):
                        odd.append((rel, no, stripped))
                        continue
                    sites.append(Site(arg, False, rel, no))
                found += 1
            calls = len(_ANY_CALL.findall(text))
            if calls > found:
                odd.append((rel, no, stripped))
    sites += _core_steps(root, odd)
    return sites, odd


def _core_steps(root: str, odd: list) -> list[Site]:
    """The C writer's steps: the core names them (STEP_NAMES in
    pyx/logkit/_segment.pyx) and knows nothing of logkit.inject, whose
    write_stepwise reaches each as the point core.write.<step>.  Exact names,
    read from both sources; a tree without them (a test's scratch root) has
    none, and a tree where either has moved is a call not understood."""
    core = os.path.join(root, "pyx", "logkit", "_segment.pyx")
    inj = os.path.join(root, "logkit", "inject.py")
    if not (os.path.exists(core) and os.path.exists(inj)):
        return []
    with open(core, encoding="utf-8") as f:
        m = re.search(r"^STEP_NAMES = \(([^)]*)\)", f.read(), re.M)
    with open(inj, encoding="utf-8") as f:
        lines = f.read().split("\n")
    at = [no for no, t in enumerate(lines, 1) if 'point(f"core.write.{name}")' in t]
    if m is None or len(at) != 1:
        odd.append(("logkit/inject.py", at[0] if at else 0,
                    "the core's steps: STEP_NAMES in _segment.pyx or the core.write point in inject.py moved"))
        return []
    return [Site(f"core.write.{step}", False, "logkit/inject.py", at[0])
            for step in re.findall(r'"(\w+)"', m.group(1))]


def discover(root: str = ROOT) -> dict[str, list[Site]]:
    """Exact point names -> where they are called."""
    out: dict[str, list[Site]] = {}
    for s in scan(root)[0]:
        if not s.prefix:
            out.setdefault(s.name, []).append(s)
    return out


def prefixes(root: str = ROOT) -> dict[str, list[Site]]:
    """Fixed prefixes of f-string point names -> where they are called."""
    out: dict[str, list[Site]] = {}
    for s in scan(root)[0]:
        if s.prefix:
            out.setdefault(s.name, []).append(s)
    return out


def by_layer(names) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n in sorted(names):
        out.setdefault(layer_of(n), []).append(n)
    return out


def matches(name: str, exact: dict, pre: dict) -> bool:
    """Whether a point name seen at run time is one the source declares."""
    return name in exact or any(name.startswith(p) for p in pre)
