"""Sealed messages: key files, key ids, and the errors of encryption.

The cipher itself (ChaCha20-Poly1305 in C) is logkit._crypto; this module is
what a log's configuration touches: it loads a key file into a KeyRing, makes
new key files, and re-exports the per-segment key and per-message nonce of
docs/security.md.

Key file format (text, UTF-8, one entry per line):

    logkit-keys 1
    # comments and blank lines are ignored
    1 <base64 of 32 bytes>
    2 <base64 of 32 bytes>

The first line names the format.  Each entry is a key id (1..65535; 0 means
"not encrypted" in a message header) and the key in standard base64.  Ids are
unique; the LAST entry is the current key, the one writers seal new segments
with.  Older entries stay so that messages sealed under them remain readable.
The file must be mode 0600 or stricter (no group or other bits).
"""
from __future__ import annotations

import base64
import binascii
import os
import stat
import uuid as _uuid
from dataclasses import dataclass, field
from typing import Iterator

from logkit import _crypto
from logkit._crypto import key_check, message_nonce, open_, open_message, seal, seal_message, segment_key
# The errors the core raises for keys live in logkit.errors (the layer below
# the core's callers); they are this module's too.
from logkit.errors import LogkitError, MessageTampered, MissingKey, WrongKey

__all__ = [
    "KeyFileError",
    "KeyFileNotFound",
    "KeyFilePermissions",
    "MissingKey",
    "WrongKey",
    "MessageTampered",
    "KeyRing",
    "load_key_file",
    "generate_key_file",
    "add_key",
    "segment_key",
    "key_check",
    "message_nonce",
    "seal",
    "open_",
    "seal_message",
    "open_message",
    "open_segment_messages",
    "KEY_FILE_MAGIC",
    "MAX_KEY_ID",
]

KEY_FILE_MAGIC = "logkit-keys 1"
MAX_KEY_ID = 65535
KEY_BYTES = _crypto.KEY_BYTES


class KeyFileError(LogkitError):
    """A key file cannot be used: unreadable, malformed, or too widely readable.
    The message names the file (and the line, for a malformed entry)."""


class KeyFileNotFound(KeyFileError, FileNotFoundError):
    """No key file at the configured path."""


class KeyFilePermissions(KeyFileError, PermissionError):
    """The key file is readable or writable by group or others (mode must be 0600 or stricter)."""


@dataclass(frozen=True)
class KeyRing:
    """The keys of one key file: `keys` maps key id to its 32 bytes; `current`
    is the id writers use.  Made by load_key_file() or generate_key_file()."""

    path: str
    keys: dict[int, bytes] = field(repr=False)
    current: int

    def key(self, key_id: int) -> bytes:
        """The 32-byte key with this id; MissingKey (naming the file) if absent."""
        try:
            return self.keys[key_id]
        except KeyError:
            have = ", ".join(str(k) for k in sorted(self.keys))
            raise MissingKey(f"key file {self.path} has no key with id {key_id} (it holds ids {have}); "
                             f"the message was sealed under a key this file does not hold") from None

    @property
    def current_key(self) -> bytes:
        return self.keys[self.current]

    def segment_key(self, key_id: int, segment_uuid: bytes | _uuid.UUID) -> bytes:
        """The segment key of docs/security.md for key `key_id` and a segment's UUID."""
        return segment_key(self.key(key_id), segment_uuid)

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self.keys))


def _mode_problem(path: str, st: os.stat_result) -> str | None:
    if not stat.S_ISREG(st.st_mode):
        return f"key file {path} is not a regular file"
    if st.st_mode & 0o077:
        return (f"key file {path} has mode {stat.S_IMODE(st.st_mode):04o}, which lets group or "
                f"others read or write it; a key file must be mode 0600 or stricter "
                f"(fix: chmod 600 {path})")
    # Mode 0600 only protects a key if its owner is us: another user's 0600
    # file is that user's to rewrite (a root logkit would otherwise take a
    # key, or a key rotation, from whoever owns the file).
    me = os.geteuid()
    if st.st_uid not in (me, 0):
        return (f"key file {path} is owned by uid {st.st_uid}, not by uid {me} (this process) or root: "
                f"its owner could replace the key; a key file must belong to the user who runs logkit "
                f"(fix: chown {me} {path})")
    return None


def _parse(path: str, text: str) -> KeyRing:
    lines = text.splitlines()
    if not lines or lines[0].strip() != KEY_FILE_MAGIC:
        first = lines[0].strip()[:40] if lines else "(empty file)"
        raise KeyFileError(f"key file {path}, line 1: expected {KEY_FILE_MAGIC!r}, found {first!r}; "
                           f"this is not a logkit key file")
    keys: dict[int, bytes] = {}
    current = 0
    for no, raw in enumerate(lines[1:], start=2):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        where = f"key file {path}, line {no}"
        if len(parts) != 2:
            raise KeyFileError(f"{where}: expected 'KEYID BASE64KEY', found {len(parts)} fields")
        sid, b64 = parts
        if not sid.isascii() or not sid.isdigit():
            raise KeyFileError(f"{where}: key id {sid[:20]!r} is not a number 1..{MAX_KEY_ID}")
        kid = int(sid)
        if not 1 <= kid <= MAX_KEY_ID:
            raise KeyFileError(f"{where}: key id {kid} is outside 1..{MAX_KEY_ID} "
                               f"(0 means 'not encrypted' and cannot name a key)")
        if kid in keys:
            raise KeyFileError(f"{where}: key id {kid} appears twice")
        try:
            key = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise KeyFileError(f"{where}: the key of id {kid} is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise KeyFileError(f"{where}: the key of id {kid} is {len(key)} bytes; "
                               f"a key is {KEY_BYTES} bytes ({len(base64.b64encode(bytes(KEY_BYTES)))} "
                               f"base64 characters)")
        keys[kid] = key
        current = kid
    if not keys:
        raise KeyFileError(f"key file {path} holds no keys")
    return KeyRing(path=path, keys=keys, current=current)


