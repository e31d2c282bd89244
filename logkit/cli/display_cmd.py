"""`logkit display FILE`: every field of one segment (or partition, or pipe
journal) file, named.

A debugging tool over the bytes docs/format.md describes.  What it shows,
and how, comes from the file's inspector (logkit.cli.inspectors, one per
file kind), which `logkit verify`, `stats` and `salvage` share; this module
only parses the command line and prints.
"""
from __future__ import annotations

import json
import os


from .inspectors import inspector_for


# ---------------------------------------------------------------- the command

def add_parser(sub) -> None:
    p = sub.add_parser(
        "display", help="show every field and record of one segment or partition file",
        description="Show one segment file, field by field: the header (each field with its offset and "
                    "its name in docs/format.md), the counters, the listener table (pid, alive or dead, "
                    "flags, minimum interval, last wake-up) and every record of the region with its "
                    "offset, length, state (committed, reserved, abandoned, gap, damaged), sequence, "
                    "severity, time, checksum status, seal and the start of its text. Reservations still "
                    "open are shown too, and a damaged segment is shown as far as it can be read, with the "
                    "message headers found inside each damaged range. A partition file shows its "
                    "partition header and then both halves as segments; a pipe reader's journal shows its "
                    "header words and the frames it still holds. Nothing is written. Exit "
                    "status: 0 when the file was shown (damaged or not), 2 when it could not be (no such "
                    "file, permission denied, not a segment or partition file, a bad key file).")
    p.add_argument("file", metavar="FILE", help="a segment file (a family's live segment or a history "
                                                "segment), a partition file, or a pipe journal")
    p.add_argument("--key-file", "-k", metavar="F",
                   help="key file of a sealed segment: its messages are opened and authenticated "
                        "(without it their text shows as [encrypted])")
    p.add_argument("--json", action="store_true", help="print everything as one JSON object")
    only = p.add_mutually_exclusive_group()
    only.add_argument("--records-only", action="store_true", help="show the records, not the header")
    only.add_argument("--header-only", action="store_true",
                      help="show the header, counters and listener table, not the records")
    p.set_defaults(run=run)


def load_ring(key_file: str | None):
    """The KeyRing of a --key-file (None without one); KeyFileError, exit 2, if unusable."""
    from logkit.cli.sources import check_key_file
    from logkit.crypto import load_key_file
    kf = check_key_file(key_file)
    return load_key_file(kf) if kf is not None else None


def run(args) -> int:
    path = os.path.abspath(os.path.expanduser(args.file))
    header, records = not args.records_only, not args.header_only
    ring = load_ring(args.key_file)
    inspector = inspector_for(path, ring)      # the file's kind, from its bytes
    d = inspector.describe(records=records)
    if args.json:
        print(json.dumps(d, indent=2, default=str))
        return 0
    for line in inspector.lines(d, header, records):
        print(line)
    return 0
