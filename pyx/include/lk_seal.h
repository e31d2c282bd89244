/*
 * lk_seal.h -- ChaCha20, Poly1305 and the ChaCha20-Poly1305 AEAD of RFC 8439,
 * in portable C: static inline functions, no allocation, no system call, no
 * global state, so a writer can seal a message between reserve and finish.
 *
 * Why our own code and not pycryptodome: creating one pycryptodome cipher
 * object and sealing 64 bytes costs ~21 us, a hundred times a whole segment
 * write.  The algorithms are small and fixed by RFC 8439; the tests check
 * every function byte for byte against the RFC's test vectors and against
 * pycryptodome's Crypto.Cipher.ChaCha20_Poly1305 (tests/test_crypto.py).
 *
 * How logkit uses it (docs/security.md): one key per segment, derived from the
 * log key and the segment UUID; the nonce is 4 zero bytes then the message's
 * 64-bit sequence number, little-endian (lk_seal_nonce); the additional data
 * is the readable part of the message header (bytes 8..55) and the data-class
 * name; text and binary data are encrypted in place.  lk_seal_message and
 * lk_open_message implement that for a message laid out as the
 * format version 2 of docs/security.md (tag after the payload).
 *
 * Layers, each usable alone:
 *   lk_chacha20_block          one 64-byte keystream block (RFC 8439 2.3)
 *   lk_chacha20_*              a keystream that XORs across any number of spans
 *   lk_poly1305_*              the one-time authenticator (RFC 8439 2.5)
 *   lk_aead_seal_v/_open_v     the AEAD (RFC 8439 2.8) over scattered spans
 *   lk_aead_seal/_open         the same over one contiguous aad and text
 *   lk_seal_message/_open_message  a whole message, format version 2 layout
 *
 * Constant time: no branch and no table index depends on key, keystream or
 * plaintext; the tag is compared with lk_seal_equal16 (no early exit).  Key
 * material left on the stack (the Poly1305 key, keystream) is wiped before
 * return.  Lengths and pointers are the caller's to bounds-check, except in
 * lk_*_message, which check every length against the message's own total.
 */
#ifndef LK_SEAL_H
#define LK_SEAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "logkit is little-endian only (docs/format.md, Conventions)"
#endif

#define LK_SEAL_KEY_BYTES   32
#define LK_SEAL_NONCE_BYTES 12
#define LK_SEAL_TAG_BYTES   16

/* Status codes (0 = success, like LK_OK of lk_segment.h). */
#define LK_SEAL_OK       0
#define LK_SEAL_BAD_TAG  1   /* open: the tag does not match; nothing was decrypted */
#define LK_SEAL_BAD_SIZE 2   /* a length does not fit the message or the cipher */

/* ---- little-endian loads and stores (memcpy: unaligned-safe, one move) ---- */

