"""Shared benchmark harness: time a callable, print a table with ratios, write JSON.

Every bench_*.py builds a list of rows with `measure()` and hands it to
`report()`, which prints one table per subject and saves bench/results/NAME.json.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def measure(fn, n: int, repeat: int = 5) -> float:
    """Best-of-`repeat` nanoseconds per operation of fn(n), which performs n operations."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        fn(n)
        times.append((time.perf_counter_ns() - t0) / n)
    return min(times)


def median(values):
    return statistics.median(values)


def report(name: str, rows: list[dict], notes: list[str] | None = None) -> None:
    """rows: dicts with 'case', 'ns' (per op) and optionally 'ratio' and 'ratio_to'."""
    width = max(len(r["case"]) for r in rows) + 2
    print(f"\n== {name} ({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()})")
    print(f"{'case':<{width}}{'ns/op':>10}{'ops/s':>14}   ratio")
    for r in rows:
        ns = r["ns"]
        ratio = f"{r['ratio']:.2f}x {r.get('ratio_to', '')}" if "ratio" in r else ""
        print(f"{r['case']:<{width}}{ns:>10.1f}{1e9 / ns:>14,.0f}   {ratio}")
    for n in notes or []:
        print(f"  note: {n}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"name": name, "rows": rows, "notes": notes or []}, indent=2))
