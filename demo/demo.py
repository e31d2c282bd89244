"""`make demo`: four processes log into one family of small segments under
./demo-logs/ at once, so the live segment fills and rotates into history
while they race; one writer is killed with SIGKILL in the middle of a message
(between reserve and finish).  The survivors' messages are printed back
through open_reader, in sequence order across every segment, followed by the
dead writer's open reservation and the salvage report.  No server, no locks.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import sys
import time
from datetime import datetime, timezone

import logkit

DIRECTORY = os.path.join(os.getcwd(), "demo-logs")
FAMILY = "demo"
MESSAGES = 20
SEGMENT_SIZE = 8192          # tiny on purpose: a few dozen messages per segment


def writer(name: str, ready, stopped, victim: bool) -> None:
    w = logkit.open_writer(DIRECTORY, FAMILY, segment_size=SEGMENT_SIZE)
    ready.wait(timeout=60)                        # all start together
    for i in range(MESSAGES):
        w.write(f"{name}: message {i + 1} of {MESSAGES}", severity=20 + i % 3,
                data=f'{{"writer": "{name}", "i": {i}}}'.encode(), data_class="json")
        if victim and i == MESSAGES // 2:
            # Claim space, write half the text, and hang there: the parent kills us.
            text = f"{name}: this message is never finished".encode()
            r = w.reserve(len(text))
            r.text[: len(text) // 2] = text[: len(text) // 2]
            print(f"  {name} (pid {os.getpid()}) reserved sequence {r.sequence} and stops mid-message",
                  flush=True)
            stopped.set()
            time.sleep(60)
        time.sleep(0.0005)                        # let the writers interleave
    w.close()


def main() -> int:
    shutil.rmtree(DIRECTORY, ignore_errors=True)
    os.makedirs(DIRECTORY)
    print(f"logkit {logkit.__version__}: four writers, one family '{FAMILY}' in {DIRECTORY}, "
          f"{SEGMENT_SIZE}-byte segments")

    ctx = mp.get_context("spawn")
    names = ["alpha", "bravo", "charlie", "delta"]
    ready, stopped = ctx.Barrier(len(names)), ctx.Event()
    procs = {n: ctx.Process(target=writer, args=(n, ready, stopped, n == "charlie"), name=n)
             for n in names}
    for p in procs.values():
        p.start()
    if not stopped.wait(timeout=60):
        print("the victim never reached its reservation", file=sys.stderr)
        return 1
    victim = procs["charlie"]
    os.kill(victim.pid, signal.SIGKILL)
    print(f"  killed charlie (pid {victim.pid}) with SIGKILL")
    for p in procs.values():
        p.join(timeout=60)
        if p is not victim and p.exitcode != 0:
            print(f"writer {p.name} failed with exit code {p.exitcode}", file=sys.stderr)
            return 1

    reader = logkit.open_reader(DIRECTORY, FAMILY)
    paths = reader.segment_paths()
    print(f"\nthe family: {len(paths) - 1} history segments and the live one")
    shown = paths if len(paths) <= 5 else paths[:3] + ["..."] + paths[-1:]
    for p in shown:
        print(f"  {os.path.basename(p)}")
    print(f"\n{'seq':>4}  {'time (UTC)':<15}  {'pid':>7}  sev  text")
    count, current = 0, None
    for m in reader:
        if m.segment is not current:
            current = m.segment
            print(f"     -- segment {os.path.basename(current.path)}")
        t = datetime.fromtimestamp(m.time / 1e9, tz=timezone.utc).strftime("%H:%M:%S.%f")
        print(f"{m.sequence:>4}  {t:<15}  {m.process_id:>7}  {m.severity:>3}  {m.text}")
        count += 1
    print(f"\n{count} messages from {len(names)} writers; limits: {reader.limits()}")

    for p in paths:
        seg = logkit.Segment.open(p, readonly=True)
        open_res = seg.scan()["reserved"]
        seg.close()
        for offset, seq, pid in open_res:
            print(f"open reservation: sequence {seq} at offset {offset} of {os.path.basename(p)}, "
                  f"writer pid {pid} (dead)")
            print(logkit.salvage(p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
