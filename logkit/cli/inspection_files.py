"""The inspection library for the other file kinds: partition files (a
partition header and two segment regions, each inspected as a segment by
logkit.cli.inspection) and pipe journals (the header words and the frames
between resolve and end, judged by the pipe decoder's own check_frame).
"""
from __future__ import annotations

import os
import struct

from typing import Any

from logkit import safefs
from logkit._segment import MIN_SEGMENT_SIZE, crc32c, token_state
from logkit.errors import LogkitError

from .inspection import SegmentView, cstring, describe_segment, iso, jsonable, map_file


# ---------------------------------------------------------------- partitions

def partition_fields():
    from logkit.backends import partition as P
    return (
        (P.H_MAGIC, "8s", "magic"), (P.H_VERSION, "<I", "version"), (P.H_HEADER_SIZE, "<I", "header_size"),
        (P.H_HALF_SIZE, "<Q", "half_size"), (P.H_HALF0, "<Q", "half0_offset"), (P.H_HALF1, "<Q", "half1_offset"),
        (P.H_CREATED, "<Q", "created"), (P.H_FAMILY, "64s", "family"),
        (P.H_IDENTITY_CRC, "<I", "identity_crc"),
        (P.H_CURRENT, "<Q", "current"), (P.H_GENERATION, "<Q", "generation"), (P.H_LOST, "<Q", "lost"),
        (P.H_LOSS_EVENTS, "<Q", "loss_events"), (P.H_DRAINED, "<Q", "drained"),
        (P.H_PROGRESS, "<Q", "progress"), (P.H_MARK, "<Q", "mark"), (P.H_NEXT_BASE, "<Q", "next_base"),
        (P.H_LAST_SWAP, "<Q", "last_swap"), (P.H_INTENT, "<Q", "intent"),
        (P.H_INTENT_LOST, "<Q", "intent_lost"), (P.H_INTENT_TOTAL, "<Q", "intent_total"),
        (P.H_INTENT_FIRST, "<Q", "intent_first"), (P.H_INTENT_LAST, "<Q", "intent_last"),
    )


class PartitionView:
    """A partition file open for inspection: its header fields decoded from
    the bytes, and a SegmentView of each half that lies inside the file."""

    def __init__(self, path: str, ring=None, private: bool = False):
        from logkit.backends import partition as P
        self.path = path
        self.mm = map_file(path, private)
        self.fields: dict[str, Any] = {}
        self.problems: list[str] = []        # damage
        self.notes: list[str] = []           # states worth knowing that are not damage
        self.halves: list[tuple[int, int, SegmentView | None]] = []
        self.half_size = 0
        self.intent_half: int | None = None
        self.identity_ok = False
        mv = memoryview(self.mm)
        try:
            for off, fmt, key in partition_fields():
                if off + struct.calcsize(fmt) <= len(mv):
                    v = struct.unpack_from(fmt, mv, off)[0]
                    self.fields[key] = cstring(v) if key == "family" else v
            if len(mv) < P.HEADER_SIZE:
                self.problems.append(f"{path}: {len(mv)} bytes is shorter than the {P.HEADER_SIZE}-byte "
                                     f"partition header")
                return
            self.identity_ok = crc32c(bytes(mv[0:P.IDENTITY_END])) == self.fields["identity_crc"]
            if not self.identity_ok:
                self.problems.append(f"{path}: partition header identity checksum mismatch (bytes "
                                     f"0..{P.IDENTITY_END - 1}, checksum at offset {P.H_IDENTITY_CRC})")
            if self.fields["version"] != P.FORMAT_VERSION:
                self.problems.append(f"{path}: partition format version {self.fields['version']} at offset "
                                     f"{P.H_VERSION} (this logkit reads version {P.FORMAT_VERSION})")
            half = self.fields["half_size"]
            offs = (self.fields["half0_offset"], self.fields["half1_offset"])
            if (half < P.MIN_HALF or half % P.PAGE or offs != (P.HEADER_SIZE, P.HEADER_SIZE + half)
                    or P.HEADER_SIZE + 2 * half > len(mv)):
                # Damaged sizes: fall back on the file's own size (two equal halves after the header).
                guess = (len(mv) - P.HEADER_SIZE) // 2 // 8 * 8
                self.problems.append(f"{path}: half size {half} at offset {P.H_HALF_SIZE} or half offsets "
                                     f"{offs[0]}, {offs[1]} do not fit a file of {len(mv)} bytes; "
                                     f"showing two halves of {guess} bytes instead")
                half, offs = guess, (P.HEADER_SIZE, P.HEADER_SIZE + guess)
            self.half_size = half
            intent = self.fields.get("intent", 0)
            for i, off in enumerate(offs):
                v = SegmentView.attach(self.mm, off, half, f"{path}@{off}", ring) if half >= MIN_SEGMENT_SIZE else None
                self.halves.append((i, off, v))
                if intent == i + 1:
                    self.intent_half = i
                    self.notes.append(f"{path}: half {i} at offset {off} was being formatted for reuse "
                                         f"when its swapper stopped (intent at offset {P.H_INTENT}); its "
                                         f"header may be torn, and its messages were counted as lost")
        finally:
            mv.release()

    def phase_of(self, i: int) -> str:
        from logkit.backends.partition import PHASE_NAMES
        v = self.halves[i][2]
        if v is None or v.seg is None:
            return "unknown"
        tok = v.seg.token()
        return PHASE_NAMES.get(token_state(tok), f"unknown phase {token_state(tok)}")

    def close(self) -> None:
        for _, _, v in self.halves:
            if v is not None:
                v.close()
        self.halves = []
        try:
            self.mm.close()
        except BufferError:
            pass

    def __enter__(self) -> "PartitionView":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def describe_partition(pv: PartitionView, records: bool = True) -> dict:
    from logkit.backends import partition as P
    f = pv.fields
    rows = []
    for off, _, key in partition_fields():
        if key not in f:
            continue
        v = f[key]
        if key == "magic":
            shown = repr(bytes(v))[1:] + ("" if bytes(v) == P.MAGIC else "  (NOT the partition magic)")
        elif key in ("created", "last_swap"):
            shown = f"{v} ({iso(v)})" if v else "0 (none)"
        elif key == "identity_crc":
            shown = f"0x{v:08X}" + (" (matches bytes 0..111)" if pv.identity_ok
                                    else " (MISMATCH)")
        elif key == "intent":
            shown = "0 (no reuse under way)" if v == 0 else f"{v} (half {v - 1} is being formatted for reuse)"
        elif key == "family":
            shown = repr(v)
        else:
            shown = str(v)
        rows.append({"offset": off, "field": key, "value": jsonable(v), "shown": shown})
    halves = []
    for i, off, v in pv.halves:
        if v is None:
            halves.append({"half": i, "file_offset": off, "phase": "unknown",
                           "problems": [f"half {i} at offset {off} is too small to be a segment"]})
            continue
        d = describe_segment(v, partition_half=True, records=records)
        d.update({"half": i, "file_offset": off, "phase": pv.phase_of(i)})
        halves.append(d)
    return {"file": pv.path, "kind": "partition", "problems": list(pv.problems), "notes": list(pv.notes),
            "partition_header": rows, "halves": halves}


