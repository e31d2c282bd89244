"""`logkit stats [LOG ...]`: every counter of every log's storage, segments and buffers.

LOG is a config log name or a path (sources.resolve).  For a config log the
storage backend's own counters come first; then, for a family (or a
partition), the counters in each segment's (half's) header.
"""
from __future__ import annotations

import json
import os

from logkit import config as _config
from logkit.errors import LogkitError
from logkit.server import read_status

from . import inspection as insp
from .inspection_files import PartitionView
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

def segment_counters(path: str) -> dict:
    """{"path", "counters"} of one segment file, or {"path", "problem"} if unreadable;
    a damaged header is noted, and its counters are read all the same."""
    out: dict = {"path": path}
    try:
        view = insp.SegmentView.open_file(path)
    except LogkitError as e:
        if not os.path.exists(path):
            out["gone"] = True
        out["problem"] = str(e)
        return out
    with view:
        out["counters"] = {k: (bool(v) if isinstance(v, bool) else int(v))
                           for k, v in insp.counters_of(view).items()}
        if view.problem:
            out["note"] = view.problem
    return out


def _totals(rows: list[dict]) -> dict:
    tot = {k: 0 for k, _ in SEGMENT_COUNTERS}
    for r in rows:
        for k in tot:
            tot[k] += int(r.get("counters", {}).get(k, 0))
    return tot


def _partition_halves(path: str) -> tuple[list[dict], dict]:
    """Each half's header counters, and the partition header's own (lost to
    overflow, swaps, drained...), read without opening it for writing."""
    rows, own = [], {}
    try:
        pv = PartitionView(path)
    except LogkitError as e:
        return [{"path": path, "problem": str(e)}], own
    with pv:
        f = pv.fields
        own = {"lost": f.get("lost"), "loss_events": f.get("loss_events"), "swaps": f.get("generation"),
               "drained": f.get("drained"), "drain_progress": f.get("progress"), "half_size": pv.half_size}
        for i, off, view in pv.halves:
            r: dict = {"path": f"{path} half {i}", "half": i, "phase": pv.phase_of(i)}
            if view is None:
                r["problem"] = f"half {i} at offset {off} is too small to be a segment"
            else:
                r["counters"] = {k: (bool(v) if isinstance(v, bool) else int(v))
                                 for k, v in insp.counters_of(view).items()}
                if view.problem:
                    r["note"] = view.problem
            rows.append(r)
        for p in pv.problems:
            rows.append({"path": path, "problem": p})
    return rows, own


def _journal(path) -> dict:
    """The pipe reader's journal header (docs/pipe-format.md), or why not."""
    from logkit.backends.pipejournal import read_journal_header
    out: dict = {"path": path}
    if not os.path.exists(path):
        out["problem"] = "none yet (no reader has run)"
        return out
    try:
        out.update(read_journal_header(path))
    except (OSError, LogkitError) as e:
        out["problem"] = str(e)
    return out


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
            out["journal"] = _journal(lc.transport_options.get("journal")
                                      or lc.transport_options["fifo"] + ".journal")
    if src.kind in ("family", "segment"):
        rows = []
        paths = src.segment_paths()
        live = os.path.join(src.path, src.family) if src.kind == "family" and src.family else None
        for p in paths:
            r = segment_counters(p)
            if src.kind == "family":
                r["role"] = "live" if p == live else "history"
            rows.append(r)
        out["segments"] = rows
        out["totals"] = _totals(rows)
        if src.log is None:
            out["where"] = (f"family '{src.family}' in {src.path}, {len(rows)} segment(s)"
                            if src.kind == "family" else f"segment {src.path} of family '{src.family}'")
    elif src.kind == "partition":
        rows, own = _partition_halves(src.path)
        out["segments"] = rows
        out["totals"] = _totals(rows)
        if src.log is None:
            out["where"] = f"partition {src.path}"
            out["counters"] = dict(own, written=out["totals"]["written"], reserved=out["totals"]["reserved"])
    elif src.kind == "plainfile" and src.log is None:
        rd = src.reader
        n = sum(1 for _ in rd)
        out["where"] = f"plain log file {src.path}"
        out["counters"] = {"messages": n, "damaged_lines": int(getattr(rd, "damaged", 0)),
                           "live_bytes": os.path.getsize(src.path)}
    if src.kind == "partition":
        st = read_status(src.path)
        if st is not None:
            out["margins"] = {"crossings": st.get("crossings", {}), "fill": st.get("fill"),
                              "updated": st.get("updated")}
    return out


# ---------------------------------------------------------------- printing

def _segment_table(r: dict) -> list[str]:
    rows = r.get("segments")
    if rows is None:
        return []
    what = "halves" if r["kind"] == "partition" else "segments"
    lines = [f"  {what} ({len(rows)}, oldest first):"]
    names = []
    for s in rows:
        if "half" in s:
            names.append(f"half {s['half']} ({s['phase']})")
        else:
            base = os.path.basename(s["path"]) if r["kind"] in ("family", "segment") else s["path"]
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
