"""`logkit display FILE`: every field of one segment (or partition, or pipe
journal) file, named.

A debugging tool over the bytes docs/format.md describes.  What it shows
comes from the inspection library (logkit.cli.inspection and
inspection_files), which `logkit verify`, `stats` and `salvage` share;
this module only prints.
"""
from __future__ import annotations

import json
import os


from .inspection import (LISTENERS_AT, NotASegment, SegmentView, describe_segment, file_kind,
                         headerless_segment, iso, preview)
from .inspection_files import PartitionView, describe_journal, describe_partition, is_journal





# ---------------------------------------------------------------- text output

def _header_lines(d: dict, indent: str = "") -> list[str]:
    lines = [f"{indent}header (offsets from the start of the region; docs/format.md):"]
    for r in d["header"]:
        off = "" if r["offset"] is None else str(r["offset"])
        lines.append(f"{indent}  {off:>5}  {r['c_name']:<24} {r['field']:<20} {r['shown']}")
    lines.append(f"{indent}counters:")
    for r in d["counters"]:
        off = "" if r["offset"] is None else str(r["offset"])
        what = r["counter"] + (" (sum of 16 shards)" if r["counter"] == "written" else "")
        lines.append(f"{indent}  {off:>5}  {r['c_name']:<24} {what:<26} {r['value']}")
    used = d["listeners"]
    lines.append(f"{indent}listener table (offset 2048, 25 slots of 64 bytes at 2112): "
                 + (f"{len(used)} slot(s) in use" if used else "no slot in use"))
    for s in used:
        last = iso(s["last_wake_ns"]) if s["last_wake_ns"] else "never"
        lines.append(f"{indent}  slot {s['slot']:>2} (offset {LISTENERS_AT + 64 * s['slot']}): pid {s['pid']} "
                     f"({'alive' if s['alive'] else 'dead'}), flags 0x{s['flags']:X}"
                     f"{' (WAITING)' if s['waiting'] else ''}, min interval {s['min_interval_ns'] / 1e9:g} s, "
                     f"last wake {last}")
    return lines


def _record_lines(d: dict, indent: str = "") -> list[str]:
    recs = d.get("records", [])
    lines = [f"{indent}records (the walk of the whole region; offsets from the start of the region):"]
    if not recs:
        lines.append(f"{indent}  none")
    else:
        lines.append(f"{indent}  {'offset':>8} {'length':>7}  {'state':<9}  {'sequence':>8}  {'sev':>4}  "
                     f"{'time':<30}  {'pid':>7}  {'checksum':<9}  {'seal':<10}  text")
    for r in recs:
        seq = "" if r.get("sequence") is None else str(r["sequence"])
        if r.get("span") and r["span"] > 1:
            seq += f"+{r['span'] - 1}"
        sev = "" if r.get("severity") is None else str(r["severity"])
        t = iso(r["time"]) if r.get("time") else ""
        pid = "" if r.get("pid") is None else str(r["pid"])
        seal = r.get("seal") or ("-" if r["state"] in ("reserved", "abandoned") else "")
        seal_col = "ok" if seal == "ok" else "FAILED" if seal.startswith("FAILED") else seal
        if r.get("key_id"):
            seal_col = f"k{r['key_id']} {seal_col}"
        text = preview(r["text"]) if "text" in r else f"({r['note']})" if r.get("note") else ""
        lines.append(f"{indent}  {r['offset']:>8} {r['length']:>7}  {r['state']:<9}  {seq:>8}  {sev:>4}  "
                     f"{t:<30}  {pid:>7}  {r.get('checksum', ''):<9}  {seal_col:<10}  {text}")
        if seal.startswith("FAILED"):
            lines.append(f"{indent}      {seal}")
        for c in r.get("candidates", []):
            lines.append(f"{indent}      message header at {c['offset']}: {c['state']}, sequence "
                         f"{c['sequence']}, total {c['total']}"
                         + (f", checksum {c['checksum']}" if "checksum" in c else "")
                         + (f", text {preview(c['text'])}" if c.get("text") else ""))
            for p in c["problems"]:
                lines.append(f"{indent}        {p}")
    s = d.get("summary")
    if s:
        lines.append(f"{indent}  {s['committed']} committed, {s['reserved']} reserved (open), "
                     f"{s['abandoned']} abandoned, {s['gaps']} gap(s) ({s['gap_bytes']} bytes), "
                     f"{s['damaged']} damaged range(s) ({s['damaged_bytes']} bytes)")
    return lines


def segment_lines(d: dict, header: bool, records: bool, indent: str = "") -> list[str]:
    lines = []
    for p in d["problems"]:
        lines.append(f"{indent}problem: {p}")
    if header:
        lines += _header_lines(d, indent)
    if records:
        lines += _record_lines(d, indent)
    return lines


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


def _print_journal(d: dict, header: bool, records: bool) -> None:
    print(f"pipe journal {d['file']}")
    for p in d["problems"]:
        print(f"problem: {p}")
    if header:
        print("header (docs/pipe-format.md):")
        for r in d["header"]:
            print(f"  {r['offset']:>5}  {r['field']:<12} {r['shown']}")
    if records:
        print(f"frames from resolve to end ({d['pending_bytes']} bytes):")
        for fr in d["frames"]:
            where = f"  {fr['position']:>10}  {fr['length']:>5} B  {fr['kind']:<8}"
            if fr["kind"] == "record":
                print(f"{where} {'stored ' if fr['stored'] else 'pending'} pid {fr['pid']} tid {fr['tid']} "
                      f"severity {fr['severity']}  {fr['text']!r}")
            elif fr["kind"] == "fragment":
                print(f"{where} pid {fr['pid']} tid {fr['tid']} "
                      f"record {fr['record_id']} fragment {fr['index'] + 1} of {fr['count']}")
            else:
                print(where)
        if not d["frames"]:
            print("  (none: every byte taken from the FIFO is resolved)")


def run(args) -> int:
    path = os.path.abspath(os.path.expanduser(args.file))
    header, records = not args.records_only, not args.header_only
    if os.path.isfile(path) and is_journal(path):
        d = describe_journal(path, records=records)
        if args.json:
            print(json.dumps(d, indent=2, default=str))
        else:
            _print_journal(d, header, records)
        return 0
    ring = load_ring(args.key_file)
    try:
        kind = file_kind(path)
    except NotASegment:
        if not headerless_segment(path):     # a segment whose header page was lost is shown
            raise
        kind = "segment"
    if kind == "partition":
        with PartitionView(path, ring) as pv:
            d = describe_partition(pv, records=records)
        if args.json:
            print(json.dumps(d, indent=2, default=str))
            return 0
        print(f"partition {path}")
        for p in d["problems"]:
            print(f"problem: {p}")
        for n in d["notes"]:
            print(f"note: {n}")
        if header:
            print("partition header (docs/partition-format.md):")
            for r in d["partition_header"]:
                print(f"  {r['offset']:>5}  {r['field']:<14} {r['shown']}")
        for h in d["halves"]:
            print(f"half {h['half']} at file offset {h['file_offset']} ({h['phase']}):")
            if "header" in h:
                for line in segment_lines(h, header, records, "  "):
                    print(line)
            else:
                for p in h["problems"]:
                    print(f"  problem: {p}")
        return 0
    with SegmentView.open_file(path, ring) as view:
        d = describe_segment(view, records=records)
    d = {"file": path, "kind": "segment", **d}
    if args.json:
        print(json.dumps(d, indent=2, default=str))
        return 0
    print(f"segment {path}")
    for line in segment_lines(d, header, records):
        print(line)
    return 0
