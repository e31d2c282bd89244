/*
 * lk_write.h -- the writer: claim space and a sequence number, publish the
 * stub, copy, finish; abandon; the one-call writes (lk_write_as,
 * lk_write_sealed, lk_write_steps).
 *
 * Part of the segment core: lk_segment.h includes it (after the layout, the
 * atomics, the message helpers and the writer's wake-ups it builds on), and
 * nothing else should.  The ordering labels ([R1], [S1], [F1] ...) are those
 * of lk_segment.h.
 */
#ifndef LK_WRITE_H
#define LK_WRITE_H

#ifndef LK_SEGMENT_H
#error "include lk_segment.h, not lk_write.h"
#endif

/* ---------------------------------------------------------------- writer */

/* Abandon a reservation (RESERVED -> ABANDONED by CAS [S1]); 1 if this call
 * did it.  A sealed reservation may hold plaintext its writer copied in (it
 * is sealed only at finish): the payload is wiped (and its writer wipes it
 * again if it copied after this: lk_claim_lost).  The stub checksum covers
 * no payload byte, so the stub stays valid; nobody reads its payload. */
static inline int lk_abandon_reserved(uint8_t *base, uint64_t size, uint64_t at, int sealed) {
    uint64_t expected = lk_state_word(LK_STATE_RESERVED);
    if (!lk_state_cas(LK_U64(base, at), &expected, lk_state_word(LK_STATE_ABANDONED)))  /* [S1] */
        return 0;
    if (sealed) {
        uint32_t total;
        memcpy(&total, base + at + LK_M_TOTAL, 4);
        if (total > LK_MSG_HEADER && at + total <= size)
            memset(base + at + LK_MSG_HEADER, 0, total - LK_MSG_HEADER);
    }
    lk_counter_add_relaxed(LK_U64(base, LK_H_ABANDONED), 1);
    lk_wake_if_waiters(base);           /* a follower held back by this stub moves on */
    return 1;
}

/*
 * The writer's own record of its claim ([R1]'s result).  Every later step of
 * the write -- the stub, the copy, the seal, the checksum, the commit, and
 * the wipe of a lost sealed claim -- takes offset, sequence (the nonce of a
 * sealed message), lengths, key id and class name from here, never from the
 * bytes of the mapping, which any process that can write the file can
 * change (docs/security.md, "What the writer trusts").  `uuid` is the
 * header's UUID read just after [R1]: it and `seq` are what the writer
 * re-proves its ownership with ([P1]).
 */
typedef struct {
    uint64_t at;            /* offset of the message in the region */
    uint64_t seq;           /* its sequence number: sequence base + COUNT at [R1] */
    uint64_t total;         /* bytes claimed */
    uint32_t tl, dl;        /* text and binary data lengths */
    uint32_t pid, tid;      /* the MESSAGE's process and thread (write_as: the original's) */
    uint16_t cl, kid;       /* class name length, key id (0: not sealed) */
    const uint8_t *cls;     /* class name bytes (the caller keeps them alive until finish) */
    uint8_t uuid[16];
} lk_claim;

/* Test-only step hook (Segment.write_stepwise): called after each named step
 * of a write.  Every production caller passes the constant NULL, and the
 * writer functions are static inline, so the compiler drops the test. */
typedef void (*lk_step_hook)(void *arg, int step);
enum {
    LK_STEP_CLAIMED = 1,    /* after [R1]: space and sequence ours, no stub yet */
    LK_STEP_STUB = 2,       /* after [W1]: stub published (RESERVED) */
    LK_STEP_COPIED = 3,     /* payload copied, not yet checksummed or sealed */
    LK_STEP_COMMITTED = 4,  /* after [W2], before the written counter [W5] */
};
#define LK_STEP(hook, arg, step) do { if (hook) (hook)((arg), (step)); } while (0)

