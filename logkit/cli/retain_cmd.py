"""`logkit retain DIRECTORY FAMILY`: delete the oldest history segments by age, count or size.

Wraps logkit.retain.  --dry-run lists what logkit.family.retention_plan (the
choice logkit.retain acts on) says, without deleting anything.
"""
from __future__ import annotations

import argparse
import os
import time as _time
from datetime import datetime, timezone

from logkit._segment import parse_size
from logkit.errors import InvalidArgument
from logkit.family import history_segments, left_service, parse_duration, retain, retention_plan

from .migrate_cmd import check_family
from .progress import human_bytes
from .sources import family_location


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{n} is negative")
    return n


def add_parser(sub) -> None:
    p = sub.add_parser(
        "retain", help="delete a family's oldest history segments by age, count or total size",
        description="Delete the oldest history segments of a family (a config LOG's, or FAMILY in "
                    "DIRECTORY) until what is left "
                    "satisfies every limit given: none older than --max-age (counted from when each "
                    "segment left service, the time in its name), at most --max-count of them, at most "
                    "--max-size bytes of them in all. The live segment is never deleted. At least one "
                    "limit is needed. Exit status: 0 done (also when nothing had to go), 2 an error (no "
                    "such directory or family, a bad limit).")
    p.add_argument("directory", metavar="LOG|DIRECTORY",
                   help="a log name of the configuration (a family log, or a partition log's "
                        "destination family), or the family's directory")
    p.add_argument("family", metavar="FAMILY", nargs="?",
                   help="the family name (the live segment's file name); not needed for a log name "
                        "or a directory that holds one family")
    p.add_argument("-c", "--config", help="the config file (default: the search order)")
    p.add_argument("--max-age", metavar="D",
                   help="delete history segments that left service longer ago than this "
                        "(seconds, or e.g. '90m', '12h', '7d', '2w')")
    p.add_argument("--max-count", metavar="N", type=_count,
                   help="keep at most this many history segments (the newest)")
    p.add_argument("--max-size", metavar="S",
                   help="keep at most this many bytes of history (e.g. 1048576, '512MiB', '2GiB')")
    p.add_argument("--dry-run", "-n", action="store_true",
                   help="list what would be deleted, and delete nothing")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.max_age is None and args.max_count is None and args.max_size is None:
        raise InvalidArgument("give at least one limit: --max-age, --max-count or --max-size")
    if args.max_age is not None:
        parse_duration(args.max_age, "--max-age")
    if args.max_size is not None:
        parse_size(args.max_size, "--max-size")
    where, args.family = family_location(args.directory, args.family, args.config, "retain")
    d = check_family(where, args.family, "retain")
    hist = history_segments(d, args.family)
    sizes = {p: os.path.getsize(p) for p in hist if os.path.exists(p)}
    now = _time.time()
    if args.dry_run:
        gone = retention_plan(d, args.family, args.max_age, args.max_count, args.max_size, now=now)
    else:
        gone = retain(d, args.family, max_age=args.max_age, max_count=args.max_count,
                      max_size=args.max_size, now=now)
    verb = "would delete" if args.dry_run else "deleted"
    for p in gone:
        t = left_service(p, args.family)
        when = (datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
                if t is not None else "unknown")
        print(f"{verb} {p} ({human_bytes(sizes.get(p, 0))}, left service {when})")
    kept = [p for p in hist if p not in set(gone)]
    print(f"{args.family}: {verb} {len(gone)} history segment(s) ({human_bytes(sum(sizes.get(p, 0) for p in gone))}); "
          f"{'would keep' if args.dry_run else 'kept'} {len(kept)} ({human_bytes(sum(sizes.get(p, 0) for p in kept))}) "
          f"and the live segment")
    return 0
