"""Run one crash-matrix case: real processes over real files, one of them
killed (SIGKILL) or stopped (SIGSTOP for longer than every timeout the code
uses, then SIGCONT) at a named injection point or at a random instant, then
the checks.

A case is (layer, victim role, point, action, hit, seed[, late, then]):

* layer "core": writers share one segment (write, write_as, reserve/finish,
  and logkit.inject.write_stepwise, whose C steps are the core.write.* points);
  "family": writers share a family of 8 KiB segments that rotate all the
  time (write, write_as, reserve/finish, and logging through logkit.Handler);
  "partition": writers fill a two-half partition of 32 KiB halves that
  `logkit server` drains (and swaps) into a family; "overflow": the same
  with 8 KiB halves, so undrained halves are reused (loss reports, loss
  counters) all the time; "pipe": writers log through a FIFO that
  `logkit server` reads, journals and stores into a family (spilling when
  nobody reads).  A reader process reads throughout every case.
* victim "writer" (writer 0) or "server" (the `logkit server` process).
* point: a name found by points.discover(), "*" (the hit-th point reached,
  whatever its name: a random instant) or "" (no point: the parent kills
  or stops the victim once it has acknowledged `hit` messages, or, for the
  server, after `hit` milliseconds).
* late: a killed server is restarted only after every writer has exited
  (else at once, as a supervisor would); then: points at which the 1st,
  2nd, ... restart of a killed server is killed in turn (faults in recovery;
  chain() builds one that visits every server point of a layer).

The checks (Outcome.failures lists each one that did not hold):

* every acknowledged message is read back exactly once, whole (checksum,
  text, severity, data); in a partition (or a pipe's spill), one missing
  only if the loss counters count it; nothing is read twice, nothing
  unknown is read;
* the readers never crash: the reader process that reads throughout, the
  final reader (a subprocess: readcheck.py) and `logkit print` exit cleanly
  (a LogkitError is a refusal, noted), and print shows what the reader reads;
* the next writer recovers unaided: a fresh writer process writes its
  messages within RECOVERY_S (while a stopped victim is still stopped) and
  they are read back; the other writers get no refusal; a fresh server
  (`logkit server --once`) drains and exits 0;
* counters balance: after salvage, every segment's reserved sequence numbers
  are finished or abandoned, nothing open or damaged, the written counter
  lags the finished messages by at most the number of processes killed; a
  partition's `drained` equals the messages its family received.
"""
from __future__ import annotations

import collections
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

import procs  # noqa: E402
from crashmatrix import points as _points  # noqa: E402
from crashmatrix import runtime  # noqa: E402
from crashmatrix.children import child_reader, child_writer, read_acks  # noqa: E402
from logkit import inject  # noqa: E402
from waiting import WaitTimeout, wait_until  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable
LAYERS = ("core", "family", "partition", "overflow", "pipe")
KIND = {"overflow": "partition"}     # a scenario that is another's with other sizes
ROLES = {"core": ("writer",), "family": ("writer",), "partition": ("writer", "server"),
         "overflow": ("writer", "server"),
         "pipe": ("writer", "server")}
SCALE = 0.2                  # every timeout constant, in every process of a case
RECOVERY_S = 30.0            # a fresh writer must finish within this
WRITERS = 3
COUNT = {"core": 240, "family": 300, "partition": 300, "overflow": 300, "pipe": 240}
FRESH = 40                   # messages of the fresh writer after the fault
FRESH_WRITER = 9            # the first fresh writer's number (a second one, if any, is 10)
FRESH_IDS = (9, 10)


@dataclass
class Case:
    layer: str
    victim: str = "writer"
    point: str = "*"
    action: str = "kill"
    hit: int = 1
    seed: int = 0
    late: bool = False    # a killed server is restarted only once every writer has closed (a
                          # supervisor that restarts late, writers that exit meanwhile)
    then: str = ""        # "NAME=kill@N;NAME=kill@N...": armed in the 1st, 2nd... restart of a killed
                          # server (faults in recovery: each restart is killed at the next one)

    def label(self) -> str:
        p = self.point or "(timer)"
        then = f"/then={self.then}" if self.then else ""
        late = "/late" if self.late else ""
        return f"{self.layer}/{self.victim}/{p}/{self.action}@{self.hit}/seed={self.seed}{late}{then}"


