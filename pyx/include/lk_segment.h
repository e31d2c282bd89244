/*
 * lk_segment.h -- the log segment: layout, lock-free reservation, finish,
 * and the reader's record walk.  Format versions 1 and 2 (2 = a sealed
 * segment: version 1 plus encryption, docs/format.md "Version 2: sealed
 * segments" and docs/security.md); docs/format.md is the byte-level reference
 * and must change together with this file.
 *
 * ======================================================================
 * Data structures
 * ======================================================================
 * A segment is a region (base, size) of a MAP_SHARED mapping: a 4096-byte
 * header followed by messages allocated one after another, each 8-byte
 * aligned.  The region may be a whole file or part of a larger mapping.
 * All integers are little-endian (the build refuses a big-endian target).
 *
 * The reservation word (header offset 512, alone on its 64-byte cache line):
 *
 *      bit 63      IN_SERVICE   1 = writers may reserve
 *      bits 32-62  COUNT        messages reserved so far (31 bits)
 *      bits 0-31   NEXT         next free byte offset / 8 (from region start)
 *
 * One compare-and-swap on this word moves NEXT past the new message and adds
 * one to COUNT, so a writer gets its space (NEXT*8) and its sequence number
 * (sequence_base + COUNT) in the same atomic step: sequence numbers increase
 * strictly with offset.  Because IN_SERVICE is part of the compared word, a
 * segment taken out of service while a writer retries makes that writer's
 * CAS fail and its next iteration sees the flag (the Multics writer tested
 * the flag once, before its loop; that race cannot happen here).
 *
 * COUNT cannot wrap: the smallest message is 64 bytes and NEXT addresses at
 * most (2^32 - 1) * 8 bytes (the largest region, 32 GiB - 8, so that NEXT of a
 * completely full region still fits its 32 bits), so COUNT < 2^29 < 2^31.
 *
 * A message (64-byte header, then payload):
 *
 *      0  u32 sentinel 0x4B4CFEFF  bytes FF FE 'L' 'K': FF/FE never occur in UTF-8
 *      4  u32 state    1 reserved, 2 committed, 3 abandoned  (0: nothing here)
 *      8  u32 total length (header + payload + padding, multiple of 8)
 *     12  i16 severity (-250..250)
 *     14  u16 flags    (0 in version 1 except LK_FLAG_FILLER)
 *     16  u64 sequence
 *     24  i64 time, ns since the epoch (reservation time until finish)
 *     32  u32 process id (in a stub: the holder's)
 *     36  u32 thread id
 *     40  u32 text length
 *     44  u32 binary data length
 *     48  u16 data-class name length
 *     50  u16 key id (0: not encrypted)
 *     52  u32 span: sequence numbers this record accounts for (1; more only
 *                   for a salvage filler that covers claims with no stub)
 *     56  u32 stub checksum: CRC-32C of bytes 8..11, 16..23 and 32..55 (the
 *                   fields fixed at reservation), so a stub that never gets
 *                   the full checksum is still protected against damage
 *     60  u32 checksum: CRC-32C of bytes 8..59 followed by the payload
 *                   (in a claim or stub: the holder's start time, lk_sys.h)
 *     64  text, data-class name, binary data; zero padding to a multiple of 8
 *
 * Sealed messages (format version 2 only): key id != 0, flags has
 * LK_MSG_FLAG_SEALED, text and data are encrypted in place, and the 16-byte
 * Poly1305 tag follows the binary data, counted in total (lk_payload_len).
 * Both checksums work exactly as in version 1 over the bytes as stored
 * (ciphertext and tag), so a reader without the key still validates,
 * resynchronises and salvages.  lk_finish_claim seals (nonce, lengths and
 * additional data from the writer's claim, lk_seal_claim) before the
 * checksum, the final header and the commit CAS.
 *
 * Bytes 0..7 are read and written as one 64-bit word, the "state word"
 * (sentinel | state << 32), so a reader sees sentinel and state together.
 *
 * ======================================================================
 * States of a message and who moves them
 * ======================================================================
 *   (zeros) --CAS on reservation word--> claimed   [writer owns the bytes]
 *   claimed --stub fields, then CAS 0 -> RESERVED [W1]--> reserved
 *   reserved --payload, final header, CAS [W2]--> committed          (final)
 *   reserved --salvage CAS [S1], holder gone or past grace--> abandoned (final)
 *
 * A stub names its HOLDER (+32 pid, +60 start time until the checksum goes
 * there): the process that reserved and will finish it, also for a copy
 * (write_as) whose own pid is stored only with the final header.
 *
 * "claimed" has no published state word: bytes 0..7 are still zero (the stub
 * fields after them may be partly stored).  A writer killed there leaves a
 * "gap": a range whose first word is zero; a reader resynchronises on the
 * next sentinel (see "Reader") and salvage accounts for it with a filler.
 * A writer killed while "reserved" leaves a stub whose length is known and
 * protected by the stub checksum, so readers step over it; salvage later
 * abandons it.
 *
 * ======================================================================
 * Ordering guarantees (each atomic names its partner)
 * ======================================================================
 * [R1] reserve: CAS acq_rel on the reservation word.  Acquire: the writer's
 *      stores into its claimed bytes happen after it owns them.  Release:
 *      pairs with [O1], so taking the segment out of service observes every
 *      claim made before it.
 * [W1] stub publish: CAS 0 -> (sentinel|RESERVED), seq_cst (lk_state_cas;
 *      its release half is what publishes); everything in the stub (length,
 *      sequence, lengths, holder pid and start time, tid) is stored before
 *      it.  Pairs with [A1].  A CAS rather than a store so that a writer
 *      paused since [R1] never overwrites a filler salvage wrote meanwhile.
 * [P1] ownership re-proof, before each step that writes the mapping (stub,
 *      copy, seal, final header): acquire load of the state word (pairs with
 *      [W1]/[S1]/a format's stores) and a compare of the header UUID with
 *      the one read after [R1] (lk_claim_held).  Leaves a window of a few
 *      instructions per step (docs/format.md, "Stalled writers").
 * [W2] commit publish: CAS RESERVED -> COMMITTED of the state word, seq_cst
 *      (release would publish; seq_cst is for [W3]), after every payload
 *      byte and the final header (bytes 8..63, built privately from the
 *      writer's claim).  Pairs with [A1].  A reader that sees
 *      COMMITTED sees the whole message; a reader that sees RESERVED never
 *      reads the payload.
 * [A1] reader: acquire load of the state word before reading any field.
 * [O1] take out of service / put in service: CAS seq_cst on the
 *      reservation word (acq_rel would pair with [R1]; seq_cst is for [O2]).
 * [S1] salvage: CAS RESERVED -> ABANDONED on the state word; if the writer
 *      commits at the same moment exactly one of [W2] and [S1] wins (the
 *      writer's commit is a CAS too, so a late writer cannot resurrect an
 *      abandoned message; it learns it lost and reports it).
 * [K1] sealed write: the segment UUID (from which the segment key is derived)
 *      is compared after [R1]; [R1]'s acquire half sees the UUID stored by the
 *      format whose release store of the reservation word [R1] claimed from
 *      (a partition half reformatted in place gets a new UUID; see
 *      lk_write_sealed).
 * [W2], [S1] (the same CAS) and [O1] are seq_cst, not merely acq_rel: each
 * is also the store half of the wake-up handshake below ([W3], [O2]).  On
 * x86 (LOCK CMPXCHG) and AArch64 (CASAL) that is the same instruction.
 * [T1] token load (header 456), acquire; [T2] token CAS, acq_rel: see
 *      "Tokens" below and lk_atomic.h.  They pair with each other only.
 * [W5] written counter: relaxed add after [W2].  A writer killed between
 *      [W2] and [W5] leaves it one short: settling walks instead
 *      (Segment.unfinished_claims), and salvage recounts it.
 * Counters and hints are relaxed: they order nothing, readers validate them.
 *
 * ======================================================================
 * Wake-ups (header 640 wake word, 644 waiter count, 2048.. listener table)
 * ======================================================================
 * A reader that has read everything can sleep until a writer finishes the
 * message it waits for, instead of polling.  Linux: a futex on the wake word
 * (lk_futex.h; shared, not _PRIVATE, since the word is shared between
 * processes).  The waiter count lets writers skip the wake-up system call
 * when nobody sleeps: with no waiter, lk_finish gains one load and nothing
 * else.  "Ready at offset X" means: the segment is out of service, or the
 * state word at X is neither zero nor RESERVED (committed, abandoned, or
 * damage a walk would pass over) -- see lk_wait_ready.
 *
 * Waiter (lk_wait_futex):
 * [F1] waiters += 1, seq_cst, then a seq_cst fence.  Then, if listed, it sets
 *      WAITING in its listener slot [L3].
 * [F2] v = wake word, acquire (pairs with [W4]).
 * [F3] re-check readiness: the reservation word and the state word at X,
 *      acquire loads ([A1]).  Ready: go to [F5].
 * [F4] FUTEX_WAIT(wake word, v, timeout): the kernel sleeps only if the word
 *      still equals v, atomically with respect to FUTEX_WAKE.  On return
 *      (woken, EAGAIN, spurious) go back to [F2].
 * [F5] clear WAITING (if it was still set by us: see [L3]), waiters -= 1
 *      (relaxed, never below zero).
 * Writer (end of lk_finish), after its commit [W2] (seq_cst CAS):
 * [W3] n = waiters, seq_cst load.  n == 0: done, no system call.
 * [W4] else wake word += 1 (seq_cst), then FUTEX_WAKE(wake word, all).
 * Taking out of service ([O1], seq_cst CAS) is followed by [O2] = [W3] and
 * [W4], so a follower sleeping in a segment that is being rotated wakes at
 * once and moves on.  Salvage's abandon [S1] (seq_cst CAS) is too.
 *
 * Why no wake-up is lost.  [F1]+fence / [F3] against [W2] / [W3] is Dekker's
 * pattern: all four are in the single total order S of seq_cst operations
 * (the fence stands in for [F3]'s acquire loads).  If [W3] comes before [F1]
 * in S, then [W2] < [W3] < [F1] < fence, so [F3] (after the fence) sees the
 * commit and the waiter does not sleep.  Otherwise [W3] reads the count with
 * [F1] in it (n >= 1) and the writer does [W4].  Then either [F2] reads the
 * bumped word -- it synchronises with [W4], so [F3] sees [W2] and the waiter
 * does not sleep -- or [F2] read the old value v, and the bump happens before
 * FUTEX_WAKE: the kernel's FUTEX_WAIT either finds the word != v (EAGAIN) or
 * has queued the waiter before the bump, and FUTEX_WAKE wakes it.  Later
 * rounds of the loop need no fence: the waiter is still counted, so every
 * later writer does [W4], and [F2]/[W4] pair as above.  A spurious wake-up
 * (another offset's message, a rotation elsewhere) only costs a re-check.
 *
 * Listener table (25 slots of 64 bytes at 2112; docs/format.md is exact):
 * +0 u32 pid (0: free), +4 u32 flags (bit 0 WAITING: this slot's owner is
 * inside [F1]..[F5]), +8 u64 minimum interval between wake-ups (ns), +16 u64
 * last wake-up (ns since the epoch), +24 u32 owner's start time (lk_sys.h,
 * "Process identity"; 0: not recorded), +28..63 zero.  For inspection and for
 * repairing the waiter count after a waiter is killed; writers never read it.
 * [L1] claim: CAS pid 0 -> own pid; failing a free slot, CAS a dead owner's
 *      pid (lk_identity_gone: no such pid, or a pid reused by a process that
 *      started at another time) -> own pid.  The CAS winner owns the slot,
 *      then stores its start time (relaxed).  A reclaimer that reads a pid
 *      and a start time of different owners can only misjudge the owner of
 *      the pid it read, and its CAS on that pid fails once the slot has
 *      changed hands; a start of 0 falls back to the pid alone.
 * [L2] release: clear flags and fields, then store pid 0 (release).
 * [L3] WAITING is set only after [F1] and cleared before [F5]'s decrement, so
 *      a set bit always stands for one increment not yet undone.  Whoever
 *      clears the bit with an atomic AND (the owner at [F5], or a reclaimer
 *      that took a dead owner's slot by [L1]) undoes that increment, so it is
 *      undone exactly once.  A waiter killed while sleeping thus has its
 *      count repaired by the next process that registers; one killed in the
 *      few instructions between [F1] and setting the bit, or one that was
 *      not listed (table full), leaves the count one too high: writers then
 *      make a needless wake-up call per message until the segment rotates.
 *      Never too low, which would lose wake-ups.
 * A full table does not stop anyone waiting: the waiter is just not listed.
 * The minimum interval is honoured by the waiter itself (it does not wait
 * again before the interval has passed since its last wake-up).
 *
 * ======================================================================
 * Reader
 * ======================================================================
 * A reader trusts nothing in the mapping.  At each position it checks the
 * state word, then the shape of the header (lengths consistent with the
 * total, total within the region) and the sequence (at least the next
 * expected one).  A committed record must pass its full checksum; then it is
 * accepted even if its sequence jumps ahead (a scribbled COUNT hides
 * nothing).  A stub (reserved or abandoned) must pass its stub checksum and
 * be no further ahead than the bytes since the last record allow (64 bytes
 * per sequence number), and its span must fit its length.  Anything else is a
 * gap (first word zero: a claim whose state was never published) or damage;
 * the reader scans forward 8 bytes at a time for the next valid record and
 * reports the range it passed over.  Every step advances the position, so a
 * walk always ends.
 */