/* [P1] Re-prove ownership after any step a pause could have interrupted (a
 * writer stopped by SIGSTOP, a debugger or a frozen cgroup resumes where it
 * was, possibly after salvage abandoned its stub and the region was
 * formatted again).  The claim is still ours when the state word is
 * RESERVED (acquire, pairs with [W1] of whoever published it) and the
 * header's UUID is the one we claimed under: every format draws a new UUID,
 * and within one format claims never overlap, so the RESERVED stub at our
 * offset under our UUID is ours.  (Not the stub's sequence: a process that
 * can write the file could change it, and that must not make a writer leave
 * its plaintext unsealed; the finish rewrites the whole header from the
 * claim anyway.)  The commit itself is
 * the CAS [W2], which fails on an abandoned stub; [P1] is what keeps the
 * steps before it (copy, seal, header stores) out of a region that is no
 * longer ours.  The window left between [P1] and the store it guards is a
 * few instructions (docs/format.md, "Stalled writers"). */
static inline int lk_claim_held(const uint8_t *base, const lk_claim *c) {
    const uint8_t *m = base + c->at;
    if (lk_state_load_acquire((const uint64_t *)m) != lk_state_word(LK_STATE_RESERVED))  /* [P1] */
        return 0;
    return memcmp(base + LK_H_UUID, c->uuid, 16) == 0;
}

/* A claim that is no longer ours: LK_LOST.  A sealed claim may hold
 * plaintext its writer copied in after (or racing) salvage's abandon [S1],
 * which wiped only what was there at that moment: wipe the payload again,
 * but only while the region is still the format we claimed in (same UUID)
 * and the stub there abandoned.  A region formatted again belongs to
 * others: touch nothing. */
static inline int lk_claim_lost(uint8_t *base, const lk_claim *c) {
    if (c->kid) {
        uint8_t *m = base + c->at;
        if (lk_state_load_acquire(LK_U64(m, 0)) == lk_state_word(LK_STATE_ABANDONED) &&
            memcmp(base + LK_H_UUID, c->uuid, 16) == 0)
            memset(m + LK_MSG_HEADER, 0, c->total - LK_MSG_HEADER);
    }
    return LK_LOST;
}

/* A damaged reservation word ([R1] found NEXT inside the header or past the
 * end) is never written through; the segment is taken out of service [O1]
 * so that its family rotates instead of failing every write until someone
 * salvages by hand (HAZARDS: a damaged live segment is rotated, not patched).
 * COUNT and NEXT are left as found, for salvage to read. */
__attribute__((noinline, cold)) static int lk_refuse_damaged_word(uint8_t *base, uint64_t w) {
    uint64_t *word = LK_U64(base, LK_H_RESERVATION);
    while (w & LK_IN_SERVICE) {
        if (lk_service_word_cas(word, &w, w & ~LK_IN_SERVICE)) {     /* [O1] */
            lk_hint_store_relaxed(LK_U64(base, LK_H_OUT_OF_SERVICE_TIME), (uint64_t)lk_now_ns());
            lk_wake_if_waiters(base);                                /* [O2] after [O1] */
            break;
        }
    }
    return LK_DAMAGED;                  /* ReservationWordDamaged: a SegmentDamaged and an OutOfService */
}

/*
 * Claim space for a message and publish its stub.  No lock, no system call,
 * no allocation.  Returns LK_OK with *c filled, or a refusal code (after
 * counting it).  The data-class name is copied here because its length and
 * bytes are known at reservation.
 *
 * The stub names the HOLDER of the reservation, the process that will
 * finish it: +32 is this process's pid and +60 (the checksum, not yet
 * computed) its start time (lk_sys.h, "Process identity").  For a copy
 * (write_as) the message's own pid is stored only at finish, so salvage and
 * followers judge the copier, not the long-gone original writer
 * (docs/format.md, "Who holds a reservation").
 */
