"""`logkit salvage PATH`: run logkit.salvage on a segment, a family or a partition.

Wraps logkit.salvager.salvage: one SalvageReport per segment (per half of a
partition), printed in words.  --dry-run salvages a private copy-on-write
mapping of each file, so the report says what salvage would do and the file
is never written.
"""
from __future__ import annotations

import os

from logkit.errors import InvalidArgument, UnsafePath
from logkit.salvager import SalvageReport

from .inspection import NotASegment
from .inspectors import inspector_for, inspector_of
from .progress import Progress
from .sources import families_in, resolve


def add_parser(sub) -> None:
    p = sub.add_parser(
        "salvage", help="recover what is valid in a segment, family or partition after a crash",
        description="Run logkit.salvage on a segment file, on every segment of a family directory, or on "
                    "both halves of a partition file: abandon reservations whose writer is gone (or has "
                    "held them longer than --grace), account for claims that left no stub, rebuild a "
                    "damaged header identity, take damaged segments out of service, and say what it found "
                    "and did. Finished messages are never changed. It is safe while writers are at work. "
                    "Exit status: 0 nothing was wrong; 1 salvage found something (damage, a rebuilt "
                    "header or reservation word, abandoned reservations, claims with no stub); 2 an error "
                    "that stopped it (no such file, a file that is not a segment, no permission to write).")
    p.add_argument("path", metavar="PATH", help="a segment file, a family directory or a partition file")
    p.add_argument("--grace", type=float, default=60.0, metavar="SECONDS",
                   help="abandon a reservation open for longer than this even if its writer still runs "
                        "(a writer stopped in a debugger, or stuck); default 60")
    p.add_argument("--settle", type=float, default=1.0, metavar="SECONDS",
                   help="write filler records over claims that left no stub only in a segment out of "
                        "service for at least this long; default 1")
    p.add_argument("--dry-run", "-n", action="store_true",
                   help="say what salvage would do, without writing anything")
    p.add_argument("--family-name", metavar="NAME", help="which family of a directory that holds several")
    p.add_argument("--force", action="store_true",
                   help="salvage a file as a segment even though nothing in its first 24 bytes says it "
                        "is one (its magic and sizes are damaged); without it such a file is refused")
    p.set_defaults(run=run)


# ---------------------------------------------------------------- in words

def found_something(rep: SalvageReport) -> bool:
    """Damage, a repair, or something salvage accounted for (exit status 1).
    Open reservations of live writers within grace are normal, not findings."""
    return bool(rep.damaged or rep.header_rebuilt or rep.word_repaired or rep.abandoned
                or rep.gaps or rep.filled)


def words(rep: SalvageReport, name: str, dry_run: bool) -> list[str]:
    """The report in sentences; with dry_run in the conditional ("would")."""
    def did(past: str, would: str) -> str:
        return would if dry_run else past

    lines = [f"{name}:" + (" (dry run: nothing written)" if dry_run else "")]
    lines.append(f"  {rep.kept} finished message(s) kept")
    if rep.abandoned:
        lines.append(f"  {rep.abandoned} reservation(s) of dead or stalled writers "
                     + did("abandoned", "would be abandoned"))
    if rep.abandoned_before:
        lines.append(f"  {rep.abandoned_before} sequence number(s) were already abandoned")
    for off, seq, pid in rep.open:
        lines.append(f"  open reservation at offset {off} (sequence {seq}): its writer, pid {pid}, still "
                     f"runs and is within --grace; left alone")
    filled = {(a, b) for a, b, _ in rep.filled}
    for a, b, n in rep.gaps:
        if (a, b) in filled:
            continue
        count = f", {n} sequence number(s)" if n is not None else ""
        lines.append(f"  gap at offset {a}..{b} ({b - a} bytes): claims whose writers left no stub{count}; "
                     "left as it is")
    for a, b, n in rep.filled:
        lines.append(f"  gap at offset {a}..{b} ({b - a} bytes) " + did("accounted for", "would be accounted for")
                     + f" with a filler record for {n} sequence number(s)")
    for a, b in rep.damaged:
        lines.append(f"  damaged bytes at offset {a}..{b} ({b - a} bytes): no valid record there")
    if rep.header_rebuilt:
        lines.append("  the header identity was damaged and " + did("has been rebuilt", "would be rebuilt"))
    if rep.word_repaired:
        lines.append("  the reservation word was behind the records found and "
                     + did("has been raised", "would be raised"))
    if rep.taken_out_of_service:
        lines.append("  the segment " + did("was taken", "would be taken")
                     + " out of service (a damaged segment is rotated, never written on again)")
    lines.extend(f"  note: {n}" for n in rep.notes)
    lines.append("  verdict: " + ("found something (see above)" if found_something(rep) else
                                  "nothing was wrong"))
    return lines


def run(args) -> int:
    if args.grace < 0 or args.settle < 0:
        raise InvalidArgument("--grace and --settle take a number of seconds >= 0")
    path = os.path.abspath(os.path.expanduser(args.path))
    if not os.path.exists(path):
        raise InvalidArgument(f"{args.path}: no such file or directory")
    if os.path.isdir(path):
        fams = families_in(path)
        if args.family_name is None and len(fams) > 1:
            raise InvalidArgument(f"{args.path}: the directory holds several families ({', '.join(fams)}); "
                                  f"say which with --family-name NAME")
        src = resolve(path, family_name=args.family_name)
        try:
            targets = [inspector_of(src, p) for p in src.files()]
        finally:
            src.close()
    else:
        try:
            targets = [inspector_for(path, force=args.force)]
        except NotASegment:
            raise InvalidArgument(f"{args.path}: not a segment or partition file (no LOGKITSG or "
                                  "LKPART magic at offset 0, and no segment identity after it); give "
                                  "--force to salvage it as a segment all the same") from None
    results: list[tuple[str, SalvageReport | str]] = []
    refused: list[str] = []
    progress = Progress("salvage", total=len(targets))
    for t in targets:
        size = os.lstat(t.path).st_size if os.path.lexists(t.path) else 0
        try:
            got = t.salvage(args.grace, args.settle, args.dry_run)
        except UnsafePath as e:
            if len(targets) == 1:
                raise
            # One refused name in a family directory (a planted link, a FIFO)
            # is reported, and the other segments are still salvaged.
            got = [(t.path, f"refused: {e}")]
            refused.append(t.path)
        for name, rep in got:
            if isinstance(rep, str):
                progress.write(f"{name}: {rep}")
            else:
                for line in words(rep, name, args.dry_run):
                    progress.write(line)
            results.append((name, rep))
        progress.step(size)
    progress.done()
    found = [n for n, r in results if not isinstance(r, str) and found_something(r)] + refused
    what = "would find" if args.dry_run else "found"
    if found:
        print(f"salvage: {len(results)} segment(s); {what} something in {len(found)}")
    else:
        print(f"salvage: {len(results)} segment(s); nothing was wrong")
    return 1 if found else 0
