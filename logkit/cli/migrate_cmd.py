"""`logkit migrate DIRECTORY FAMILY DESTINATION`: move a family's history elsewhere.

Wraps logkit.migrate (history segments moved, previous-segment links
updated, the live segment left in place), with the checks and the progress
line a command needs.
"""
from __future__ import annotations

import os
import threading

from logkit.errors import InvalidArgument, LogkitError
from logkit.family import history_segments, migrate

from .progress import Progress, human_bytes
from .sources import families_in, family_location


def add_parser(sub) -> None:
    p = sub.add_parser(
        "migrate", help="move a family's history segments to another directory",
        description="Move every history segment of a family (a config LOG's, or FAMILY in DIRECTORY) "
                    "to DESTINATION (created if "
                    "needed; another file system is fine: the segments are then copied, synced and "
                    "renamed into place) and update the previous-segment links, so that the family still "
                    "reads end to end from both directories (logkit print DIRECTORY DESTINATION, or "
                    "logkit.open_reader([DIRECTORY, DESTINATION], FAMILY)). The live segment stays where "
                    "it is; writers need not stop. An interrupted migrate can be run again. Nothing is "
                    "ever overwritten. Exit status: 0 done (also when there was nothing to move), 2 an "
                    "error (no such directory or family, a segment of the same name already at "
                    "DESTINATION, a file that cannot be moved).")
    p.add_argument("directory", metavar="LOG|DIRECTORY",
                   help="a log name of the configuration (a family log, or a partition log's "
                        "destination family), or the family's directory now")
    p.add_argument("family", metavar="FAMILY", nargs="?",
                   help="the family name (the live segment's file name); not needed for a log name "
                        "or a directory that holds one family")
    p.add_argument("destination", metavar="DESTINATION", help="where its history segments go")
    p.add_argument("-c", "--config", help="the config file (default: the search order)")
    p.set_defaults(run=run)


def check_family(directory: str, family: str, command: str) -> str:
    """The absolute directory; InvalidArgument unless it holds `family`."""
    d = os.path.abspath(os.path.expanduser(directory))
    if not os.path.exists(d):
        raise InvalidArgument(f"{directory}: no such directory")
    if not os.path.isdir(d):
        raise InvalidArgument(f"{directory}: not a directory ({command} takes a family's directory)")
    history_segments(d, family)             # InvalidArgument for a name no family can have
    fams = families_in(d)
    if family not in fams:
        raise InvalidArgument(f"{directory}: no family {family!r} in the directory"
                              + (f" (it holds {', '.join(fams)})" if fams else " (it holds no segments)"))
    return d


def run(args) -> int:
    where, args.family = family_location(args.directory, args.family, args.config, "migrate")
    d = check_family(where, args.family, "migrate")
    dest = os.path.abspath(os.path.expanduser(args.destination))
    if os.path.exists(dest):
        if not os.path.isdir(dest):
            raise InvalidArgument(f"{args.destination}: exists and is not a directory")
        if os.path.samefile(dest, d):
            raise InvalidArgument(f"{args.destination} is the family's own directory; give another")
    hist = history_segments(d, args.family)
    if not hist:
        print(f"nothing to migrate: family {args.family!r} in {d} has no history segments "
              f"(only its live segment, which stays)")
        return 0
    sizes = {os.path.basename(p): os.path.getsize(p) for p in hist if os.path.exists(p)}
    progress = Progress("migrate", total=len(hist))
    stop = threading.Event()

    def watch() -> None:
        # logkit.migrate is one call: follow its progress from the directory listing.
        while not stop.wait(0.2):
            left = {os.path.basename(p) for p in history_segments(d, args.family)}
            done = [n for n in sizes if n not in left]
            progress.update(len(done), sum(sizes[n] for n in done))

    watcher = threading.Thread(target=watch, daemon=True) if progress.enabled else None
    if watcher is not None:
        watcher.start()
    try:
        moved = migrate(d, args.family, dest)
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        raise LogkitError(f"cannot migrate family {args.family!r} to {dest}: {e.strerror}{where}; "
                          "run it again once fixed (it resumes)") from None
    finally:
        stop.set()
        if watcher is not None:
            watcher.join()
        progress.done()
    total = sum(sizes.get(os.path.basename(p), 0) for p in moved)
    print(f"migrated {len(moved)} history segment(s) of family {args.family!r} ({human_bytes(total)}) "
          f"from {d} to {dest}:")
    for p in moved:
        print(f"  {p}")
    print(f"the live segment stays in {d}; the family reads end to end from both directories")
    return 0
