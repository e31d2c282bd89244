"""Small valid inputs made by the library itself: the fuzz corpus seeds and
the originals the structured mutations (tests/test_fuzz_structured.py) and
the power-loss tests start from.

`python tests/fuzz/seeds.py` (re)writes tests/fuzz/corpus/<target>/seed-*;
the functions are also imported by the tests, which build fresh originals.
"""
from __future__ import annotations

import mmap
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

SEG_SIZE = 8192           # the smallest segment: short inputs fuzz faster
HALF_SIZE = 8192


def messages(n: int, tag: str = "m"):
    """n (text, severity, data, data_class) tuples of varied shape."""
    out = []
    for i in range(n):
        data = bytes(range(i % 7 * 5)) if i % 3 else b""
        out.append((f"{tag}{i} " + "x" * (i * 13 % 90), (i * 10) % 60 - 10, data, "bin" if data else ""))
    return out


SEAL_KEY = (1, bytes(range(32)))      # (key id, log key) of the sealed seeds: a test key, public on purpose


def make_segment(path: str, n: int = 6, size: int = SEG_SIZE, open_reservation: bool = False,
                 base: int = 1, sealed: bool = False) -> list[tuple[int, int, int]]:
    """A segment file with n messages (sealed under SEAL_KEY if asked);
    returns [(sequence, offset, length)] of its finished messages."""
    from logkit import Segment
    seg = Segment.create(path, size=size, family="fuzz", sequence_base=base, key=SEAL_KEY if sealed else None)
    try:
        for i, (text, sev, data, cls) in enumerate(messages(n)):
            seg.write(text, sev, data, cls, time=1_700_000_000_000_000_000 + i * 1000)
        if open_reservation:
            r = seg.reserve(5, 0, "")
            r.text[:] = b"open!"          # never finished: a writer that died here
        out = [(r.sequence, r.offset, r.length) for r in seg.records() if r.kind == "committed"]
    finally:
        seg.close()
    return out


def make_ledger(directory: str, family: str = "fuzz", segments: int = 3) -> list[bytes]:
    """A sealed family's identity ledger (logkit.idledger) recording
    `segments` sealed segments made under SEAL_KEY, the first with sequence
    base 1; returns the segments' bytes, oldest first (they stay in `directory`
    as FAMILY.20250101.00000N)."""
    from logkit import Segment, idledger
    out = []
    base = 1
    for k in range(segments):
        path = os.path.join(directory, f"{family}.20250101.00000{k}")
        make_segment(path, n=4, base=base, sealed=True)
        with Segment.open(path) as seg:
            idledger.record(directory, family, seg)
            base += seg.stats()["reserved"]
        with open(path, "rb") as f:
            out.append(f.read())
    return out