#ifndef LK_SEGMENT_H
#define LK_SEGMENT_H

#include <stdint.h>
#include <string.h>

#include "lk_atomic.h"
#include "lk_crc32c.h"
#include "lk_futex.h"
#include "lk_seal.h"
#include "lk_sys.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "logkit segment format version 1 is little-endian; this target is not"
#endif

/* Versions (docs/format.md, Versioning).  1 and 2 are read and appended to,
 * never created: 1 unsealed, 2 sealed.  3 and 4 are what this logkit
 * creates: 1 and 2 plus the holder's identity (a stub's start time at +60,
 * a listener slot's at +24) and a copy of the UUID at LK_H_UUID_COPY. */
#define LK_FORMAT_VERSION_1      1u     /* unsealed, no holder identity */
#define LK_FORMAT_VERSION_2      2u     /* sealed, no holder identity */
#define LK_FORMAT_VERSION        3u     /* unsealed segments created now */
#define LK_FORMAT_VERSION_SEALED 4u     /* sealed segments created now */
#define LK_HEADER_SIZE           4096u
#define LK_MSG_HEADER            64u
/* Message header fields (offsets from the message start; the layout is in the
 * comment at the top, and in docs/format.md "Messages"). */
#define LK_M_STATE                0u    /* u64 state word: sentinel | state << 32 */
#define LK_M_TOTAL                8u    /* u32 total length, header and padding included */
#define LK_M_SEVERITY            12u    /* i16 */
#define LK_M_FLAGS               14u    /* u16 */
#define LK_M_SEQUENCE            16u    /* u64 */
#define LK_M_TIME                24u    /* i64 ns */
#define LK_M_PID                 32u    /* u32: the holder in a stub, the message's pid when finished */
#define LK_M_TID                 36u    /* u32 */
#define LK_M_TEXT_LEN            40u    /* u32 */
#define LK_M_DATA_LEN            44u    /* u32 */
#define LK_M_CLASS_LEN           48u    /* u16 */
#define LK_M_KEY_ID              50u    /* u16, 0 = not sealed */
#define LK_M_SPAN                52u    /* u32 sequence numbers this record accounts for */
#define LK_M_STUB_CRC            56u    /* u32 stub checksum */
#define LK_M_CRC                 60u    /* u32 message checksum; in a claim or stub the holder's start time */
#define LK_MIN_REGION            8192u
#define LK_MAX_REGION            ((((uint64_t)1 << 32) - 1) * 8) /* 32 GiB - 8: NEXT fits 32 bits */
#define LK_SENTINEL              0x4B4CFEFFu
#define LK_CHECKSUM_CRC32C       1u

