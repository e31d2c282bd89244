"""The message server: drains buffers (partitions) and named pipes into storage.

Sits above the config layer and the backends.  It is never needed for
logging: writers fill partitions and spill files whether or not it runs.
It is what turns them into a durable history: `logkit server` runs it in the
foreground (for systemd or a supervisor), `logkit server --once` drains what
is pending and exits.  Progress lives in each buffer's own header (the
partition's drain progress), so a server stopped any way, SIGKILL included,
resumes exactly where it left off.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time as _time
from dataclasses import dataclass, field
from typing import Callable

from logkit import config as _config
from logkit import console, inject, safefs
from logkit.errors import DiskFull, LogkitError

__all__ = ["Server", "BufferWatch", "DEFAULT_MARGINS", "status_path", "read_status", "write_status"]

DEFAULT_MARGINS = (0.75, 0.90)
# A mark fires when the fill reaches it and re-arms only when the fill drops
# this far below it, so a fill that hovers at the mark fires once.
REARM_BELOW = 0.05
# The least time between two futex wake-ups of the server (see Server._sleep).
WAKE_INTERVAL = 0.02
WATCH_TIMEOUT = 0.25      # longest a partition's watcher sleeps before it looks again
DISK_RETRY = 1.0          # seconds between a pipe reader's tries while its journal's disk is full


def status_path(buffer_path: str) -> str:
    """Where the server keeps a buffer's margin counters (beside the buffer)."""
    return buffer_path + ".status"


STATUS_MODE = 0o640       # of the status file, whatever the umask


