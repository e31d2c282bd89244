"""The reader of a crash-matrix case, run as its own process (a crash here
is seen as an exit code, never takes the harness down).

    python readcheck.py LAYER CONFIG_JSON OUT_JSON [--balance]

Reads everything the layer's readers give (segment, family, partition's
family), checks each message against the pure function that made it, and
writes to OUT_JSON: the (writer, counter) of every message read, loss
reports, problems, and with --balance the counters after salvage (which
changes the files: it runs last).
"""
from __future__ import annotations

import json
import os
import re
import sys

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

from crashmatrix.children import handler_level, hows, pipe_text  # noqa: E402
from procs import message_class, message_data, message_severity, message_text, parse_text  # noqa: E402


_NOTICE = re.compile(r"(spill )?buffer \S+ of log \S+ is \d+% full")


def check(m, layer, out):
    text = m.text
    wi = parse_text(text.split("|", 1)[0])
    if wi is None:
        if m.severity == 40 and "messages lost" in text:
            out["loss_reports"].append(json.loads(bytes(m.data)))
        elif _NOTICE.match(text):
            out["notices"] += 1                # the server's margin warnings
        else:
            out["problems"].append(f"stray message {text[:80]!r} (sequence {m.sequence})")
        return
    w, i = wi
    want = pipe_text(w, i) if layer == "pipe" else message_text(w, i)
    # through logkit.Handler: a level, and the record payload (the logger's name, no fields)
    handled = hows(layer)[i % len(hows(layer))] == "handler"
    bad = []
    if not m.checksum_ok():
        bad.append("checksum")
    if text != want:
        bad.append(f"text {text[:60]!r}")
    if m.severity != (handler_level(w, i) if handled else message_severity(w, i)):
        bad.append(f"severity {m.severity}")
    if handled:
        rec = m.record
        if m.data_class != "record" or rec.logger != f"crashmatrix-{w}" or rec.fields or rec.traceback:
            bad.append(f"record payload {m.data_class!r} {rec!r:.80}")
    else:
        if bytes(m.data) != message_data(w, i):
            bad.append("data")
        if m.data_class != message_class(w, i):
            bad.append(f"data_class {m.data_class!r}")
    if bad:
        out["problems"].append(f"w{w}:{i} (sequence {m.sequence}): " + ", ".join(bad))
    out["read"].append([w, i, m.sequence])


def read(layer, cfg, out):
    import logkit
    if layer == "core":
        seg = logkit.Segment.open(cfg["path"], readonly=True)
        it = seg.messages()
        for m in it:
            check(m, layer, out)
        out["notes"] += [f"open reservation {r}" for r in it.open_reservations]
        out["problems"] += [f"damaged {d}" for d in it.damaged]
        seg.close()
        return
    if layer in ("partition", "pipe"):
        # what is still in the partition (or the pipe's spill): its own reader
        from logkit.backends.partition import open_reader as partition_reader
        path = cfg["path"] if layer == "partition" else cfg["spill"]
        if os.path.exists(path):
            pr = partition_reader(path)
            n = sum(1 for m in pr if m.checksum_ok() or True)
            out["notes"].append(f"{os.path.basename(path)} still holds {n} messages")
    d, fam = cfg["directory"], cfg["family"]
    if not os.path.exists(os.path.join(d, fam)):
        return
    r = logkit.open_reader(d, fam)
    for m in r:
        check(m, layer, out)
    out["notes"] += [str(p) for p in r.problems]


def balance(layer, cfg, out):
    """Counters after salvage: in every segment no longer written, what was
    reserved is finished or abandoned, and the written counter lags the
    finished messages by no more than the kills can explain."""
    import logkit
    from logkit.family import history_segments
    if layer == "core":
        paths = [cfg["path"]]
    else:
        paths = history_segments(cfg["directory"], cfg["family"])
        live = os.path.join(cfg["directory"], cfg["family"])
        if os.path.exists(live):
            paths.append(live)
    segs = []
    for p in paths:
        seg = logkit.Segment.open(p)
        seg.take_out_of_service()
        rep = logkit.salvage(seg, settle=0)
        scan = seg.scan()
        st = seg.stats()
        segs.append({"path": os.path.basename(p), "reserved": int(st["reserved"]), "written": int(st["written"]),
                     "abandoned": int(st["abandoned"]), "committed": scan["committed"],
                     "scan_abandoned": scan["abandoned"], "open": len(scan["reserved"]),
                     "gaps": len(scan["gaps"]), "damaged": len(scan["damaged"]),
                     "salvage_damaged": len(rep.damaged)})
        seg.close()
    out["balance"] = segs
    if layer == "partition":
        from logkit.backends.partition import PartitionStorage
        s = PartitionStorage(cfg["name"], path=cfg["path"])
        out["partition_stats"] = {k: v for k, v in s.stats().items() if isinstance(v, int)}
        s.close()
    if layer == "pipe" and os.path.exists(cfg["spill"]):
        from logkit.backends.partition import PartitionStorage
        s = PartitionStorage(cfg["name"], path=cfg["spill"])
        out["spill_stats"] = {k: v for k, v in s.stats().items() if isinstance(v, int)}
        s.close()


def main(argv):
    layer, cfg_path, out_path = argv[:3]
    with open(cfg_path) as f:
        cfg = json.load(f)
    out = {"read": [], "loss_reports": [], "problems": [], "notes": [], "notices": 0}
    read(layer, cfg, out)
    if "--balance" in argv:
        balance(layer, cfg, out)
    with open(out_path, "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
