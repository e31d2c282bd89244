"""`logkit stats [LOG ...]`: every counter of every log's storage, segments and buffers.

LOG is a config log name or a path (sources.resolve).  For a config log the
storage backend's own counters come first; then, for a family (or a
partition), the counters in each segment's (half's) header.
"""
from __future__ import annotations

import json
import os

from logkit import config as _config
from logkit.server import read_status

from .inspectors import JournalInspector, inspector_of
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


def collect_source(src, cfg) -> dict:
    out: dict = {"log": src.log, "source": src.spec, "kind": src.kind, "path": src.path}
    if src.log is not None:
        lc = cfg.get(src.log)
        storage = src.storage
        out.update({"storage": lc.storage, "transport": lc.transport, "where": storage.describe(),
                    "counters": storage.stats()})
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
    if src.log is None:
        if src.kind == "family":
            out["where"] = f"family '{src.family}' in {src.path}, {len(out['segments'])} segment(s)"
        else:
            out["where"] = parts[0]["where"]
            if "counters" in parts[0]:
                out["counters"] = parts[0]["counters"]
    for part in parts:
        if "margins" in part:
            out["margins"] = part["margins"]
    return out


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
    unreadable = [s["path"] for r in reports for s in r.get("segments", [])
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
            print(f"  {k} = {v}")
        for line in _segment_table(r):
            print(line)
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