@dataclass
class Outcome:
    case: Case
    reached: str | None = None          # the point the victim acted at (None: not reached)
    then_reached: list = field(default_factory=list)   # the points the restarted servers died at
    acted: str = ""                     # "killed", "stopped", "" or "gone" (nothing happened)
    failures: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    acked: int = 0
    read: int = 0
    lost_counted: int = 0
    seconds: float = 0.0
    recovery: dict = field(default_factory=dict)   # role -> {point: visits} after the fault (fresh
                                                   # writers, restarted and --once servers)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        head = f"{self.case.label()}: reached {self.reached or '-'} ({self.acted or 'no fault'})"
        if self.ok:
            return head + f", ok ({self.acked} acknowledged, {self.read} read)"
        return head + "\n  " + "\n  ".join(self.failures)


def stop_seconds(scale: float = SCALE) -> float:
    """How long a stopped victim stays stopped: longer than every timeout."""
    return runtime.longest_timeout(scale) + 1.0


# ------------------------------------------------------------------ set-up

def _config(layer: str, d: str, scale: float) -> dict:
    cfg = {"scale": scale, "pace": 0.0005}
    if layer == "core":
        cfg["path"] = os.path.join(d, "core.seg")
    elif layer == "family":
        cfg.update(directory=os.path.join(d, "fam"), family="app", segment_size="8KiB",
                   rotation_timeout=5.0 * scale, wait_timeout=30.0 * scale)
    elif layer == "overflow":
        # halves so small that the writers fill both before the server's
        # next drain: the reuse of an undrained half, its loss report and
        # its counters run all the time
        cfg.update(name="buf", path=os.path.join(d, "buf.part"), size="8KiB",
                   directory=os.path.join(d, "fam"), family="buf", pace=0.001)
    elif layer == "partition":
        cfg.update(name="buf", path=os.path.join(d, "buf.part"), size="32KiB",
                   directory=os.path.join(d, "fam"), family="buf", pace=0.01)
    elif layer == "pipe":
        # paced so the writing lasts about two seconds: a server killed and
        # restarted (again and again in a chain) still finds records coming
        cfg.update(name="p", fifo=os.path.join(d, "p.fifo"), spill=os.path.join(d, "p.fifo.spill"),
                   spill_size="1MiB", directory=os.path.join(d, "fam"), family="p", pace=0.15)
    return cfg


def _write_toml(layer: str, cfg: dict, d: str) -> str:
    path = os.path.join(d, "logkit.toml")
    if layer == "partition":
        text = (f'[log.{cfg["name"]}]\nstorage = "partition"\npath = "{cfg["path"]}"\nsize = "{cfg["size"]}"\n'
                f'directory = "{cfg["directory"]}"\nfamily = "{cfg["family"]}"\nsegment_size = "64KiB"\n')
    else:
        text = (f'[log.{cfg["name"]}]\nstorage = "family"\ndirectory = "{cfg["directory"]}"\n'
                f'family = "{cfg["family"]}"\ncreate_directory = true\nsegment_size = "64KiB"\n'
                f'transport = "pipe"\nfifo = "{cfg["fifo"]}"\nspill = "{cfg["spill"]}"\n'
                f'spill_size = "{cfg["spill_size"]}"\n')
    with open(path, "w") as f:
        f.write(text)
    return path


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def _env(scale: float, arm: str | None = None, notify: str | None = None,
         census: str | None = None, names=()) -> dict:
    env = dict(os.environ)
    env.pop(inject.ENV, None)
    env.pop(inject.ENV_NOTIFY, None)
    env.pop(runtime.ENV_CENSUS, None)
    env[runtime.ENV_SCALE] = repr(scale)
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([TESTS_DIR] + [p for p in parts if p != TESTS_DIR])
    if arm:
        env[inject.ENV] = arm
        env[inject.ENV_NOTIFY] = notify
    if census:
        env[runtime.ENV_CENSUS] = census
        env["CRASHMATRIX_CENSUS_NAMES"] = ",".join(names)
    return env


