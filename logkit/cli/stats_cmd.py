"""`logkit stats [LOG ...]`: every counter of every log's storage, segments and buffers.

LOG is a config log name or a path (sources.resolve).  The counters shown
first are true of the whole log, read from its files: a family's summed
over all its segments (rotations from its history), a partition log's from
the partition header and its destination family together.  Nothing is
opened for writing; only a third-party storage is asked through an object
opened here, and its counters are shown apart, as this process's.  Then
the counters in each segment's (half's) header.
"""
from __future__ import annotations

import json
import os

from logkit import config as _config
from logkit.server import read_status

from .inspectors import JournalInspector, SegmentInspector, inspector_of
from .sources import load_config_quietly, resolve

# The per-segment counters, in the order shown, with their column titles.
SEGMENT_COUNTERS = (("written", "written"), ("refused_full", "refused full"), ("refused_too_big", "too big"),
                    ("refused_out_of_service", "out of service"), ("abandoned", "abandoned"),
                    ("reserved", "reserved"), ("bytes_used", "bytes used"), ("bytes_total", "bytes total"),
                    ("salvages", "salvages"))


def add_parser(sub) -> None:
    p = sub.add_parser("stats", help="print the counters of each log's storage, segments and buffers",
                       description="Print every counter of each LOG: its storage's counters (for a config "
                                   "log: messages written, refused full / too big / out of service, "
                                   "abandoned, rotations; for a partition also swaps, lost to overflow, "
                                   "drained), then the counters in the header of every segment of a family "
                                   "(or both halves of a partition) with their total, and, for buffers a "
                                   "server watches, the margin crossings it counted. LOG is a log name of "
                                   "the configuration, a family directory, a segment file (with --family, "
                                   "the default, its whole family), a partition file or a plain log file; "
                                   "with no LOG, every log of the configuration. Exit status: 0, or 1 when "
                                   "the counters of some segment could not be read (they are named), 2 for "
                                   "an error (a missing log, a bad configuration).")
    p.add_argument("logs", nargs="*", metavar="LOG",
                   help="config log names or paths (default: every log of the config)")
    p.add_argument("--config", "-c", help="the config file (default: the search order)")
    p.add_argument("--family-name", metavar="NAME", help="which family of a directory that holds several")
    p.add_argument("--single", dest="single", action="store_true", default=False,
                   help="a segment file LOG means that segment only")
    p.add_argument("--family", dest="single", action="store_false",
                   help="a segment file LOG means its whole family (the default)")
    p.add_argument("--json", action="store_true", help="print the counters as JSON (a list, one object per LOG)")
    p.set_defaults(run=run)


# ---------------------------------------------------------------- collecting

def _totals(rows: list[dict]) -> dict:
    tot = {k: 0 for k, _ in SEGMENT_COUNTERS}
    for r in rows:
        for k in tot:
            tot[k] += int(r.get("counters", {}).get(k, 0))
    return tot


def _history_complete(path: str) -> bool | None:
    """Whether the segment at `path` (a family's oldest) is its first one
    (no previous segment named in its header); None if it cannot be read."""
    from logkit import Segment
    from logkit.errors import LogkitError
    try:
        seg = Segment.open(path, readonly=True)
    except (LogkitError, OSError):
        return None
    try:
        return not seg.header().get("previous")
    except (LogkitError, OSError):
        return None
    finally:
        seg.close()


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def family_counters(rows: list[dict]) -> dict:
    """The whole family's counters from its segment rows (oldest first):
    each header counter summed over every segment, the segments and their
    bytes, and the rotations: as many as there are history segments when the
    oldest is the family's first, else unknown (None; older history was
    removed) with rotations_at_least."""
    tot = _totals(rows)
    out = {k: tot[k] for k in ("written", "reserved", "refused_full", "refused_too_big",
                               "refused_out_of_service", "abandoned", "salvages")}
    history = sum(1 for r in rows if r.get("role") != "live")
    out.update({"segments": len(rows), "bytes": sum(_size(r["path"]) for r in rows),
                "history_segments": history})
    complete = _history_complete(rows[0]["path"]) if rows else True
    if complete:
        out["rotations"] = history
    else:
        out["rotations"] = None
        out["rotations_at_least"] = history
    return out