#define LK_STATE_RESERVED        1u
#define LK_STATE_COMMITTED       2u
#define LK_STATE_ABANDONED       3u
#define LK_FLAG_FILLER           0x0001u
#define LK_MSG_FLAG_SEALED       0x0002u   /* = LK_SEAL_FLAG_SEALED of lk_seal.h */
#define LK_SEG_FLAG_SEALED       1u        /* header flags (52), version 2 */
#define LK_TAG_SIZE              16u       /* Poly1305 tag after a sealed message's data */

#define LK_SEVERITY_MIN          (-250)
#define LK_SEVERITY_MAX          250

#define LK_IN_SERVICE            ((uint64_t)1 << 63)
#define LK_COUNT_ONE             ((uint64_t)1 << 32)
#define LK_COUNT_MASK            (((uint64_t)1 << 31) - 1)
#define LK_NEXT_MASK             (((uint64_t)1 << 32) - 1)

/* Header offsets (see docs/format.md). */
#define LK_H_MAGIC               0      /* 8 bytes "LOGKITSG" */
#define LK_H_VERSION             8      /* u32 */
#define LK_H_HEADER_SIZE         12     /* u32 */
#define LK_H_REGION_SIZE         16     /* u64 */
#define LK_H_UUID                24     /* 16 bytes */
#define LK_H_UUID_COPY           3712   /* 16 bytes, versions 3 and 4: the UUID again, outside the identity CRC */
#define LK_H_SEQUENCE_BASE       40     /* u64 */
#define LK_H_CHECKSUM_ALG        48     /* u32 */
#define LK_H_FLAGS               52     /* u32 */
#define LK_H_CREATED             56     /* i64 ns */
#define LK_H_FAMILY              64     /* 64 bytes, NUL-padded UTF-8 */
#define LK_H_FAMILY_MAX          64
#define LK_H_PREVIOUS            128    /* 256 bytes, NUL-padded UTF-8 */
#define LK_H_PREVIOUS_MAX        256
#define LK_H_IDENTITY_CRC        384    /* u32: CRC-32C of bytes 0..383 */
#define LK_H_FIRST_SEQUENCE      392    /* u64 hint, 0 = none yet */
#define LK_H_FIRST_TIME          400    /* i64 hint */
#define LK_H_LAST_SEQUENCE       408    /* u64 hint */
#define LK_H_LAST_TIME           416    /* i64 hint */
#define LK_H_LAST_OFFSET         424    /* u64 hint: a committed message */
#define LK_H_OUT_OF_SERVICE_TIME 432    /* i64 ns, 0 = never taken out */
#define LK_H_SALVAGE_COUNT       440    /* u64 */
#define LK_H_SALVAGE_TIME        448    /* i64 ns */
#define LK_H_ROTATOR             456    /* u64 token: see "Tokens" (lk_token_make) */
#define LK_H_KEY_CHECK           464    /* 16 bytes, version 2: key check of the segment key */
#define LK_H_KEY_ID              480    /* u16, version 2: key id the segment is sealed under */
#define LK_H_RESERVATION         512    /* u64, alone on its cache line */
#define LK_H_REFUSED_FULL        576    /* u64 counters, one shared line: */
#define LK_H_REFUSED_TOO_BIG     584    /*   only refusals touch them     */
#define LK_H_REFUSED_OOS         592
#define LK_H_ABANDONED           600
#define LK_H_WAKE_WORD           640    /* u32 futex word, bumped by a writer that wakes */
#define LK_H_WAITERS             644    /* u32 processes between [F1] and [F5] */
#define LK_H_WRITTEN_SHARDS      768    /* 16 x u64, one per cache line */
#define LK_WRITTEN_SHARDS        16
#define LK_H_LISTENER_COUNT      2048   /* u32 number of slots */
#define LK_H_LISTENER_SLOT_SIZE  2052   /* u32 bytes per slot */
#define LK_H_LISTENERS           2112   /* slots */
#define LK_LISTENER_SLOTS        25
#define LK_LISTENER_SLOT_BYTES   64
#define LK_LS_PID                0      /* listener slot fields: u32 owner pid, 0 = free */
#define LK_LS_FLAGS              4      /* u32 */
#define LK_LS_MIN_INTERVAL       8      /* u64 ns */
#define LK_LS_LAST_WAKE          16     /* u64 ns since the epoch */
#define LK_LS_START              24     /* u32 owner's start time (lk_sys.h), 0: not recorded */