def read_status(buffer_path: str) -> dict | None:
    """The server's status for a buffer, or None if no server wrote one (or
    the name is not a regular file: a link there is not followed)."""
    try:
        fd = safefs.open_file(status_path(buffer_path), os.O_RDONLY)
    except (OSError, LogkitError):
        return None
    try:
        with os.fdopen(fd, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_status(buffer_path: str, data: dict) -> None:
    """Replace the status file of a buffer with `data` (JSON) in one rename:
    written to a temporary file with an unpredictable name (O_EXCL,
    O_NOFOLLOW, relative to the directory: logkit.safefs), mode 0640 whatever
    the umask.  A reader sees the old status or the new one, never a part.
    DiskFull (the old status stays, no temporary is left), UnsafePath (the
    directory is world-writable without the sticky bit), or LogkitError
    naming the file."""
    path = status_path(buffer_path)
    d, name = os.path.split(os.path.abspath(path))
    body = json.dumps(data).encode()
    dfd = safefs.open_directory(d)
    try:
        fd, tmp = safefs.create_temporary(dfd, name, STATUS_MODE, path_dir=d)
        try:
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            inject.point("server.status.written")     # the new status aside, the old in place
            safefs.replace_in(dfd, tmp, name, path=path)
        except OSError as e:
            safefs.unlink_in(dfd, tmp)
            raise safefs.translate_error(e, f"the status file {path}", "write") from None
        except BaseException:
            safefs.unlink_in(dfd, tmp)
            raise
    finally:
        os.close(dfd)


def _fill(storage) -> tuple[int, int]:
    """(bytes held, bytes of capacity) of a partition: the bytes of every half
    not yet drained (an emptied half holds nothing, whatever is still in it
    until it is reused), against both halves' room for messages."""
    from logkit.backends.partition import EMPTY
    held = cap = 0
    p = storage.partition
    for i, h in enumerate(p.halves):
        room = h.size - 4096
        cap += room
        try:
            used = 0 if p.phase(i) == EMPTY else h.used() - 4096
        except LogkitError:
            used = 0
        held += max(0, min(used, room))
    return held, cap


@dataclass
class BufferWatch:
    """Margin state of one buffer: which marks are armed, how often each fired."""
    path: str
    margins: tuple[float, ...]
    armed: dict[float, bool] = field(default_factory=dict)
    crossings: dict[float, int] = field(default_factory=dict)
    last_fill: float = 0.0

    def __post_init__(self):
        old = read_status(self.path) or {}
        for m in self.margins:
            key = f"{m:g}"
            self.crossings[m] = int(old.get("crossings", {}).get(key, 0))
            self.armed[m] = bool(old.get("armed", {}).get(key, True))

    def check(self, fill: float) -> list[float]:
        """The marks this fill crosses now (each once per crossing)."""
        self.last_fill = fill
        fired = []
        for m in self.margins:
            if self.armed[m] and fill >= m:
                self.armed[m] = False
                self.crossings[m] += 1
                fired.append(m)
            elif not self.armed[m] and fill < m - REARM_BELOW:
                self.armed[m] = True
        return fired

    def save(self, extra: dict) -> None:
        data = {"buffer": self.path, "pid": os.getpid(), "updated": _time.time_ns(),
                "fill": round(self.last_fill, 4),
                "margins": [f"{m:g}" for m in self.margins],
                "crossings": {f"{m:g}": n for m, n in self.crossings.items()},
                "armed": {f"{m:g}": a for m, a in self.armed.items()}, **extra}
        write_status(self.path, data)


def _check_margins(watch: BufferWatch, buffer, log_storage, what: str, log: str, say) -> int:
    """Measure `buffer` (a partition); for each mark it crosses now, write a
    warning with the figures into `log_storage` (30 below 90%, 40 from it)."""
    held, cap = _fill(buffer)
    fill = held / cap if cap else 0.0
    fired = watch.check(fill)
    for m in fired:
        text = (f"{what} {buffer.path} of log {log} is {fill:.0%} full "
                f"({held} of {cap} bytes): past its {m:.0%} margin")
        data = json.dumps({"buffer": buffer.path, "log": log, "margin": m,
                           "fill": round(fill, 4), "held": held, "capacity": cap}).encode()
        log_storage.write(text, 40 if m >= 0.9 else 30, data, "json")
        say(text)
    return len(fired)


class _PartitionJob:
    """A log whose storage is a partition: drain it into its family."""

    def __init__(self, lc, margins, say):
        self.lc = lc
        self.say = say
        self.storage = lc.open_storage()
        try:
            self.target = self.storage.open_drain_target()
        except BaseException:
            self.storage.close()
            raise
        self.watch = BufferWatch(self.storage.path, margins)
        self.drained = 0
        self._quit = threading.Event()
        self._watcher: threading.Thread | None = None

    def start_watching(self, news: threading.Event) -> None:
        """Sleep on this partition's current half in a thread of its own and
        set `news` when a writer finishes a message there or fills it (the
        swap takes it out of service).  One thread per partition, so the
        server wakes for news from any of its buffers, not only the first.
        The half is listened to with a minimum interval (WAKE_INTERVAL): its
        writers make at most one wake-up system call per interval."""
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, args=(news,), daemon=True,
                                             name=f"logkit-server-watch-{self.lc.name}")
            self._watcher.start()

    def _watch(self, news: threading.Event) -> None:
        p = self.storage.partition
        swaps = p.swaps()
        while not self._quit.is_set():
            try:
                half = self.current_half()
                if half is None or not half.in_service:
                    self._quit.wait(0.005)       # a swap in progress: look again shortly
                    continue
                if half.listener_slot is None:
                    half.listen(min_interval=WAKE_INTERVAL)
                ready = half.wait(half.used(), timeout=WATCH_TIMEOUT)
                # A half that was swapped out *and reused* before this thread
                # ran again looks in service and empty: the wait cannot tell.
                # The swap count can, so a full half is never left waiting
                # for the interval.
                now = p.swaps()
                if ready or now != swaps:
                    swaps = now
                    news.set()
            except (LogkitError, ValueError):
                # Closed under us (reload, stop), or a half being reformatted.
                self._quit.wait(0.05)

    def check_margins(self) -> int:
        return _check_margins(self.watch, self.storage, self.storage, "buffer", self.lc.name, self.say)

    def drain(self, everything: bool = True) -> int:
        inject.point("server.drain.start")
        n = self.storage.drain(self.target, everything=everything)
        inject.point("server.drain.done")         # copied; the count and status not yet saved
        self.drained += n
        return n

    def current_half(self):
        """The half writers fill now (as the partition's flags say), or None."""
        p = self.storage.partition
        i = p.current_index()
        return p.halves[i] if i is not None else None

    def save(self):
        self.watch.save({"log": self.lc.name, "drained_by_this_server": self.drained})

    def close(self):
        self._quit.set()
        if self._watcher is not None:
            self._watcher.join(WATCH_TIMEOUT + 5)
            self._watcher = None
        try:
            self.target.close()
        finally:
            self.storage.close()