class _Armed:
    """os.environ armed while one spawned child starts (spawn copies it)."""

    def __init__(self, spec, notify):
        self.spec, self.notify = spec, notify

    def __enter__(self):
        if self.spec:
            os.environ[inject.ENV] = self.spec
            os.environ[inject.ENV_NOTIFY] = self.notify

    def __exit__(self, *exc):
        os.environ.pop(inject.ENV, None)
        os.environ.pop(inject.ENV_NOTIFY, None)


_started: list = []         # every server process of the case running now (killed if the case is cut short)


def _server(cfg_toml: str, env: dict, log: str, once: bool = False) -> subprocess.Popen:
    args = [PY, os.path.join(HERE, "serve.py"), "server", "-c", cfg_toml]
    args += ["--once"] if once else ["--interval", "0.3"]
    with open(log, "ab") as err:
        p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err, cwd=TESTS_DIR)
    _started.append(p)
    return p


def _notified(notify: str):
    try:
        with open(notify) as f:
            for line in f:
                name, _, pid = line.strip().rpartition(" ")
                if name:
                    return name, int(pid)
    except FileNotFoundError:
        pass
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _tail(path: str, n: int = 1500) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
        return data[-n:].decode(errors="replace")
    except OSError:
        return ""


# ------------------------------------------------------------------ one case

def run_case(case: Case, workdir: str | None = None, scale: float = SCALE, census_names=None,
             keep: bool = False) -> Outcome:
    """Run `case`; with census_names (a list, maybe empty) run it without a
    fault, counting points instead (Outcome.notes[0] is then the census)."""
    own = workdir is None
    d = tempfile.mkdtemp(prefix="crashmatrix-") if own else workdir
    try:
        return _run(case, d, scale, census_names)
    finally:
        while _started:                 # (each one by its own pid)
            p = _started.pop()
            if p.poll() is None:
                p.kill()
                p.wait()
        if own and not keep:
            import shutil
            shutil.rmtree(d, ignore_errors=True)