def _family_rows(directory: str, family: str) -> list[dict]:
    from logkit.family import FamilyReader
    from logkit.errors import SegmentNotFound
    try:
        paths = FamilyReader(directory, family).segment_paths()
    except SegmentNotFound:
        return []
    live = os.path.join(directory, family)
    rows = []
    for path in paths:
        for r in SegmentInspector(path).stats()["segments"]:
            r["role"] = "live" if r["path"] == live else "history"
            rows.append(r)
    return rows


def _abs(p) -> str:
    return os.path.abspath(os.fspath(p))


def _family_words(lc, so) -> str:
    return f"family '{so.get('family') or lc.name}' in {_abs(so['directory'])}"


def _partition_words(lc, so) -> str:
    dest = (f"drains into family '{so.get('family') or lc.name}' in {_abs(so['directory'])}"
            if so.get("directory") else "no drain directory set")
    return f"partition {_abs(so['path'])} ({dest})"


def _plain_words(lc, so) -> str | None:
    return f"plain file {_abs(so['path'])}" if so.get("path") else None


# What a built-in storage is, in words, from its config log's options
# (opening it to ask would create files, or swap a partition); None: ask it.
WHERE = {"family": _family_words, "partition": _partition_words, "plainfile": _plain_words}


def collect_source(src, cfg) -> dict:
    """What `stats` shows of one LOG: "counters", true of the whole log (all
    segments of a family; a partition log's partition and destination family
    together); "this_process" only for a storage that can describe itself
    only through an object this command opens (a third-party backend): its
    counters are that object's, not the log's."""
    out: dict = {"log": src.log, "source": src.spec, "kind": src.kind, "path": src.path}
    lc = cfg.get(src.log) if src.log is not None else None
    if lc is not None:
        out.update({"storage": lc.storage, "transport": lc.transport})
        words = WHERE.get(lc.storage)
        where = words(lc, lc.storage_options) if words is not None else None
        if where is not None:
            out["where"] = where
        else:
            storage = src.storage
            out["where"] = storage.describe()
            out["this_process"] = storage.stats()
        if lc.transport == "pipe":
            spill = lc.transport_options.get("spill") or lc.transport_options["fifo"] + ".spill"
            st = read_status(spill)
            if st is not None:
                out["spill_margins"] = {"crossings": st.get("crossings", {}), "fill": st.get("fill")}
            journal = lc.transport_options.get("journal") or lc.transport_options["fifo"] + ".journal"
            out["journal"] = JournalInspector(journal).stats()["journal"]
    # Each file of the log asks its own inspector (a family: each segment).
    parts = [inspector_of(src, p).stats() for p in src.files()]
    if inspector_of(src).has_segments:
        rows = [r for part in parts for r in part["segments"]]
        if src.kind == "family":
            live = os.path.join(src.path, src.family) if src.family else None
            for r in rows:
                r["role"] = "live" if r["path"] == live else "history"
        out["segments"] = rows
        out["totals"] = _totals(rows)
    if src.kind == "family":
        out["counters"] = family_counters(out["segments"])
        if "where" not in out:
            out["where"] = f"family '{src.family}' in {src.path}, {len(out['segments'])} segment(s)"
    elif parts and "where" in parts[0]:
        out.setdefault("where", parts[0]["where"])
        if "counters" in parts[0]:
            out["counters"] = dict(parts[0]["counters"])
    from logkit.backends.partition_log import PartitionLogReader   # on use: the build imports this module
    if isinstance(src.reader, PartitionLogReader):
        _add_destination(out, src)
    for part in parts:
        if "margins" in part:
            out["margins"] = part["margins"]
    return out


def _add_destination(out: dict, src) -> None:
    """A partition log's destination family, and the whole log's counters:
    the partition's (lost to overflow, swaps, drained...) with the family's
    summed in, `written` being what the log holds (the family's messages and
    those not yet drained)."""
    rd = src.reader
    rows = _family_rows(rd.directory, rd.family)
    fam = family_counters(rows)
    out["family"] = {"directory": rd.directory, "family": rd.family, "segments": rows,
                     "totals": _totals(rows), "counters": fam}
    part = out.get("counters") or {}
    undrained = rd.pending_count()
    c = {"written": fam["written"] + undrained, "undrained": undrained, "family_written": fam["written"]}
    for k in ("lost", "loss_events", "swaps", "drained", "drain_progress", "half_size"):
        if k in part:
            c[k] = part[k]
    halves = _totals(out.get("segments", []))
    for k in ("refused_full", "refused_too_big", "refused_out_of_service", "abandoned", "salvages"):
        c[k] = halves[k] + fam[k]
    c["partition_written"], c["partition_reserved"] = part.get("written", 0), part.get("reserved", 0)
    c.update({"segments": fam["segments"], "bytes": fam["bytes"] + _size(src.path),
              "family_rotations": fam["rotations"]})
    if fam["rotations"] is None:
        c["family_rotations_at_least"] = fam["rotations_at_least"]
    out["counters"] = c