/* The start time a holder records (a stub's +60, a listener slot's +24):
 * its own in versions 3 and 4, 0 ("not recorded": judged by the pid alone)
 * in a version 1 or 2 segment, whose layout has zero there.  The version is
 * written once at format time, before the segment goes in service, so a
 * plain load sees it (ordered by [R1]/[L1] after the format's release). */
static inline uint32_t lk_holder_start(const uint8_t *base) {
    uint32_t v;
    memcpy(&v, base + LK_H_VERSION, 4);
    return v >= LK_FORMAT_VERSION ? lk_process_start() : 0u;
}
#define LK_LISTENER_WAITING      1u     /* flags bit 0: counted in LK_H_WAITERS now */

#define LK_HINT_EVERY_MASK       63u    /* hints refreshed every 64 messages */

/* Status codes of the C layer; the Cython layer turns them into exceptions. */
enum {
    LK_OK = 0,
    LK_FULL = 1,
    LK_TOO_BIG = 2,
    LK_OUT_OF_SERVICE = 3,
    LK_DAMAGED = 4,
    LK_LOST = 5,          /* finish found its reservation already abandoned */
    LK_REKEY = 6,         /* sealed write: the region was reformatted (new UUID) since
                             the caller derived its segment key; nothing written */
};

#define LK_U64(base, off) ((uint64_t *)((base) + (off)))
#define LK_U32(base, off) ((uint32_t *)((base) + (off)))