def _run(case: Case, d: str, scale: float, census_names) -> Outcome:
    t0 = time.monotonic()
    out = Outcome(case)
    cfg = _config(case.layer, d, scale)
    layer = KIND.get(case.layer, case.layer)
    cfg["foreign_pid"] = _dead_pid()
    cfg_json = os.path.join(d, "case.json")
    with open(cfg_json, "w") as f:
        json.dump(cfg, f)
    toml = _write_toml(layer, cfg, d) if layer in ("partition", "pipe") else None
    if layer == "core":
        from logkit import Segment
        Segment.create(cfg["path"], size=1 << 20, family="core").close()
    notify = os.path.join(d, "notify")
    thens = [t for t in case.then.split(";") if t]
    census = census_names is not None
    names = list(census_names) if census else sorted(_points.discover())
    spec = None
    if not census and case.point:
        spec = f"{case.point}={case.action}@{case.hit}"
    log = os.path.join(d, "server.log")
    census_files = {}
    recovery_files = []         # (role, census file) of every process started after the fault
    server = None
    kills = 0
    if layer in ("partition", "pipe"):
        cf = os.path.join(d, "census.server.json") if census else None
        census_files["server"] = cf
        armed = spec if case.victim == "server" else None
        server = _server(toml, _env(scale, armed, notify, cf, names), log)
    victim_pid = server.pid if server is not None and case.victim == "server" else None
    first_server = server.pid if server is not None else None
    count = COUNT[layer]
    with procs.Group() as g:
        go = procs.CTX.Event()
        writers = []
        for w in range(WRITERS):
            acks = os.path.join(d, f"acks.{w}")
            cf = os.path.join(d, f"census.writer{w}.json")
            if census:
                census_files[f"writer{w}"] = cf
            else:
                recovery_files.append(("writer", cf))    # (what the others meet after the fault)
            armed = spec if (case.victim == "writer" and w == 0) else None
            with _Armed(armed, notify):
                k = g.spawn(child_writer, layer, cfg, w, 0, count, acks, go, names, cf, name=f"writer-{w}")
            writers.append(k)
        cf = os.path.join(d, "census.reader.json")
        if census:
            census_files["reader"] = cf
        reader = g.spawn(child_reader, layer, cfg, names, cf, name="reader")
        for k in writers + [reader]:
            k.expect("ready")
        if case.victim == "writer":
            victim_pid = writers[0].pid
        go.set()
        # ---- the fault
        deadline = time.monotonic() + 120
        timer_at = time.monotonic() + case.hit / 1000.0 if (not case.point and case.victim == "server") else None
        pending = set(writers)
        done = {}

        freshes = []                # [(child, started, writer number)]

        def start_fresh():
            """The fresh writer of the recovery check: started as soon as a
            victim is stopped (it must get through while the victim stalls),
            else once the fault is over."""
            w = FRESH_IDS[len(freshes)]
            cf = os.path.join(d, f"census.fresh{w}.json")
            recovery_files.append(("writer", cf))
            freshes.append((g.spawn(child_writer, layer, cfg, w, 0, FRESH, os.path.join(d, f"acks.{w}"),
                                    None, names, cf, name=f"fresh-writer-{w}"), time.monotonic(), w))

        def stall():
            """The victim is stopped: keep it so past every timeout while a
            fresh writer starts and (it should) gets its messages through."""
            if len(freshes) == len(FRESH_IDS):
                time.sleep(stop_seconds(scale))     # the stop's length is the behaviour under test
                return
            start_fresh()
            end = time.monotonic() + stop_seconds(scale)
            acks = os.path.join(d, f"acks.{freshes[-1][2]}")
            finished = None
            while time.monotonic() < end:
                if finished is None:
                    a, e = read_acks(acks)
                    if len(a) + len(e) >= FRESH:
                        finished = time.monotonic() - freshes[-1][1]
                time.sleep(0.01)                    # the poll interval within the stop's window
            if finished is None:
                out.failures.append(f"recovery: a fresh writer did not get its {FRESH} messages through while "
                                    f"the victim stayed stopped for {stop_seconds(scale):.1f} s (longer than "
                                    f"every timeout): {len(read_acks(acks)[0])} acknowledged")
            else:
                out.notes.append(f"the fresh writer finished in {finished:.2f} s while the victim was stopped")

        def supervised(k, kind, timeout):
            """k.expect(kind), acting on the victim (and restarting a killed
            server) meanwhile, as the main loop does."""
            end = time.monotonic() + timeout
            while True:
                if k.conn.poll(0.01):
                    msg = k.recv(max(0.5, end - time.monotonic()))     # (a "hello" first, handled by recv)
                    if msg[0] == kind:
                        return msg[1:]
                    continue
                if not census:
                    nonlocal kills
                    kills += fault()
                if time.monotonic() > end:
                    raise procs.ChildFailed(f"{k.name}: no {kind!r} within {timeout} s")
                if k.process.exitcode is not None and not k.conn.poll(0):
                    k.recv(1)       # raises ChildFailed with what it said, or that it died

        def restart():
            """The killed server's restart (as a supervisor would), at once,
            armed with the next point of case.then if any."""
            nonlocal server
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                out.failures.append("the killed server did not die")
            cf = os.path.join(d, f"census.restart{len(recovery_files)}.json")
            recovery_files.append(("server", cf))
            i = len(out.then_reached)
            arm = thens[i] if i < len(thens) else None
            server = _server(toml, _env(scale, arm, f"{notify}.then{i}" if arm else None, cf, names), log)

        def second() -> int:
            """A restarted server that reached its point of case.then killed
            itself: restart it again."""
            i = len(out.then_reached)
            hit = _notified(f"{notify}.then{i}") if i < len(thens) else None
            if hit is None:
                return 0
            out.then_reached.append(hit[0])
            restart()
            return 1

        def fault() -> int:
            """Act on the victim if it reached its point (or its timer ran out); returns kills."""
            if out.acted:
                return second()
            hit = _notified(notify)
            if hit is not None:
                out.reached = hit[0]
                if case.action == "kill":
                    out.acted = "killed"
                    if case.victim == "server" and not case.late:
                        restart()
                    return 1
                _wait_stopped(hit[1], out)
                out.acted = "stopped"
                stall()
                os.kill(hit[1], signal.SIGCONT)
                return 0
            if not case.point:
                if case.victim == "writer" and len(read_acks(os.path.join(d, "acks.0"))[0]) >= case.hit \
                        or timer_at is not None and time.monotonic() >= timer_at:
                    if not _alive(victim_pid):
                        out.acted = "gone"              # finished before its instant came
                        return 0
                    out.reached = "(timer)"
                    if case.action == "kill":
                        os.kill(victim_pid, signal.SIGKILL)
                        out.acted = "killed"
                        if case.victim == "server" and not case.late:
                            restart()
                        return 1
                    os.kill(victim_pid, signal.SIGSTOP)
                    _wait_stopped(victim_pid, out)
                    out.acted = "stopped"
                    stall()
                    os.kill(victim_pid, signal.SIGCONT)
            return 0
        while True:
            for k in list(pending):
                if k.conn.poll(0):
                    try:
                        msg = k.recv(1)
                    except procs.ChildFailed as e:
                        if k.pid == victim_pid and (out.acted == "killed" or
                                                    case.action == "kill" and _notified(notify)):
                            pending.discard(k)
                            continue
                        out.failures.append(f"{k.name} failed: {str(e)[-1500:]}")
                        pending.discard(k)
                        continue
                    if msg[0] == "done":
                        done[k.name] = msg[1:]
                        pending.discard(k)
                        if msg[1] and k.pid != victim_pid:
                            errs = read_acks(os.path.join(d, f"acks.{writers.index(k)}"))[1]
                            out.failures.append(f"{k.name} (not the victim) had {msg[1]} refused writes, "
                                                f"e.g. {errs[:3]}")
                elif k.process.exitcode is not None:
                    pending.discard(k)
                    if k.pid == victim_pid and out.acted == "killed":
                        continue
                    if k.pid == victim_pid and case.action == "kill" and _notified(notify):
                        continue
                    out.failures.append(f"{k.name} exited ({k.process.exitcode}) before it was done")
            if not census:
                kills += fault()
            if not pending:
                break
            if time.monotonic() > deadline:
                out.failures.append(f"hang: writers {[k.name for k in pending]} not done within 120 s")
                break
            time.sleep(0.002)           # the supervising loop's poll interval (pipes, acks, notify file)
        if server is not None and case.victim == "server" and not census:
            # The server may reach its point only while it drains what the
            # writers left: give it that time.
            end = time.monotonic() + (3 if out.acted else 10)
            while not (out.acted and len(out.then_reached) == len(thens)) and time.monotonic() < end:
                if out.acted != "killed" and server.poll() is not None:
                    break
                kills += fault()
                time.sleep(0.005)       # the poll interval within that window (the point may not come)
        if True:
            try:
                reader.send("stop")
                passes, n, problems = reader.expect("read", 120)
                out.failures += [f"concurrent reader: {p}" for p in problems]
                out.notes.append(f"concurrent reader: {passes} passes, {n} messages")
                if os.path.exists(os.path.join(d, "reader.refused")):
                    with open(os.path.join(d, "reader.refused")) as f:
                        out.notes.append(f"concurrent reader: {f.read()}")
            except (procs.ChildFailed, OSError) as e:
                why = str(e)
                if isinstance(e, OSError):           # it died before the order: what did it say?
                    try:
                        reader.recv(5)
                    except procs.ChildFailed as said:
                        why = str(said)
                out.failures.append(f"concurrent reader crashed: {why[-1500:]}")
        # ---- recovery: a fresh writer, unaided
        if not freshes:
            start_fresh()
        fresh, t_rec, fresh_w = freshes[0]
        try:
            errors, fresh_stats = supervised(fresh, "done", RECOVERY_S)
            if layer == "pipe":
                out.notes.append(f"fresh pipe writer: {fresh_stats}")
            if errors:
                out.failures.append(f"recovery: the fresh writer had {errors} refused writes: "
                                    f"{read_acks(os.path.join(d, f'acks.{fresh_w}'))[1][:3]}")
        except procs.ChildFailed as e:
            out.failures.append(f"recovery: the fresh writer did not finish within {RECOVERY_S:g} s: "
                                f"{str(e)[-800:]}")
        out.notes.append(f"recovery {time.monotonic() - t_rec:.2f} s")
        # ---- drain everything, close the writers
        if layer == "pipe" and not _settle_pipe(d, cfg, out, lambda: fault() if not census else 0) \
                and server is not None and server.poll() is None:
            size = os.path.getsize(log)
            os.kill(server.pid, signal.SIGUSR1)      # its stacks, into server.log
            try:
                wait_until(lambda: os.path.getsize(log) > size, "the server's stacks in server.log", 5)
            except WaitTimeout as e:
                out.notes.append(str(e))
        _close_all(writers + [f[0] for f in freshes], layer, out)
        out.notes.append("pids: " + ", ".join(f"{k.name} {k.pid}" for k in g.children)
                         + (f", server {first_server}" if server is not None else ""))
        if server is not None and case.late and out.acted == "killed":
            restart()                           # only now, the writers gone
            if layer == "pipe":
                _settle_pipe(d, cfg, out, lambda: 0)
        if server is not None:
            termed = None
            end = time.monotonic() + 60
            while server.poll() is None and time.monotonic() < end:
                if termed is not server:        # (a restart after a kill in its last drain is stopped too)
                    server.send_signal(signal.SIGTERM)
                    termed = server
                if case.victim == "server" and not census and not (out.acted and len(out.then_reached) == len(thens)):
                    kills += fault()            # its point may come in the last drain
                time.sleep(0.005)               # the poll interval of this supervised wait
            if server.poll() is None:
                server.kill()
                out.failures.append("the server did not stop within 60 s of SIGTERM")
            rc = server.wait()
            if case.victim == "server" and not census and not out.acted:
                kills += fault()
            i = len(out.then_reached)
            if case.victim == "server" and not census and i < len(thens):
                # the restarted one's point came as it stopped: record it
                hit = _notified(f"{notify}.then{i}")
                if hit is not None:
                    out.then_reached.append(hit[0])
                    rc = 0
                    kills += 1
            if rc != 0 and not (case.victim == "server" and out.acted == "killed"):
                out.failures.append(f"the server exited {rc}: {_tail(log)}")
            _close_all([f[0] for f in freshes], layer, out)     # one started while it stalled in its last drain
            cf = os.path.join(d, "census.once.json")
            recovery_files.append(("server", cf))
            once = _server(toml, _env(scale, None, None, cf, names), log, once=True)
            try:
                rc = once.wait(120)
            except subprocess.TimeoutExpired:
                once.kill()
                once.wait()
                rc = "hang"
            if rc != 0:
                out.failures.append(f"recovery: `logkit server --once` exited {rc}: {_tail(log)}")
    # ---- census
    if census:
        counts = {}
        for role, cf in census_files.items():
            try:
                with open(cf) as f:
                    counts[role] = json.load(f)
            except (OSError, ValueError, TypeError):
                counts[role] = {}
        out.notes.insert(0, counts)
    for role, cf in recovery_files:
        try:
            with open(cf) as f:
                counts = json.load(f)
        except (OSError, ValueError):
            continue
        mine = out.recovery.setdefault(role, {})
        for n, v in counts.items():
            mine[n] = mine.get(n, 0) + v
    # ---- read back and check
    _check(out, case, d, cfg, cfg_json, kills)
    out.seconds = time.monotonic() - t0
    return out