def load_key_file(path: str | os.PathLike[str]) -> KeyRing:
    """Read a key file.  Raises KeyFileNotFound if it is missing,
    KeyFilePermissions if its mode allows group or others anything or it is
    owned by another user than this process's (root may own it; the checks
    are made on the opened file, so a swap after them does not matter), and
    KeyFileError, naming file and line, for anything malformed."""
    p = os.fspath(path)
    try:
        # O_NONBLOCK: a FIFO at the key file's name would otherwise block the
        # open; the kind check below refuses it.
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise KeyFileNotFound(f"key file {p} does not exist (make one with "
                              f"logkit.crypto.generate_key_file)") from None
    except OSError as e:
        raise KeyFileError(f"key file {p} cannot be opened: {e.strerror}") from None
    try:
        problem = _mode_problem(p, os.fstat(fd))
        if problem:
            raise KeyFilePermissions(problem)
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(1 << 20)
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise KeyFileError(f"key file {p} is not UTF-8 text (byte {e.start})") from None
    return _parse(p, text)


def _render(keys: dict[int, bytes], current: int) -> bytes:
    lines = [KEY_FILE_MAGIC, "# logkit key file: KEYID BASE64KEY; the last entry is the current key.",
             "# Keep it mode 0600. Losing a key loses the messages sealed with it."]
    for kid in [k for k in keys if k != current] + [current]:
        lines.append(f"{kid} {base64.b64encode(keys[kid]).decode('ascii')}")
    return ("\n".join(lines) + "\n").encode("ascii")


def _write_new(path: str, content: bytes, replace: bool) -> None:
    """Write content to path through a 0600 temporary file in the same
    directory, fsynced, then linked (new file: fails if path exists) or
    renamed (replace) into place, so no reader sees a partial or loose file."""
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, f".{os.path.basename(path)}.{os.getpid()}.{_uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise KeyFileError(f"key file {path} already exists; not overwritten "
                                   f"(use logkit.crypto.add_key to rotate)") from None
            os.unlink(tmp)
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def generate_key_file(path: str | os.PathLike[str], key_id: int = 1) -> KeyRing:
    """Create a new key file (mode 0600, atomically, never over an existing
    file) holding one fresh random key with id `key_id`; return its KeyRing.
    KeyFileError if the file already exists."""
    p = os.fspath(path)
    if not 1 <= key_id <= MAX_KEY_ID:
        raise KeyFileError(f"key id {key_id} for {p} is outside 1..{MAX_KEY_ID}")
    keys = {key_id: os.urandom(KEY_BYTES)}
    _write_new(p, _render(keys, key_id), replace=False)
    return KeyRing(path=p, keys=keys, current=key_id)


def add_key(path: str | os.PathLike[str]) -> KeyRing:
    """Rotate: append a fresh random key with the next id (largest id + 1) and
    make it current, keeping the old keys.  The file is replaced atomically.
    Segments formatted afterwards are sealed with the new key."""
    ring = load_key_file(path)
    kid = max(ring.keys) + 1
    if kid > MAX_KEY_ID:
        raise KeyFileError(f"key file {ring.path} already uses key id {MAX_KEY_ID}; "
                           f"start a new key file")
    keys = dict(ring.keys)
    keys[kid] = os.urandom(KEY_BYTES)
    _write_new(ring.path, _render(keys, kid), replace=True)
    return KeyRing(path=ring.path, keys=keys, current=kid)


def open_segment_messages(ring: KeyRing, key_id: int, segment_uuid: bytes | _uuid.UUID,
                          messages: list[tuple[bytearray, int]],
                          expected_check: bytes | None = None) -> list[int]:
    """Open sealed messages of one segment in place and tell a wrong key from
    tampering (the reader rule of docs/security.md).

    `messages` are (buffer, offset) pairs, each a sealed message in the
    format version 2 layout.  Returns the indexes of the messages that failed
    authentication (tampered; each left unchanged).  Raises MissingKey if
    the key file lacks `key_id`; WrongKey if the segment's key check
    (`expected_check`, when the segment records one) differs from the one
    the key file's key gives, or if there is no key check and every message
    failed: one tampered message fails alone, a wrong key fails them all.
    """
    sk = ring.segment_key(key_id, segment_uuid)
    if expected_check is not None and key_check(sk) != bytes(expected_check):
        raise WrongKey(f"key id {key_id} of key file {ring.path} is not the key this segment "
                       f"({_uuid.UUID(bytes=bytes(getattr(segment_uuid, 'bytes', segment_uuid)))}) "
                       f"was sealed with: its key check differs")
    bad = []
    for i, (buf, off) in enumerate(messages):
        try:
            open_message(sk, buf, off)
        except MessageTampered:
            bad.append(i)
    if messages and len(bad) == len(messages) and expected_check is None:
        raise WrongKey(f"key id {key_id} of key file {ring.path} opens none of the {len(messages)} "
                       f"sealed messages: it is not the key they were sealed with")
    return bad