# ---------------------------------------------------------------- printing

def _segment_table(r: dict) -> list[str]:
    rows = r.get("segments")
    if rows is None:
        return []
    what = "halves" if any("half" in s for s in rows) else "segments"
    lines = [f"  {what} ({len(rows)}, oldest first):"]
    names = []
    for s in rows:
        if "half" in s:
            names.append(f"half {s['half']} ({s['phase']})")
        else:
            base = os.path.basename(s["path"])
            names.append(f"{base} ({s['role']})" if "role" in s else base)
    width = max([len(n) for n in names] + [len(f"all {len(rows)}")])
    cols = [title for _, title in SEGMENT_COUNTERS]
    lines.append("    " + " " * width + "  " + "  ".join(f"{c:>{max(len(c), 8)}}" for c in cols))
    for name, s in zip(names, rows):
        if "counters" not in s:
            lines.append(f"    {name:<{width}}  cannot be read: {s['problem']}")
            continue
        c = s["counters"]
        vals = "  ".join(f"{c.get(k, 0):>{max(len(t), 8)}}" for k, t in SEGMENT_COUNTERS)
        state = "" if c.get("in_service", True) else "  (out of service)"
        lines.append(f"    {name:<{width}}  {vals}{state}")
        if s.get("note"):
            lines.append(f"    {'':<{width}}  note: {s['note']}")
    if len(rows) > 1:
        t = r["totals"]
        vals = "  ".join(f"{t.get(k, 0):>{max(len(title), 8)}}" for k, title in SEGMENT_COUNTERS)
        lines.append(f"    {'all ' + str(len(rows)):<{width}}  {vals}")
    return lines


def run(args) -> int:
    if args.logs:
        cfg = load_config_quietly(args.config)
        specs = list(args.logs)
    else:
        cfg = _config.load(args.config)
        specs = list(cfg.logs)
    reports = []
    for spec in specs:
        src = resolve(spec, config=cfg, single=args.single, family_name=args.family_name)
        try:
            reports.append(collect_source(src, cfg))
        finally:
            src.close()
    unreadable = [s["path"] for r in reports
                  for s in r.get("segments", []) + r.get("family", {}).get("segments", [])
                  if "problem" in s and not s.get("gone")]
    if args.json:
        print(json.dumps(reports, indent=2, default=str))
        return 1 if unreadable else 0
    for r in reports:
        if r["log"] is not None:
            print(f"[log.{r['log']}] {r['storage']} over {r['transport']}: {r['where']}")
        else:
            print(f"[{r['path']}] {r['where']}")
        for k, v in r.get("counters", {}).items():
            if k.endswith("rotations_at_least"):
                continue
            if v is None and k.endswith("rotations"):
                v = (f"unknown (the oldest segment is not the family's first: older history was removed; "
                     f"at least {r['counters'][k + '_at_least']})")
            print(f"  {k} = {v}")
        own = r.get("this_process")
        if own:
            print("  this process only (the counters of the storage object `logkit stats` opened, "
                  "not of the log):")
            for k, v in own.items():
                print(f"    {k} = {v}")
        for line in _segment_table(r):
            print(line)
        fam = r.get("family")
        if fam is not None:
            print(f"  destination family '{fam['family']}' in {fam['directory']}:")
            for line in _segment_table(fam):
                print("  " + line)
        j = r.get("journal")
        if j is not None:
            if "problem" in j:
                print(f"  reader's journal {j['path']}: {j['problem']}")
            else:
                print(f"  reader's journal {j['path']}: {j['pending_bytes']} bytes pending, "
                      f"{j['stored']} records stored, {j['reconsumed']} batches reconsumed and "
                      f"{j['reconciled']} records reconciled after a restart")
        for key in ("margins", "spill_margins"):
            if key in r:
                m = r[key]
                marks = ", ".join(f"{float(k):.0%}: {v}" for k, v in m["crossings"].items())
                fill = f", fill now {m['fill']:.0%}" if m.get("fill") is not None else ""
                print(f"  {key.replace('_', ' ')} crossed ({marks}){fill}")
    return 1 if unreadable else 0
