"""`logkit monitor [LOG ...]`: print new messages as writers finish them (MTB-666 monitor_sys_log).

A family (or segment) is followed with FamilyReader.follow(), which sleeps on
the live segment's futex: a finished message wakes it within microseconds,
and nothing polls.  `--interval SECONDS` polls instead (where futex is not
wanted, or for partitions and plain files, which are always polled).
Selection: --severity, --match, --exclude, --match-data, --exclude-data (the
steps of print_sys_log that do not need the end of the log).  `--call
COMMAND` runs COMMAND per message with the arguments family, sequence,
severity, text and expanded data, instead of printing.  Ctrl-C (SIGINT) or
SIGTERM ends it cleanly with status 0.
"""
from __future__ import annotations

import os
import queue
import shlex
import signal
import subprocess
import threading
import time as _time

from logkit.errors import LogkitError, NoSuchMessage

from .print_cmd import _rest, add_display_arguments, expand_for_data_tests, setup
from .sources import check_key_file, log_specs, resolve_all
from logkit.console import say


def add_parser(sub) -> None:
    from logkit.select import add_arguments
    p = sub.add_parser(
        "monitor", help="print new messages of logs as they are written",
        description="Print each new message of the logs as soon as its writer finishes it "
                    "(woken by the segment's futex; no polling where futex exists), with the "
                    "selection and display options of `logkit print`. Ends on Ctrl-C.",
        epilog="LOG as for `logkit print`. Exit status: 0 after Ctrl-C or SIGTERM (or "
               "--idle-timeout), 2 for an error (a missing log, a bad option value, a "
               "--call command that cannot be run).")
    p.add_argument("logs", nargs="*", metavar="LOG", help="the logs to monitor (default: every log of the configuration)")
    p.add_argument("-c", "--config", help="the config file (default: the search order)")
    p.add_argument("--key-file", help="key file for sealed logs given by path")
    p.add_argument("--family-name", metavar="NAME", help="which family of a directory that holds several")
    add_arguments(p, window=False)
    add_display_arguments(p)
    p.add_argument("--call", metavar="COMMAND",
                   help="run COMMAND (split like a shell command line, not run by a shell) for each "
                        "message, with the arguments: family, sequence, severity, text, expanded "
                        "data ('' without data; with --expand options, as they say); instead of "
                        "printing")
    p.add_argument("--interval", type=float, metavar="SECONDS",
                   help="poll every SECONDS instead of sleeping on the futex")
    p.add_argument("--existing", action="store_true",
                   help="first print the messages already in the log (default: only new ones)")
    p.add_argument("--idle-timeout", type=float, metavar="SECONDS",
                   help="stop after SECONDS with no new message (for scripts and tests)")
    p.set_defaults(run=run)


class _Follower(threading.Thread):
    """Feeds one source's new messages into a queue."""

    def __init__(self, src, q: queue.Queue, stop: threading.Event, interval, existing: bool, idle):
        super().__init__(daemon=True, name=f"logkit-monitor-{src.name}")
        self.src, self.q, self.stop, self.interval = src, q, stop, interval
        self.existing, self.idle = existing, idle
        self.error: BaseException | None = None

    def _start_after(self) -> int:
        if self.existing:
            return 0
        lim = self.src.reader.limits()
        return lim.last_sequence if lim is not None else 0

    def _appeared(self) -> bool:
        """A log not yet written when monitor started (reader None): wait
        until its directory exists, then open it; False when stopped or
        idle too long first."""
        from logkit.family import FamilyReader
        since = _time.monotonic()
        while not os.path.isdir(self.src.path):
            if self.stop.wait(0.05) or (self.idle is not None and _time.monotonic() - since > self.idle):
                return False
        self.src.reader = FamilyReader(self.src.path, self.src.family, key_file=self.src.key_file)
        return True

    def run(self) -> None:
        try:
            if self.src.reader is None:
                if not self._appeared():
                    return
                self.existing = True          # every message of a log new since we started is new
            after = self._start_after()
            r = self.src.reader
            if self.interval is None and hasattr(r, "follow"):
                if after:
                    try:
                        r.seek(sequence=after)
                    except NoSuchMessage:
                        pass
                for m in r.follow(stop=self.stop, idle_timeout=self.idle, poll_interval=0.05):
                    if m.sequence > after:
                        self.q.put((self.src, m))
            else:
                self._poll(after)
        except BaseException as e:          # reported by the main thread
            self.error = e
        finally:
            self.q.put((self.src, None))

    def _poll(self, after: int) -> None:
        r = self.src.reader
        interval = self.interval if self.interval is not None else 0.25
        idle_since = _time.monotonic()
        while not self.stop.is_set():
            got = False
            try:
                if hasattr(r, "seek"):
                    r.seek(sequence=after + 1)
                    it = iter(r)
                else:
                    it = iter(r)
                for m in it:
                    if m.sequence > after:
                        after = m.sequence
                        got = True
                        self.q.put((self.src, m))
            except NoSuchMessage:
                if hasattr(r, "rewind"):
                    r.rewind()
            if got:
                idle_since = _time.monotonic()
            elif self.idle is not None and _time.monotonic() - idle_since >= self.idle:
                return
            self.stop.wait(interval)