class _PipeJob:
    """A log whose transport is a pipe: read its FIFO (and spill) into its storage."""

    def __init__(self, lc, margins, say):
        from logkit.backends.partition import PartitionStorage
        self.lc = lc
        self.say = say
        self.storage = lc.open_storage()
        self.fifo = lc.transport_options["fifo"]
        self.spill = lc.transport_options.get("spill") or self.fifo + ".spill"
        self.spill_size = lc.transport_options.get("spill_size")
        self.journal = lc.transport_options.get("journal")
        self.stop = threading.Event()
        self.stats: dict[str, int] = {}
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.stored = 0
        self._spill_storage = None
        if os.path.exists(self.spill):
            self._spill_storage = PartitionStorage(f"{lc.name}-spill", path=self.spill, size=self.spill_size,
                                                   key_file=getattr(self.storage, "key_file", None))
            self.watch = BufferWatch(self.spill, margins)
        else:
            self.watch = None

    def start(self):
        from logkit.backends.pipe import drain_pipe

        def run():
            # A full disk is waited out, not fatal: the bytes are still in
            # the FIFO (the journal had not taken them), the writers spill
            # meanwhile, and the reader starts again once space returns.
            full = False
            while not self.stop.is_set():
                try:
                    self.stored += drain_pipe(self.fifo, self.storage, stop=self.stop, spill=self.spill,
                                              stats=self.stats, journal=self.journal)
                    return
                except DiskFull as e:
                    if not full:
                        self.say(f"pipe of log {self.lc.name}: {e}; trying again every {DISK_RETRY:g} s")
                    full = True
                    self.stop.wait(DISK_RETRY)
                except BaseException as e:      # reported by the main loop
                    self.error = e
                    return
        self.thread = threading.Thread(target=run, name=f"logkit-pipe-{self.lc.name}", daemon=True)
        self.thread.start()

    def once(self) -> int:
        from logkit.backends.pipe import drain_pipe
        n = drain_pipe(self.fifo, self.storage, idle_timeout=0, spill=self.spill, stats=self.stats,
                       journal=self.journal)
        self.stored += n
        return n

    def check_margins(self) -> int:
        if self._spill_storage is None:
            return 0
        return _check_margins(self.watch, self._spill_storage, self.storage, "spill buffer",
                              self.lc.name, self.say)

    def save(self):
        if self.watch is not None:
            self.watch.save({"log": self.lc.name, "stored_by_this_server": self.stored})

    def close(self):
        self.stop.set()
        if self.thread is not None:
            self.thread.join(30)
        if self._spill_storage is not None:
            self._spill_storage.close()
        self.storage.close()


