"""The shared mechanisms of issue #14: one fork-hook registry
(logkit.forking), one entry-point loader (logkit.registry.load_entry_point)
and one full-segment retry loop (logkit.family.retry_refused_write)."""
from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from logkit import forking  # noqa: E402


def _in_child(report) -> dict:
    """Fork; in the child call report() and send its (JSON) result back
    through a pipe, then _exit.  Returns what the child reported."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                   # the child: never return into pytest
        code = 0
        try:
            os.close(r)
            os.write(w, json.dumps(report()).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child failed"
    return json.loads(b"".join(chunks))


# ---------------------------------------------------------------- logkit.forking

def test_fork_registry_runs_module_callbacks_then_tracked_objects_once_each_in_order():
    calls: list[str] = []

    def module_state():
        calls.append("module")

    class Thing:
        def __init__(self, name):
            self.name = name

        def after_fork(self):
            calls.append(self.name)

    def reset(thing):
        calls.append(thing.name + " by reset")

    first, second, gone = Thing("first"), Thing("second"), Thing("gone")
    forking.track(first)
    forking.track(gone)
    forking.track(second, reset)
    forking.after_fork_in_child(module_state)
    forking.after_fork_in_child(module_state)          # registered once
    del gone                                           # held weakly: not kept alive, not called
    try:
        got = _in_child(lambda: list(calls))
        assert got == ["module", "first", "second by reset"]
        assert calls == []                             # the parent runs none of it
    finally:
        forking._callbacks.remove(module_state)


def test_fork_registry_runs_every_callback_even_when_one_raises():
    calls: list[str] = []

    class Broken:
        def after_fork(self):
            raise RuntimeError("broken reset")

    class Fine:
        def after_fork(self):
            calls.append("fine")

    broken, fine = Broken(), Fine()
    forking.track(broken)
    forking.track(fine)
    assert _in_child(lambda: list(calls)) == ["fine"]


def test_a_family_writer_whose_lock_a_parent_thread_held_writes_in_the_child(tmp_path):
    from logkit.family import FamilyWriter, open_reader

    w = FamilyWriter(str(tmp_path), "app", "64KiB")
    held, release = threading.Event(), threading.Event()

    def hold():
        with w._lock:                                  # the slow-path lock, held across the fork
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(30)

        def child():
            if w._lock.locked():
                return {"locked": True}                # (writing would hang: report instead)
            # Enough messages to fill the 64 KiB segment: the slow path takes the lock.
            seqs = [w.write("x" * 200) for _ in range(600)]
            return {"locked": w._lock.locked(), "last": seqs[-1], "rotations": w.rotations}
        got = _in_child(child)
    finally:
        release.set()
        t.join()
    assert got["locked"] is False and got["rotations"] >= 1
    w.close()
    assert sum(1 for _ in open_reader(str(tmp_path), "app")) == got["last"]


# ---------------------------------------------------------------- the retry loop

class _Seg:
    """A stand-in segment: refuses with the listed errors, then writes."""
    def __init__(self, name, refusals=()):
        self.name, self.refusals = name, list(refusals)

    def write(self):
        if self.refusals:
            raise self.refusals.pop(0)
        return self.name


def test_retry_loop_advances_with_why_each_attempt_was_refused_until_one_succeeds():
    from logkit.errors import OutOfService, SegmentDamaged, SegmentFull
    from logkit.family import retry_refused_write

    c = _Seg("c", [SegmentFull("c"), SegmentDamaged("c")])
    segs = iter([_Seg("b", [OutOfService("b")]), c, c, _Seg("d")])
    advanced, retired = [], []

    def advance(seg, full):
        advanced.append((seg.name, full))
        return next(segs)

    got = retry_refused_write(_Seg("a"), _Seg.write, advance, retired.append, full=True)
    assert got == "d"
    assert advanced == [("a", True), ("b", False), ("c", True), ("c", False)]
    assert [s.name for s in retired] == ["c"]


def test_retry_loop_without_retire_lets_damage_propagate():
    from logkit.errors import SegmentDamaged
    from logkit.family import retry_refused_write

    with pytest.raises(SegmentDamaged, match="torn"):
        retry_refused_write(_Seg("a"), _Seg.write, lambda seg, full: _Seg("b", [SegmentDamaged("torn")]))


def test_a_family_writer_that_nobody_can_rotate_for_raises_rotation_timeout(tmp_path):
    """The loop ends where advance() gives up: the writer's wait_timeout,
    with the message FamilyWriter always gave."""
    from logkit.family import FamilyWriter, RotationTimeout

    w = FamilyWriter(str(tmp_path), "app", "64KiB", wait_timeout=0.2, rotation_timeout=60)
    try:
        seg = w.segment
        assert seg.take_out_of_service()           # as a rotator that then stalls would
        for write in (lambda: w.write("x"), lambda: w.write_as("x", 20, b"", "", 1, 1, 1),
                      lambda: w.reserve(1)):
            with pytest.raises(RotationTimeout, match=r"out of service for more than 0\.2 s and no new one"):
                write()
    finally:
        w.close()


def test_a_partition_whose_halves_never_come_back_raises_swap_timeout(tmp_path, monkeypatch):
    from logkit.backends import partition as P

    st = P.PartitionStorage("app", path=str(tmp_path / "p.part"), size="64KiB")
    try:
        monkeypatch.setattr(P, "WAIT_TIMEOUT", 0.2)
        for half in st.partition.halves:
            half.take_out_of_service()             # nobody will swap: both halves out of service
        with pytest.raises(P.PartitionSwapTimeout, match=r"no half has been in service for 0\.2 s"):
            st.write("x")
    finally:
        st.close()


# ---------------------------------------------------------------- the entry-point loader

@pytest.mark.parametrize("group,what,known", [
    ("logkit.storage", "storage backend", "family"),
    ("logkit.transport", "transport backend", "shm"),
    ("logkit.formatters", "formatter", "json"),
])
def test_the_loader_names_an_unknown_name_the_same_way_in_every_group(group, what, known):
    from logkit.registry import EntryPointError, load_entry_point

    with pytest.raises(EntryPointError) as e:
        load_entry_point(group, known + "x", what)
    assert str(e.value).startswith(f"no {what} named '{known}x' (did you mean '{known}'?); registered: ")
    assert known in str(e.value).split("registered: ", 1)[1].split(", ")
    assert e.value.cause is None


def test_the_backend_registry_and_the_formatters_report_a_broken_entry_point_through_the_loader(monkeypatch, capsys):
    import importlib.metadata as md

    from logkit import formatters, registry

    class BrokenEP:
        name, value, dist = "broken", "logkit_broken:thing", type("Dist", (), {"name": "logkit-broken"})()

        def load(self):
            raise ModuleNotFoundError("No module named 'logkit_broken'")

    real = md.entry_points
    monkeypatch.setattr(md, "entry_points", lambda group: [BrokenEP()] + list(real(group=group)))
    registry.clear_cache()
    formatters.clear_cache()
    try:
        with pytest.raises(registry.BackendNotFound, match=r"^storage backend 'broken' \(logkit_broken:thing\) "
                                                           r"failed to load: ModuleNotFoundError: No module named"):
            registry.load("storage", "broken")
        assert formatters.get("broken") is None
        assert "formatter 'broken' (logkit_broken:thing, from package logkit-broken) failed to load: " \
               "ModuleNotFoundError: No module named 'logkit_broken'" in capsys.readouterr().err
    finally:
        registry.clear_cache()
        formatters.clear_cache()


def test_backoff_paces_from_50us_doubling_to_5ms_and_expires_after_its_timeout(monkeypatch):
    """The one wait of the writers that wait for a rotation or a swap
    (logkit.family.Backoff): the pauses it sleeps, and when it gives up,
    on a clock the test moves (no real sleeping)."""
    from logkit import family
    now = [100.0]
    slept = []
    monkeypatch.setattr(family._time, "monotonic", lambda: now[0])
    monkeypatch.setattr(family._time, "sleep", lambda s: (slept.append(s), now.__setitem__(0, now[0] + s)))
    b = family.Backoff(0.02)
    while not b.expired():
        b.pause()
    assert slept[:4] == [50e-6, 100e-6, 200e-6, 400e-6]
    assert max(slept) == 0.005 and slept[-1] == 0.005
    assert 0.02 < b.elapsed() <= 0.02 + 0.005