static inline uint64_t lk_align8(uint64_t n) { return (n + 7u) & ~(uint64_t)7u; }

static inline uint64_t lk_state_word(uint32_t state) {
    return (uint64_t)LK_SENTINEL | ((uint64_t)state << 32);
}

/* Total bytes of a message with these payload lengths. */
static inline uint64_t lk_message_size(uint64_t text_len, uint64_t data_len, uint64_t cls_len) {
    return lk_align8(LK_MSG_HEADER + text_len + data_len + cls_len);
}

/* A reader's lengths of the finished message at `m`, for use after its walk
 * validated it: any process that can write the file may rewrite them since,
 * so each is loaded ONCE into *l and only those copies may be used (never
 * the mapping's again, e.g. as a pointer length).  Returns 1 when they agree
 * with the total (the tag counted when the key id says sealed, or when
 * `sealed_segment`) and the total fits the `room` left in the region. */
typedef struct { uint32_t total, tl, dl; uint16_t cl, kid; } lk_lengths;
static inline int lk_read_lengths(const uint8_t *m, uint64_t room, int sealed_segment, lk_lengths *l) {
    memcpy(&l->total, m + LK_M_TOTAL, 4);
    memcpy(&l->tl, m + LK_M_TEXT_LEN, 4);
    memcpy(&l->dl, m + LK_M_DATA_LEN, 4);
    memcpy(&l->cl, m + LK_M_CLASS_LEN, 2);
    memcpy(&l->kid, m + LK_M_KEY_ID, 2);
    uint64_t tag = (l->kid || sealed_segment) ? LK_TAG_SIZE : 0u;
    return (uint64_t)l->total <= room &&
           lk_message_size((uint64_t)l->tl + tag, l->dl, l->cl) == l->total;
}