def make_partition(path: str, n: int = 5, half: int = HALF_SIZE, swap: bool = True) -> None:
    """A partition file (halves of `half` bytes) holding n undrained messages,
    in both halves when swap is true."""
    from logkit.backends.partition import PartitionStorage
    s = PartitionStorage("fuzz", path=path, size=half)
    try:
        msgs = messages(n, "p")
        first = msgs[: n // 2] if swap else msgs
        for text, sev, data, cls in first:
            s.write(text, sev, data, cls)
        if swap:
            s.swap(reason="seed")
            for text, sev, data, cls in msgs[n // 2:]:
                s.write(text, sev, data, cls)
    finally:
        s.close()


def frames(n: int = 3, big: bool = True) -> bytes:
    """The bytes n writers' records make in a FIFO; with big, one record
    that goes as fragments."""
    from logkit.backends.pipe import encode_frames, encode_record
    out = bytearray()
    for i, (text, sev, data, cls) in enumerate(messages(n, "f")):
        rec = encode_record(text.encode(), sev, data, cls.encode(), 1_700_000_000_000_000_000 + i, 1000 + i, 7)
        out += b"".join(encode_frames(rec, 1000 + i, 7, i))
    if big:
        rec = encode_record(b"B" * 5000, 30, b"", b"", 1_700_000_000_000_000_999, 4242, 9)
        out += b"".join(encode_frames(rec, 4242, 9, 77))
    return bytes(out)


def make_journal(path: str, payload: bytes | None = None, settle: bool = False) -> None:
    """A pipe journal made by PipeJournal from the frames it read; unless
    settle, its words are set back so that the whole payload is still an
    unconfirmed batch (what a reader killed between journal and consume
    leaves)."""
    from logkit._segment import store_word
    from logkit.backends import pipejournal as J
    from logkit.backends.pipe import FrameDecoder
    from tests.fuzz.targets import ListStorage
    payload = frames() if payload is None else payload
    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        j = J.PipeJournal(path, rfd, ListStorage(), FrameDecoder())
        try:
            at = 0
            while at < len(payload):
                at += os.write(wfd, payload[at:at + 4096])
                while j.pump():
                    pass
        finally:
            j.close()
    finally:
        os.close(rfd)
        os.close(wfd)
    if not settle:
        # Words set back as a reader killed between journal and consume leaves them.
        end = J.read_journal_header(path)["end"]
        with open(path, "r+b") as f, mmap.mmap(f.fileno(), J.HEADER_SIZE) as mm:
            for w in (J.W_BASE, J.W_BATCH, J.W_APPLIED, J.W_RESOLVE):
                store_word(mm, w, end - len(payload))


CONFIGS = [
    b'[log.app]\ndirectory = "/var/log/app"\nfamily = "app"\nsegment_size = "8MiB"\nretain_count = 100\n',
    b'[log.audit.storage]\nbackend = "family"\ndirectory = "/var/log/audit"\nsegment_size = "64MiB"\n'
    b'[log.audit.transport]\nbackend = "shm"\n',
    b'[log.spill]\nstorage = "partition"\npath = "/tmp/x.part"\nsize = "1MiB"\nswap_interval = "30s"\n',
    b'[log.p]\nstorage = "plainfile"\ntransport = "pipe"\npath = "/tmp/p.log"\n',
    b'[log.bad]\nsegment_size = 10001\nunknown = true\n',
]

EXPRESSIONS = [
    b"2026-12-01T10:00\x00-2h", b"-30m\x0010", b"yesterday\x001h30m", b"today\x00now",
    b"now-2h\x00/(?i)disk/", b"12345\x0099999", b"2026-12-01T10:00:00+05:30\x001.5h",
    b"20:29,40\x00disk", b"-250:250\x00-3d",
]


def record_payloads() -> dict[str, bytes]:
    """Record payloads (docs/format.md, "The record payload") for the record
    target: the target splits its input at the first NUL into a data class
    and the data."""
    from logkit import record_encode
    full = record_encode("web.api", "views", "get", 42, "/srv/app/views.py",
                         {"user": "alice", "n": 3, "ok": True, "tags": ["a"], "none": None}, "Traceback ...")
    return {"full": b"record\x00" + full, "bare": b"record\x00" + record_encode(),
            "fields": b"record\x00" + record_encode("x", fields={"k": "v" * 40}),
            "json": b'json\x00{"user": "bob", "traceback": "tb"}', "traceback": b"traceback\x00Traceback"}


def write_corpus() -> dict[str, int]:
    """(Re)write the seed files under corpus/<target>/; returns counts."""
    import shutil
    counts = {}
    tmp = tempfile.mkdtemp(prefix="logkit-seeds-")
    try:
        def save(target, name, data):
            d = os.path.join(CORPUS, target)
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, f"seed-{name}"), "wb") as f:
                f.write(data)
            counts[target] = counts.get(target, 0) + 1

        def read(p):
            with open(p, "rb") as f:
                return f.read()

        for name, kw in (("six", {}), ("open", {"open_reservation": True}), ("empty", {"n": 0}),
                         ("base", {"n": 3, "base": 1 << 40}), ("sealed", {"sealed": True})):
            p = os.path.join(tmp, name + ".seg")
            make_segment(p, **kw)
            save("segment", name, read(p))
            save("salvage", name, read(p))
        p = os.path.join(tmp, "x.part")
        make_partition(p)
        save("partition", "two-halves", read(p))
        p = os.path.join(tmp, "y.part")
        make_partition(p, swap=False)
        save("partition", "one-half", read(p))
        p = os.path.join(tmp, "a.journal")
        make_journal(p)
        save("journal", "unconfirmed", read(p))
        p = os.path.join(tmp, "b.journal")
        make_journal(p, settle=True)
        save("journal", "settled", read(p))
        d = os.path.join(tmp, "ledger")
        os.makedirs(d)
        make_ledger(d)
        whole = read(os.path.join(d, "fuzz.ids"))
        save("ledger", "three", whole)
        save("ledger", "torn", whole[:100] + whole[64:])
        save("frames", "records", frames(3, big=False))
        save("frames", "fragments", frames(2, big=True))
        for i, c in enumerate(CONFIGS):
            save("config", str(i), c)
        for i, e in enumerate(EXPRESSIONS):
            save("select", str(i), e)
        for name, data in record_payloads().items():
            save("record", name, data)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return counts


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
    print(write_corpus())
