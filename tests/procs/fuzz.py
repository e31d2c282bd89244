"""Child processes for the mutator race (tests/test_mutator_race.py).

Run as `python tests/procs/fuzz.py ROLE ARGS...`, each a separate process so
that a crash (a signal) or a hang in one is seen from outside:

* mutate PATH SECONDS SEED [bytes|fields|toggle]: scribbles on the file
  through a shared mapping for SECONDS: random bits anywhere after the
  header's identity block; with `fields` also the length, severity and
  state fields of the messages it finds set to boundary values; with
  `toggle` only length and severity fields flipped to a huge value and
  straight back, over and over -- what a co-writer that scribbles does.
* read PATH SECONDS: opens the segment read-only again and again, walks
  it, touches every field of every message (Segment.open, iteration,
  records(), find, limits).
* follow DIRECTORY FAMILY SECONDS: FamilyReader.follow() over the family
  for SECONDS (stopped from a timer thread), touching every field.

* change-then-touch PATH OFFSET: walks the segment, then (itself, through
  a second mapping, as a co-writer would) sets the field at OFFSET of its
  second message to 0xFF..F0, then calls every accessor of that message.
* read-held PATH: opens the segment read-only, says OPEN, waits for a line
  on stdin (the parent truncates the file meanwhile), then walks it.

A reader exits 0 when every error it met was a LogkitError with a message,
3 (printing the traceback) for any other exception.
"""
from __future__ import annotations

import mmap
import os
import random
import sys
import threading
import time
import traceback

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(TESTS))

SENTINEL = b"\xff\xfeLK"
BOUNDARY32 = (0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0x10000, 4096, 64)


def mutate(path: str, seconds: float, seed: int, mode: str = "bytes") -> int:
    rng = random.Random(seed)
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        mm = mmap.mmap(fd, size)
    finally:
        os.close(fd)
    starts = []
    at = mm.find(SENTINEL, 4096)
    while at >= 0:
        starts.append(at)
        at = mm.find(SENTINEL, at + 8)
    print(f"READY {len(starts)}", flush=True)
    end = time.monotonic() + seconds
    n = 0
    if mode == "toggle":
        # Validate once, read twice: a length or severity field of every
        # message flips to a huge value and back, again and again, so a
        # reader that reads it a second time after checking it sees the
        # other value (issue 13 #7).
        fields_ = [(m + off, sz) for m in starts for off, sz in ((40, 4), (44, 4), (48, 2), (12, 2), (8, 4))]
        while time.monotonic() < end:
            for _ in range(1000):
                at, sz = rng.choice(fields_)
                old = mm[at:at + sz]
                mm[at:at + sz] = b"\xf0" + b"\xff" * (sz - 1)
                mm[at:at + sz] = old
                n += 1
        mm.close()
        print(f"MUTATIONS {n}", flush=True)
        return 0
    fields = mode == "fields"
    while time.monotonic() < end:
        if fields and starts and rng.random() < 0.7:
            m = rng.choice(starts)
            off = rng.choice((4, 8, 12, 40, 44, 48, 52))
            size_f = 2 if off in (12, 48) else 4
            v = rng.choice(BOUNDARY32) & ((1 << (8 * size_f)) - 1)
            old = mm[m + off:m + off + size_f]
            mm[m + off:m + off + size_f] = v.to_bytes(size_f, "little")
            if rng.random() < 0.5:      # and back: a reader may have validated the new value
                mm[m + off:m + off + size_f] = old
        else:
            # Not the identity (0..387): its checksum would make every open
            # fail at once, and the readers would never walk.
            i = rng.randrange(388, size)
            mm[i] = mm[i] ^ (1 << rng.randrange(8))
        n += 1
    mm.close()
    print(f"MUTATIONS {n}", flush=True)
    return 0


def _touch(m) -> None:
    m.sequence, m.time, m.severity, m.process_id, m.thread_id, m.size
    str(m.text)
    bytes(m.text_bytes)
    str(m.data_class)
    bytes(m.data)
    m.checksum_ok()
    m.to_dict()


def _guard(fn) -> int:
    from logkit.errors import LogkitError
    errors = 0
    try:
        errors = fn()
    except LogkitError as e:
        if not str(e).strip():
            traceback.print_exc()
            return 3
    except BaseException:
        traceback.print_exc()
        return 3
    print(f"DONE {errors}", flush=True)
    return 0


def read(path: str, seconds: float) -> int:
    from logkit import Segment
    from logkit.errors import LogkitError

    def loop():
        end = time.monotonic() + seconds
        passes = errors = 0
        while time.monotonic() < end:
            try:
                with Segment.open(path, readonly=True) as seg:
                    for m in seg:
                        _touch(m)
                    seg.records(whole_region=True)
                    seg.limits()
                    try:
                        _touch(seg.find(sequence=0))
                    except LogkitError:
                        pass
            except LogkitError as e:
                if not str(e).strip():
                    raise AssertionError(f"{type(e).__name__} with an empty message") from e
                errors += 1
            passes += 1
        print(f"PASSES {passes} REFUSED {errors}", flush=True)
        return errors
    return _guard(loop)


def follow(directory: str, family: str, seconds: float) -> int:
    from logkit import open_reader

    def loop():
        r = open_reader(directory, family)
        timer = threading.Timer(seconds, r.stop)
        timer.start()
        n = 0
        try:
            for m in r.follow(poll_interval=0.01, pending_grace=0.5):
                _touch(m)
                n += 1
        finally:
            timer.cancel()
        print(f"FOLLOWED {n}", flush=True)
        return 0
    return _guard(loop)


def read_held(path: str) -> int:
    from logkit import Segment

    def walk():
        with Segment.open(path, readonly=True) as seg:
            print("OPEN", flush=True)
            sys.stdin.readline()
            n = 0
            for m in seg:
                _touch(m)
                n += 1
            seg.records(whole_region=True)
            print(f"READ {n}", flush=True)
        return 0
    return _guard(walk)


def change_then_touch(path: str, offset: int) -> int:
    from logkit import Segment
    from logkit.errors import LogkitError

    def run():
        refused = 0
        with Segment.open(path, readonly=True) as seg:
            m = list(seg)[1]
            fd = os.open(path, os.O_RDWR)
            try:
                mm = mmap.mmap(fd, os.fstat(fd).st_size)
            finally:
                os.close(fd)
            size = 2 if offset in (12, 48) else 4
            mm[m.offset + offset:m.offset + offset + size] = b"\xf0" + b"\xff" * (size - 1)
            for name in ("text", "text_bytes", "data_class", "data", "checksum_ok", "to_dict", "size"):
                try:
                    v = getattr(m, name)
                    v = v() if callable(v) else v
                    bytes(v) if isinstance(v, memoryview) else str(v)
                except LogkitError as e:
                    if not str(e).strip():
                        raise AssertionError(f"{name}: {type(e).__name__} with an empty message") from e
                    refused += 1
            mm.close()
        print(f"TOUCHED refused={refused}", flush=True)
        return 0
    return _guard(run)


if __name__ == "__main__":
    role, args = sys.argv[1], sys.argv[2:]
    if role == "mutate":
        sys.exit(mutate(args[0], float(args[1]), int(args[2]), args[3] if len(args) > 3 else "bytes"))
    if role == "read":
        sys.exit(read(args[0], float(args[1])))
    if role == "change-then-touch":
        sys.exit(change_then_touch(args[0], int(args[1])))
    if role == "read-held":
        sys.exit(read_held(args[0]))
    if role == "follow":
        sys.exit(follow(args[0], args[1], float(args[2])))
    sys.exit(f"unknown role {role}")
