"""Sealed messages: the per-message cost of ChaCha20-Poly1305 (logkit._crypto,
pyx/include/lk_seal.h) for 64-byte and 1 KiB payloads.

Rows, for each payload size:
  * floor: copy the text into a message and CRC-32C header + payload (what an
    unsealed write spends on the payload), in a Cython loop;
  * sealed: the same plus lk_seal_message (nonce from the sequence, 48 header
    bytes of additional data, encrypt, tag), in a Cython loop;
  * the AEAD alone (lk_aead_seal, 48-byte aad), in a Cython loop;
  * _crypto.seal() called from Python, one call per message;
  * pycryptodome, one ChaCha20_Poly1305 object per message
    (new + update(aad) + encrypt_and_digest), as a per-message design would do.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import measure, report  # noqa: E402

from Crypto.Cipher import ChaCha20_Poly1305  # noqa: E402

from logkit import Segment, _bench, _crypto  # noqa: E402

N = int(os.environ.get("LOGKIT_BENCH_N", "1000000"))
KEY = os.urandom(32)
AAD = os.urandom(48)


def segment_write(payload: int, n: int) -> float:
    """ns per unsealed seg write (reserve, copy, CRC-32C, commit) in a Cython loop."""
    best = float("inf")
    size = ((n * ((64 + payload + 7) & ~7) + 8192) + 4095) // 4096 * 4096
    text = b"x" * payload
    with tempfile.TemporaryDirectory(prefix="logkit-bench-", dir=os.environ.get("LOGKIT_BENCH_DIR")) as d:
        for i in range(3):
            path = os.path.join(d, f"w{i}.seg")
            seg = Segment.create(path, size=size)
            t0 = time.perf_counter_ns()
            done = _bench.write_loop(seg, text, n)
            best = min(best, (time.perf_counter_ns() - t0) / n)
            assert done == n, done
            seg.close()
            os.unlink(path)
    return best


def rows_for(payload: int) -> list[dict]:
    n_c = max(N // (4 if payload > 256 else 1), 1000)
    n_py = max(N // 5, 1000)
    n_pc = max(N // 50, 1000)
    floor = measure(lambda n: _crypto._bench_floor_loop(payload, n), n_c)
    sealed = measure(lambda n: _crypto._bench_seal_loop(KEY, payload, n), n_c)
    aead = measure(lambda n: _crypto._bench_aead_loop(KEY, payload, n), n_c)

    buf = bytearray(payload)
    nonces = [_crypto.message_nonce(i) for i in range(1, 1025)]
    seal = _crypto.seal

    def py_seal(n):
        for i in range(n):
            seal(KEY, nonces[i & 1023], AAD, buf)

    text = b"x" * payload

    def pycryptodome(n):
        for i in range(n):
            c = ChaCha20_Poly1305.new(key=KEY, nonce=nonces[i & 1023])
            c.update(AAD)
            c.encrypt_and_digest(text)

    write = segment_write(payload, min(n_c, 100_000))
    py = measure(py_seal, n_py)
    pc = measure(pycryptodome, n_pc)
    size = f"{payload} B" if payload < 1024 else f"{payload // 1024} KiB"
    return [
        {"case": f"{size}: floor, copy + CRC-32C (Cython loop)", "ns": floor},
        {"case": f"{size}: sealed, copy + seal_message + CRC-32C (Cython loop)", "ns": sealed,
         "ratio": sealed / floor, "ratio_to": "of the floor"},
        {"case": f"{size}: seal cost over the floor", "ns": sealed - floor},
        {"case": f"{size}: lk_aead_seal alone (Cython loop)", "ns": aead},
        {"case": f"{size}: unsealed segment write (Cython loop)", "ns": write},
        {"case": f"{size}: that write plus the seal cost", "ns": write + sealed - floor,
         "ratio": (write + sealed - floor) / write, "ratio_to": "of the unsealed write"},
        {"case": f"{size}: _crypto.seal() from Python", "ns": py,
         "ratio": py / aead, "ratio_to": "of the C AEAD"},
        {"case": f"{size}: pycryptodome, new object per message", "ns": pc,
         "ratio": pc / sealed, "ratio_to": "of logkit's sealed path"},
    ]


def main():
    t0 = time.perf_counter()
    rows = rows_for(64) + rows_for(1024)
    report("crypto", rows, [
        f"up to {N} messages per measurement, best of 5; 48 bytes of additional data "
        f"(message header bytes 8..55), no data-class name",
        "ChaCha20 runs 4 blocks at a time with GCC vector extensions (SSE2 here), Poly1305 with "
        "64-bit limbs; both portable C in pyx/include/lk_seal.h",
        f"total time {time.perf_counter() - t0:.1f} s",
    ])


if __name__ == "__main__":
    main()