class Server:
    """Drains every partition and pipe of a configuration.

    Server(config=None, margins=(0.75, 0.90), interval=0.2, say=print-to-stderr)
    * run_once(): drain everything pending and return the number of messages.
    * serve(stop=None): drain until `stop` is set (or SIGTERM/SIGINT when
      install_signals() was called); SIGHUP reloads the configuration.
    """

    def __init__(self, config: str | os.PathLike | None = None, margins=DEFAULT_MARGINS,
                 interval: float = 0.2, say: Callable[[str], None] | None = None):
        self.config_path = config
        self.margins = tuple(sorted(float(m) for m in margins))
        for m in self.margins:
            if not 0 < m <= 1:
                raise LogkitError(f"margin {m!r}: a high-water mark is a fraction in (0, 1]")
        self.interval = float(interval)
        self.say = say or (lambda s: console.say(f"logkit server: {s}"))
        self.stop_event = threading.Event()
        self.reload_event = threading.Event()
        self._news = threading.Event()      # set by partition watchers and by signals
        self.jobs: list = []
        self.cycles = 0
        self._load()

    # ------------------------------------------------------------ configuration

    def _load(self) -> None:
        cfg = _config.load(self.config_path)
        jobs = []
        try:
            for lc in cfg.logs.values():
                if lc.storage == "partition":
                    jobs.append(_PartitionJob(lc, self.margins, self.say))
                if lc.transport == "pipe":
                    jobs.append(_PipeJob(lc, self.margins, self.say))
        except BaseException:
            for j in jobs:
                j.close()
            raise
        self.config_file = cfg.path
        self.jobs = jobs
        self.say(f"{cfg.path}: {sum(isinstance(j, _PartitionJob) for j in jobs)} partition(s), "
                 f"{sum(isinstance(j, _PipeJob) for j in jobs)} pipe(s)")

    def reload(self) -> bool:
        """Re-read the configuration.  A configuration with errors is reported
        and the running one kept."""
        try:
            _config.load(self.config_path)
        except LogkitError as e:
            self.say(f"reload refused, keeping the running configuration: {e}")
            return False
        self._close_jobs()
        self._load()
        return True

    def _close_jobs(self) -> None:
        for j in self.jobs:
            try:
                j.close()
            except Exception as e:          # closing one must not stop closing the others
                self.say(f"closing {j.lc.name}: {e}")
        self.jobs = []

    # ------------------------------------------------------------ work

    def check_margins(self) -> int:
        """Write a warning into each buffer that crossed a margin since the
        last check; returns how many fired."""
        return sum(j.check_margins() for j in self.jobs)

    def drain(self, everything: bool = True) -> int:
        """One pass over every partition (the pipes drain in their threads):
        the full halves, and with `everything` the half being written too
        (swapped first when the other half is empty)."""
        return sum(j.drain(everything) for j in self.jobs if isinstance(j, _PartitionJob))

    def _sleep(self, stop: threading.Event, timeout: float) -> None:
        """Until a partition has news (its watcher thread, woken by the
        futex of the partition's current half, sets `_news`: see
        _PartitionJob.start_watching), a stop or reload signal, or
        `timeout` seconds."""
        self._news.wait(timeout)
        self._news.clear()

    def _save(self) -> None:
        for j in self.jobs:
            try:
                j.save()
            except (OSError, LogkitError) as e:
                # A status file is a report, not the log: a full disk or a
                # refused directory is said, and draining goes on.
                self.say(f"cannot write the status of {j.lc.name}: {e}")
        inject.point("server.saved")

    def run_once(self) -> int:
        """Drain everything pending, once: partitions (both halves) and pipes
        (until nothing more is waiting, spill included)."""
        try:
            self.check_margins()
            n = self.drain()
            n += sum(j.once() for j in self.jobs if isinstance(j, _PipeJob))
            self._save()
            return n
        finally:
            self._close_jobs()

    def install_signals(self) -> None:
        """SIGTERM and SIGINT: finish the copy in progress and stop; SIGHUP: reload."""
        def on(event):
            def handler(*_):
                event.set()
                self._news.set()             # the main loop wakes at once
            return handler
        signal.signal(signal.SIGTERM, on(self.stop_event))
        signal.signal(signal.SIGINT, on(self.stop_event))
        signal.signal(signal.SIGHUP, on(self.reload_event))

    def serve(self, stop: threading.Event | None = None) -> int:
        """Drain until stopped; returns the number of messages copied."""
        stop = stop or self.stop_event
        total = 0
        next_full = 0.0
        try:
            self._start_pipes()
            while not (stop.is_set() or self.stop_event.is_set()):
                if self.reload_event.is_set():
                    self.reload_event.clear()
                    if self.reload():
                        self._start_pipes()
                self.check_margins()
                # Full halves at once; the half being written (a swap) once
                # an interval, so a trickle of messages does not swap the
                # halves at every message.
                now = _time.monotonic()
                everything = now >= next_full
                if everything:
                    next_full = now + self.interval
                total += self.drain(everything)
                for j in self.jobs:
                    if isinstance(j, _PipeJob) and j.error is not None:
                        raise LogkitError(f"pipe of log {j.lc.name}: {j.error}") from j.error
                if everything:
                    self._save()
                self.cycles += 1
                if not (stop.is_set() or self.stop_event.is_set()):
                    self._sleep(stop, max(0.001, min(self.interval, next_full - _time.monotonic())))
            total += self.drain()           # what came in while stopping
            self._save()
        finally:
            pipes = [j for j in self.jobs if isinstance(j, _PipeJob)]
            self._close_jobs()              # joins the pipe threads
            total += sum(j.stored for j in pipes)
        return total

    def _start_pipes(self) -> None:
        for j in self.jobs:
            if isinstance(j, _PipeJob) and j.thread is None:
                j.start()
            elif isinstance(j, _PartitionJob):
                j.start_watching(self._news)
