"""The crash-matrix soak: many cases, a table by injection point.

    python tests/soak.py --cases 10000            # `make soak`
    python tests/soak.py --minutes 60 --stop-share 0.2
    python tests/soak.py --case "family/writer/family.rotate.linked/kill@3/seed=123"   # re-run one

Each case (tests/crashmatrix/harness.py) starts 3 writer processes (and a
`logkit server` for the partition and pipe layers), kills or stops one of
them at a named injection point (found in the source, tests/crashmatrix/
points.py), at the N-th point reached whatever its name, or at a timed
instant, then checks that every acknowledged message is read back exactly
once, readers exit cleanly, a fresh writer and server recover unaided, and
the counters balance.  Cases cycle over every (layer, victim, point) the
census finds, so each point gets its share.  Failures are printed as they
happen with the label that re-runs them, and written to --json.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import sys
import time

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

from crashmatrix import harness, points  # noqa: E402


def parse_label(label: str) -> harness.Case:
    """The Case of a label printed by Case.label()."""
    label, _, then = label.partition("/then=")
    late = label.endswith("/late")
    label = label[:-len("/late")] if late else label
    layer, victim, rest = label.split("/", 2)
    rest, _, seed = rest.rpartition("/seed=")
    pt, _, act = rest.rpartition("/")
    action, _, hit = act.partition("@")
    return harness.Case(layer, victim, "" if pt == "(timer)" else pt, action, int(hit), int(seed), late, then)


def cycle(censuses, rng, stop_share):
    """An endless stream of cases: round-robin over every (layer, role, point)
    and the random instants of each (layer, role), random visit and seed."""
    slots = []
    for layer, roles in censuses.items():
        for role, counts in roles.items():
            if role.startswith("_"):
                continue
            for name, visits in sorted(counts.items()):
                slots.append((layer, role, name, visits))
            total = sum(counts.values())
            if total:
                slots.append((layer, role, "*", total))
            slots.append((layer, role, "", harness.COUNT[layer] - 1 if role == "writer" else 1500))
    chains = [c for c in (harness.chain(censuses, layer) for layer in censuses) if c is not None]
    while True:
        rng.shuffle(slots)
        for layer, role, name, visits in slots:
            action = "stop" if rng.random() < stop_share else "kill"
            then = ""
            server_points = list(censuses[layer].get("server", {}))
            if role == "server" and action == "kill" and server_points and rng.random() < 0.15:
                # a fault in recovery too: the restarted server dies at another point
                then = f"{rng.choice(server_points)}=kill@1"
            yield harness.Case(layer, role, name, action, rng.randint(1, max(1, visits * 3 // 4)),
                               rng.randrange(1 << 30), then=then)
        yield from chains


def table(rows) -> str:
    head = ("injection point", "cases", "kills", "stops", "not reached", "failures")
    lines = [head] + [(k, *map(str, v)) for k, v in sorted(rows.items())]
    widths = [max(len(str(r[i])) for r in lines) for i in range(len(head))]
    out = []
    for n, r in enumerate(lines):
        out.append("  ".join(str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i])
                             for i, c in enumerate(r)))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10000, help="cases to run (default 10000)")
    ap.add_argument("--minutes", type=float, default=None, help="stop after this long, whatever --cases says")
    ap.add_argument("--seed", type=int, default=None, help="seed of the case stream (default: from the clock)")
    ap.add_argument("--stop-share", type=float, default=0.1,
                    help="share of cases that stop the victim (SIGSTOP past every timeout, then SIGCONT) instead of killing it")
    ap.add_argument("--layers", default=",".join(harness.LAYERS), help="comma-separated layers")
    ap.add_argument("--scale", type=float, default=harness.SCALE, help="factor on every timeout constant")
    ap.add_argument("--json", default=None, help="write every failure (and the table) here")
    ap.add_argument("--case", action="append", default=[], help="run only this case label (repeatable)")
    args = ap.parse_args(argv)

    if args.case:
        bad = 0
        for label in args.case:
            o = harness.run_case(parse_label(label), scale=args.scale)
            print(o.summary(), flush=True)
            bad += not o.ok
        return 1 if bad else 0

    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    layers = [x for x in args.layers.split(",") if x]
    found = points.discover()
    print(f"soak: seed {seed}; {len(found)} named points in the source "
          f"({', '.join(f'{k} {len(v)}' for k, v in points.by_layer(found).items()) or 'none'})", flush=True)
    censuses = {}
    for layer in layers:
        censuses[layer] = harness.census(layer, args.scale)
        reached = {r: len(c) for r, c in censuses[layer].items() if not r.startswith("_")}
        print(f"census {layer}: points reached per role {reached}", flush=True)
    unreached = sorted(set(found) - {n for roles in censuses.values() for r, c in roles.items()
                                     if r != "_failures" for n in c})
    if unreached:
        print(f"not reached by any scenario: {', '.join(unreached)}", flush=True)

    rows = collections.defaultdict(lambda: [0, 0, 0, 0, 0])    # cases, kills, stops, not reached, failures
    failures = []
    start = time.monotonic()
    stream = cycle(censuses, rng, args.stop_share)
    n = 0
    try:
        while n < args.cases:
            if args.minutes is not None and time.monotonic() - start > args.minutes * 60:
                break
            case = next(stream)
            o = harness.run_case(case, scale=args.scale)
            n += 1
            key = o.reached if o.reached and o.reached != "(timer)" else (
                "(timer)" if not case.point else case.point)
            row = rows[f"{case.layer}/{case.victim}: {key}"]
            for again in o.then_reached:          # faults in recovery have rows of their own
                r2 = rows[f"{case.layer}/{case.victim}: {again} (in recovery)"]
                r2[0] += 1
                r2[1] += 1
                r2[4] += not o.ok
            row[0] += 1
            row[1] += o.acted == "killed"
            row[2] += o.acted == "stopped"
            row[3] += o.acted not in ("killed", "stopped")
            if not o.ok:
                row[4] += 1
                failures.append(harness.to_json(o))
                print(f"FAIL {o.summary()}", flush=True)
            if n % 50 == 0:
                print(f"... {n} cases, {len(failures)} failures, {time.monotonic() - start:.0f} s", flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    print(f"\n{n} cases in {time.monotonic() - start:.0f} s, seed {seed}, {len(failures)} failures\n")
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seed": seed, "cases": n, "table": {k: v for k, v in rows.items()},
                       "failures": failures}, f, indent=1)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
