"""`logkit print [LOG ...]`: print selected messages of logs (MTB-666 print_sys_log).

Selection follows print_sys_log's order (logkit/select.py); display follows
logkit.formatters.format_message.  One forward family or segment is walked
by the C scanner (logkit/_scan.pyx: checksum, range, severity and plain
match per record with no Python object, and the text line made in C);
anything else (several logs merged by time, --reverse, partitions, plain
files) goes through the same selection in Python, with the same output.
"""
from __future__ import annotations

import collections
import datetime as _dt
import json
import os
import sys
import warnings
from typing import Callable

from logkit import formatters as F
from logkit.errors import LogkitError, SegmentDamaged
from logkit.select import Selection, add_arguments, merge_by_time

from .sources import check_key_file, load_config_quietly, log_specs, resolve_all
from logkit.console import say

FLUSH_AT = 1 << 20
EXIT_NOTHING = 1          # --limits of an empty log, or nothing matched? (see docs/cli.md)


def add_display_arguments(p) -> None:
    g = p.add_argument_group("display")
    g.add_argument("--expand", nargs="*", metavar="CLASS",
                   help="also print the expanded binary data of each message (the formatter its "
                        "data class names; unknown classes in hex); with CLASSes, only for those. "
                        "A LOG may follow (a value naming an existing path or log ends the list)")
    g.add_argument("--expand-octal", nargs="*", metavar="CLASS",
                   help="as --expand, but the data as an octal dump")
    g.add_argument("--expand-hex", nargs="*", metavar="CLASS",
                   help="as --expand, but the data as a hex dump")
    g.add_argument("--no-expand", nargs="*", metavar="CLASS",
                   help="do not expand these classes (no CLASS: expand nothing); cancels --expand")
    g.add_argument("--duplicates", dest="duplicates", action="store_true", default=None,
                   help="print every text as it is (the default into a pipe or a file)")
    g.add_argument("--no-duplicates", dest="duplicates", action="store_false",
                   help="print '=' for a text equal to the previous one printed (the default on a terminal)")
    g.add_argument("-o", "--output", choices=("text", "json", "short"), default="text",
                   help="text (default: local time, sequence, severity, text), json (one object "
                        "per line), or short (time of day, severity, text)")
    g.add_argument("--colour", "--color", dest="colour", choices=("auto", "always", "never"),
                   default="auto", help="colour by severity: auto (on a terminal, unless NO_COLOR "
                                        "is set), always, never")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "print", help="print selected messages of logs",
        description="Print the messages of one or more logs, selected by sequence, time, "
                    "severity, text and data, in the order of Multics print_sys_log. Several "
                    "logs are merged by time.",
        epilog="LOG is a log name of the configuration, a family directory, a segment file "
               "(with --family, the default, its whole family), a partition file or a plain "
               "log file; with no LOG, every log of the configuration. Exit status: 0 when "
               "messages were printed (or --limits found some), 1 when nothing was selected, "
               "2 for an error (a missing log, a bad option value).")
    p.add_argument("logs", nargs="*", metavar="LOG", help="the logs to print (see below)")
    p.add_argument("-c", "--config", help="the config file (default: the search order)")
    p.add_argument("--key-file", help="key file for sealed logs given by path (a config log "
                                      "uses its own key_file)")
    p.add_argument("--family-name", metavar="NAME",
                   help="which family of a directory that holds several")
    add_arguments(p)
    p.add_argument("--limits", action="store_true",
                   help="print only the first and last sequence numbers and times of each log")
    add_display_arguments(p)
    g = p.add_argument_group("logs and segments")
    g.add_argument("--header", dest="header", action="store_true", default=True,
                   help="print a header with the first and last message of each log (default, "
                        "text and short output only)")
    g.add_argument("--no-header", dest="header", action="store_false", help="no header")
    g.add_argument("--single", dest="single", action="store_true", default=False,
                   help="a segment file LOG means that segment only")
    g.add_argument("--family", dest="single", action="store_false",
                   help="a segment file LOG means its whole family (the default)")
    g.add_argument("--absolute-pathname", action="store_true",
                   help="print the absolute pathname of each segment as it is examined")
    p.set_defaults(run=run)


# ---------------------------------------------------------------- display options