def _close_all(children, layer: str, out: Outcome) -> None:
    """Let every writer still running finish and close (a pipe writer on
    order), then reap it; one that does not is a failure."""
    for k in children:
        if k.process.exitcode is not None:
            continue
        try:
            if layer == "pipe":
                k.send(("close",))
            while k.recv(30)[0] != "closed":
                pass
            k.join(30)
        except (procs.ChildFailed, OSError) as e:
            out.failures.append(f"{k.name} did not close: {str(e)[-600:]}")


def _wait_stopped(pid: int, out: Outcome, timeout: float = 10.0) -> None:
    """Until the victim is really stopped (it stops itself after notifying),
    or gone; a victim still running after `timeout` is the case's failure."""
    try:
        wait_until(lambda: procs.process_state(pid) in ("T", "t", "Z", "X"), f"the victim (pid {pid}) to stop",
                   timeout, interval=0.001)
    except WaitTimeout as e:
        out.failures.append(str(e))


def _family_count(cfg) -> int:
    import logkit
    try:
        return logkit.open_reader(cfg["directory"], cfg["family"]).count()
    except Exception:
        return -1


def _settle_pipe(d, cfg, out, supervise) -> bool:
    """Until the family holds every acknowledged record, or nothing new came for 5 s."""
    want = sum(len(read_acks(os.path.join(d, f"acks.{w}"))[0]) for w in list(range(WRITERS)) + list(FRESH_IDS))
    seen, since = -2, time.monotonic()
    while time.monotonic() - since < 5.0:
        supervise()
        n = _family_count(cfg)
        if n >= want:
            return True
        if n != seen:
            seen, since = n, time.monotonic()
        time.sleep(0.02)                # the poll interval of this wait on progress
    out.notes.append(f"pipe: the family stopped at {seen} of {want} acknowledged records")
    return False