static inline int lk_claim_space(uint8_t *base, uint64_t size,
                                 uint64_t text_len, uint64_t data_len,
                                 const void *cls, uint64_t cls_len, int64_t now,
                                 uint32_t pid, uint32_t tid, uint16_t kid,
                                 lk_claim *c, lk_step_hook hook, void *arg) {
    /* kid != 0: a sealed message (version 2), with room for the tag.  The
     * unsealed callers pass the constant 0, which the compiler folds away. */
    uint64_t need = lk_message_size(text_len + (kid ? LK_TAG_SIZE : 0u), data_len, cls_len);
    if (need > size - LK_HEADER_SIZE || text_len > 0xFFFFFFFFu ||
        data_len > 0xFFFFFFFFu || cls_len > 0xFFFFu) {
        lk_counter_add_relaxed(LK_U64(base, LK_H_REFUSED_TOO_BIG), 1);
        return LK_TOO_BIG;
    }
    uint64_t *word = LK_U64(base, LK_H_RESERVATION);
    uint64_t w = lk_reserve_word_load_exclusive(word);
    uint64_t at;
    for (;;) {
        /* The flag is re-tested on every iteration with the value the CAS
         * compares, so no reservation lands after taking out of service. */
        if (!(w & LK_IN_SERVICE)) {
            lk_counter_add_relaxed(LK_U64(base, LK_H_REFUSED_OOS), 1);
            return LK_OUT_OF_SERVICE;
        }
        at = (w & LK_NEXT_MASK) * 8u;
        if (at < LK_HEADER_SIZE || at > size)
            return lk_refuse_damaged_word(base, w);   /* never write through a scribbled word */
        if (need > size - at) {
            lk_counter_add_relaxed(LK_U64(base, LK_H_REFUSED_FULL), 1);
            return LK_FULL;
        }
        uint64_t nw = w + LK_COUNT_ONE + need / 8u;
        if (lk_reserve_word_cas(word, &w, nw))        /* [R1] pairs with [O1] */
            break;
    }
    uint8_t *m = base + at;
    c->at = at;
    c->seq = *LK_U64(base, LK_H_SEQUENCE_BASE) + ((w >> 32) & LK_COUNT_MASK);
    c->total = need;
    c->tl = (uint32_t)text_len; c->dl = (uint32_t)data_len;
    c->cl = (uint16_t)cls_len;  c->kid = kid;
    c->pid = pid; c->tid = tid;
    c->cls = (const uint8_t *)cls;
    memcpy(c->uuid, base + LK_H_UUID, 16);           /* after [R1]: see [K1] */
    LK_STEP(hook, arg, LK_STEP_CLAIMED);
    /* [P1] for the stub: a writer paused since [R1] for longer than salvage's
     * settle time finds a filler (or a new format) here: store nothing. */
    if (__builtin_expect(lk_state_load_acquire(LK_U64(m, 0)) != 0 ||
                         memcmp(base + LK_H_UUID, c->uuid, 16) != 0, 0))
        return LK_LOST;
    uint32_t u32; uint16_t u16;
    uint32_t holder = lk_process_id();
    u32 = (uint32_t)need;          memcpy(m + LK_M_TOTAL, &u32, 4);
    if (kid) {
        memset(m + LK_M_SEVERITY, 0, 2);      /* severity */
        u16 = LK_MSG_FLAG_SEALED;  memcpy(m + LK_M_FLAGS, &u16, 2);
    } else {
        memset(m + LK_M_SEVERITY, 0, 4);      /* severity, flags */
    }
    memcpy(m + LK_M_SEQUENCE, &c->seq, 8);
    memcpy(m + LK_M_TIME, &now, 8);       /* reservation time, replaced at finish */
    memcpy(m + LK_M_PID, &holder, 4);    /* the holder; the message's pid is stored at finish */
    memcpy(m + LK_M_TID, &tid, 4);
    memcpy(m + LK_M_TEXT_LEN, &c->tl, 4);
    memcpy(m + LK_M_DATA_LEN, &c->dl, 4);
    memcpy(m + LK_M_CLASS_LEN, &c->cl, 2);
    memcpy(m + LK_M_KEY_ID, &kid, 2);       /* key id (0: not sealed) */
    u32 = 1;                       memcpy(m + LK_M_SPAN, &u32, 4);   /* span */
    u32 = lk_stub_checksum(m);     memcpy(m + LK_M_STUB_CRC, &u32, 4);
    u32 = lk_holder_start(base);   memcpy(m + LK_M_CRC, &u32, 4);   /* holder's start; checksum at finish */
    if (cls_len)
        memcpy(m + LK_MSG_HEADER + text_len, cls, cls_len);
    uint64_t pad_at = LK_MSG_HEADER + text_len + cls_len + data_len;
    if (kid)
        pad_at += LK_TAG_SIZE;     /* the tag is written at finish */
    if (need > pad_at)
        memset(m + pad_at, 0, need - pad_at);
    /* [W1] publish the stub: a CAS from zero, not a plain store, so a writer
     * that paused between [P1] and here never overwrites the state of a
     * filler salvage wrote meanwhile (it gets LK_LOST instead).  seq_cst
     * success (lk_state_cas), which includes the release that pairs with [A1]. */
    uint64_t zero = 0;
    if (!lk_state_cas(LK_U64(m, 0), &zero, lk_state_word(LK_STATE_RESERVED)))  /* [W1] pairs with [A1] */
        return LK_LOST;
    LK_STEP(hook, arg, LK_STEP_STUB);
    return LK_OK;
}

