"""`logkit print` over 1,000,000 messages, beside grep over the same messages as text (#7).

Two figures, each the whole command as a user runs it (a new process:
interpreter start-up and imports included), best of REPEAT runs, output
read through a pipe (not /dev/null: GNU grep notices an output of /dev/null
and stops at the first match, as with -q, so it would not scan at all; the
/dev/null row is shown for reference):

* `logkit print --match RARE DIR` (RARE in one message in ten thousand, so
  scanning dominates) beside `grep RARE FILE`, FILE holding the same
  messages as the lines `logkit print` would print. Target: within 5x.
* `logkit print DIR` of every message. Target: >= 500,000 messages/s.

Also shown: the interpreter start-up alone (`python -c "import logkit.cli"`)
and the same print through the Python pipeline (--reverse: no C scan), so
the share of each part is visible.  BENCH_PRINT_N overrides the count.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import report  # noqa: E402

N = int(os.environ.get("BENCH_PRINT_N", "1000000"))
REPEAT = 3


def _write(directory: str) -> str:
    import logkit
    w = logkit.open_writer(directory, "app", segment_size="64MiB")
    t0 = time.time_ns()
    for i in range(N):
        text = (f"request {i} from 10.0.{i % 256}.{i % 199} handled in {i % 997} ms RARE"
                if i % 10_000 == 5_000 else
                f"request {i} from 10.0.{i % 256}.{i % 199} handled in {i % 997} ms")
        w.write(text, 20 + (i % 3) * 10, time=t0 + i * 1000)
    w.close()
    # The same messages as plain text: the lines `logkit print` prints.
    txt = os.path.join(directory, "app.txt")
    with open(txt, "wb") as f:
        subprocess.run([sys.executable, "-m", "logkit", "print", "--no-header", "--colour", "never",
                        os.path.join(directory, "app")], stdout=f, check=True)
    return txt


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _time(cmd: list[str], devnull: bool = False) -> float:
    best = None
    for _ in range(REPEAT):
        if devnull:
            with open(os.devnull, "wb") as null:
                t0 = time.perf_counter()
                rc = subprocess.run(cmd, stdout=null, env=ENV).returncode
                dt = time.perf_counter() - t0
        else:
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=ENV)
            while p.stdout.read(1 << 20):
                pass
            rc = p.wait()
            dt = time.perf_counter() - t0
        if rc not in (0, 1):
            raise SystemExit(f"{' '.join(cmd)} exited {rc}")
        best = dt if best is None else min(best, dt)
    return best


def _scan_only(directory: str) -> float:
    """The C scan of --match RARE alone over every segment of the family, in
    this process (best of REPEAT, each on fresh mappings)."""
    import argparse
    from logkit import FamilyReader, Segment, _scan
    from logkit.select import Selection
    sel = Selection.from_args(argparse.Namespace(match=["RARE"]))
    paths = FamilyReader(directory, "app").segment_paths()
    best = None
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        sc = _scan.Scan(sel)
        found = 0
        for p in paths:
            seg = Segment.open(p, readonly=True)
            sc.walk(seg)
            found += sc.count()
            seg.close()
        dt = time.perf_counter() - t0
        assert found == N // 10_000, found
        best = dt if best is None else min(best, dt)
    return best


def main() -> None:
    import compileall
    import logkit
    # Byte-compile the package, as an installed package is (an environment
    # with PYTHONDONTWRITEBYTECODE would otherwise compile it at every start).
    compileall.compile_dir(os.path.dirname(logkit.__file__), quiet=1)
    d = tempfile.mkdtemp(prefix="lk-bench-print-")
    try:
        txt = _write(d)
        lines = sum(1 for _ in open(txt, "rb"))
        assert lines == N, (lines, N)
        seg = os.path.join(d, "app")
        lk = [sys.executable, "-m", "logkit", "print", "--colour", "never"]
        grep = shutil.which("grep") or "grep"
        t_grep = _time([grep, "RARE", txt])
        t_grep_null = _time([grep, "RARE", txt], devnull=True)
        t_match = _time(lk + ["--match", "RARE", seg])
        t_match_null = _time(lk + ["--match", "RARE", seg], devnull=True)
        t_scan = _scan_only(d)
        t_all = _time(lk + [seg])
        t_start = _time([sys.executable, "-c", "import logkit.cli.print_cmd"])
        t_bare = _time([sys.executable, "-c", "pass"])
        t_py = _time(lk + ["--reverse", seg]) if N <= 1_000_000 else None
        rows = [
            {"case": f"grep RARE (text file, {N:,} lines)", "ns": t_grep * 1e9},
            {"case": "grep RARE > /dev/null (stops at the first match)", "ns": t_grep_null * 1e9},
            {"case": "logkit print --match RARE", "ns": t_match * 1e9, "ratio": t_match / t_grep,
             "ratio_to": "of grep (target <= 5x)"},
            {"case": "logkit print --match RARE > /dev/null", "ns": t_match_null * 1e9,
             "ratio": t_match_null / t_grep, "ratio_to": "of grep"},
            {"case": "  of which: the C scan and match alone", "ns": t_scan * 1e9, "ratio": t_scan / t_grep,
             "ratio_to": "of grep"},
            {"case": "  of which: python start-up + imports", "ns": t_start * 1e9, "ratio": t_start / t_grep,
             "ratio_to": "of grep"},
            {"case": "  (python -c pass alone)", "ns": t_bare * 1e9},
            {"case": f"logkit print (all {N:,}), per message", "ns": t_all * 1e9 / N,
             "ratio": (N / t_all) / 500_000, "ratio_to": "of 500k msg/s (target >= 1x)"},
        ]
        if t_py is not None:
            rows.append({"case": "logkit print --reverse (Python pipeline), per message",
                         "ns": t_py * 1e9 / N, "ratio": t_py / t_all, "ratio_to": "of the C scan"})
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.startswith("app") and not f.endswith(".txt"))
        report("print", rows, notes=[
            f"{N:,} messages, {size / 2**20:.0f} MiB of segments, {os.path.getsize(txt) / 2**20:.0f} MiB of text",
            f"print --match RARE: {t_match * 1e3:.0f} ms vs grep {t_grep * 1e3:.0f} ms = {t_match / t_grep:.2f}x; "
            f"the scan itself {t_scan * 1e3:.0f} ms = {t_scan / t_grep:.2f}x, start-up {t_start * 1e3:.0f} ms",
            f"print all: {N / t_all:,.0f} messages/s ({t_all:.2f} s)",
        ])
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