_PRINTED = re.compile(r"\bw\d+:\d+:")


def _print(case: Case, cfg: dict):
    """`logkit print` (its own reading path) over what the case left: (exit
    code, messages of the writers it printed, stderr)."""
    if case.layer == "core":
        args = [cfg["path"], "--single"]
    else:
        if not os.path.exists(os.path.join(cfg["directory"], cfg["family"])):
            return 0, 0, ""
        args = [cfg["directory"], "--family-name", cfg["family"]]
    r = subprocess.run([PY, "-m", "logkit", "print", *args, "-o", "short", "--colour", "never"],
                       capture_output=True, text=True, timeout=300)
    return r.returncode, sum(1 for line in r.stdout.splitlines() if _PRINTED.search(line)), r.stderr


def _check(out: Outcome, case: Case, d: str, cfg: dict, cfg_json: str, kills: int) -> None:
    rc, printed, err = _print(case, cfg)
    if rc != 0 or "Traceback" in err:
        out.failures.append(f"logkit print exited {rc}: {err[-1500:]}")
    res = os.path.join(d, "read.json")
    kind = KIND.get(case.layer, case.layer)
    r = subprocess.run([PY, os.path.join(HERE, "readcheck.py"), kind, cfg_json, res, "--balance"],
                       capture_output=True, text=True, timeout=300, cwd=TESTS_DIR)
    if r.returncode != 0:
        out.failures.append(f"reader crashed (exit {r.returncode}): {r.stderr[-1500:]}")
        return
    with open(res) as f:
        got = json.load(f)
    out.failures += [f"read: {p}" for p in got["problems"][:10]]
    if rc == 0 and printed != len(got["read"]):
        out.failures.append(f"logkit print showed {printed} of the writers' messages, the reader {len(got['read'])}")
    seen = collections.Counter((w, i) for w, i, _ in got["read"])
    twice = sorted(k for k, n in seen.items() if n > 1)
    if twice:
        out.failures.append(f"duplicated: {len(twice)} messages read more than once, e.g. {twice[:5]}")
    losses = [(rep.get("first_sequence", 0), rep.get("last_sequence", -1)) for rep in got["loss_reports"]]
    missing, counted, acked_total = [], 0, 0
    known = set()
    for w in list(range(WRITERS)) + list(FRESH_IDS):
        acked, _ = read_acks(os.path.join(d, f"acks.{w}"))
        acked_total += len(acked)
        known |= {(w, i) for i in acked}
        for i, seq in sorted(acked.items()):
            if (w, i) in seen:
                continue
            if kind == "partition" and any(a <= seq <= b for a, b in losses):
                counted += 1
                continue
            missing.append((w, i, seq))
    ps = got.get("partition_stats")
    uncounted = ""
    if ps is not None and missing:
        # Losses a report no longer names (a later overflow lost the report
        # too) are still counted in the partition's `lost`.
        named = sum(rep.get("lost", 0) for rep in got["loss_reports"])
        room = ps["lost"] - named
        if len(missing) <= room:
            counted, missing = counted + len(missing), []
        else:
            uncounted = (f"; the partition counts {ps['lost']} lost in all ({named} named by the loss reports "
                         f"read, which cover {counted} of the missing): at least {len(missing) - max(room, 0)} "
                         f"acknowledged messages vanished uncounted")
    ss = got.get("spill_stats")
    if ss is not None and missing and len(missing) <= ss["lost"]:
        # A pipe writer with no reader spills; a spill that overflowed
        # before a reader came counts what it lost (a pipe write returns
        # no sequence, so the count is all there is to match).
        counted, missing = counted + len(missing), []
        out.notes.append(f"the spill partition lost {ss['lost']} records (counted)")
    out.acked, out.read, out.lost_counted = acked_total, sum(seen.values()), counted
    if missing:
        out.failures.append(f"lost: {len(missing)} acknowledged messages missing (writer, counter, sequence), "
                            f"e.g. {missing[:5]}{uncounted}")
    unknown = [k for k in seen if k[0] not in range(WRITERS) and k[0] not in FRESH_IDS]
    if unknown:
        out.failures.append(f"read messages no writer wrote: {unknown[:5]}")
    for s in got.get("balance", []):
        where = f"segment {s['path']}"
        if s["open"] or s["damaged"] or s["salvage_damaged"]:
            out.failures.append(f"balance: {where} after salvage: {s['open']} open, {s['damaged']} damaged "
                                f"({s})")
        if s["committed"] + s["abandoned"] != s["reserved"]:
            out.failures.append(f"balance: {where}: finished {s['committed']} + abandoned {s['abandoned']} "
                                f"!= reserved {s['reserved']}")
        if not (s["written"] <= s["committed"] <= s["written"] + kills):
            out.failures.append(f"balance: {where}: written counter {s['written']} vs {s['committed']} finished "
                                f"({kills} processes killed)")
    if ps is not None:
        total = len(got["read"]) + len(got["loss_reports"]) + got["notices"]
        if not (total - kills <= ps["drained"] <= total):
            out.failures.append(f"balance: partition drained {ps['drained']} but its family holds {total}")
        reported = sum(rep.get("lost", 0) for rep in got["loss_reports"])
        if reported > ps["lost"]:
            out.failures.append(f"balance: loss reports say {reported} lost, the partition's counter {ps['lost']}")
        out.notes.append(f"partition lost {ps['lost']}, swaps {ps['swaps']}")
    out.notes += got["notes"][:5]


