# Type stubs for logkit._crypto (pyx/logkit/_crypto.pyx): ChaCha20-Poly1305
# (RFC 8439) in C and logkit's sealing construction (docs/security.md).  The
# C-level API for other Cython modules is pyx/logkit/_crypto.pxd.  Lengths are
# checked: a wrong key, nonce or tag length raises logkit.errors.InvalidArgument,
# and so does a read-only buffer where one is sealed or opened in place.
from _typeshed import ReadableBuffer, WriteableBuffer
import uuid

KEY_BYTES: int        # 32
NONCE_BYTES: int      # 12
TAG_BYTES: int        # 16
FLAG_SEALED: int      # proposed message flag 0x0002 (docs/security.md)
AAD_START: int        # 8: first authenticated message header byte
AAD_END: int          # 56: end of the authenticated header bytes
SEGMENT_KEY_CONTEXT: str
KEY_CHECK_CONTEXT: str

def chacha20_block(key: ReadableBuffer, counter: int, nonce: ReadableBuffer) -> bytes:
    """The 64-byte ChaCha20 block (RFC 8439 2.3)."""
def poly1305(key: ReadableBuffer, message: ReadableBuffer) -> bytes:
    """The 16-byte Poly1305 tag (RFC 8439 2.5) under a 32-byte one-time key."""
def seal(key: ReadableBuffer, nonce: ReadableBuffer, aad: ReadableBuffer, data: WriteableBuffer) -> bytes:
    """Encrypt data in place (ChaCha20-Poly1305, RFC 8439 2.8); return the 16-byte tag."""
def open_(key: ReadableBuffer, nonce: ReadableBuffer, aad: ReadableBuffer, data: WriteableBuffer,
          tag: ReadableBuffer) -> None:
    """Verify the tag, then decrypt data in place; logkit.crypto.MessageTampered
    (data unchanged) when the tag does not match."""
def message_nonce(sequence: int) -> bytes:
    """The 12-byte nonce of message `sequence`: 4 zero bytes, then u64 LE."""
def segment_key(log_key: ReadableBuffer, segment_uuid: ReadableBuffer | uuid.UUID) -> bytes:
    """The 32-byte per-segment key: BLAKE3 derive_key(SEGMENT_KEY_CONTEXT, log_key || uuid)."""
def key_check(seg_key: ReadableBuffer) -> bytes:
    """16 bytes that identify a segment key without revealing it."""
def seal_message(seg_key: ReadableBuffer, msg: WriteableBuffer, offset: int = 0) -> None:
    """Seal the message at `offset` of msg in place (proposed version 2 layout)."""
def open_message(seg_key: ReadableBuffer, msg: WriteableBuffer, offset: int = 0) -> None:
    """Verify and decrypt the sealed message at `offset` of msg in place;
    MessageTampered (message unchanged) when its tag does not match."""

# benchmark loops (bench/bench_crypto.py); each returns a value derived from
# the last result so the loop cannot be optimised away
def _bench_seal_loop(seg_key: ReadableBuffer, payload: int, n: int) -> int: ...
def _bench_floor_loop(payload: int, n: int) -> int: ...
def _bench_aead_loop(seg_key: ReadableBuffer, payload: int, n: int) -> int: ...