# ---------------------------------------------------------------- pipe journals

def describe_journal(path: str, records: bool = True) -> dict:
    """A pipe reader's journal (docs/pipe-format.md, "The reader's journal"):
    its header words with their offsets, and each frame it still holds from
    `resolve` to `end` (position, length, kind, whether its record is
    stored, and for a record its writer and the start of its text).  Never
    raises on damaged data: a bad frame is shown as damaged bytes."""
    from logkit.backends import pipe as P
    from logkit.backends import pipejournal as J
    h = J.read_journal_header(path)
    rows = [{"offset": 0, "field": "magic", "shown": repr(J.JOURNAL_MAGIC)[1:]},
            {"offset": 4, "field": "version", "shown": str(h["version"])},
            {"offset": 8, "field": "header_size", "shown": str(J.HEADER_SIZE)}]
    rows += [{"offset": off, "field": k, "shown": str(h[k])} for k, off in J.WORDS.items()]
    d: dict = {"file": path, "kind": "pipe journal", "header": rows, "problems": [],
               "pending_bytes": h["pending_bytes"], "frames": []}
    if "problem" in h:
        # Implausible words (docs/pipe-format.md, "Bounds"): shown, and no
        # frame is read by them (they could ask for gigabytes).
        d["problems"].append(h["problem"])
        d["pending_bytes"] = 0
        return d
    if not records:
        return d
    start, end, base = h["resolve"], h["end"], h["base"]
    fd = safefs.open_file(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        f.seek(J.HEADER_SIZE + start - base)
        data = f.read(end - start)      # bounded: header_problem() limits end - base by the file's size
    torn = end - start - len(data)
    if torn > 0:
        # Shown as one entry, never padded and walked: it can be up to
        # TORN_LIMIT bytes (docs/pipe-format.md, "Bounds").
        d["problems"].append(f"the file holds {len(data)} of the {end - start} bytes from resolve to end "
                             "(torn by a crash?): the rest reads as zeros")
    pos, junk = 0, None
    while pos < len(data):
        fr = None
        verdict, total = P.check_frame(data, pos)       # the decoder's own judgement of a frame
        if verdict == P.FRAME_OK:
            flags = data[pos + 5]
            fr = {"position": start + pos, "length": total}
            if flags & P.FLAG_FRAGMENT:
                pid, tid, rid, idx, count, whole = P.FRAGMENT.unpack_from(data, pos + P.HEADER_SIZE)
                fr.update(kind="fragment", pid=pid, tid=tid, record_id=rid, index=idx, count=count)
            else:
                t, sev, cl, pid, tid, tl = P.RECORD.unpack_from(data, pos + P.HEADER_SIZE)
                text = data[pos + P.BODY_OFFSET:pos + P.BODY_OFFSET + min(tl, 60)]
                fr.update(kind="record", stored=start + pos + total <= h["applied"], pid=pid, tid=tid,
                          severity=sev, time=t, text=text.decode("utf-8", "replace"))
        if fr is None:
            if junk is None:
                junk = {"position": start + pos, "length": 0, "kind": "damaged or partial bytes"}
                d["frames"].append(junk)
            # On to the next candidate magic in one step, not byte by byte.
            nxt = data.find(P.MAGIC, pos + 1)
            nxt = len(data) if nxt < 0 else nxt
            junk["length"] += nxt - pos
            pos = nxt
            continue
        junk = None
        d["frames"].append(fr)
        pos += fr["length"]
    if torn > 0:
        d["frames"].append({"position": start + len(data), "length": torn,
                            "kind": "torn bytes (missing from the file, read as zeros)"})
    return d


def is_journal(path: str) -> bool:
    """True if `path` starts with the pipe journal's magic (logkit display shows it)."""
    from logkit.backends.pipejournal import JOURNAL_MAGIC
    try:
        with os.fdopen(safefs.open_file(path, os.O_RDONLY), "rb") as f:
            return f.read(4) == JOURNAL_MAGIC
    except (OSError, LogkitError):
        return False
