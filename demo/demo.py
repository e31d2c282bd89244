"""`make demo`: four processes log through the stdlib `logging` module with
logkit.Handler, configured from demo/logkit.toml, into one family of small
segments under ./demo-logs/ at once, so the live segment fills and rotates
into history while they race; one writer is killed with SIGKILL in the middle
of a message (between reserve and finish).  The survivors' messages are
printed back through open_reader, in sequence order across every segment,
followed by the dead writer's open reservation and the salvage report.  No
server, no locks.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
import signal
import sys
import time
from datetime import datetime, timezone

import logkit
import logkit.config

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "logkit.toml")
DIRECTORY = os.path.normpath(os.path.join(os.path.dirname(CONFIG), "..", "demo-logs"))
FAMILY = "demo"
MESSAGES = 20
LEVELS = (logging.INFO, logging.WARNING, logging.ERROR)


def writer(name: str, ready, stopped, victim: bool) -> None:
    handler = logkit.Handler("demo", CONFIG)          # the [log.demo] table of demo/logkit.toml
    log = logging.getLogger(f"demo.{name}")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    ready.wait(timeout=60)                            # all start together
    for i in range(MESSAGES):
        log.log(LEVELS[i % 3], "%s: message %d of %d", name, i + 1, MESSAGES,
                extra={"writer": name, "i": i})
        if victim and i == MESSAGES // 2:
            # Claim space through the low-level API, write half the text, and
            # hang there: the parent kills us between reserve and finish.
            text = f"{name}: this message is never finished".encode()
            r = handler.storage.writer.reserve(len(text))
            r.text[: len(text) // 2] = text[: len(text) // 2]
            print(f"  {name} (pid {os.getpid()}) reserved sequence {r.sequence} and stops mid-message",
                  flush=True)
            stopped.set()
            time.sleep(60)
        time.sleep(0.0005)                            # let the writers interleave
    handler.close()


def main() -> int:
    shutil.rmtree(DIRECTORY, ignore_errors=True)
    lc = logkit.config.load(CONFIG).get("demo")
    print(f"logkit {logkit.__version__}: four writers log through logging + logkit.Handler, "
          f"configured by {os.path.relpath(CONFIG)}:\n  storage {lc.storage} (family '{FAMILY}' in "
          f"{DIRECTORY}, {lc.storage_options['segment_size']}-byte segments), transport {lc.transport}")

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
    print(f"\n{'seq':>4}  {'time (UTC)':<15}  {'pid':>7}  sev  text  [data]")
    count, current = 0, None
    for m in reader:
        if m.segment is not current:
            current = m.segment
            print(f"     -- segment {os.path.basename(current.path)}")
        t = datetime.fromtimestamp(m.time / 1e9, tz=timezone.utc).strftime("%H:%M:%S.%f")
        data = f"  [{m.data_class}] {bytes(m.data).decode()}" if m.data_class else ""
        print(f"{m.sequence:>4}  {t:<15}  {m.process_id:>7}  {m.severity:>3}  {m.text}{data}")
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
