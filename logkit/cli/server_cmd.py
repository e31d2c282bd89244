"""`logkit server`: drain every partition and pipe of the configuration into storage."""
from __future__ import annotations

import os
import signal

from logkit.server import DEFAULT_MARGINS, Server


def _margins(text: str) -> tuple[float, ...]:
    out = []
    for part in text.split(","):
        part = part.strip().rstrip("%")
        v = float(part)
        out.append(v / 100 if v > 1 else v)
    return tuple(out)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "server", help="drain partitions and pipes into their storage (foreground)",
        description="Run the message server in the foreground (for systemd or a supervisor): it drains "
                    "every partition (storage 'partition') and every named pipe (transport 'pipe') of "
                    "the configuration into storage, and writes a warning into a buffer's log when it "
                    "fills past a high-water mark. Progress is kept in each buffer's own header, so a "
                    "server stopped in any way resumes where it left off. SIGTERM/SIGINT: finish the "
                    "copy in progress, record progress, exit 0. SIGHUP: reload the configuration.")
    p.add_argument("--config", "-c", help="the config file (default: the search order)")
    p.add_argument("--once", action="store_true", help="drain everything pending, then exit")
    p.add_argument("--interval", type=float, default=0.2, metavar="SECONDS",
                   help="how often partitions are checked and drained (default 0.2)")
    p.add_argument("--margins", type=_margins, default=DEFAULT_MARGINS, metavar="LIST",
                   help="high-water marks, e.g. '75,90' or '0.75,0.9' (default 75%%, 90%%)")
    p.set_defaults(run=run)


def run(args) -> int:
    # A signal that arrives while the configuration loads (a supervisor's
    # SIGHUP or SIGTERM right after start) is kept and acted on once the
    # server's own handlers are in place, never the default action.
    early: list[int] = []
    if not args.once:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda s, _f: early.append(s))
    server = Server(args.config, margins=args.margins, interval=args.interval)
    if args.once:
        n = server.run_once()
        server.say(f"drained {n} message{'s' if n != 1 else ''}")
        return 0
    server.install_signals()
    for sig in early:
        os.kill(os.getpid(), sig)             # through the handlers just installed
    n = server.serve()
    server.say(f"stopped after {server.cycles} cycles, {n} message{'s' if n != 1 else ''} drained")
    return 0