/* Bytes of payload as stored: text, class name, data, and the tag when the
 * message is sealed (key id != 0; version 1 writes only key id 0). */
static inline uint64_t lk_payload_len(const uint8_t *m) {
    uint32_t text_len, data_len; uint16_t cls_len, kid;
    memcpy(&text_len, m + LK_M_TEXT_LEN, 4);
    memcpy(&data_len, m + LK_M_DATA_LEN, 4);
    memcpy(&cls_len, m + LK_M_CLASS_LEN, 2);
    memcpy(&kid, m + LK_M_KEY_ID, 2);
    return (uint64_t)text_len + data_len + cls_len + (kid ? LK_TAG_SIZE : 0u);
}

static inline uint32_t lk_message_checksum(const uint8_t *m) {
    uint32_t c = lk_crc32c(0, m + LK_M_TOTAL, 52);
    return lk_crc32c(c, m + LK_MSG_HEADER, lk_payload_len(m));
}

/* The same for a writer that knows whether its message is sealed (so the
 * unsealed finish reads no key id): payload = tl + cl + dl (+ 16 sealed). */
static inline uint32_t lk_message_checksum_n(const uint8_t *m, uint64_t payload) {
    uint32_t c = lk_crc32c(0, m + LK_M_TOTAL, 52);
    return lk_crc32c(c, m + LK_MSG_HEADER, payload);
}

