"""The message server: drains partitions and pipes into storage exactly once,
however it is stopped; margin warnings; SIGTERM and SIGHUP; --once."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

import logkit
from logkit.backends.partition import PartitionStorage
from logkit.inject import wait_for_point
from logkit.server import Server, read_status
from procs.part import child_partition_write
from procs import CTX, Group, TIMEOUT, message_text, recv_all
from waiting import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def partition_config(tmp_path, size="16MiB", name="buf"):
    cfg = tmp_path / "logkit.toml"
    cfg.write_text(f'[log.{name}]\nstorage = "partition"\npath = "{tmp_path / (name + ".part")}"\n'
                   f'size = "{size}"\ndirectory = "{tmp_path / "family"}"\nfamily = "{name}"\n')
    return str(cfg)


def fill_partition(tmp_path, writers, count, size="16MiB", name="buf"):
    """`writers` spawned processes write `count` messages each into the
    partition, with no server running; returns the partition's texts in
    sequence order."""
    path = str(tmp_path / (name + ".part"))
    go = CTX.Event()
    with Group() as g:
        kids = g.spawn_many(writers, child_partition_write, lambda w: (path, size, w, count, go))
        recv_all(kids, "ready")
        go.set()
        recv_all(kids, "done", timeout=120)
        for k in kids:
            k.join()
    s = PartitionStorage(name, path=path, size=size)
    try:
        return [m.text for m in s.reader()]
    finally:
        s.close()


def family_texts(tmp_path, name="buf"):
    return [m.text for m in logkit.open_reader(str(tmp_path / "family"), name)]


def server_process(cfg, *extra, env=None):
    return subprocess.Popen([sys.executable, "-m", "logkit", "server", "-c", cfg, "--interval", "0.05", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=None if env is None else dict(os.environ, **env))


def test_messages_logged_with_no_server_are_drained_later_in_order_exactly_once(tmp_path):
    before = fill_partition(tmp_path, writers=4, count=25_000)
    assert len(before) == 100_000
    assert sorted(before) == sorted(message_text(w, i) for w in range(4) for i in range(25_000))
    r = subprocess.run([sys.executable, "-m", "logkit", "server", "--once", "-c", partition_config(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "drained 100000 messages" in r.stderr
    assert family_texts(tmp_path) == before                  # the same order, each once
    r = subprocess.run([sys.executable, "-m", "logkit", "server", "--once", "-c", partition_config(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert "drained 0 messages" in r.stderr
    assert len(family_texts(tmp_path)) == 100_000


def _family_count(directory, name):
    """Messages in family `name` of `directory` (0 while it does not exist)."""
    return logkit.open_reader(str(directory), name).count() if (directory / name).exists() else 0


def _count(tmp_path, name="buf"):
    return _family_count(tmp_path / "family", name)


def test_server_killed_at_random_points_during_copies_loses_and_duplicates_nothing(tmp_path):
    before = fill_partition(tmp_path, writers=3, count=20_000)
    cfg = partition_config(tmp_path)
    rng = random.Random(20261201)
    kills = 0
    for _ in range(6):
        start = _count(tmp_path)
        if start == len(before):
            break
        p = server_process(cfg)
        wait_until(lambda: _count(tmp_path) != start or p.poll() is not None, "this server to start copying",
                   interval=0.002)
        # The kill's instant, at random within the copy: the behaviour under
        # test (a kill anywhere), not a synchronisation.
        time.sleep(rng.uniform(0, 0.03))
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        p.wait(TIMEOUT)
        p.stdout.close(), p.stderr.close()
    assert kills >= 2, f"only {kills} kills landed during a copy"
    r = subprocess.run([sys.executable, "-m", "logkit", "server", "--once", "-c", cfg],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = family_texts(tmp_path)
    missing = set(before) - set(got)
    twice = len(got) - len(set(got))
    assert not missing and not twice, (f"after {kills} kills: {len(missing)} lost "
                                       f"(e.g. {sorted(missing)[:3]}), {twice} copied twice; {r.stderr}")
    assert got == before


def test_sigterm_finishes_the_copy_and_exits_0_and_a_restart_resumes(tmp_path):
    before = fill_partition(tmp_path, writers=2, count=20_000)
    cfg = partition_config(tmp_path)
    # Stop the server in the middle of its copy (the 500th message appended),
    # then SIGTERM it there: a fixed sleep could land before its handlers were
    # installed on a loaded machine (the server then died of the signal).
    notify = str(tmp_path / "points")
    p = server_process(cfg, env={"LOGKIT_INJECT": "partition.drain.appended=stop@500",
                                 "LOGKIT_INJECT_NOTIFY": notify})
    wait_for_point(notify, "partition.drain.appended", proc=p, timeout=TIMEOUT)
    p.send_signal(signal.SIGTERM)
    p.send_signal(signal.SIGCONT)
    out, err = p.communicate(timeout=TIMEOUT)
    assert p.returncode == 0, err
    assert "stopped after" in err
    r = subprocess.run([sys.executable, "-m", "logkit", "server", "--once", "-c", cfg],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert family_texts(tmp_path) == before


def _write_until(storage, fill, size):
    """Write 100-byte messages until the partition holds at least `fill` of
    its capacity (both halves) without overflowing."""
    from logkit.server import _fill
    i = 0
    while True:
        held, cap = _fill(storage)
        if held / cap >= fill:
            return i
        storage.write(f"filler {i:06d} " + "x" * 80, 20)
        i += 1


def test_margin_warnings_fire_once_per_crossing_with_the_right_figures(tmp_path):
    from logkit.server import _fill
    cfg = partition_config(tmp_path, size="64KiB")
    server = Server(cfg, say=lambda s: None)
    try:
        (job,) = server.jobs
        st = job.storage
        _write_until(st, 0.76, "64KiB")
        assert server.check_margins() == 1
        assert server.check_margins() == 0                      # still above: not again
        warn = [m for m in st.reader() if m.data_class == "json" and b'"margin"' in bytes(m.data)]
        assert len(warn) == 1 and warn[0].severity == 30
        d = json.loads(bytes(warn[0].data))
        assert d["margin"] == 0.75 and d["buffer"] == st.path and d["log"] == "buf"
        assert 0.76 <= d["fill"] < 0.90 and d["capacity"] == 2 * (65536 - 4096)
        assert d["held"] == round(d["fill"] * d["capacity"]) or abs(d["held"] / d["capacity"] - d["fill"]) < 1e-3
        assert f"is {d['fill']:.0%} full ({d['held']} of {d['capacity']} bytes): past its 75% margin" in warn[0].text
        _write_until(st, 0.91, "64KiB")
        assert server.check_margins() == 1                      # the 90% mark, once
        assert server.check_margins() == 0
        warn = [m for m in st.reader() if m.data_class == "json" and b'"margin"' in bytes(m.data)]
        assert [json.loads(bytes(m.data))["margin"] for m in warn] == [0.75, 0.9]
        assert warn[1].severity == 40
        assert server.drain() > 0                               # emptied: both marks re-arm
        held, cap = _fill(st)
        assert held / cap < 0.70
        assert server.check_margins() == 0
        _write_until(st, 0.80, "64KiB")
        assert server.check_margins() == 1                      # a new crossing fires again
        server._save()
        status = read_status(st.path)
        assert status["crossings"] == {"0.75": 2, "0.9": 1}
    finally:
        server._close_jobs()
    r = subprocess.run([sys.executable, "-m", "logkit", "stats", "-c", cfg], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "margins crossed (75%: 2, 90%: 1)" in r.stdout


def test_sighup_reloads_the_configuration(tmp_path):
    cfg = tmp_path / "logkit.toml"
    one = f'[log.a]\nstorage = "partition"\npath = "{tmp_path / "a.part"}"\nsize = "64KiB"\n' \
          f'directory = "{tmp_path / "family"}"\n'
    cfg.write_text(one)
    p = server_process(str(cfg))
    try:
        wait_until(lambda: "1 partition(s)" in p.stderr.readline(), "the server to report its partition",
                   interval=0)                     # (readline blocks until the server says something)
        cfg.write_text(one + 'bogus_key = 1\n')                # a bad config: refused, old one kept
        p.send_signal(signal.SIGHUP)
        line = p.stderr.readline()
        assert "reload refused, keeping the running configuration" in line and "bogus_key" in line
        cfg.write_text(one + f'[log.b]\nstorage = "partition"\npath = "{tmp_path / "b.part"}"\nsize = "64KiB"\n'
                             f'directory = "{tmp_path / "family"}"\n')
        p.send_signal(signal.SIGHUP)
        assert "2 partition(s)" in p.stderr.readline()
        s = PartitionStorage("b", path=str(tmp_path / "b.part"), size="64KiB")
        for i in range(10):
            s.write(f"to b {i}")
        s.close()
        wait_until(lambda: _count(tmp_path, "b") == 10, "the server to drain the 10 messages of b", interval=0.05)
        assert [m.text for m in logkit.open_reader(str(tmp_path / "family"), "b")] == [f"to b {i}" for i in range(10)]
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=TIMEOUT)
    assert p.returncode == 0


def test_the_server_reads_a_pipe_while_writers_log(tmp_path):
    logs = tmp_path / "logs"
    cfg = tmp_path / "logkit.toml"
    cfg.write_text(f'[log.p]\nstorage = "family"\ndirectory = "{logs}"\ncreate_directory = true\n'
                   f'transport = "pipe"\nfifo = "{tmp_path / "p.fifo"}"\n')
    h = logkit.Handler("p", str(cfg))
    import logging
    lg = logging.getLogger("server-pipe")
    lg.handlers[:] = [h]
    lg.propagate = False
    lg.setLevel(logging.INFO)
    for i in range(100):
        lg.info("before the server %d", i)                      # spilled: no reader yet
    p = server_process(str(cfg))
    try:
        # The server runs (and reads the pipe) once it has stored what was
        # spilled before it started.
        wait_until(lambda: _family_count(logs, "p") >= 100, "the server to store the 100 spilled records",
                   interval=0.05)
        for i in range(100):
            lg.info("while it runs %d", i)
        h.close()
        want = [f"before the server {i}" for i in range(100)] + [f"while it runs {i}" for i in range(100)]
        wait_until(lambda: _family_count(logs, "p") >= 200, "the server to store all 200 records", interval=0.05)
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=TIMEOUT)
    assert p.returncode == 0, err
    assert sorted(m.text for m in logkit.open_reader(str(logs), "p")) == sorted(want)


def test_bad_arguments_are_clear(tmp_path):
    r = subprocess.run([sys.executable, "-m", "logkit", "server", "--once", "-c", str(tmp_path / "none.toml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "none.toml: config file does not exist" in r.stderr
    with pytest.raises(logkit.LogkitError, match="margin 1.5"):
        Server(partition_config(tmp_path), margins=(1.5,))


def _asleep_on(path) -> bool:
    """Somebody (the server's watcher) sleeps on the futex of the half that
    writers fill now in the partition at `path`."""
    from logkit.backends.partition import Partition
    p = Partition(str(path), create=False, readonly=True)
    try:
        i = p.current_index()
        return i is not None and p.halves[i].header()["waiters"] >= 1
    finally:
        p.close()


def test_a_half_that_fills_wakes_the_server_at_once_not_at_its_interval(tmp_path):
    """With an interval of 60 s, only the futex can make the server drain a
    half that fills: the swap takes it out of service and wakes the server."""
    cfg = partition_config(tmp_path, size="64KiB")
    p = subprocess.Popen([sys.executable, "-m", "logkit", "server", "-c", cfg, "--interval", "60"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "1 partition(s)" in p.stderr.readline()
        # Asleep: its first pass is over (the pass ends by saving the status
        # file) and its watcher sleeps on the futex of the current half.
        part = tmp_path / "buf.part"
        wait_until(lambda: read_status(str(part)) is not None and _asleep_on(part),
                   "the server to end its first pass and sleep on the futex")
        s = PartitionStorage("buf", path=str(tmp_path / "buf.part"), size="64KiB")
        i = 0
        t0 = time.monotonic()
        while s.stats()["swaps"] < 1:                      # until the first half fills and swaps
            s.write(f"filler {i:06d} " + "x" * 80, 20)
            i += 1
        filled = time.monotonic()
        wait_until(lambda: _count(tmp_path) > 0, "the server to drain the full half", 10, interval=0.01)
        assert time.monotonic() - filled < 5, "drained, but only after a timer, not a wake-up"
        s.close()
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=TIMEOUT)
    assert p.returncode == 0


def test_server_wakes_for_any_of_its_partitions(tmp_path):
    """With an interval of 60 s and two partitions, a half that fills in the
    *second* partition is drained at once: every partition has a watcher
    sleeping on its futex, not only the first."""
    import textwrap
    import threading
    from logkit.backends.partition import PartitionStorage
    from logkit.server import Server
    cfg = tmp_path / "logkit.toml"
    parts = {n: tmp_path / f"{n}.part" for n in ("one", "two")}
    cfg.write_text("".join(textwrap.dedent(f"""
        [log.{n}]
        storage = "partition"
        path = "{p}"
        size = "16KiB"
        directory = "{tmp_path / 'fam'}"
    """) for n, p in parts.items()))
    srv = Server(cfg, interval=60, say=lambda s: None)
    stop = threading.Event()
    t = threading.Thread(target=srv.serve, args=(stop,))
    t.start()
    try:
        # Its first pass (it swaps) is over and a watcher sleeps on the
        # futex of each partition's current half.
        wait_until(lambda: srv.cycles >= 1 and all(_asleep_on(p) for p in parts.values()),
                   "the server to end its first pass and sleep on both partitions")
        w = PartitionStorage("two", path=str(parts["two"]), size="16KiB")
        n = 0
        t0 = time.monotonic()
        swaps = w.stats()["swaps"]
        while w.stats()["swaps"] == swaps:  # fill the current half until it swaps
            w.write(f"message {n} " + "x" * 200)
            n += 1
        fam = tmp_path / "fam"
        wait_until(lambda: w.stats()["drained"] > 0, "the full half of the second partition to be drained", 10)
        took = time.monotonic() - t0
        assert w.stats()["lost"] == 0
        assert took < 5, f"drained only after {took:.1f} s (interval 60 s)"
        assert fam.is_dir()
        w.close()
    finally:
        stop.set()
        srv._news.set()
        t.join(30)
    assert not t.is_alive()


def pipe_config(tmp_path, name="p"):
    cfg = tmp_path / "logkit.toml"
    cfg.write_text(f'[log.{name}]\nstorage = "family"\ndirectory = "{tmp_path / "family"}"\n'
                   f'family = "{name}"\ncreate_directory = true\ntransport = "pipe"\n'
                   f'fifo = "{tmp_path / (name + ".fifo")}"\nspill_size = "32MiB"\n')
    return str(cfg)


def test_a_pipe_reader_killed_at_random_points_loses_and_duplicates_nothing(tmp_path):
    """Writers log through a pipe (every seventh record in fragments) while
    the server reading it is SIGKILLed at random moments and started again:
    in the end every record is in the family exactly once, whole."""
    from logkit.backends.pipejournal import read_journal_header
    from procs.part import big_text, child_pipe_write_paced
    from procs import parse_text
    cfg = pipe_config(tmp_path)
    fifo = str(tmp_path / "p.fifo")
    spill = fifo + ".spill"
    writers, count = 3, 6000
    rng = random.Random(20261202)
    go = CTX.Event()
    kills = 0
    recovered = {"reconsumed": 0, "reconciled": 0}
    with Group() as g:
        kids = g.spawn_many(writers, child_pipe_write_paced,
                            lambda w: (fifo, spill, w, count, go, 10, 0.004))   # about 3 s of writing
        recv_all(kids, "ready")
        go.set()
        done = {}
        while len(done) < writers:
            p = server_process(cfg)
            # The kill's instant, at random (start-up, then somewhere in the
            # copying): the behaviour under test, not a synchronisation.
            time.sleep(rng.uniform(0.15, 0.5))
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                kills += 1
            p.wait(TIMEOUT)
            p.stdout.close(), p.stderr.close()
            if os.path.exists(fifo + ".journal"):
                h = read_journal_header(fifo + ".journal")
                recovered = {k: h[k] for k in recovered}
            for k in kids:
                while k.conn.poll():
                    msg = k.recv()
                    assert msg[0] == "done", msg
                    done[k.name] = msg[1]
        # The writers still hold the FIFO (and what it holds) open: a last
        # server takes it over, and only then do they close.
        p = server_process(cfg)
        want = writers * count
        seen, stalled_at = -1, time.monotonic()
        while time.monotonic() - stalled_at < 10:          # until it has them all, or 10 s with none new
            n = _count(tmp_path, "p")
            if n >= want:
                break
            if n != seen:
                seen, stalled_at = n, time.monotonic()
            time.sleep(0.05)                                # the poll interval of this wait on progress
        for k in kids:
            k.conn.send(("close",))
            k.join()
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=TIMEOUT)
    assert p.returncode == 0, err
    assert kills >= 5, f"only {kills} kills"
    got, where = [], {}
    for m in logkit.open_reader(str(tmp_path / "family"), "p"):
        w, i = parse_text(m.text.split("|", 1)[0])
        assert m.text == big_text(w, i), f"record {(w, i)} arrived damaged"
        got.append((w, i))
        where.setdefault((w, i), []).append((m.sequence, os.path.basename(m.segment.path or "")))
    missing = {(w, i) for w in range(writers) for i in range(count)} - set(got)
    twice = {k: v for k, v in where.items() if len(v) > 1}
    # (Each duplicate with its sequences and segments, to tell a journal
    # replay from a storage fault should this ever fail again.)
    assert not missing and not twice, (f"after {kills} kills: {len(missing)} lost (e.g. {sorted(missing)[:3]}), "
                                       f"{len(twice)} stored twice ({dict(list(twice.items())[:3])}); "
                                       f"journal {recovered}; {err}")
