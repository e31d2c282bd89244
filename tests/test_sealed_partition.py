"""Sealed partitions (a `partition` storage with key_file) and sealed pipe
spills: #6's encryption beyond the family storage.

A partition half is formatted again in place, with a new UUID, each time it
is reused; a writer in another process learns that only from the header
and must derive the half's new segment key before it seals ([K1] in
lk_segment.h).  These tests use real processes, real files and FIFOs.
"""
from __future__ import annotations

import os
import time

import pytest

import procs
import procs.part as partprocs
from logkit import open_reader as family_reader
from logkit.backends.family import FamilyStorage
from logkit.backends.partition import PartitionStorage, open_reader
from logkit.backends.pipe import PipeTransport, drain_pipe
from logkit.crypto import MissingKey, WrongKey, add_key, generate_key_file
from logkit.errors import InvalidArgument


@pytest.fixture
def keyfile(tmp_path):
    p = tmp_path / "log.keys"
    generate_key_file(p)
    return str(p)


def _family(tmp_path, key_file, name="app"):
    return FamilyStorage("app", directory=str(tmp_path / "family"), family=name, create_directory=True,
                         segment_size="256KiB", key_file=key_file)


def _halves_uuid_seq(s):
    p = s.partition
    return [(h.uuid, m.sequence) for h in p.halves for m in h]


def test_round_trip_reader_without_key_and_drain(tmp_path, keyfile):
    path = str(tmp_path / "buf.part")
    s = PartitionStorage("app", path=path, size="16KiB", key_file=keyfile)
    texts = [f"secret number {i}" for i in range(20)]
    for i, t in enumerate(texts):
        s.write(t, 20 + i % 3, b"payload-%d" % i, "utf8")
    s.flush()
    raw = open(path, "rb").read()
    assert b"secret number" not in raw and b"payload-" not in raw
    assert [m.text for m in s.reader()] == texts
    assert [bytes(m.data) for m in s.reader()] == [b"payload-%d" % i for i in range(20)]
    # Without the key: the metadata, and "[encrypted]" for the text.
    plain = list(open_reader(path))
    assert [m.severity for m in plain] == [20 + i % 3 for i in range(20)]
    assert {m.text for m in plain} == {"[encrypted]"}
    # With the key, through the tools' reader.
    assert [m.text for m in open_reader(path, key_file=keyfile)] == texts
    # The drain's family is sealed with the same key file.
    fam = _family(tmp_path, keyfile)
    assert s.drain(fam, everything=True) == 20
    assert [m.text for m in fam.reader()] == texts
    assert {m.text for m in family_reader(str(tmp_path / "family"), "app")} == {"[encrypted]"}
    s.close()


def test_many_swaps_each_half_new_uuid_no_nonce_repeat(tmp_path, keyfile):
    s = PartitionStorage("app", path=str(tmp_path / "buf.part"), size="8KiB", key_file=keyfile)
    fam = _family(tmp_path, keyfile)
    seen: set[tuple[str, int]] = set()
    uuids = set()
    n = 0
    for round_ in range(30):
        for i in range(25):
            s.write(f"m {n}", 20)
            n += 1
        for pair in _halves_uuid_seq(s):
            seen.add(pair)
        uuids.update(h.uuid for h in s.partition.halves)
        s.drain(fam, everything=True)
    s.drain(fam, everything=True)
    assert [m.text for m in fam.reader()] == [f"m {i}" for i in range(n)]
    assert len(uuids) >= 20, f"halves were not reformatted with new UUIDs ({len(uuids)} seen)"
    seqs = [seq for _u, seq in seen]
    assert len(seqs) == len(set(seqs)), "a sequence number (nonce) was used twice"
    s.close()


