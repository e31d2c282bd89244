/*
 * lk_crc32c.h -- CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected
 * 0x82F63B78), the per-message checksum of segment format version 1.
 *
 * Why CRC-32C: it guards against torn and damaged writes, not against an
 * adversary (sealing with a keyed MAC is a separate, later layer).  On x86-64
 * with SSE4.2 it runs at about 8 bytes per cycle, so a 120-byte message costs
 * ~20 ns; a Python call of the blake3 package costs ~500 ns.  Where the
 * instruction is missing the same function falls back to a table-driven
 * software loop, chosen once at run time, and gives identical results.
 *
 * Convention (the same as zlib's crc32): lk_crc32c(0, buf, n) is the CRC of
 * buf, and lk_crc32c(lk_crc32c(0, a, na), b, nb) is the CRC of a||b.
 * Check value: CRC-32C("123456789") == 0xE3069283.
 */
#ifndef LK_CRC32C_H
#define LK_CRC32C_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static uint32_t lk_crc32c_table[256];
static int lk_crc32c_hw = -1;          /* -1 unknown, 0 software, 1 SSE4.2 */

static void lk_crc32c_init_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        lk_crc32c_table[i] = c;
    }
}

static inline uint32_t lk_crc32c_sw(uint32_t crc, const unsigned char *p, size_t n) {
    crc = ~crc;
    while (n--)
        crc = lk_crc32c_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static inline uint32_t lk_crc32c_sse42(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = (uint32_t)~crc;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);              /* unaligned-safe; compiles to one load */
        c = __builtin_ia32_crc32di(c, v);
        p += 8; n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}
#endif

/* Detect the instruction and build the table; runs lazily on first use in
 * each module (see lk_crc32c), or explicitly at module initialisation. */
static void lk_crc32c_setup(void) {
    lk_crc32c_init_table();
#if defined(__x86_64__)
    __builtin_cpu_init();
    lk_crc32c_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#else
    lk_crc32c_hw = 0;
#endif
}

/* Each extension module that includes this header has its own copy of the
 * static state above, so set-up is lazy: the first call in any module runs it
 * (a benign race: concurrent set-ups store identical values). */
static inline uint32_t lk_crc32c(uint32_t crc, const void *buf, size_t n) {
    if (__builtin_expect(lk_crc32c_hw < 0, 0))
        lk_crc32c_setup();
#if defined(__x86_64__)
    if (__builtin_expect(lk_crc32c_hw == 1, 1))
        return lk_crc32c_sse42(crc, (const unsigned char *)buf, n);
#endif
    return lk_crc32c_sw(crc, (const unsigned char *)buf, n);
}

/* For tests: force the software path (0) or restore detection (1). */
static inline int lk_crc32c_using_hardware(void) {
    if (lk_crc32c_hw < 0) lk_crc32c_setup();
    return lk_crc32c_hw == 1;
}
static inline void lk_crc32c_force_software(int force) {
    if (force) lk_crc32c_hw = 0;
    else lk_crc32c_setup();
}

#endif /* LK_CRC32C_H */
