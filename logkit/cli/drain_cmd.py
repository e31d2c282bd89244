"""`logkit drain`: copy buffered messages into their log's storage.

Without --pipe: every partition (laurel/hardy) storage of the named logs is
drained into its destination family, once.  With --pipe: the log's named
FIFO is read into its storage until Ctrl-C / SIGTERM, --idle-timeout, or,
with --once, until nothing more is pending; its spill partition is drained
too.
"""
from __future__ import annotations

import signal
import threading

from logkit import config as _config
from logkit.errors import LogkitError
from logkit.console import say


def add_parser(sub) -> None:
    p = sub.add_parser("drain", help="copy partitions (or a named pipe) into storage",
                       description=__doc__.split("\n\n", 1)[1].replace("\n", " "))
    p.add_argument("logs", nargs="*", metavar="LOG", help="log names from the config (default: all)")
    p.add_argument("--config", "-c", help="the config file (default: the search order)")
    p.add_argument("--pipe", action="store_true", help="read the log's FIFO (transport 'pipe') into its storage")
    p.add_argument("--once", action="store_true", help="with --pipe: stop once nothing more is pending")
    p.add_argument("--idle-timeout", type=float, default=None, metavar="SECONDS",
                   help="with --pipe: stop after this long without a record")
    p.add_argument("--all", action="store_true",
                   help="also swap and drain the current half of each partition (default: only full halves)")
    p.set_defaults(run=run)


def _logs(args):
    cfg = _config.load(args.config)
    names = args.logs or list(cfg.logs)
    return [cfg.get(n) for n in names]


def run(args) -> int:
    if args.pipe:
        return _run_pipe(args)
    done = 0
    for lc in _logs(args):
        if lc.storage != "partition":
            if args.logs:
                raise LogkitError(f"log {lc.name}: storage is '{lc.storage}', not 'partition': nothing to drain "
                                  "(use --pipe for a pipe transport)")
            continue
        storage = lc.open_storage()
        try:
            target = storage.open_drain_target()
            try:
                n = storage.drain(target, everything=args.all)
            finally:
                target.close()
        finally:
            storage.close()
        print(f"{lc.name}: {n} message{'s' if n != 1 else ''} drained into {target.describe()}")
        done += 1
    if not done and not args.logs:
        say("no log with partition storage in the configuration")
    return 0


def _run_pipe(args) -> int:
    from logkit.backends.pipe import drain_pipe
    logs = _logs(args)
    pipes = [lc for lc in logs if lc.transport == "pipe"]
    if args.logs:
        for lc in logs:
            if lc.transport != "pipe":
                raise LogkitError(f"log {lc.name}: transport is '{lc.transport}', not 'pipe'")
    if len(pipes) != 1:
        raise LogkitError("--pipe drains one log at a time: name it"
                          + (f" (pipe logs: {', '.join(lc.name for lc in pipes)})" if pipes else
                             " (no log in the configuration uses transport 'pipe')"))
    lc = pipes[0]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    storage = lc.open_storage()
    idle = args.idle_timeout if args.idle_timeout is not None else (0 if args.once else None)
    try:
        n = drain_pipe(lc.transport_options["fifo"], storage, stop=stop, idle_timeout=idle,
                       spill=lc.transport_options.get("spill"), journal=lc.transport_options.get("journal"))
    finally:
        storage.close()
    print(f"{lc.name}: {n} record{'s' if n != 1 else ''} from {lc.transport_options['fifo']} "
          f"into {storage.describe()}")
    return 0