/* The header a finished message gets, built in the writer's own memory from
 * its claim (never read back from the mapping): bytes 8..59; the checksum
 * at 60 is added once the payload is final. */
static inline void lk_claim_header(const lk_claim *c, int16_t severity, int64_t time_ns, uint8_t h[LK_MSG_HEADER]) {
    uint32_t u32 = (uint32_t)c->total; uint16_t fl = c->kid ? LK_MSG_FLAG_SEALED : 0;
    memset(h, 0, LK_MSG_HEADER);
    memcpy(h + LK_M_TOTAL, &u32, 4);
    memcpy(h + LK_M_SEVERITY, &severity, 2);
    memcpy(h + LK_M_FLAGS, &fl, 2);
    memcpy(h + LK_M_SEQUENCE, &c->seq, 8);
    memcpy(h + LK_M_TIME, &time_ns, 8);
    memcpy(h + LK_M_PID, &c->pid, 4);
    memcpy(h + LK_M_TID, &c->tid, 4);
    memcpy(h + LK_M_TEXT_LEN, &c->tl, 4);
    memcpy(h + LK_M_DATA_LEN, &c->dl, 4);
    memcpy(h + LK_M_CLASS_LEN, &c->cl, 2);
    memcpy(h + LK_M_KEY_ID, &c->kid, 2);
    u32 = 1;                       memcpy(h + LK_M_SPAN, &u32, 4);
    u32 = lk_stub_checksum(h);     memcpy(h + LK_M_STUB_CRC, &u32, 4);
}

/*
 * Finish a claim: seal (sealed claims: seg_key != NULL), checksum, store the
 * final header, commit.  Everything comes from the claim ([P1] before each
 * step that writes the mapping).  The commit is a CAS from RESERVED so that a
 * salvager who already abandoned this reservation ([S1]) wins; the writer
 * gets LK_LOST (and a sealed claim's payload is wiped: lk_claim_lost).
 *
 * The header fields (severity, time, the message's pid, the recomputed stub
 * checksum, the checksum) are stored together just before [W2]: until then
 * the stub keeps naming its holder and its reservation time, so a salvager
 * or follower never judges a copy by the original writer's pid or time.
 */
