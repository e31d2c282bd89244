/*
 * lk_claim.h -- the two-step C API: reserve, fill, finish (lk_reserve, lk_claim_*, lk_finish)
 *
 * Part of the segment core: lk_segment.h includes it (after the layout,
 * the atomics and the writer it builds on), and nothing else should.
 * The ordering labels ([R1], [A1], [F1] ...) are those of lk_segment.h.
 */
#ifndef LK_CLAIM_H
#define LK_CLAIM_H

#ifndef LK_SEGMENT_H
#error "include lk_segment.h, not lk_claim.h"
#endif

/* ---------------------------------------------------------------- two-step C API
 * The older calls of docs/api.md's C-level table, kept for callers that hold
 * only an offset between reserve and finish.  They rebuild the claim from
 * the stub (lengths, sequence, thread id, class name as stored), so unlike
 * lk_claim_space/lk_finish_claim they trust the mapping between the two
 * steps; the message's pid is the finishing process's.  New code (and every
 * writer inside logkit) uses the lk_claim functions. */
static inline int lk_reserve_kid(uint8_t *base, uint64_t size,
                                 uint64_t text_len, uint64_t data_len,
                                 const void *cls, uint64_t cls_len, int64_t now,
                                 uint32_t pid, uint32_t tid, uint16_t kid,
                                 uint64_t *off, uint64_t *seq) {
    lk_claim c;
    int rc = lk_claim_space(base, size, text_len, data_len, cls, cls_len, now, pid, tid, kid,
                            &c, NULL, NULL);
    if (rc == LK_OK) {
        *off = c.at;
        *seq = c.seq;
    }
    return rc;
}

static inline int lk_reserve_as(uint8_t *base, uint64_t size,
                                uint64_t text_len, uint64_t data_len,
                                const void *cls, uint64_t cls_len, int64_t now,
                                uint32_t pid, uint32_t tid,
                                uint64_t *off, uint64_t *seq) {
    return lk_reserve_kid(base, size, text_len, data_len, cls, cls_len, now, pid, tid, 0, off, seq);
}

/* The usual case: the message is this process's and thread's. */
static inline int lk_reserve_at(uint8_t *base, uint64_t size,
                                uint64_t text_len, uint64_t data_len,
                                const void *cls, uint64_t cls_len, int64_t now,
                                uint64_t *off, uint64_t *seq) {
    return lk_reserve_as(base, size, text_len, data_len, cls, cls_len, now,
                         lk_process_id(), lk_thread_id(), off, seq);
}

static inline int lk_reserve(uint8_t *base, uint64_t size,
                             uint64_t text_len, uint64_t data_len,
                             const void *cls, uint64_t cls_len,
                             uint64_t *off, uint64_t *seq) {
    return lk_reserve_at(base, size, text_len, data_len, cls, cls_len, lk_now_ns(), off, seq);
}

/* Rebuild a claim from the stub at `at` (the two-step API): 0 if no stub of
 * ours is there any more. */
static inline int lk_claim_from_stub(const uint8_t *base, uint64_t at, lk_claim *c) {
    const uint8_t *m = base + at;
    if (lk_state_load_acquire((const uint64_t *)m) != lk_state_word(LK_STATE_RESERVED))
        return 0;
    uint32_t total;
    memcpy(&total, m + LK_M_TOTAL, 4);
    memcpy(&c->seq, m + LK_M_SEQUENCE, 8);
    memcpy(&c->tid, m + LK_M_TID, 4);
    memcpy(&c->tl, m + LK_M_TEXT_LEN, 4);
    memcpy(&c->dl, m + LK_M_DATA_LEN, 4);
    memcpy(&c->cl, m + LK_M_CLASS_LEN, 2);
    memcpy(&c->kid, m + LK_M_KEY_ID, 2);
    c->at = at;
    c->total = total;
    c->pid = lk_process_id();
    c->cls = m + LK_MSG_HEADER + c->tl;
    memcpy(c->uuid, base + LK_H_UUID, 16);
    return 1;
}

static inline int lk_finish(uint8_t *base, uint64_t at, int16_t severity, int64_t time_ns) {
    lk_claim c;
    if (!lk_claim_from_stub(base, at, &c))
        return LK_LOST;
    if (c.kid)
        return LK_DAMAGED;              /* a sealed stub needs lk_finish_sealed */
    return lk_finish_claim(base, 0, &c, severity, time_ns, NULL, NULL, NULL);
}

static inline int lk_finish_sealed(uint8_t *base, uint64_t size, uint64_t at,
                                   int16_t severity, int64_t time_ns, const uint8_t seg_key[32]) {
    lk_claim c;
    if (!lk_claim_from_stub(base, at, &c))
        return LK_LOST;
    if (!c.kid || c.total > size - at ||
        lk_message_size((uint64_t)c.tl + LK_TAG_SIZE, c.dl, c.cl) != c.total)
        return LK_DAMAGED;
    return lk_finish_claim(base, size, &c, severity, time_ns, seg_key, NULL, NULL);
}

/* A message of this process and thread (lk_write_as copies one made elsewhere,
 * keeping its writer's ids: drains and copies into a family). */
static inline int lk_write(uint8_t *base, uint64_t size,
                           const void *text, uint64_t text_len,
                           const void *data, uint64_t data_len,
                           const void *cls, uint64_t cls_len,
                           int16_t severity, int64_t time_ns, int64_t now, uint64_t *seq) {
    return lk_write_as(base, size, text, text_len, data, data_len, cls, cls_len,
                       severity, time_ns, now, lk_process_id(), lk_thread_id(), seq);
}


/* Set or clear IN_SERVICE.  Returns 1 if this call changed the flag, 0 if it
 * was already so: exactly one of several racing callers gets 1, which is
 * what elects the rotator of a family.  [O1] pairs with [R1]; taking out of
 * service then wakes every waiter [O2], so followers move on at once. */
static inline int lk_set_in_service(uint8_t *base, int in_service) {
    uint64_t *word = LK_U64(base, LK_H_RESERVATION);
    uint64_t w = lk_reserve_word_load_relaxed(word);
    for (;;) {
        int now_in = (w & LK_IN_SERVICE) != 0;
        if (now_in == (in_service != 0))
            return 0;
        uint64_t nw = in_service ? (w | LK_IN_SERVICE) : (w & ~LK_IN_SERVICE);
        if (lk_service_word_cas(word, &w, nw)) {     /* [O1] seq_cst */
            if (!in_service)
                lk_wake_if_waiters(base);            /* [O2] after [O1] */
            return 1;
        }
    }
}


#endif /* LK_CLAIM_H */
