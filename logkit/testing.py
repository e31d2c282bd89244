"""The storage-backend conformance suite: tests every storage backend must pass.

A backend's own test module subclasses StorageBackendTests and says how to
make an instance (the way keyring ships its backend test mixin)::

    from logkit.testing import StorageBackendTests

    class TestMyBackend(StorageBackendTests):
        def make_storage(self, tmp_path, **overrides):
            return MyStorage("test", path=str(tmp_path / "x"), **overrides)

pytest collects the subclass (its name starts with Test); this base class
itself is not collected.  Every test opens its own storage under tmp_path.
"""
from __future__ import annotations

import os
import threading
from typing import Any

import pytest

from logkit.errors import InvalidArgument, LogkitError, NoSuchMessage

__all__ = ["StorageBackendTests"]


class StorageBackendTests:
    """Subclass and implement make_storage(tmp_path, **overrides).

    Class attributes a subclass may set:
      too_big: a text length the backend must refuse with a LogkitError
               (None: the backend has no message size limit).
      numbers_on_write: True if write() returns the sequence number the
               reader later shows (False: the backend numbers when read).
      threads, per_thread: the size of the many-threads test.
    """
    too_big: int | None = None
    numbers_on_write = True
    threads = 8
    per_thread = 250

    def make_storage(self, tmp_path, **overrides):   # pragma: no cover - abstract
        raise NotImplementedError("a StorageBackendTests subclass must define make_storage()")

    # ------------------------------------------------------------ helpers

    def _open(self, tmp_path, **overrides):
        s = self.make_storage(tmp_path, **overrides)
        self._opened.append(s)
        return s

    @pytest.fixture(autouse=True)
    def _close_all(self):
        self._opened: list[Any] = []
        yield
        for s in self._opened:
            try:
                s.close()
            except Exception:
                pass

    @staticmethod
    def _texts(storage) -> list[str]:
        return [m.text for m in storage.reader()]

    # ------------------------------------------------------------ tests

    def test_messages_read_back_in_write_order(self, tmp_path):
        s = self._open(tmp_path)
        seqs = [s.write(f"message {i}", 20) for i in range(100)]
        msgs = list(s.reader())
        assert [m.text for m in msgs] == [f"message {i}" for i in range(100)]
        got = [m.sequence for m in msgs]
        assert got == sorted(got) and len(set(got)) == len(got), "sequences must increase strictly"
        if self.numbers_on_write:
            assert seqs == got

    def test_every_field_round_trips(self, tmp_path):
        s = self._open(tmp_path)
        t = 1_700_000_000_123_456_789
        s.write("héllo wörld ✓", -250, b"\x00\x01binary\xff", "hex", t)
        s.write("top", 250, b'{"a": 1}', "json", t + 1)
        a, b = list(s.reader())
        assert (a.text, a.severity, bytes(a.data), a.data_class, a.time) == \
            ("héllo wörld ✓", -250, b"\x00\x01binary\xff", "hex", t)
        assert (b.text, b.severity, bytes(b.data), b.data_class, b.time) == ("top", 250, b'{"a": 1}', "json", t + 1)
        assert a.process_id == os.getpid() and b.process_id == os.getpid()
        assert a.thread_id == threading.get_native_id()

    def test_append_keeps_the_origin_fields(self, tmp_path):
        class Origin:
            text, severity, data, data_class = "copied", 42, b"xyz", "utf8"
            time, process_id, thread_id = 1_600_000_000_000_000_000, 4242, 777
        s = self._open(tmp_path)
        s.append(Origin())
        (m,) = list(s.reader())
        assert (m.text, m.severity, bytes(m.data), m.data_class, m.time, m.process_id, m.thread_id) == \
            ("copied", 42, b"xyz", "utf8", 1_600_000_000_000_000_000, 4242, 777)

    def test_severity_outside_range_is_refused_and_nothing_is_stored(self, tmp_path):
        s = self._open(tmp_path)
        for bad in (-251, 251, 10_000):
            with pytest.raises(InvalidArgument, match=str(bad)):
                s.write("bad", bad)
        s.write("good", 0)
        assert self._texts(s) == ["good"]

    def test_message_too_big_is_refused_clearly_and_loses_nothing(self, tmp_path):
        if self.too_big is None:
            pytest.skip("this backend has no message size limit (too_big is None)")
        s = self._open(tmp_path)
        s.write("before", 20)
        with pytest.raises(LogkitError) as e:
            s.write("x" * self.too_big, 20)
        assert "big" in str(e.value).lower() or "fit" in str(e.value).lower(), str(e.value)
        s.write("after", 20)
        assert self._texts(s) == ["before", "after"]

    def test_reverse_is_forward_reversed(self, tmp_path):
        s = self._open(tmp_path)
        for i in range(50):
            s.write(f"m{i}", i % 7)
        r = s.reader()
        fwd = [(m.sequence, m.text) for m in r]
        assert [(m.sequence, m.text) for m in r.reverse()] == fwd[::-1]

    def test_limits_and_seek_by_sequence_and_time(self, tmp_path):
        s = self._open(tmp_path)
        assert s.reader().limits() is None
        base = 1_700_000_000_000_000_000
        for i in range(30):
            s.write(f"m{i}", 20, time=base + i * 1000)
        r = s.reader()
        msgs = list(r)
        lim = r.limits()
        assert (lim.first_sequence, lim.last_sequence) == (msgs[0].sequence, msgs[-1].sequence)
        assert (lim.first_time, lim.last_time) == (base, base + 29_000)
        m = r.seek(sequence=msgs[10].sequence)
        assert m.text == "m10"
        assert [x.text for x in r][:2] == ["m10", "m11"]
        assert r.seek(time=base + 20_500).text == "m21"
        with pytest.raises(NoSuchMessage):
            r.seek(sequence=msgs[-1].sequence + 1)
        r.rewind()
        assert r.count() == 30

    def test_a_new_instance_sees_what_an_earlier_one_stored(self, tmp_path):
        s = self._open(tmp_path)
        for i in range(20):
            s.write(f"first {i}", 20)
        s.flush()
        s.close()
        t = self._open(tmp_path)
        t.write("second", 20)
        assert self._texts(t) == [f"first {i}" for i in range(20)] + ["second"]

    def test_many_threads_each_message_once(self, tmp_path):
        s = self._open(tmp_path)
        barrier = threading.Barrier(self.threads)
        errors = []

        def work(k):
            try:
                barrier.wait(timeout=30)
                for i in range(self.per_thread):
                    s.write(f"t{k} {i}", 20)
            except Exception as e:      # reported below: a thread cannot fail the test itself
                errors.append(e)

        ts = [threading.Thread(target=work, args=(k,)) for k in range(self.threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert not errors, errors
        texts = self._texts(s)
        assert sorted(texts) == sorted(f"t{k} {i}" for k in range(self.threads) for i in range(self.per_thread))
        for k in range(self.threads):       # each thread's own messages stay in its order
            mine = [t for t in texts if t.startswith(f"t{k} ")]
            assert mine == [f"t{k} {i}" for i in range(self.per_thread)]

    def test_stats_are_integer_counters(self, tmp_path):
        s = self._open(tmp_path)
        s.write("x", 20)
        st = s.stats()
        assert isinstance(st, dict) and st, "stats() must report at least one counter"
        assert all(isinstance(k, str) and isinstance(v, int) for k, v in st.items()), st

    def test_describe_names_the_backend(self, tmp_path):
        s = self._open(tmp_path)
        d = s.describe()
        assert isinstance(d, str) and d.strip()
