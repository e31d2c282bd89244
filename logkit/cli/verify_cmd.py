"""`logkit verify [LOG ...]`: check every record of every segment of each log.

Walks each segment (the inspection library, logkit.cli.inspection), checks every
message's checksum and, for sealed messages with their key, opens them to
prove them authentic; reports per segment, and exits 1 if anything is wrong.
"""
from __future__ import annotations

import os

from logkit.errors import LogkitError

from .inspectors import Report, inspector_for, inspector_of
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


def _ring(key_file, cache: dict):
    if key_file is None:
        return None
    if key_file not in cache:
        from logkit.crypto import load_key_file
        cache[key_file] = load_key_file(key_file)
    return cache[key_file]


def _direct(spec: str):
    """The inspector of a LOG that resolve() refused but that is a segment or
    partition file with a damaged header (verify reports such damage), else None."""
    path = os.path.abspath(os.path.expanduser(spec))
    if not os.path.isfile(path):
        return None
    try:
        return inspector_for(path)
    except LogkitError:
        return None


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
                jobs.append((spec, None, [direct], key_file))
                continue
            jobs.append((spec, src, [inspector_of(src, p) for p in src.files()], src.key_file))
        units = []
        for spec, src, inspectors, kf in jobs:
            if not inspectors:
                units.append((None, spec, kf))
            units.extend((i, i.path, kf) for i in inspectors)
        progress = Progress("verify", total=len(units))
        reports: list[Report] = []
        for inspector, path, kf in units:
            if inspector is None:
                got = [Report(f"{path}", notes=["no segments yet"])]
            else:
                inspector.ring = _ring(kf, rings)
                got = inspector.verify()
            for rep in got:
                reports.append(rep)
                if not args.quiet or rep.wrong:
                    for line in rep.lines():
                        progress.write(line)
            progress.step(sum(r.size for r in got))
        progress.done()
    finally:
        for _, src, _, _ in jobs:
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