static inline uint64_t lk_plain_payload_len(const uint8_t *m) {
    uint32_t text_len, data_len; uint16_t cls_len;
    memcpy(&text_len, m + LK_M_TEXT_LEN, 4);
    memcpy(&data_len, m + LK_M_DATA_LEN, 4);
    memcpy(&cls_len, m + LK_M_CLASS_LEN, 2);
    return (uint64_t)text_len + data_len + cls_len;
}

/* The stub checksum: the fields a writer fixes at reservation and never
 * changes (total, sequence, pid, tid, lengths, key id, span). */
static inline uint32_t lk_stub_checksum(const uint8_t *m) {
    uint32_t c = lk_crc32c(0, m + LK_M_TOTAL, 4);
    c = lk_crc32c(c, m + LK_M_SEQUENCE, 8);
    return lk_crc32c(c, m + LK_M_PID, 24);
}

static inline uint32_t lk_identity_crc(const uint8_t *base) {
    return lk_crc32c(0, base, LK_H_IDENTITY_CRC);
}

/* Which written-counter shard a thread uses: spreads processes and threads
 * over 16 cache lines so finishing a message never bounces a shared line. */
static inline uint64_t *lk_written_shard(uint8_t *base, uint32_t tid) {
    uint32_t s = (tid ^ (tid >> 4) ^ (tid >> 8)) & (LK_WRITTEN_SHARDS - 1);
    return LK_U64(base, LK_H_WRITTEN_SHARDS + 64u * s);
}

/* ---------------------------------------------------------------- wake-ups: writer side */

/* [W4] Somebody waits: change the wake word, then wake every sleeper.  Out of
 * line and marked cold, so lk_finish's common path stays a load and a branch. */