def test_writer_in_other_process_rekeys_after_reuse(tmp_path, keyfile):
    """Two writer processes fill a small sealed partition while this process
    drains it continuously (every drain swaps and reuses halves, so each
    writer's half objects go stale under it): every message arrives once,
    decrypted and authentic."""
    path = str(tmp_path / "buf.part")
    size, count = "64KiB", 3000
    s = PartitionStorage("app", path=path, size=size, key_file=keyfile)
    fam = _family(tmp_path, keyfile)
    with procs.Group() as g:
        go = procs.CTX.Event()
        kids = g.spawn_many(2, partprocs.child_partition_write,
                            lambda w: (path, size, w, count, go, 0.01, keyfile))
        procs.recv_all(kids, "ready")
        go.set()
        done = set()
        while len(done) < len(kids):
            s.drain(fam, everything=True)
            for k in [k for k in kids if k not in done]:
                if k.conn.poll(0.002):
                    k.expect("done")
                    done.add(k)
        for k in kids:
            assert k.join() == 0
    s.drain(fam, everything=True)
    st = s.stats()
    got = list(fam.reader())
    assert st["lost"] == 0, st             # paced so that the drains keep up
    pairs = [procs.parse_text(m.text) for m in got]
    assert len(pairs) == len(set(pairs)) == 2 * count, (len(pairs), len(set(pairs)))
    for m in got:
        w, i = procs.parse_text(m.text)
        assert m.checksum_ok()
        assert bytes(m.data) == procs.message_data(w, i)
    assert st["swaps"] > 10, st
    s.close()


def test_sealing_must_agree_with_the_file(tmp_path, keyfile):
    path = str(tmp_path / "plain.part")
    PartitionStorage("app", path=path).close()
    with pytest.raises(InvalidArgument, match="created without encryption.*key_file"):
        PartitionStorage("app", path=path, key_file=keyfile)
    sealed = str(tmp_path / "sealed.part")
    PartitionStorage("app", path=sealed, key_file=keyfile).close()
    with pytest.raises(MissingKey, match="sealed"):
        PartitionStorage("app", path=sealed)
    other = tmp_path / "other.keys"
    generate_key_file(other)
    with pytest.raises(WrongKey, match="key id 1"):
        PartitionStorage("app", path=sealed, key_file=str(other))
    with pytest.raises(WrongKey):
        open_reader(sealed, key_file=str(other))


def test_key_rotation_takes_effect_at_the_next_swap(tmp_path, keyfile):
    s = PartitionStorage("app", path=str(tmp_path / "buf.part"), size="8KiB", key_file=keyfile)
    fam = _family(tmp_path, keyfile)
    s.write("under key 1")
    s.drain(fam, everything=True)          # swaps: the reused half gets the current key (still 1)
    add_key(keyfile)                       # key 2 becomes current
    s.write("still key 1: the live half keeps its key")
    s.drain(fam, everything=True)          # the next half is formatted under key 2
    s.write("under key 2")
    kids = {m.text: m.key_id for h in s.partition.halves for m in h}
    assert kids == {"still key 1: the live half keeps its key": 1, "under key 2": 2}, kids
    s.drain(fam, everything=True)
    assert [m.text for m in fam.reader()] == ["under key 1", "still key 1: the live half keeps its key",
                                               "under key 2"]
    s.close()


def test_pipe_spill_is_sealed_when_the_log_is(tmp_path, keyfile):
    fifo = str(tmp_path / "app.fifo")
    fam = _family(tmp_path, keyfile)
    t = PipeTransport(fam, "app", fifo=fifo)          # no reader: everything spills
    for i in range(10):
        t.write(f"spilled secret {i}", 20, b"", "", time.time_ns())
    t.flush()
    spill = fifo + ".spill"
    assert b"spilled secret" not in open(spill, "rb").read()
    assert {m.text for m in open_reader(spill)} == {"[encrypted]"}
    t.close()
    n = drain_pipe(fifo, fam, idle_timeout=0.3)
    assert n == 10
    assert [m.text for m in fam.reader()] == [f"spilled secret {i}" for i in range(10)]
    assert os.path.exists(spill)
