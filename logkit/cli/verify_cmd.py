"""`logkit verify [LOG ...]`: check every record of every segment of each log.

Walks each segment (the inspection library, logkit.cli.inspection), checks every
message's checksum and, for sealed messages with their key, opens them to
prove them authentic; reports per segment, and exits 1 if anything is wrong.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from logkit.errors import LogkitError

from . import inspection as insp
from .inspection_files import PartitionView
from .progress import Progress
from .sources import check_key_file, load_config_quietly, log_specs, resolve


def add_parser(sub) -> None:
    p = sub.add_parser(
        "verify", help="check the checksum (and seal) of every message of each log",
        description="Walk every segment of each LOG and check every record: each message's checksum, "
                    "and for sealed messages, given their key, that they open (are authentic). Reports per "
                    "segment the messages found good, damaged byte ranges, bad checksums, messages that "
                    "failed authentication and sealed messages that could not be authenticated for want "
                    "of a key; each problem names the file and the offset. LOG is a log name of the "
                    "configuration, a family directory, a segment file (with --family, the default, its "
                    "whole family), a partition file (both halves) or a plain log file; with no LOG, every "
                    "log of the configuration. Exit status: 0 all is well, 1 something is wrong "
                    "(damage, a bad checksum, a failed authentication, a segment that cannot be read, a "
                    "wrong key), 2 an error that stopped the command (a missing log, a bad key file).")
    p.add_argument("logs", nargs="*", metavar="LOG", help="the logs to verify (default: every log of the config)")
    p.add_argument("-c", "--config", help="the config file (default: the search order)")
    p.add_argument("--key-file", "-k", metavar="F",
                   help="key file for sealed logs given by path: their messages are opened and "
                        "authenticated (a config log uses its own key_file)")
    p.add_argument("--family-name", metavar="NAME", help="which family of a directory that holds several")
    p.add_argument("--single", dest="single", action="store_true", default=False,
                   help="a segment file LOG means that segment only")
    p.add_argument("--family", dest="single", action="store_false",
                   help="a segment file LOG means its whole family (the default)")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="print only the problems (nothing at all when everything is good)")
    p.set_defaults(run=run)


@dataclass
class Report:
    """What verify found in one segment (or half, or plain file)."""

    name: str
    size: int = 0
    good: int = 0                      # messages whose checksum (and seal, if opened) is good
    authenticated: int = 0             # of those, sealed messages opened with the key
    sealed_no_key: int = 0             # sealed messages whose seal could not be checked
    abandoned: int = 0
    bad_checksums: list[tuple[int, int | None]] = field(default_factory=list)   # (offset, sequence)
    tampered: list[tuple[int, int | None, str]] = field(default_factory=list)   # (offset, sequence, why)
    damaged: list[tuple[int, int]] = field(default_factory=list)
    open: list[tuple[int, int | None, int, bool]] = field(default_factory=list)  # (offset, seq, pid, alive)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)    # header, key, unreadable, damaged lines
    notes: list[str] = field(default_factory=list)
    unreadable: bool = False
    header_only: bool = False          # a partition header: no messages of its own

    @property
    def wrong(self) -> bool:
        return bool(self.problems or self.damaged or self.bad_checksums or self.tampered)

    def lines(self) -> list[str]:
        head = f"{self.name}: {self.good} message{'s' if self.good != 1 else ''} good"
        if self.authenticated:
            head += f" ({self.authenticated} sealed, authenticated)"
        if self.sealed_no_key:
            head += (f"; {self.sealed_no_key} sealed message(s) not authenticated (no key for them; "
                     f"give --key-file)")
        if self.abandoned:
            head += f"; {self.abandoned} sequence number(s) abandoned"
        if self.header_only:
            head = f"{self.name}: {'DAMAGED' if self.wrong else 'sound'}"
        elif self.unreadable:
            head = f"{self.name}: NOT VERIFIED"
        elif self.wrong:
            head += ": DAMAGED"
        out = [head]
        for p in self.problems:
            out.append(f"  error: {p}")
        for a, b in self.damaged:
            out.append(f"  error: {self.name}: offset {a}: {b - a} damaged bytes ({a}..{b}), no valid record")
        for off, seq in self.bad_checksums:
            out.append(f"  error: {self.name}: offset {off}: bad checksum"
                       + (f" (a message numbered {seq})" if seq is not None else ""))
        for off, seq, why in self.tampered:      # the reason names the file, message and offset
            out.append(f"  error: {why or f'{self.name}: offset {off}: message {seq} failed authentication'}")
        for off, seq, pid, alive in self.open:
            out.append(f"  note: offset {off}: reservation {seq} still open (writer pid {pid}, "
                       f"{'alive' if alive else 'gone: logkit salvage abandons it'})")
        for a, b in self.gaps:
            out.append(f"  note: offset {a}: gap of {b - a} bytes (claims whose writers left no stub)")
        for n in self.notes:
            out.append(f"  note: {n}")
        return out


def verify_view(view: "insp.SegmentView", rep: Report) -> None:
    """Fill `rep` from the walk of one segment region."""
    if view.problem:
        rep.problems.append(view.problem)
    if view.key_problem:
        if view.key_wrong:
            rep.problems.append(f"{view.key_problem}; its messages were not authenticated")
        else:
            rep.notes.append(view.key_problem)
    if view.seg is None:
        rep.problems.append(f"{view.name}: cannot be walked (too small, or not a segment)")
        return
    if view.seg.key_check_problem:
        rep.problems.append(view.seg.key_check_problem)
    for r in insp.walk(view, texts=False, authenticate=True):
        kind = r["state"]
        if kind == "committed":
            if r.get("checksum") != "good":
                rep.bad_checksums.append((r["offset"], r["sequence"]))
                continue
            seal = r.get("seal", "-")
            if seal.startswith("FAILED"):
                rep.tampered.append((r["offset"], r["sequence"], seal[len("FAILED: "):]))
                continue
            rep.good += 1
            if seal == "ok":
                rep.authenticated += 1
            elif seal == "no key":
                rep.sealed_no_key += 1
        elif kind == "reserved":
            rep.open.append((r["offset"], r["sequence"], r.get("pid", 0), r.get("writer_alive", False)))
        elif kind == "abandoned":
            rep.abandoned += r["span"] or 1
        elif kind == "gap":
            rep.gaps.append((r["offset"], r["offset"] + r["length"]))
        else:
            rep.damaged.append((r["offset"], r["offset"] + r["length"]))
            for c in r.get("candidates", []):
                if c["state"] == "committed" and c.get("checksum") == "BAD":
                    rep.bad_checksums.append((c["offset"], c["sequence"]))


def verify_segment_file(path: str, ring) -> Report:
    rep = Report(path)
    try:
        rep.size = os.path.getsize(path)
    except OSError:
        pass
    if not os.path.exists(path):
        rep.notes.append(f"{path} disappeared while verifying (rotated or removed by retention)")
        return rep
    try:
        view = insp.SegmentView.open_file(path, ring)
    except LogkitError as e:
        if not os.path.exists(path):
            rep.notes.append(f"{path} disappeared while verifying (rotated or removed by retention)")
        else:
            rep.problems.append(str(e))
            rep.unreadable = True
        return rep
    with view:
        verify_view(view, rep)
        if view.problem and rep.problems and rep.problems[0] == view.problem \
                and bytes(view.region[:8]) != insp.SEGMENT_MAGIC:
            rep.problems[0] = f"{view.problem} (the header: offset 0..{insp.HEADER_SIZE})"
    return rep


def verify_partition(path: str, ring) -> list[Report]:
    try:
        pv = PartitionView(path, ring)
    except LogkitError as e:
        return [Report(path, problems=[str(e)], unreadable=True)]
    out = []
    with pv:
        head = Report(f"{path} (partition header)", size=4096, header_only=True)
        head.problems.extend(pv.problems)
        head.notes.extend(pv.notes)
        if head.problems or head.notes:
            out.append(head)
        for i, off, view in pv.halves:
            rep = Report(f"{path} half {i} (offset {off}, {pv.phase_of(i)})", size=pv.half_size)
            if view is None:
                rep.problems.append(f"{path}: half {i} at offset {off} is too small to be a segment")
            elif pv.intent_half == i:
                rep.notes.append("not walked: it was being formatted for reuse (see the partition header)")
            else:
                verify_view(view, rep)
            out.append(rep)
    return out


def verify_plainfile(src) -> Report:
    rep = Report(src.path)
    try:
        rep.size = os.path.getsize(src.path)
    except OSError:
        pass
    rd = src.reader
    for _ in rd:
        rep.good += 1
    rep.problems.extend(getattr(rd, "problems", []))
    for path, a, b in getattr(rd, "damaged_ranges", []):
        if path == src.path:
            rep.damaged.append((a, b))
        else:                                # a rotated file of the log
            rep.problems.append(f"{path}: offset {a}: {b - a} damaged bytes ({a}..{b})")
    return rep


def _ring(key_file, cache: dict):
    if key_file is None:
        return None
    if key_file not in cache:
        from logkit.crypto import load_key_file
        cache[key_file] = load_key_file(key_file)
    return cache[key_file]


def _direct(spec: str):
    """(kind, path) for a LOG that resolve() refused but that is a segment or
    partition file with a damaged header (verify reports such damage), else None."""
    path = os.path.abspath(os.path.expanduser(spec))
    if not os.path.isfile(path):
        return None
    try:
        return insp.file_kind(path), path
    except LogkitError:
        return ("segment", path) if insp.headerless_segment(path) else None


def run(args) -> int:
    key_file = check_key_file(args.key_file)
    cfg = load_config_quietly(args.config)
    specs = log_specs(args.logs, cfg)
    rings: dict = {}
    _ring(key_file, rings)                       # a bad --key-file stops the command now (exit 2)
    # Resolve everything first, so a missing log is an error before any work.
    jobs = []
    try:
        for spec in specs:
            try:
                src = resolve(spec, config=cfg, key_file=key_file, single=args.single,
                              family_name=args.family_name)
            except LogkitError:
                direct = _direct(spec)
                if direct is None:
                    raise
                jobs.append((spec, direct[0], direct[1], None, key_file))
                continue
            jobs.append((spec, src.kind, src.path, src, src.key_file))
        units = []
        for spec, kind, path, src, kf in jobs:
            if kind in ("family", "segment"):
                paths = src.segment_paths() if src is not None else [path]
                if src is not None and not paths:
                    units.append(("empty", spec, src, kf))
                units.extend(("segment", p, src, kf) for p in paths)
            else:
                units.append((kind, path, src, kf))
        progress = Progress("verify", total=len(units))
        reports: list[Report] = []
        for what, path, src, kf in units:
            ring = _ring(kf, rings)
            if what == "segment":
                got = [verify_segment_file(path, ring)]
            elif what == "partition":
                got = verify_partition(path, ring)
            elif what == "plainfile":
                got = [verify_plainfile(src)]
            else:
                got = [Report(f"{path}", notes=["no segments yet"])]
            for rep in got:
                reports.append(rep)
                if not args.quiet or rep.wrong:
                    for line in rep.lines():
                        progress.write(line)
            progress.step(sum(r.size for r in got))
        progress.done()
    finally:
        for _, _, _, src, _ in jobs:
            if src is not None:
                src.close()
    bad = [r for r in reports if r.wrong]
    good = sum(r.good for r in reports)
    count = sum(1 for r in reports if not r.header_only)
    if not args.quiet:
        if bad:
            print(f"verify: {count} segment(s), {good} message(s) good; problems in "
                  f"{len(bad)}: {', '.join(r.name for r in bad)}")
        else:
            print(f"verify: {count} segment(s), {good} message(s) good; no problems found")
    return 1 if bad else 0