__attribute__((noinline, cold)) static void lk_wake_waiters(uint8_t *base) {
    lk_wake_word_bump(LK_U32(base, LK_H_WAKE_WORD));
    lk_futex_wake_all(LK_U32(base, LK_H_WAKE_WORD));
}

/* [W3] / [O2]: after a seq_cst publication ([W2], [O1], [S1]), wake the
 * waiters if there are any.  With none, one load and no system call. */
static inline void lk_wake_if_waiters(uint8_t *base) {
    if (__builtin_expect(lk_waiters_load_seq_cst(LK_U32(base, LK_H_WAITERS)) != 0, 0))
        lk_wake_waiters(base);
}

/* The same after a publication that was only a release store (salvage's
 * filler): the seq_cst fence gives it the store-load order [W3] needs. */
static inline void lk_wake_after_release_store(uint8_t *base) {
    lk_fence_seq_cst();
    lk_wake_if_waiters(base);
}

/* ---------------------------------------------------------------- tokens */

/* The token word at LK_H_ROTATOR names who holds a step that must be done
 * by exactly one process: a family's rotation of this segment into history,
 * or a partition half's state (swapping, draining, ...).  One layout:
 *
 *    63   61 60                      32 31                          0
 *   +-------+--------------------------+-----------------------------+
 *   | STATE |  ATTEMPT (29 bits)       |  PID (32 bits)              |
 *   +-------+--------------------------+-----------------------------+
 *
 * STATE (3 bits) is the step; its values belong to the user of the token:
 * a family's rotation phases are 2 ROTATING, 4 INSTALLING, 6 DONE (even
 * codes: tokens written before this layout had a 2-bit phase at bit 62, and
 * they read the same), a partition half's states 0..6.  ATTEMPT counts the
 * claims (one more for each takeover from a dead or stuck holder), PID is
 * the claimer.  0 is unclaimed.  Loaded with [T1] (acquire) and changed only
 * by [T2] (CAS acq_rel) from a value the caller read: lk_atomic.h. */
#define LK_TOKEN_STATE_SHIFT     61
#define LK_TOKEN_ATTEMPT_SHIFT   32
#define LK_TOKEN_ATTEMPT_MASK    ((1ULL << 29) - 1)
#define LK_TOKEN_PID_MASK        0xFFFFFFFFULL

static inline uint64_t lk_token_make(uint32_t state, uint64_t attempt, uint64_t pid) {
    return ((uint64_t)(state & 7) << LK_TOKEN_STATE_SHIFT)
         | ((attempt & LK_TOKEN_ATTEMPT_MASK) << LK_TOKEN_ATTEMPT_SHIFT)
         | (pid & LK_TOKEN_PID_MASK);
}
static inline uint32_t lk_token_state(uint64_t t) { return (uint32_t)(t >> LK_TOKEN_STATE_SHIFT); }
static inline uint64_t lk_token_attempt(uint64_t t) { return (t >> LK_TOKEN_ATTEMPT_SHIFT) & LK_TOKEN_ATTEMPT_MASK; }
static inline uint32_t lk_token_pid(uint64_t t) { return (uint32_t)(t & LK_TOKEN_PID_MASK); }

static inline uint64_t lk_token_load(const uint8_t *base) {
    return lk_token_load_acquire(LK_U64(base, LK_H_ROTATOR));            /* [T1] */
}
/* 1 if the token was `expected` and is now `desired`. */
static inline int lk_token_claim(uint8_t *base, uint64_t expected, uint64_t desired) {
    return lk_token_cas(LK_U64(base, LK_H_ROTATOR), &expected, desired); /* [T2] */
}

/* ---------------------------------------------------------------- the rest of the core
 * In files of their own, in this order (each builds on what comes before). */
#include "lk_write.h"
#include "lk_claim.h"
#include "lk_reader.h"
#include "lk_wait.h"

#endif /* LK_SEGMENT_H */