# ------------------------------------------------------------------ census and matrix

def census(layer: str, scale: float = SCALE, seed: int = 0) -> dict[str, dict[str, int]]:
    """role -> {point: visits} in one run of the layer's scenario without a fault."""
    names = sorted(_points.discover())
    o = run_case(Case(layer, "writer", "", "kill", 0, seed), scale=scale, census_names=names)
    counts = o.notes[0]
    roles = {"writer": counts.get("writer0", {})}
    if "server" in counts:
        roles["server"] = counts["server"]
    # what the reader process reaches (covered; never a victim: a reader
    # killed changes nothing on disk)
    roles["_reader"] = counts.get("reader", {})
    if o.failures:
        roles["_failures"] = o.failures
    return roles


def chain(censuses: dict, layer: str) -> Case | None:
    """One case that kills the layer's server at the first visit of each of
    its points in turn (in the order the census first met them, so the
    early steps die while the writers still write), restarting it after
    each kill: the recovery from each runs (counted in Outcome.recovery).
    The chain ends where a restart never reaches its point."""
    pts = list(censuses.get(layer, {}).get("server", {}))     # in the order first visited
    if not pts:
        return None
    return Case(layer, "server", pts[0], "kill", 1, 0, then=";".join(f"{p}=kill@1" for p in pts[1:]))


def plan(censuses: dict, rng: random.Random, actions=("kill",), per_point: int = 1,
         random_instants: int = 1) -> list[Case]:
    """Cases: every point each (layer, role) reaches, with each action, at a
    random visit; plus random instants ("*" and timer kills)."""
    cases = []
    for layer, roles in censuses.items():
        for role, counts in roles.items():
            if role.startswith("_"):
                continue
            for name, visits in sorted(counts.items()):
                for action in actions:
                    for _ in range(per_point):
                        cases.append(Case(layer, role, name, action, rng.randint(1, max(1, visits * 3 // 4)),
                                          rng.randrange(1 << 30)))
            total = sum(counts.values())
            for _ in range(random_instants):
                if total:
                    cases.append(Case(layer, role, "*", rng.choice(actions), rng.randint(1, total),
                                      rng.randrange(1 << 30)))
                limit = COUNT[layer] if role == "writer" else 1500
                cases.append(Case(layer, role, "", "kill", rng.randint(1, limit - 1), rng.randrange(1 << 30)))
    return cases


def to_json(o: Outcome) -> dict:
    d = asdict(o)
    d["notes"] = [n for n in d["notes"] if not isinstance(n, dict)]
    return d
