"""`make demo`: four processes log into one segment under ./demo-logs/ at once;
one is killed with SIGKILL in the middle of a message (between reserve and
finish); the survivors' messages are printed back in sequence order, then the
salvage report.  No server, no locks: every process writes straight into the
shared mapping.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
from datetime import datetime, timezone

import logkit
from logkit import Segment

HERE = os.path.dirname(os.path.abspath(__file__))
DIRECTORY = os.path.join(os.getcwd(), "demo-logs")
PATH = os.path.join(DIRECTORY, "demo")
MESSAGES = 6


def writer(name: str, ready, stopped, victim: bool) -> None:
    seg = Segment.open(PATH)
    ready.wait()                                  # all start together
    for i in range(MESSAGES):
        seg.write(f"{name}: message {i + 1} of {MESSAGES}", severity=20 + i % 3,
                  data=f'{{"writer": "{name}", "i": {i}}}'.encode(), data_class="json")
        if victim and i == 2:
            # Claim space, write half the text, and hang there: the parent kills us.
            text = f"{name}: this message is never finished".encode()
            r = seg.reserve(len(text))
            r.text[: len(text) // 2] = text[: len(text) // 2]
            print(f"  {name} (pid {os.getpid()}) reserved sequence {r.sequence} and stops mid-message",
                  flush=True)
            stopped.set()
            time.sleep(60)
        time.sleep(0.001)                         # let the writers interleave
    seg.close()


def main() -> int:
    os.makedirs(DIRECTORY, exist_ok=True)
    if os.path.exists(PATH):
        os.unlink(PATH)
    Segment.create(PATH, size=1 << 20, family="demo").close()
    print(f"logkit {logkit.__version__}: four writers, one segment at {PATH}")

    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    stopped = ctx.Event()
    names = ["alpha", "bravo", "charlie", "delta"]
    procs = {n: ctx.Process(target=writer, args=(n, ready, stopped, n == "charlie"), name=n) for n in names}
    for p in procs.values():
        p.start()
    ready.set()
    if not stopped.wait(timeout=60):
        print("the victim never reached its reservation", file=sys.stderr)
        return 1
    victim = procs["charlie"]
    os.kill(victim.pid, signal.SIGKILL)
    print(f"  killed charlie (pid {victim.pid}) with SIGKILL")
    for p in procs.values():
        p.join(timeout=60)

    seg = Segment.open(PATH, readonly=True)
    it = seg.messages()
    print(f"\n{'seq':>4}  {'time (UTC)':<15}  {'pid':>7}  sev  text")
    for m in it:
        t = datetime.fromtimestamp(m.time / 1e9, tz=timezone.utc).strftime("%H:%M:%S.%f")
        print(f"{m.sequence:>4}  {t:<15}  {m.process_id:>7}  {m.severity:>3}  {m.text}")
    for offset, seq in it.open_reservations:
        print(f"   -- sequence {seq} at offset {offset}: reserved, never finished (writer gone)")
    print(f"\nlimits: {seg.limits()}")
    print(f"stats:  {seg.stats()}")
    seg.close()

    print()
    print(logkit.salvage(PATH))
    after = Segment.open(PATH, readonly=True)
    print(f"after salvage: {len(list(after))} messages readable, "
          f"{after.stats()['abandoned']} abandoned, in service: {after.in_service}")
    after.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