class Display:
    """The display options, resolved."""

    def __init__(self, args, out_isatty: bool):
        self.fmt = args.output
        # '=' for a repeat only on a terminal (or when asked): into a pipe,
        # every line stands alone, as grep and friends expect.
        self.dups = out_isatty if args.duplicates is None else not args.duplicates
        c = args.colour
        self.colour = self.fmt != "json" and (
            c == "always" or (c == "auto" and out_isatty and not os.environ.get("NO_COLOR")))
        # Each --expand option says how to expand the classes it names, or,
        # with none, every class no option names: `--expand json
        # --expand-octal blob` shows JSON by its formatter and blob in octal.
        self.expand = False
        self.asked = any(getattr(args, o, None) is not None
                         for o in ("expand", "expand_octal", "expand_hex", "no_expand"))
        self.hows: dict[str, str] = {}          # data class -> "auto", "octal" or "hex"
        self.how_others: str | None = None      # how for the classes not in hows (None: not expanded)
        for opt, how in (("expand", "auto"), ("expand_octal", "octal"), ("expand_hex", "hex")):
            v = getattr(args, opt, None)
            if v is not None:
                self.expand = True
                if v:
                    self.hows.update(dict.fromkeys(v, how))
                else:
                    self.how_others = how
        self.no_expand: set[str] = set()
        ne = getattr(args, "no_expand", None)
        if ne is not None:
            if ne:
                self.no_expand = set(ne)
            else:
                self.expand = False

    def how_for(self, m) -> str | None:
        """How the data of message m is expanded ("auto", "octal", "hex"), or
        None when it is not (whether or not it has data)."""
        if not self.expand:
            return None
        c = m.data_class
        if c in self.no_expand:
            return None
        return self.hows.get(c, self.how_others)

    def path_line(self, path: str) -> str:
        """The --absolute-pathname line of a segment: `-- PATH`, or in JSON
        output an object of its own, so that every line stays JSON."""
        p = os.path.abspath(path)
        return json.dumps({"segment": p}) if self.fmt == "json" else f"-- {p}"

    def line(self, m, prev_text) -> str:
        how = self.how_for(m)
        dup = prev_text if self.dups else None
        if dup is not None and getattr(m, "sealed", False) and m.text == "[encrypted]":
            dup = None          # texts we cannot read are not known to be equal: never "="
        return F.format_message(m, expand=how is not None, how=how or "auto", fmt=self.fmt,
                                duplicate_of=dup, colour=self.colour)


def expand_for_data_tests(m) -> str:
    """What --match-data and --exclude-data look at: the message's data as
    --expand shows it, by the formatter of its data class ("" without data)."""
    return F.expand(m)


LIST_OPTIONS = ("expand", "expand_octal", "expand_hex", "no_expand", "severity", "match", "exclude",
                "match_data", "exclude_data")


def _trailing_values(args) -> list:
    """The last value of each list option (a LOG argparse may have taken)."""
    return [v[-1] for v in (getattr(args, o, None) for o in LIST_OPTIONS) if v]


def move_trailing_logs(args, cfg) -> None:
    """`logkit print --match RARE DIR`: argparse gives DIR to --match (a list
    option).  With no LOG given otherwise, the trailing values of list
    options that name an existing path or a log of the configuration are
    LOGs; a list option keeps at least its first value (the classes of
    --expand may all go: it takes none)."""
    if args.logs:
        return
    logs = set(getattr(cfg, "logs", {}) or {})
    for opt in LIST_OPTIONS:
        v = getattr(args, opt, None)
        if not v:
            continue
        keep_min = 0 if opt in ("expand", "expand_octal", "expand_hex", "no_expand") else 1
        moved = []
        while len(v) > keep_min and (os.path.exists(v[-1]) or v[-1] in logs):
            moved.insert(0, v.pop())
        args.logs.extend(moved)


