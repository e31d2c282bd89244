# The C-level API of sealed messages (pyx/include/lk_seal.h, docs/security.md).
# Other Cython modules `from logkit._crypto cimport ...` and get either the
# header's static inline functions themselves (inlined into the caller, the
# cheapest path: use these between reserve and finish) or the exported c_*
# functions below (one indirect call through this module's C-API table, no
# header needed).  All return LK_SEAL_OK (0), LK_SEAL_BAD_TAG or
# LK_SEAL_BAD_SIZE; none touches a Python object, allocates or blocks.
from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef extern from "lk_seal.h" nogil:
    enum:
        LK_SEAL_KEY_BYTES
        LK_SEAL_NONCE_BYTES
        LK_SEAL_TAG_BYTES
        LK_SEAL_OK
        LK_SEAL_BAD_TAG
        LK_SEAL_BAD_SIZE
        LK_SEAL_AAD_START
        LK_SEAL_AAD_END
        LK_SEAL_FLAG_SEALED
        LK_SEAL_M_HEADER

    ctypedef struct lk_span:
        uint8_t *p
        size_t n

    void lk_chacha20_block(const uint8_t *key, uint32_t counter, const uint8_t *nonce, uint8_t *out)
    void lk_poly1305(const uint8_t *key, const uint8_t *m, size_t n, uint8_t *tag)
    int lk_aead_seal_v(const uint8_t *key, const uint8_t *nonce, const lk_span *aad, int naad,
                       lk_span *text, int ntext, uint8_t *tag)
    int lk_aead_open_v(const uint8_t *key, const uint8_t *nonce, const lk_span *aad, int naad,
                       lk_span *text, int ntext, const uint8_t *tag)
    int lk_aead_seal(const uint8_t *key, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                     uint8_t *data, size_t n, uint8_t *tag)
    int lk_aead_open(const uint8_t *key, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                     uint8_t *data, size_t n, const uint8_t *tag)
    void lk_seal_nonce(uint8_t *nonce, uint64_t sequence)
    int lk_seal_message(const uint8_t *seg_key, uint8_t *msg, uint64_t room)
    int lk_open_message(const uint8_t *seg_key, uint8_t *msg, uint64_t room)
    int lk_seal_equal16(const uint8_t *a, const uint8_t *b)
    void lk_seal_wipe(void *p, size_t n)


# RFC 8439 AEAD: encrypt data[0:n] in place and store the 16-byte tag.
cdef int c_seal(const uint8_t *key, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                uint8_t *data, size_t n, uint8_t *tag) noexcept nogil
# Verify, then decrypt in place; LK_SEAL_BAD_TAG leaves data unchanged.
cdef int c_open(const uint8_t *key, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                uint8_t *data, size_t n, const uint8_t *tag) noexcept nogil
# A whole message in the proposed version 2 layout (docs/security.md): `room`
# is the bytes the caller vouches for at msg; every length is checked against it.
cdef int c_seal_message(const uint8_t *seg_key, uint8_t *msg, uint64_t room) noexcept nogil
cdef int c_open_message(const uint8_t *seg_key, uint8_t *msg, uint64_t room) noexcept nogil
