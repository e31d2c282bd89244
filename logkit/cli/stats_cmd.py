"""`logkit stats [LOG ...]`: every counter of every log's storage and buffers."""
from __future__ import annotations

import json

from logkit import config as _config
from logkit.server import read_status


def add_parser(sub) -> None:
    p = sub.add_parser("stats", help="print the counters of each log's storage and buffers",
                       description="Print every counter of each log's storage (messages written, "
                                   "refused full / too big / out of service, abandoned, lost to "
                                   "overflow, swaps, drained) and, for buffers a server watches, the "
                                   "margin crossings it counted.")
    p.add_argument("logs", nargs="*", metavar="LOG", help="log names from the config (default: all)")
    p.add_argument("--config", "-c", help="the config file (default: the search order)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def collect(lc) -> dict:
    storage = lc.open_storage()
    try:
        out = {"log": lc.name, "storage": lc.storage, "transport": lc.transport,
               "where": storage.describe(), "counters": storage.stats()}
        path = getattr(storage, "path", None)
        if lc.storage == "partition" and path:
            st = read_status(path)
            if st is not None:
                out["margins"] = {"crossings": st.get("crossings", {}), "fill": st.get("fill"),
                                  "updated": st.get("updated")}
        if lc.transport == "pipe":
            spill = lc.transport_options.get("spill") or lc.transport_options["fifo"] + ".spill"
            st = read_status(spill)
            if st is not None:
                out["spill_margins"] = {"crossings": st.get("crossings", {}), "fill": st.get("fill")}
        return out
    finally:
        storage.close()


def run(args) -> int:
    cfg = _config.load(args.config)
    names = args.logs or list(cfg.logs)
    reports = [collect(cfg.get(n)) for n in names]
    if args.json:
        print(json.dumps(reports, indent=2))
        return 0
    for r in reports:
        print(f"[log.{r['log']}] {r['storage']} over {r['transport']}: {r['where']}")
        for k, v in r["counters"].items():
            print(f"  {k} = {v}")
        for key in ("margins", "spill_margins"):
            if key in r:
                m = r[key]
                marks = ", ".join(f"{float(k):.0%}: {v}" for k, v in m["crossings"].items())
                print(f"  {key.replace('_', ' ')} crossed ({marks}), fill now {m['fill']:.0%}")
    return 0