def _fmt_time(ns: int | None) -> str:
    if ns is None:
        return "-"
    try:
        d = _dt.datetime.fromtimestamp(ns // 1_000_000_000).astimezone()
        return d.replace(microsecond=(ns // 1000) % 1_000_000).isoformat(timespec="microseconds")
    except (OverflowError, OSError, ValueError):
        return f"@{ns}ns"


def _limits_line(src) -> tuple[str, bool]:
    lim = src.reader.limits()
    if lim is None:
        return f"{src.spec}: no messages", False
    return (f"{src.spec}: first {lim.first_sequence} at {_fmt_time(lim.first_time)}, "
            f"last {lim.last_sequence} at {_fmt_time(lim.last_time)}"), True


def _warn(msg: str) -> None:
    say(f"logkit print: warning: {msg}")


def _rest(sel: Selection, m, expand: Callable) -> bool:
    """Steps 5a-9 in Python (for what the C scan left undecided)."""
    if sel.needs_record and not sel.who_matches(m):
        return False
    if sel.exclude is not None and sel.exclude.search(m.text):
        return False
    if sel.match is not None and not sel.match.search(m.text):
        return False
    if sel.exclude_data is not None or sel.match_data is not None:
        d = expand(m)
        if sel.exclude_data is not None and sel.exclude_data.search(d):
            return False
        if sel.match_data is not None and not sel.match_data.search(d):
            return False
    return True


class Output:
    """Buffered writes to stdout (bytes)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.raw = getattr(self.stream, "buffer", None)

    def write(self, b: bytes) -> None:
        if not b:
            return
        if self.raw is not None:
            self.raw.write(b)
        else:
            self.stream.write(b.decode("utf-8", "surrogateescape"))

    def line(self, s: str) -> None:
        self.write(s.encode("utf-8", "surrogateescape") + b"\n")

    def flush(self) -> None:
        (self.raw or self.stream).flush()


# ---------------------------------------------------------------- the fast path

def _fast(src, sel: Selection, disp: Display, out: Output, show_paths: bool,
          expand: Callable = expand_for_data_tests) -> int:
    """One family or segment, forward: the C scanner.  Returns messages printed."""
    from logkit import _scan
    scan = _scan.Scan(sel)

    def fallback(seg, off, prev):
        m = _scan.message_at(seg, off)
        try:
            return disp.line(m, prev), m.text
        except SegmentDamaged as e:          # rewritten under us since the walk: say so, go on
            _warn(f"{e}; passed over")
            return None

    def rest(seg, off):
        try:
            return _rest(sel, _scan.message_at(seg, off), expand)
        except SegmentDamaged as e:
            _warn(f"{e}; passed over")
            return False

    printer = _scan.Printer(disp.fmt, disp.colour, disp.dups, disp.expand, fallback)
    for_n = sel.for_.value if sel.for_ is not None and sel.for_.kind == "count" else None
    last_n = sel.last.value if sel.last is not None and sel.last.kind == "count" else None
    tail: collections.deque = collections.deque()      # (segment, offsets) for --last COUNT
    tail_count = 0
    printed = 0
    reader = src.reader
    if src.kind == "family":
        # The reader's own order: the live segment opened before history is
        # listed (none rotated meanwhile is missed), each segment once, the
        # chain checked.
        segments = ((seg.path, seg) for seg in reader.segments())
    else:
        segments = ((path, _open_single(src, path)) for path in src.segment_paths())
    for path, seg in segments:
        try:
            scan.walk(seg)
        except SegmentDamaged as e:             # the file shrank under us: what came before stands
            _warn(str(e))
        _warn_problems(path, scan.problems)
        undecided = scan.undecided() if (scan.needs_python or seg.sealed) else []
        if undecided:
            offs = scan.offsets()
            und = set(undecided)
            scan.keep_only([i for i in range(len(offs))
                            if i not in und or rest(seg, offs[i])])
        if for_n is not None:
            scan.truncate(for_n - printed)
        n = scan.count()
        if last_n is not None:
            if n:                                # keep the segment (open) and its offsets
                tail.append((seg, path, scan.offsets()))
                tail_count += n
                while tail and tail_count - len(tail[0][2]) >= last_n:
                    tail_count -= len(tail.popleft()[2])
        else:
            if n and show_paths:
                out.write(printer.take())
                out.line(disp.path_line(path))
            printer.emit(seg, scan)
            printed += n
            if printer.pending >= FLUSH_AT:
                out.write(printer.take())
        if (for_n is not None and printed >= for_n) or scan.done:
            break
    skip = max(0, tail_count - last_n) if last_n is not None else 0   # fewer than COUNT: all
    for seg, path, offs in tail:
        if skip >= len(offs):
            skip -= len(offs)
            continue
        if show_paths:
            out.write(printer.take())
            out.line(disp.path_line(path))
        printer.emit_offsets(seg, offs[skip:])
        printed += len(offs) - skip
        skip = 0
    out.write(printer.take())
    return printed


def _open_single(src, path):
    from logkit import Segment
    from logkit.crypto import load_key_file
    ring = load_key_file(src.key_file) if src.key_file else None
    return Segment.open(path, readonly=True, key=ring)


# ---------------------------------------------------------------- the general path

def _messages(src, reverse: bool):
    r = src.reader
    return r.reverse() if reverse else iter(r)


def _general(sources, sel: Selection, disp: Display, out: Output, show_paths: bool) -> int:
    if len(sources) == 1:
        msgs = _messages(sources[0], sel.reverse)
    else:
        msgs = merge_by_time([_messages(s, sel.reverse) for s in sources], reverse=sel.reverse)
    examined: dict = {}                 # path -> Segment of the messages read, for _report_damage
    printed = 0
    prev = None
    last_path = None
    for m in sel.apply(_noting_segments(msgs, examined), expand_for_data_tests,
                       messages_are_reversed=sel.reverse):
        if show_paths:
            seg = getattr(m, "segment", None)
            p = getattr(seg, "path", None) if seg is not None else None
            if p and p != last_path:
                out.line(disp.path_line(p))
                last_path = p
        out.line(disp.line(m, prev))
        prev = m.text
        printed += 1
    _report_damage(examined)
    return printed


def _noting_segments(msgs, examined: dict):
    """msgs, noting the segment of each (segment logs; partitions and plain
    files have none) in `examined`."""
    last = None
    for m in msgs:
        seg = getattr(m, "segment", None)
        if seg is not last and seg is not None:
            last = seg
            examined.setdefault(seg.path, seg)
        yield m


def _report_damage(examined: dict) -> None:
    """The readers pass over damaged records silently; warn about them as
    the fast path does (a walk of the segments read, in C)."""
    if not examined:
        return
    from logkit import _scan
    for path, seg in examined.items():
        scan = _scan.Scan(Selection())
        try:
            scan.walk(seg)
        except SegmentDamaged as e:
            _warn(str(e))
        except (ValueError, LogkitError):
            continue
        _warn_problems(path, scan.problems)


def _warn_problems(path, problems) -> None:
    for off, nxt, kind in problems:
        if kind == "changed":
            _warn(f"{path}: the message at bytes {off}..{nxt} changed after its checksum was verified "
                  "(another process wrote into it): passed over")
        else:
            _warn(f"{path}: {kind} bytes {off}..{nxt} passed over")


# ---------------------------------------------------------------- run

def run(args) -> int:
    # A reader reports a segment it passes over both as a RuntimeWarning and
    # in .problems; the command prints .problems, in its own words, once.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _run(args)


def setup(args):
    """What print and monitor start from: (config, Selection, Output, Display)."""
    cfg = load_config_quietly(args.config, list(args.logs) + _trailing_values(args))
    move_trailing_logs(args, cfg)
    return cfg, Selection.from_args(args), Output(), Display(args, out_isatty=_isatty(sys.stdout))


def _run(args) -> int:
    cfg, sel, out, disp = setup(args)
    key_file = check_key_file(args.key_file)
    sources = resolve_all(log_specs(args.logs, cfg), config=cfg, key_file=key_file, single=args.single,
                          family_name=args.family_name)
    try:
        if args.limits:
            any_found = False
            for s in sources:
                line, found = _limits_line(s)
                out.line(line)
                any_found |= found
            _report_problems(sources)
            out.flush()
            return 0 if any_found else EXIT_NOTHING
        if args.header and disp.fmt != "json":
            for s in sources:
                line, _ = _limits_line(s)
                out.line(f"== {line}")
        fast = (len(sources) == 1 and sources[0].kind in ("family", "segment") and not sel.reverse
                and not sel.needs_record)
        if fast:
            n = _fast(sources[0], sel, disp, out, args.absolute_pathname)
        else:
            n = _general(sources, sel, disp, out, args.absolute_pathname)
        _report_problems(sources)
        out.flush()
        return 0 if n else EXIT_NOTHING
    finally:
        for s in sources:
            s.close()


def _report_problems(sources) -> None:
    for s in sources:
        for p in getattr(s.reader, "problems", ())[:20]:
            _warn(p)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