static inline uint32_t lk_seal_le32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t lk_seal_le64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint16_t lk_seal_le16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline void lk_seal_st32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void lk_seal_st64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* Wipe secrets.  With GCC/Clang: memset, then an empty asm that "reads" the
 * buffer, so the compiler cannot drop the stores to a buffer that is dead
 * afterwards (libsodium's fallback does the same).  Elsewhere: stores through
 * a volatile pointer. */
static inline void lk_seal_wipe(void *p, size_t n) {
#if defined(__GNUC__)
    memset(p, 0, n);
    __asm__ __volatile__("" : : "r"(p) : "memory");
#else
    volatile uint8_t *v = (volatile uint8_t *)p;
    while (n--)
        *v++ = 0;
#endif
}

/* 1 if the 16-byte strings are equal, 0 if not, in time independent of where
 * they differ. */
static inline int lk_seal_equal16(const uint8_t *a, const uint8_t *b) {
    uint32_t d = 0;
    for (int i = 0; i < 16; i++)
        d |= (uint32_t)(a[i] ^ b[i]);
    return (int)(1 & ((d - 1) >> 8));   /* d == 0 -> 1; d in 1..255 -> 0 */
}

/* ================================ ChaCha20 ================================ */

#define LK_ROTL32(v, n) (((v) << (n)) | ((v) >> (32 - (n))))
#define LK_QR(a, b, c, d)                             \
    a += b; d ^= a; d = LK_ROTL32(d, 16);             \
    c += d; b ^= c; b = LK_ROTL32(b, 12);             \
    a += b; d ^= a; d = LK_ROTL32(d, 8);              \
    c += d; b ^= c; b = LK_ROTL32(b, 7)

/* The initial state of RFC 8439 2.3: constants, key, block counter, nonce. */
static inline void lk_chacha20_state(uint32_t s[16], const uint8_t key[32],
                                     uint32_t counter, const uint8_t nonce[12]) {
    s[0] = 0x61707865u; s[1] = 0x3320646eu; s[2] = 0x79622d32u; s[3] = 0x6b206574u;
    for (int i = 0; i < 8; i++)
        s[4 + i] = lk_seal_le32(key + 4 * i);
    s[12] = counter;
    s[13] = lk_seal_le32(nonce);
    s[14] = lk_seal_le32(nonce + 4);
    s[15] = lk_seal_le32(nonce + 8);
}

/* One keystream block for state s (20 rounds, then add the input state). */
static inline void lk_chacha20_block_state(const uint32_t s[16], uint8_t out[64]) {
    uint32_t x0 = s[0], x1 = s[1], x2 = s[2], x3 = s[3], x4 = s[4], x5 = s[5],
             x6 = s[6], x7 = s[7], x8 = s[8], x9 = s[9], x10 = s[10], x11 = s[11],
             x12 = s[12], x13 = s[13], x14 = s[14], x15 = s[15];
    for (int i = 0; i < 10; i++) {
        LK_QR(x0, x4, x8, x12); LK_QR(x1, x5, x9, x13);
        LK_QR(x2, x6, x10, x14); LK_QR(x3, x7, x11, x15);
        LK_QR(x0, x5, x10, x15); LK_QR(x1, x6, x11, x12);
        LK_QR(x2, x7, x8, x13); LK_QR(x3, x4, x9, x14);
    }
    lk_seal_st32(out + 0, x0 + s[0]);   lk_seal_st32(out + 4, x1 + s[1]);
    lk_seal_st32(out + 8, x2 + s[2]);   lk_seal_st32(out + 12, x3 + s[3]);
    lk_seal_st32(out + 16, x4 + s[4]);  lk_seal_st32(out + 20, x5 + s[5]);
    lk_seal_st32(out + 24, x6 + s[6]);  lk_seal_st32(out + 28, x7 + s[7]);
    lk_seal_st32(out + 32, x8 + s[8]);  lk_seal_st32(out + 36, x9 + s[9]);
    lk_seal_st32(out + 40, x10 + s[10]); lk_seal_st32(out + 44, x11 + s[11]);
    lk_seal_st32(out + 48, x12 + s[12]); lk_seal_st32(out + 52, x13 + s[13]);
    lk_seal_st32(out + 56, x14 + s[14]); lk_seal_st32(out + 60, x15 + s[15]);
}

/* RFC 8439 2.3: the block function, from key, counter and nonce. */
static inline void lk_chacha20_block(const uint8_t key[32], uint32_t counter,
                                     const uint8_t nonce[12], uint8_t out[64]) {
    uint32_t s[16];
    lk_chacha20_state(s, key, counter, nonce);
    lk_chacha20_block_state(s, out);
    lk_seal_wipe(s, sizeof s);
}

#if defined(__GNUC__) && !defined(LK_SEAL_NO_VECTORS)
/* Four blocks at once with GCC/Clang vector extensions: lane j of vector i is
 * word i of block counter+j.  This is plain C to the compiler (SSE2 on
 * x86-64, NEON on arm64, scalar code elsewhere) and gives the same bytes as
 * four calls of lk_chacha20_block_state. */
typedef uint32_t lk_v4u32 __attribute__((vector_size(16)));
#define LK_VROTL(v, n) (((v) << (n)) | ((v) >> (32 - (n))))
#define LK_VQR(a, b, c, d)                            \
    a += b; d ^= a; d = LK_VROTL(d, 16);              \
    c += d; b ^= c; b = LK_VROTL(b, 12);              \
    a += b; d ^= a; d = LK_VROTL(d, 8);               \
    c += d; b ^= c; b = LK_VROTL(b, 7)

/* XOR 256 bytes of keystream (blocks s[12] .. s[12]+3) into data.  The 16
 * state vectors are locals, not an array, and the input state is broadcast
 * again at the end rather than kept, so they fit 16 vector registers. */
static inline void lk_chacha20_xor4(const uint32_t s[16], uint8_t *data) {
#define LK_VB(i) ((lk_v4u32){s[i], s[i], s[i], s[i]})
    const lk_v4u32 ctr = LK_VB(12) + (lk_v4u32){0, 1, 2, 3};
    lk_v4u32 x0 = LK_VB(0), x1 = LK_VB(1), x2 = LK_VB(2), x3 = LK_VB(3),
             x4 = LK_VB(4), x5 = LK_VB(5), x6 = LK_VB(6), x7 = LK_VB(7),
             x8 = LK_VB(8), x9 = LK_VB(9), x10 = LK_VB(10), x11 = LK_VB(11),
             x12 = ctr, x13 = LK_VB(13), x14 = LK_VB(14), x15 = LK_VB(15);
    for (int r = 0; r < 10; r++) {
        LK_VQR(x0, x4, x8, x12); LK_VQR(x1, x5, x9, x13);
        LK_VQR(x2, x6, x10, x14); LK_VQR(x3, x7, x11, x15);
        LK_VQR(x0, x5, x10, x15); LK_VQR(x1, x6, x11, x12);
        LK_VQR(x2, x7, x8, x13); LK_VQR(x3, x4, x9, x14);
    }
    lk_v4u32 x[16] = {x0 + LK_VB(0), x1 + LK_VB(1), x2 + LK_VB(2), x3 + LK_VB(3),
                      x4 + LK_VB(4), x5 + LK_VB(5), x6 + LK_VB(6), x7 + LK_VB(7),
                      x8 + LK_VB(8), x9 + LK_VB(9), x10 + LK_VB(10), x11 + LK_VB(11),
                      x12 + ctr, x13 + LK_VB(13), x14 + LK_VB(14), x15 + LK_VB(15)};
#undef LK_VB
    for (int j = 0; j < 4; j++) {
        uint8_t *p = data + 64 * j;
        for (int i = 0; i < 16; i++)
            lk_seal_st32(p + 4 * i, lk_seal_le32(p + 4 * i) ^ x[i][j]);
    }
    lk_seal_wipe(x, sizeof x);
}
#define LK_SEAL_HAVE_XOR4 1
#endif

/* A keystream position: XOR any number of consecutive spans as if they were
 * one buffer.  ks holds the unused tail of the current block. */
typedef struct {
    uint32_t s[16];        /* s[12] is the counter of the next block to make */
    uint8_t ks[64];
    unsigned used;         /* bytes of ks already used; 64 = none left */
} lk_chacha20_ctx;

static inline void lk_chacha20_init(lk_chacha20_ctx *c, const uint8_t key[32],
                                    uint32_t counter, const uint8_t nonce[12]) {
    lk_chacha20_state(c->s, key, counter, nonce);
    c->used = 64;
}

static inline void lk_chacha20_xor(lk_chacha20_ctx *c, uint8_t *p, size_t n) {
    while (n && c->used < 64) {
        *p++ ^= c->ks[c->used++];
        n--;
    }
#ifdef LK_SEAL_HAVE_XOR4
    while (n >= 256) {
        lk_chacha20_xor4(c->s, p);
        c->s[12] += 4;
        p += 256; n -= 256;
    }
#endif
    while (n >= 64) {
        lk_chacha20_block_state(c->s, c->ks);
        c->s[12]++;
        for (int i = 0; i < 64; i += 8)
            lk_seal_st64(p + i, lk_seal_le64(p + i) ^ lk_seal_le64(c->ks + i));
        p += 64; n -= 64;
    }
    if (n) {
        lk_chacha20_block_state(c->s, c->ks);
        c->s[12]++;
        for (c->used = 0; c->used < n; c->used++)
            p[c->used] ^= c->ks[c->used];
    }
}

static inline void lk_chacha20_done(lk_chacha20_ctx *c) { lk_seal_wipe(c, sizeof *c); }

/* ================================ Poly1305 ================================ */

typedef struct {
#if defined(__SIZEOF_INT128__) && !defined(LK_SEAL_POLY32)
    uint64_t r[3], h[3], pad[2];      /* 44+44+42-bit limbs (poly1305-donna-64) */
#else
    uint32_t r[5], h[5], pad[4];      /* 26-bit limbs (poly1305-donna-32) */
#endif
    uint8_t buf[16];
    unsigned fill;                    /* bytes waiting in buf */
} lk_poly1305_ctx;

#if defined(__SIZEOF_INT128__) && !defined(LK_SEAL_POLY32)
typedef unsigned __int128 lk_u128;

static inline void lk_poly1305_init(lk_poly1305_ctx *c, const uint8_t key[32]) {
    uint64_t t0 = lk_seal_le64(key), t1 = lk_seal_le64(key + 8);
    c->r[0] = t0 & 0xffc0fffffffull;                       /* r clamped (RFC 8439 2.5) */
    c->r[1] = ((t0 >> 44) | (t1 << 20)) & 0xfffffc0ffffull;
    c->r[2] = (t1 >> 24) & 0x00ffffffc0full;
    c->h[0] = c->h[1] = c->h[2] = 0;
    c->pad[0] = lk_seal_le64(key + 16);
    c->pad[1] = lk_seal_le64(key + 24);
    c->fill = 0;
}

/* hibit is 2^128 for a full block, 0 for the final padded one (RFC 8439). */
static inline void lk_poly1305_blocks(lk_poly1305_ctx *c, const uint8_t *m, size_t n,
                                      uint64_t hibit) {
    const uint64_t M44 = 0xfffffffffffull, M42 = 0x3ffffffffffull;
    uint64_t r0 = c->r[0], r1 = c->r[1], r2 = c->r[2];
    uint64_t s1 = r1 * (5 << 2), s2 = r2 * (5 << 2);
    uint64_t h0 = c->h[0], h1 = c->h[1], h2 = c->h[2];
    while (n >= 16) {
        uint64_t t0 = lk_seal_le64(m), t1 = lk_seal_le64(m + 8);
        h0 += t0 & M44;
        h1 += ((t0 >> 44) | (t1 << 20)) & M44;
        h2 += ((t1 >> 24) & M42) | hibit;
        lk_u128 d0 = (lk_u128)h0 * r0 + (lk_u128)h1 * s2 + (lk_u128)h2 * s1;
        lk_u128 d1 = (lk_u128)h0 * r1 + (lk_u128)h1 * r0 + (lk_u128)h2 * s2;
        lk_u128 d2 = (lk_u128)h0 * r2 + (lk_u128)h1 * r1 + (lk_u128)h2 * r0;
        uint64_t cy = (uint64_t)(d0 >> 44); h0 = (uint64_t)d0 & M44;
        d1 += cy; cy = (uint64_t)(d1 >> 44); h1 = (uint64_t)d1 & M44;
        d2 += cy; cy = (uint64_t)(d2 >> 42); h2 = (uint64_t)d2 & M42;
        h0 += cy * 5; cy = h0 >> 44; h0 &= M44;
        h1 += cy;
        m += 16; n -= 16;
    }
    c->h[0] = h0; c->h[1] = h1; c->h[2] = h2;
}
#define LK_POLY_HIBIT ((uint64_t)1 << 40)

static inline void lk_poly1305_final(lk_poly1305_ctx *c, uint8_t tag[16]) {
    const uint64_t M44 = 0xfffffffffffull, M42 = 0x3ffffffffffull;
    if (c->fill) {
        c->buf[c->fill] = 1;
        memset(c->buf + c->fill + 1, 0, 15 - c->fill);
        lk_poly1305_blocks(c, c->buf, 16, 0);
    }
    uint64_t h0 = c->h[0], h1 = c->h[1], h2 = c->h[2], cy, g0, g1, g2;
    /* fully carry h */
    cy = h1 >> 44; h1 &= M44; h2 += cy; cy = h2 >> 42; h2 &= M42;
    h0 += cy * 5; cy = h0 >> 44; h0 &= M44; h1 += cy; cy = h1 >> 44; h1 &= M44;
    h2 += cy; cy = h2 >> 42; h2 &= M42; h0 += cy * 5; cy = h0 >> 44; h0 &= M44;
    h1 += cy;
    /* g = h - p = h + 5 - 2^130; keep h if that went negative (mask, no branch) */
    g0 = h0 + 5; cy = g0 >> 44; g0 &= M44;
    g1 = h1 + cy; cy = g1 >> 44; g1 &= M44;
    g2 = h2 + cy - ((uint64_t)1 << 42);
    cy = (g2 >> 63) - 1;               /* all ones when h >= p */
    g0 &= cy; g1 &= cy; g2 &= cy; cy = ~cy;
    h0 = (h0 & cy) | g0; h1 = (h1 & cy) | g1; h2 = (h2 & cy) | g2;
    /* tag = (h + s) mod 2^128 */
    uint64_t t0 = c->pad[0], t1 = c->pad[1];
    h0 += t0 & M44; cy = h0 >> 44; h0 &= M44;
    h1 += (((t0 >> 44) | (t1 << 20)) & M44) + cy; cy = h1 >> 44; h1 &= M44;
    h2 += ((t1 >> 24) & M42) + cy; h2 &= M42;
    lk_seal_st64(tag, h0 | (h1 << 44));
    lk_seal_st64(tag + 8, (h1 >> 20) | (h2 << 24));
    lk_seal_wipe(c, sizeof *c);
}

#else  /* no 128-bit integers: 26-bit limbs */

static inline void lk_poly1305_init(lk_poly1305_ctx *c, const uint8_t key[32]) {
    c->r[0] = (lk_seal_le32(key + 0)) & 0x3ffffff;
    c->r[1] = (lk_seal_le32(key + 3) >> 2) & 0x3ffff03;
    c->r[2] = (lk_seal_le32(key + 6) >> 4) & 0x3ffc0ff;
    c->r[3] = (lk_seal_le32(key + 9) >> 6) & 0x3f03fff;
    c->r[4] = (lk_seal_le32(key + 12) >> 8) & 0x00fffff;
    for (int i = 0; i < 5; i++)
        c->h[i] = 0;
    for (int i = 0; i < 4; i++)
        c->pad[i] = lk_seal_le32(key + 16 + 4 * i);
    c->fill = 0;
}

static inline void lk_poly1305_blocks(lk_poly1305_ctx *c, const uint8_t *m, size_t n,
                                      uint32_t hibit) {
    const uint32_t r0 = c->r[0], r1 = c->r[1], r2 = c->r[2], r3 = c->r[3], r4 = c->r[4];
    const uint32_t s1 = r1 * 5, s2 = r2 * 5, s3 = r3 * 5, s4 = r4 * 5;
    uint32_t h0 = c->h[0], h1 = c->h[1], h2 = c->h[2], h3 = c->h[3], h4 = c->h[4];
    while (n >= 16) {
        h0 += (lk_seal_le32(m + 0)) & 0x3ffffff;
        h1 += (lk_seal_le32(m + 3) >> 2) & 0x3ffffff;
        h2 += (lk_seal_le32(m + 6) >> 4) & 0x3ffffff;
        h3 += (lk_seal_le32(m + 9) >> 6) & 0x3ffffff;
        h4 += (lk_seal_le32(m + 12) >> 8) | hibit;
        uint64_t d0 = (uint64_t)h0 * r0 + (uint64_t)h1 * s4 + (uint64_t)h2 * s3 + (uint64_t)h3 * s2 + (uint64_t)h4 * s1;
        uint64_t d1 = (uint64_t)h0 * r1 + (uint64_t)h1 * r0 + (uint64_t)h2 * s4 + (uint64_t)h3 * s3 + (uint64_t)h4 * s2;
        uint64_t d2 = (uint64_t)h0 * r2 + (uint64_t)h1 * r1 + (uint64_t)h2 * r0 + (uint64_t)h3 * s4 + (uint64_t)h4 * s3;
        uint64_t d3 = (uint64_t)h0 * r3 + (uint64_t)h1 * r2 + (uint64_t)h2 * r1 + (uint64_t)h3 * r0 + (uint64_t)h4 * s4;
        uint64_t d4 = (uint64_t)h0 * r4 + (uint64_t)h1 * r3 + (uint64_t)h2 * r2 + (uint64_t)h3 * r1 + (uint64_t)h4 * r0;
        uint32_t cy = (uint32_t)(d0 >> 26); h0 = (uint32_t)d0 & 0x3ffffff;
        d1 += cy; cy = (uint32_t)(d1 >> 26); h1 = (uint32_t)d1 & 0x3ffffff;
        d2 += cy; cy = (uint32_t)(d2 >> 26); h2 = (uint32_t)d2 & 0x3ffffff;
        d3 += cy; cy = (uint32_t)(d3 >> 26); h3 = (uint32_t)d3 & 0x3ffffff;
        d4 += cy; cy = (uint32_t)(d4 >> 26); h4 = (uint32_t)d4 & 0x3ffffff;
        h0 += cy * 5; cy = h0 >> 26; h0 &= 0x3ffffff;
        h1 += cy;
        m += 16; n -= 16;
    }
    c->h[0] = h0; c->h[1] = h1; c->h[2] = h2; c->h[3] = h3; c->h[4] = h4;
}
#define LK_POLY_HIBIT ((uint32_t)1 << 24)

static inline void lk_poly1305_final(lk_poly1305_ctx *c, uint8_t tag[16]) {
    if (c->fill) {
        c->buf[c->fill] = 1;
        memset(c->buf + c->fill + 1, 0, 15 - c->fill);
        lk_poly1305_blocks(c, c->buf, 16, 0);
    }
    uint32_t h0 = c->h[0], h1 = c->h[1], h2 = c->h[2], h3 = c->h[3], h4 = c->h[4], cy;
    cy = h1 >> 26; h1 &= 0x3ffffff; h2 += cy; cy = h2 >> 26; h2 &= 0x3ffffff;
    h3 += cy; cy = h3 >> 26; h3 &= 0x3ffffff; h4 += cy; cy = h4 >> 26; h4 &= 0x3ffffff;
    h0 += cy * 5; cy = h0 >> 26; h0 &= 0x3ffffff; h1 += cy;
    uint32_t g0 = h0 + 5; cy = g0 >> 26; g0 &= 0x3ffffff;
    uint32_t g1 = h1 + cy; cy = g1 >> 26; g1 &= 0x3ffffff;
    uint32_t g2 = h2 + cy; cy = g2 >> 26; g2 &= 0x3ffffff;
    uint32_t g3 = h3 + cy; cy = g3 >> 26; g3 &= 0x3ffffff;
    uint32_t g4 = h4 + cy - (1u << 26);
    uint32_t mask = (g4 >> 31) - 1;    /* all ones when h >= p */
    g0 &= mask; g1 &= mask; g2 &= mask; g3 &= mask; g4 &= mask; mask = ~mask;
    h0 = (h0 & mask) | g0; h1 = (h1 & mask) | g1; h2 = (h2 & mask) | g2;
    h3 = (h3 & mask) | g3; h4 = (h4 & mask) | g4;
    h0 = h0 | (h1 << 26);
    h1 = (h1 >> 6) | (h2 << 20);
    h2 = (h2 >> 12) | (h3 << 14);
    h3 = (h3 >> 18) | (h4 << 8);
    uint64_t f;
    f = (uint64_t)h0 + c->pad[0];             h0 = (uint32_t)f;
    f = (uint64_t)h1 + c->pad[1] + (f >> 32); h1 = (uint32_t)f;
    f = (uint64_t)h2 + c->pad[2] + (f >> 32); h2 = (uint32_t)f;
    f = (uint64_t)h3 + c->pad[3] + (f >> 32); h3 = (uint32_t)f;
    lk_seal_st32(tag, h0); lk_seal_st32(tag + 4, h1);
    lk_seal_st32(tag + 8, h2); lk_seal_st32(tag + 12, h3);
    lk_seal_wipe(c, sizeof *c);
}
#endif

/* Feed n bytes; they continue whatever was fed before. */
static inline void lk_poly1305_update(lk_poly1305_ctx *c, const uint8_t *m, size_t n) {
    if (c->fill) {
        size_t k = 16 - c->fill;
        if (k > n)
            k = n;
        memcpy(c->buf + c->fill, m, k);
        c->fill += (unsigned)k; m += k; n -= k;
        if (c->fill < 16)
            return;
        lk_poly1305_blocks(c, c->buf, 16, LK_POLY_HIBIT);
        c->fill = 0;
    }
    if (n >= 16) {
        size_t whole = n & ~(size_t)15;
        lk_poly1305_blocks(c, m, whole, LK_POLY_HIBIT);
        m += whole; n -= whole;
    }
    if (n) {
        memcpy(c->buf, m, n);
        c->fill = (unsigned)n;
    }
}

/* Zero-pad what was fed to a multiple of 16 bytes (the AEAD's pad16). */
static inline void lk_poly1305_pad16(lk_poly1305_ctx *c) {
    if (c->fill) {
        memset(c->buf + c->fill, 0, 16 - c->fill);
        lk_poly1305_blocks(c, c->buf, 16, LK_POLY_HIBIT);
        c->fill = 0;
    }
}

/* RFC 8439 2.5: the tag of one buffer under a one-time key. */
static inline void lk_poly1305(const uint8_t key[32], const uint8_t *m, size_t n, uint8_t tag[16]) {
    lk_poly1305_ctx c;
    lk_poly1305_init(&c, key);
    lk_poly1305_update(&c, m, n);
    lk_poly1305_final(&c, tag);
}

/* ========================= ChaCha20-Poly1305 AEAD ========================= */

/* A byte range; aad spans are read, text spans are encrypted or decrypted in
 * place.  The AEAD treats the spans of each kind as one buffer, in order. */
typedef struct {
    uint8_t *p;
    size_t n;
} lk_span;

/* The Poly1305 tag of RFC 8439 2.8 over aad and ciphertext spans, with the
 * one-time key from keystream block 0; leaves `ks` at block 1. */
static inline void lk_aead_tag(lk_chacha20_ctx *ks, const lk_span *aad, int naad,
                               const lk_span *ct, int nct, uint8_t tag[16]) {
    uint8_t otk[64], lens[16];
    uint64_t aad_len = 0, ct_len = 0;
    lk_poly1305_ctx pc;
    lk_chacha20_block_state(ks->s, otk);       /* block 0: the one-time key */
    ks->s[12]++;
    lk_poly1305_init(&pc, otk);
    lk_seal_wipe(otk, sizeof otk);
    for (int i = 0; i < naad; i++) {
        lk_poly1305_update(&pc, aad[i].p, aad[i].n);
        aad_len += aad[i].n;
    }
    lk_poly1305_pad16(&pc);
    for (int i = 0; i < nct; i++) {
        lk_poly1305_update(&pc, ct[i].p, ct[i].n);
        ct_len += ct[i].n;
    }
    lk_poly1305_pad16(&pc);
    lk_seal_st64(lens, aad_len);
    lk_seal_st64(lens + 8, ct_len);
    lk_poly1305_update(&pc, lens, 16);
    lk_poly1305_final(&pc, tag);
}

/* Seal: encrypt the text spans in place, then write the 16-byte tag.  The
 * ciphertext is the RFC's for plaintext = the text spans concatenated, aad =
 * the aad spans concatenated.  Up to 2^32 - 1 blocks (256 GiB) of text. */
static inline int lk_aead_seal_v(const uint8_t key[32], const uint8_t nonce[12],
                                 const lk_span *aad, int naad, lk_span *text, int ntext,
                                 uint8_t tag[16]) {
    lk_chacha20_ctx ks;
    uint64_t total = 0;
    for (int i = 0; i < ntext; i++)
        total += text[i].n;
    if (total > (uint64_t)0xFFFFFFFFu * 64)
        return LK_SEAL_BAD_SIZE;
    lk_chacha20_init(&ks, key, 1, nonce);
    for (int i = 0; i < ntext; i++)
        lk_chacha20_xor(&ks, text[i].p, text[i].n);
    lk_chacha20_init(&ks, key, 0, nonce);
    lk_aead_tag(&ks, aad, naad, text, ntext, tag);
    lk_chacha20_done(&ks);
    return LK_SEAL_OK;
}

/* Open: verify the tag over the ciphertext spans first, and decrypt them in
 * place only if it matches.  On LK_SEAL_BAD_TAG nothing is changed. */
static inline int lk_aead_open_v(const uint8_t key[32], const uint8_t nonce[12],
                                 const lk_span *aad, int naad, lk_span *text, int ntext,
                                 const uint8_t tag[16]) {
    lk_chacha20_ctx ks;
    uint8_t want[16];
    uint64_t total = 0;
    for (int i = 0; i < ntext; i++)
        total += text[i].n;
    if (total > (uint64_t)0xFFFFFFFFu * 64)
        return LK_SEAL_BAD_SIZE;
    lk_chacha20_init(&ks, key, 0, nonce);
    lk_aead_tag(&ks, aad, naad, text, ntext, want);
    int ok = lk_seal_equal16(want, tag);
    lk_seal_wipe(want, sizeof want);
    if (!ok) {
        lk_chacha20_done(&ks);
        return LK_SEAL_BAD_TAG;
    }
    for (int i = 0; i < ntext; i++)              /* ks is at block 1 */
        lk_chacha20_xor(&ks, text[i].p, text[i].n);
    lk_chacha20_done(&ks);
    return LK_SEAL_OK;
}

static inline int lk_aead_seal(const uint8_t key[32], const uint8_t nonce[12],
                               const uint8_t *aad, size_t aad_len, uint8_t *data, size_t n,
                               uint8_t tag[16]) {
    lk_span a = {(uint8_t *)aad, aad_len}, t = {data, n};
    return lk_aead_seal_v(key, nonce, &a, 1, &t, 1, tag);
}

static inline int lk_aead_open(const uint8_t key[32], const uint8_t nonce[12],
                               const uint8_t *aad, size_t aad_len, uint8_t *data, size_t n,
                               const uint8_t tag[16]) {
    lk_span a = {(uint8_t *)aad, aad_len}, t = {data, n};
    return lk_aead_open_v(key, nonce, &a, 1, &t, 1, tag);
}

/* ====================== logkit's use (docs/security.md) ===================== */

/* The nonce of the message numbered `sequence`: 4 zero bytes (the domain:
 * 0 = a message; other values are kept for other records sealed under a
 * segment key), then the sequence number, little-endian. */
static inline void lk_seal_nonce(uint8_t nonce[12], uint64_t sequence) {
    memset(nonce, 0, 4);
    lk_seal_st64(nonce + 4, sequence);
}

/* Message header offsets of format version 1 (docs/format.md, Messages); they
 * mirror lk_segment.h, which this header does not include so that it stays
 * free of the segment core. */
#define LK_SEAL_M_TOTAL      8
#define LK_SEAL_M_FLAGS     14
#define LK_SEAL_M_SEQUENCE  16
#define LK_SEAL_M_TEXT_LEN  40
#define LK_SEAL_M_DATA_LEN  44
#define LK_SEAL_M_CLASS_LEN 48
#define LK_SEAL_M_KEY_ID    50
#define LK_SEAL_M_HEADER    64
/* The authenticated header bytes: 8..55 (total, severity, flags, sequence,
 * time, pid, tid, the three lengths, key id, span).  Left out: the state
 * word (0..7, it changes at commit), the stub checksum and the checksum
 * (56..63, computed from these bytes and after sealing). */
#define LK_SEAL_AAD_START    8
#define LK_SEAL_AAD_END     56
/* Format version 2 (docs/format.md, "Version 2: sealed segments"): the message flag of a
 * sealed message; its key id is non-zero, and the 16-byte tag follows the
 * binary data, counted in total. */
#define LK_SEAL_FLAG_SEALED 0x0002

/* The payload bounds of the message at msg, checked against its own total;
 * `room` is how many bytes the caller can vouch for at msg (the mapping's
 * end minus the message's offset). */
static inline int lk_seal_message_layout(const uint8_t *msg, uint64_t room,
                                         size_t *tl, size_t *cl, size_t *dl) {
    uint64_t total = lk_seal_le32(msg + LK_SEAL_M_TOTAL);
    uint64_t t = lk_seal_le32(msg + LK_SEAL_M_TEXT_LEN);
    uint64_t d = lk_seal_le32(msg + LK_SEAL_M_DATA_LEN);
    uint64_t k = lk_seal_le16(msg + LK_SEAL_M_CLASS_LEN);
    if (room < LK_SEAL_M_HEADER || total > room ||
        LK_SEAL_M_HEADER + t + k + d + LK_SEAL_TAG_BYTES > total)
        return LK_SEAL_BAD_SIZE;
    *tl = (size_t)t; *cl = (size_t)k; *dl = (size_t)d;
    return LK_SEAL_OK;
}

/* What the AEAD covers in the message at msg: the additional data (header
 * bytes 8..55, then the class name), the two payload spans (text, data),
 * the nonce (from the sequence) and where the tag goes (after the data).
 * LK_SEAL_BAD_SIZE when the lengths do not fit the message's total. */
static inline int lk_seal_message_parts(uint8_t *msg, uint64_t room, lk_span aad[2],
                                        lk_span payload[2], uint8_t nonce[12], uint8_t **tag) {
    size_t tl, cl, dl;
    if (lk_seal_message_layout(msg, room, &tl, &cl, &dl) != LK_SEAL_OK)
        return LK_SEAL_BAD_SIZE;
    uint8_t *text = msg + LK_SEAL_M_HEADER;
    aad[0] = (lk_span){msg + LK_SEAL_AAD_START, LK_SEAL_AAD_END - LK_SEAL_AAD_START};
    aad[1] = (lk_span){text + tl, cl};
    payload[0] = (lk_span){text, tl};
    payload[1] = (lk_span){text + tl + cl, dl};
    lk_seal_nonce(nonce, lk_seal_le64(msg + LK_SEAL_M_SEQUENCE));
    *tag = text + tl + cl + dl;
    return LK_SEAL_OK;
}

/* Seal a message in place under its segment key: encrypt text and data,
 * authenticate header bytes 8..55 and the class name, store the tag after
 * the data.  The caller has stored every header field first (severity and
 * time too, since they are authenticated: seal is the last step before the
 * checksum at 60 and the commit), including the key id and the sealed flag. */
static inline int lk_seal_message(const uint8_t seg_key[32], uint8_t *msg, uint64_t room) {
    lk_span aad[2], pt[2];
    uint8_t nonce[12], *tag;
    if (lk_seal_message_parts(msg, room, aad, pt, nonce, &tag) != LK_SEAL_OK)
        return LK_SEAL_BAD_SIZE;
    return lk_aead_seal_v(seg_key, nonce, aad, 2, pt, 2, tag);
}

/* Seal a message being written, from the writer's own values only
 * (lk_segment.h, lk_finish_claim): the nonce from `sequence` (the writer's
 * reservation result, never the +16 bytes of the mapping, which a process
 * without the key could rewrite to a used one), the additional data from
 * `hdr` (the writer's private copy of header bytes 8..55, which it then
 * stores) and `cls` (the class name it passed), text and data at `text` and
 * `data` with the lengths it reserved, the tag to `tag`.  The mapping is
 * touched only where the ciphertext and tag go. */
static inline int lk_seal_claim(const uint8_t seg_key[32], uint64_t sequence,
                                const uint8_t *hdr, const uint8_t *cls, size_t cl,
                                uint8_t *text, size_t tl, uint8_t *data, size_t dl,
                                uint8_t tag[16]) {
    uint8_t nonce[12];
    lk_span aad[2] = {{(uint8_t *)hdr, LK_SEAL_AAD_END - LK_SEAL_AAD_START}, {(uint8_t *)cls, cl}};
    lk_span pt[2] = {{text, tl}, {data, dl}};
    lk_seal_nonce(nonce, sequence);
    return lk_aead_seal_v(seg_key, nonce, aad, 2, pt, 2, tag);
}

/* Verify and decrypt a sealed message in place; on LK_SEAL_BAD_TAG the
 * message is left as it was.  (A reader that must not change the mapping
 * copies the message out first and opens the copy.) */
static inline int lk_open_message(const uint8_t seg_key[32], uint8_t *msg, uint64_t room) {
    lk_span aad[2], ct[2];
    uint8_t nonce[12], *tag;
    if (lk_seal_message_parts(msg, room, aad, ct, nonce, &tag) != LK_SEAL_OK)
        return LK_SEAL_BAD_SIZE;
    return lk_aead_open_v(seg_key, nonce, aad, 2, ct, 2, tag);
}

#endif /* LK_SEAL_H */
