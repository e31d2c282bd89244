"""The identity ledger of a sealed family: ``FAMILY.ids`` beside its segments.

A sealed segment's messages open only under a key derived from the log key
and the segment's UUID, and the header page holds the UUID, its copy, the key
id and the key check: a lost header page (a crash without write-back) took all
of them, and every message of the segment stayed sealed for good.  So a
writer that creates or opens a sealed segment of a family also appends the
segment's identity to this ledger; salvage (and the read-only tools, in their
private copy) takes the identity back from it when the header's is gone,
choosing the record whose sequence base is the greatest one not above the
first message found (the bases of one family's segments only grow).

docs/format.md ("The identity ledger") gives the bytes.  Records are 64 bytes,
each appended by one write() on an O_APPEND descriptor and then synced; a
reader checks each one's CRC and skips what fails, so a damaged ledger loses
only its damaged records.  A segment is recorded at most once per writer
(`record` reads the ledger first); a duplicate record is harmless.
"""
from __future__ import annotations

import os
import re
import struct
import uuid as _uuid
from typing import NamedTuple

from logkit import safefs
from logkit._segment import crc32c

__all__ = ["SUFFIX", "RECORD_SIZE", "VERSION", "Identity", "ledger_path", "record", "identities",
           "identity_for", "family_of", "copy_ledger", "encode", "decode"]

SUFFIX = ".ids"
VERSION = 1
MAGIC = b"LKID"
RECORD_SIZE = 64
# magic, version, reserved, key id, UUID, key check, sequence base, created, reserved; CRC-32C after
_LAYOUT = struct.Struct("<4sBBH16s16sQqI")
assert _LAYOUT.size + 4 == RECORD_SIZE
MAX_LEDGER = 64 << 20        # a reader reads at most the last this many bytes (a million segments)
RECENT = 64 * RECORD_SIZE     # record() looks for the segment among the last 64 records (one read of 4 KiB)

_HISTORY = re.compile(r"(.+)\.\d{8}\.\d{6}(?:\.\d{4})?")


class Identity(NamedTuple):
    """What a sealed segment's header page held that nothing else can give back."""
    uuid: bytes            # 16 bytes, as uuid.UUID.bytes
    key_id: int
    key_check: bytes       # 16 bytes
    sequence_base: int
    created: int           # ns


def ledger_path(directory, family: str) -> str:
    return os.path.join(os.fspath(directory), family + SUFFIX)


def family_of(segment_path) -> tuple[str, str]:
    """(directory, family) of a family's segment file, from its name alone
    (FAMILY or FAMILY.YYYYMMDD.HHMMSS[.NNNN]): its header may be lost."""
    d, name = os.path.split(os.path.abspath(os.fspath(segment_path)))
    m = _HISTORY.fullmatch(name)
    return d, (m.group(1) if m else name)


def encode(ident: Identity) -> bytes:
    body = _LAYOUT.pack(MAGIC, VERSION, 0, ident.key_id, ident.uuid, ident.key_check,
                        ident.sequence_base, ident.created, 0)
    return body + struct.pack("<I", crc32c(body))


def decode(raw: bytes) -> Identity | None:
    """The identity in one 64-byte record, or None if it is not a sound record."""
    if len(raw) != RECORD_SIZE or raw[:4] != MAGIC:
        return None
    if struct.unpack_from("<I", raw, RECORD_SIZE - 4)[0] != crc32c(raw[:RECORD_SIZE - 4]):
        return None
    magic, version, _r, key_id, uid, check, base, created, _r2 = _LAYOUT.unpack_from(raw)
    if version != VERSION or key_id == 0 or base == 0:
        return None
    return Identity(uid, key_id, check, base, created)


def identities(path, tail: int | None = None) -> list[Identity]:
    """Every sound record of the ledger at `path` (none if there is no ledger).
    A record is found by its magic wherever it starts (a torn append leaves
    the next ones off the 64-byte grid); damaged ones are skipped."""
    try:
        fd = safefs.open_file(os.fspath(path), os.O_RDONLY)
    except FileNotFoundError:
        return []
    try:
        with os.fdopen(fd, "rb") as f:
            limit = MAX_LEDGER if tail is None else min(tail, MAX_LEDGER)
            f.seek(max(0, os.fstat(f.fileno()).st_size - limit))
            raw = f.read(limit)
    except OSError as e:
        raise safefs.translate_error(e, os.fspath(path), "read") from None
    found = []
    at = raw.find(MAGIC)
    while 0 <= at <= len(raw) - RECORD_SIZE:
        ident = decode(raw[at:at + RECORD_SIZE])
        if ident is not None:
            found.append(ident)
            at = raw.find(MAGIC, at + RECORD_SIZE)
        else:
            at = raw.find(MAGIC, at + 1)
    return found


def _append(path: str, records: bytes, mode: int) -> None:
    fd = safefs.open_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
    try:
        os.write(fd, records)            # one write: O_APPEND keeps records whole and in order
        os.fsync(fd)
    except OSError as e:
        raise safefs.translate_error(e, path, "append to") from None
    finally:
        os.close(fd)


def copy_ledger(directory, destination, family: str, mode: int = safefs.FILE_MODE) -> int:
    """Append to `destination`'s ledger of `family` every record of
    `directory`'s it lacks (migrate does this before it moves history
    segments, so each keeps its identity beside it).  Returns how many."""
    have = {i.uuid for i in identities(ledger_path(destination, family))}
    new = [i for i in identities(ledger_path(directory, family)) if i.uuid not in have]
    if new:
        _append(ledger_path(destination, family), b"".join(encode(i) for i in new), mode)
    return len(new)


def record(directory, family: str, seg, mode: int = safefs.FILE_MODE) -> bool:
    """Append the identity of the sealed segment `seg` to the family's ledger
    unless it is there already; returns True if it appended.  Unsealed
    segments are not recorded (their UUID is not needed to read them)."""
    if not seg.sealed:
        return False
    h = seg.header()
    ident = Identity(_uuid.UUID(h["uuid"]).bytes, h["key_id"], bytes(h["key_check"]),
                     h["sequence_base"], h["created"])
    path = ledger_path(directory, family)
    # A segment is recorded when it is made, before it is installed, so the
    # live one is the family's newest record: look only at the last few.
    if any(i.uuid == ident.uuid for i in identities(path, tail=RECENT)):
        return False
    _append(path, encode(ident), mode)
    return True


def identity_for(segment_path, first_sequence: int) -> Identity | None:
    """The identity of the family segment at `segment_path` whose first
    message found has sequence `first_sequence`: the ledger record with the
    greatest sequence base not above it, or None (no ledger, or no record)."""
    d, family = family_of(segment_path)
    best = None
    for ident in identities(ledger_path(d, family)):
        if ident.sequence_base <= first_sequence and (best is None or ident.sequence_base > best.sequence_base):
            best = ident
    return best