static inline int lk_finish_claim(uint8_t *base, uint64_t size, const lk_claim *c,
                                  int16_t severity, int64_t time_ns, const uint8_t *seg_key,
                                  lk_step_hook hook, void *arg) {
    uint8_t *m = base + c->at;
    uint8_t h[LK_MSG_HEADER];
    uint64_t payload = (uint64_t)c->tl + c->cl + c->dl;
    (void)size;
    if (!lk_claim_held(base, c))                                     /* [P1] */
        return lk_claim_lost(base, c);
    lk_claim_header(c, severity, time_ns, h);
    if (c->kid) {
        /* The nonce is the claim's sequence; the additional data is the
         * header built above and the class name the writer passed; the
         * spans are the claim's lengths (lk_seal_claim in lk_seal.h). */
        if (seg_key == NULL)
            return LK_DAMAGED;                  /* never: sealed claims pass a key */
        lk_seal_claim(seg_key, c->seq, h + LK_SEAL_AAD_START, c->cls, c->cl,
                      m + LK_MSG_HEADER, c->tl, m + LK_MSG_HEADER + c->tl + c->cl, c->dl,
                      m + LK_MSG_HEADER + payload);
        payload += LK_TAG_SIZE;
    }
    uint32_t crc = lk_crc32c(lk_crc32c(0, h + LK_M_TOTAL, 52), m + LK_MSG_HEADER, payload);
    memcpy(h + LK_M_CRC, &crc, 4);
    if (!lk_claim_held(base, c))                                     /* [P1] */
        return lk_claim_lost(base, c);
    memcpy(m + LK_M_TOTAL, h + LK_M_TOTAL, LK_MSG_HEADER - 8);
    uint64_t expected = lk_state_word(LK_STATE_RESERVED);
    if (!lk_state_cas(LK_U64(m, 0), &expected, lk_state_word(LK_STATE_COMMITTED)))  /* [W2] pairs with [A1] */
        return lk_claim_lost(base, c);
    LK_STEP(hook, arg, LK_STEP_COMMITTED);
    /* [W5] the written counter: relaxed, after [W2].  A writer killed
     * between [W2] and here leaves reserved > written + abandoned; settling
     * never trusts the counters alone (Segment.unfinished_claims walks), and
     * salvage recounts them (docs/format.md, "Counters"). */
    lk_counter_add_relaxed(lk_written_shard(base, c->tid), 1);
    uint64_t seq_base = *LK_U64(base, LK_H_SEQUENCE_BASE);
    if (c->seq == seq_base) {
        lk_hint_store_relaxed(LK_U64(base, LK_H_FIRST_TIME), (uint64_t)time_ns);
        lk_hint_store_relaxed(LK_U64(base, LK_H_FIRST_SEQUENCE), c->seq);
    }
    if (((c->seq - seq_base) & LK_HINT_EVERY_MASK) == 0) {
        lk_hint_store_relaxed(LK_U64(base, LK_H_LAST_SEQUENCE), c->seq);
        lk_hint_store_relaxed(LK_U64(base, LK_H_LAST_TIME), (uint64_t)time_ns);
        lk_hint_store_relaxed(LK_U64(base, LK_H_LAST_OFFSET), c->at);
    }
    lk_wake_if_waiters(base);                       /* [W3] after [W2] */
    return LK_OK;
}

/* The writer gives its claim up (Reservation.abandon, a block that raised):
 * [S1] only while the claim is still ours ([P1]), and the wipe of a sealed
 * claim covers the length it reserved, not the one the mapping says. */
static inline int lk_abandon_claim(uint8_t *base, const lk_claim *c) {
    if (!lk_claim_held(base, c)) {                                    /* [P1] */
        lk_claim_lost(base, c);
        return 0;
    }
    uint64_t expected = lk_state_word(LK_STATE_RESERVED);
    if (!lk_state_cas(LK_U64(base, c->at), &expected, lk_state_word(LK_STATE_ABANDONED))) {  /* [S1] */
        lk_claim_lost(base, c);
        return 0;
    }
    if (c->kid)
        memset(base + c->at + LK_MSG_HEADER, 0, c->total - LK_MSG_HEADER);
    lk_counter_add_relaxed(LK_U64(base, LK_H_ABANDONED), 1);
    lk_wake_if_waiters(base);
    return 1;
}

/* Copy text and data into a held claim ([P1] first: a paused writer never
 * copies into a region that is no longer its own). */