def run(args) -> int:
    """Ctrl-C at any moment, also while it is starting, ends it with status 0."""
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 0


def _run(args) -> int:
    from logkit import formatters as F
    cfg, sel, out, disp = setup(args)
    call = shlex.split(args.call) if args.call else None
    if args.call is not None and not call:
        raise LogkitError("--call: the command is empty")
    if args.interval is not None and not args.interval > 0:
        raise LogkitError(f"--interval {args.interval}: must be a number of seconds > 0")
    # A config log that has not been written yet is waited for (as tail -F
    # waits for a file), not refused.
    sources = resolve_all(log_specs(args.logs, cfg), config=cfg, key_file=check_key_file(args.key_file),
                          family_name=args.family_name, not_yet=True)
    for s in sources:
        if s.reader is None:
            say(f"logkit monitor: log {s.name}: waiting for its directory {s.path} to appear")
    stop = threading.Event()
    prev_term = signal.signal(signal.SIGTERM, lambda *_: stop.set()) \
        if threading.current_thread() is threading.main_thread() else None
    q: queue.Queue = queue.Queue()
    followers = [_Follower(s, q, stop, args.interval, args.existing, args.idle_timeout) for s in sources]
    for f in followers:
        f.start()
    running = len(followers)
    prev = None
    status = 0
    try:
        while running and not stop.is_set():
            try:
                src, m = q.get(timeout=0.2)
            except queue.Empty:
                continue
            if m is None:
                running -= 1
                continue
            if not _rest(sel, m, expand_for_data_tests) or (sel.severities is not None and m.severity not in sel.severities):
                continue
            if call:
                # The data by its class; with --expand options, as they say.
                how = disp.how_for(m) if disp.asked else "auto"
                expanded = F.expand(m, how) if how is not None and m.data else ""
                try:
                    subprocess.run(call + [src.name, str(m.sequence), str(m.severity), m.text, expanded],
                                   check=False)
                except OSError as e:
                    raise LogkitError(f"--call {args.call}: cannot run {call[0]}: {e.strerror}") from None
            else:
                out.line(disp.line(m, prev))
                out.flush()
                prev = m.text
        for f in followers:
            if f.error is not None and not isinstance(f.error, KeyboardInterrupt):
                if isinstance(f.error, LogkitError):
                    raise f.error
                raise LogkitError(f"{f.src.spec}: {type(f.error).__name__}: {f.error}")
    except KeyboardInterrupt:
        status = 0
    finally:
        stop.set()
        for f in followers:
            end_now = getattr(f.src.reader, "stop", None)    # a family reader's follow() ends at once
            if end_now is not None:
                end_now()
        for f in followers:
            f.join(2)
        if prev_term is not None:
            signal.signal(signal.SIGTERM, prev_term)
        for s in sources:
            s.close()
    return status