static inline int lk_claim_copy(uint8_t *base, const lk_claim *c,
                                const void *text, const void *data,
                                lk_step_hook hook, void *arg) {
    if (!lk_claim_held(base, c))                                     /* [P1] */
        return lk_claim_lost(base, c);
    uint8_t *p = base + c->at + LK_MSG_HEADER;
    if (c->tl) memcpy(p, text, c->tl);
    if (c->dl && data) memcpy(p + c->tl + c->cl, data, c->dl);
    LK_STEP(hook, arg, LK_STEP_COPIED);
    return LK_OK;
}

/* The whole write: claim, copy, finish, with an optional step hook (NULL
 * except in Segment.write_stepwise).  `now` is the clock now (the stub's
 * reservation time, which salvage's grace period is measured from); pass the
 * same value as `time_ns` when the message is stamped now, so one clock read
 * serves both.  seg_key/key_uuid: NULL for an unsealed segment (kid 0). */
static inline int lk_write_steps(uint8_t *base, uint64_t size,
                                 const void *text, uint64_t text_len,
                                 const void *data, uint64_t data_len,
                                 const void *cls, uint64_t cls_len,
                                 int16_t severity, int64_t time_ns, int64_t now,
                                 uint32_t pid, uint32_t tid, uint16_t kid,
                                 const uint8_t *seg_key, const uint8_t *key_uuid,
                                 uint64_t *seq, lk_step_hook hook, void *arg) {
    lk_claim c;
    int rc = lk_claim_space(base, size, text_len, data_len, cls, cls_len, now, pid, tid, kid, &c, hook, arg);
    if (rc != LK_OK)
        return rc;
    *seq = c.seq;
    if (kid && memcmp(c.uuid, key_uuid, 16) != 0) {           /* [K1] after [R1] */
        lk_abandon_reserved(base, size, c.at, 1);
        return LK_REKEY;
    }
    rc = lk_claim_copy(base, &c, text, data, hook, arg);
    if (rc != LK_OK)
        return rc;
    return lk_finish_claim(base, size, &c, severity, time_ns, seg_key, hook, arg);
}

static inline int lk_write_as(uint8_t *base, uint64_t size,
                              const void *text, uint64_t text_len,
                              const void *data, uint64_t data_len,
                              const void *cls, uint64_t cls_len,
                              int16_t severity, int64_t time_ns, int64_t now,
                              uint32_t pid, uint32_t tid, uint64_t *seq) {
    return lk_write_steps(base, size, text, text_len, data, data_len, cls, cls_len,
                          severity, time_ns, now, pid, tid, 0, NULL, NULL, seq, NULL, NULL);
}

/* The whole write into a sealed segment: claim with the key id (room for
 * the tag), copy the plaintext, seal and commit.  The plaintext lies in the
 * mapping only between the copy and the seal, a few hundred ns (and a lost
 * claim's is wiped: lk_claim_lost).
 *
 * `key_uuid` is the segment UUID the caller derived `seg_key` from.  A region
 * that is formatted again in place (a partition half being reused) gets a new
 * UUID, and so a new segment key, which a writer in another process learns
 * only from the header.  [K1] The UUID is read after the reservation CAS
 * [R1]: its acquire half makes the format's stores (UUID, key check,
 * sequence base, all before its release store of the reservation word) that
 * published the word we claimed from visible, so the UUID read then is the
 * one of the format our reservation lies in.  On a mismatch the reservation
 * is abandoned (nothing of ours was copied yet) and LK_REKEY tells the caller
 * to derive the new key and write again. */
static inline int lk_write_sealed(uint8_t *base, uint64_t size,
                                  const void *text, uint64_t text_len,
                                  const void *data, uint64_t data_len,
                                  const void *cls, uint64_t cls_len,
                                  int16_t severity, int64_t time_ns, int64_t now,
                                  uint32_t pid, uint32_t tid,
                                  uint16_t kid, const uint8_t seg_key[32],
                                  const uint8_t key_uuid[16], uint64_t *seq) {
    return lk_write_steps(base, size, text, text_len, data, data_len, cls, cls_len,
                          severity, time_ns, now, pid, tid, kid, seg_key, key_uuid, seq, NULL, NULL);
}

#endif /* LK_WRITE_H */
