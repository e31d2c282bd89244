/*
 * lk_reader.h -- the reader: validating and walking records (lk_next_record, lk_read_bound, ...)
 *
 * Part of the segment core: lk_segment.h includes it (after the layout,
 * the atomics and the writer it builds on), and nothing else should.
 * The ordering labels ([R1], [A1], [F1] ...) are those of lk_segment.h.
 */
#ifndef LK_READER_H
#define LK_READER_H

#ifndef LK_SEGMENT_H
#error "include lk_segment.h, not lk_reader.h"
#endif

/* ---------------------------------------------------------------- reader */

enum {
    LK_REC_END = 0,        /* nothing more */
    LK_REC_COMMITTED = 1,  /* a whole message, checksum good */
    LK_REC_RESERVED = 2,   /* a stub whose writer has not finished */
    LK_REC_ABANDONED = 3,  /* a stub given up by salvage (or a filler) */
    LK_REC_GAP = 4,        /* first word zero: claims whose state was never published */
    LK_REC_DAMAGED = 5,    /* bytes that are no plausible record */
};

typedef struct {
    int kind;
    uint64_t offset;       /* where the record or range starts */
    uint64_t next;         /* where the walk continues */
    uint64_t sequence;     /* records: its sequence */
    uint32_t span;         /* records: sequence numbers it accounts for */
    uint32_t state;        /* records: raw state */
    int checksum_ok;       /* committed records: 1; damaged record: 0 */
} lk_rec;

/* The shape of a record at `at`: sentinel, a known state, lengths consistent
 * with the total, the total within the region.  Nothing about sequence or
 * checksums.  On success fills *total, *seq, *span, *state; the state word is
 * read with an acquire load [A1] before any other field. */
static inline int lk_plausible_shape(const uint8_t *base, uint64_t size, uint64_t at,
                                     uint32_t *total, uint64_t *seq, uint32_t *span, uint32_t *state) {
    if (at + LK_MSG_HEADER > size || at < LK_HEADER_SIZE)
        return 0;
    const uint8_t *m = base + at;
    uint64_t sw = lk_state_load_acquire((const uint64_t *)m);           /* [A1] */
    if ((uint32_t)sw != LK_SENTINEL)
        return 0;
    uint32_t st = (uint32_t)(sw >> 32);
    if (st < LK_STATE_RESERVED || st > LK_STATE_ABANDONED)
        return 0;
    uint32_t t, tl, dl, sp; uint16_t cl, kid; uint64_t s;
    memcpy(&t, m + LK_M_TOTAL, 4); memcpy(&s, m + LK_M_SEQUENCE, 8);
    memcpy(&tl, m + LK_M_TEXT_LEN, 4); memcpy(&dl, m + LK_M_DATA_LEN, 4); memcpy(&cl, m + LK_M_CLASS_LEN, 2);
    memcpy(&kid, m + LK_M_KEY_ID, 2); memcpy(&sp, m + LK_M_SPAN, 4);
    if (t < LK_MSG_HEADER || (t & 7u) || (uint64_t)t > size - at)
        return 0;
    /* A sealed message (key id != 0) carries its 16-byte tag in total. */
    if (lk_message_size((uint64_t)tl + (kid ? LK_TAG_SIZE : 0u), dl, cl) != t)
        return 0;
    if (sp == 0 || (uint64_t)sp * LK_MSG_HEADER > t || s > UINT64_MAX - sp)
        return 0;
    *total = t; *seq = s; *span = sp; *state = st;
    return 1;
}

/* Is the record at `at` valid as the next one of a walk whose next expected
 * sequence is `min_seq`, expected at `min_pos`?  A committed record must pass
 * its full checksum (then *checked = 1) and may jump ahead in sequence; a
 * stub must pass its stub checksum, have span 1 unless it is a filler, and be
 * no further ahead than the bytes since `min_pos` allow. */
static inline int lk_valid_record(const uint8_t *base, uint64_t size, uint64_t at,
                                  uint64_t min_seq, uint64_t min_pos,
                                  uint32_t *total, uint64_t *seq, uint32_t *span, uint32_t *state) {
    if (!lk_plausible_shape(base, size, at, total, seq, span, state))
        return 0;
    if (*seq < min_seq || at < min_pos)
        return 0;
    const uint8_t *m = base + at;
    if (*state == LK_STATE_COMMITTED) {
        uint32_t stored; int16_t sev; uint16_t fl, kid;
        memcpy(&stored, m + LK_M_CRC, 4); memcpy(&sev, m + LK_M_SEVERITY, 2);
        memcpy(&fl, m + LK_M_FLAGS, 2); memcpy(&kid, m + LK_M_KEY_ID, 2);
        /* The payload length is read ONCE here and bounded by the total that
         * lk_plausible_shape checked against the region: another process may
         * have rewritten the lengths since that check, and lk_message_checksum
         * would read them again and over-read past the mapping.  A length
         * that no longer agrees fails the checksum (or this bound). */
        uint64_t payload = lk_payload_len(m);
        if (payload > (uint64_t)*total - LK_MSG_HEADER)
            return 0;
        /* the sealed flag is set exactly when the key id is non-zero */
        return *span == 1 && sev >= LK_SEVERITY_MIN && sev <= LK_SEVERITY_MAX &&
               ((fl & LK_MSG_FLAG_SEALED) != 0) == (kid != 0) &&
               stored == lk_message_checksum_n(m, payload);
    }
    uint32_t stub; uint16_t flags;
    memcpy(&stub, m + LK_M_STUB_CRC, 4); memcpy(&flags, m + LK_M_FLAGS, 2);
    if (stub != lk_stub_checksum(m))
        return 0;
    if (*span != 1 && !(*state == LK_STATE_ABANDONED && (flags & LK_FLAG_FILLER)))
        return 0;
    return *seq - min_seq <= (at - min_pos) / LK_MSG_HEADER;
}

static inline int lk_all_zero(const uint8_t *p, uint64_t n) {
    for (uint64_t i = 0; i < n; i += 8) {
        uint64_t v; memcpy(&v, p + i, 8);
        if (v) return 0;
    }
    return 1;
}

/*
 * One step of a walk.  `pos` is where the walk stands (8-aligned), `bound`
 * the allocation end the caller read from the reservation word (clamped to
 * the region), `min_seq`/`min_pos` as for lk_valid_record.  Always returns a
 * record with next > pos, or LK_REC_END.
 */
static inline void lk_next_record(const uint8_t *base, uint64_t size, uint64_t pos,
                                  uint64_t bound, uint64_t min_seq, uint64_t min_pos,
                                  lk_rec *r) {
    uint32_t total, span, state; uint64_t seq;
    r->offset = pos; r->checksum_ok = 0; r->sequence = 0; r->span = 0; r->state = 0;
    if (pos + LK_MSG_HEADER > size) {
        r->kind = LK_REC_END; r->next = pos;
        return;
    }
    /* Classify by ONE load of the first word [A1]: a writer may publish its
     * state word at any moment, so a second read could see it non-zero and
     * take a claim in progress for damage.  Zero now means "claim, state not
     * yet published" (a gap); a published state never goes back to zero. */
    uint64_t first = lk_state_load_acquire((const uint64_t *)(base + pos));
    if (first != 0 &&
        lk_valid_record(base, size, pos, min_seq, min_pos, &total, &seq, &span, &state)) {
        r->next = pos + total; r->sequence = seq; r->span = span; r->state = state;
        r->checksum_ok = 1;
        r->kind = state == LK_STATE_COMMITTED ? LK_REC_COMMITTED
                : state == LK_STATE_RESERVED ? LK_REC_RESERVED : LK_REC_ABANDONED;
        return;
    }
    if (pos >= bound) {
        /* Past the allocation end with nothing valid: the end. */
        r->kind = LK_REC_END; r->next = pos;
        return;
    }
    /* Gap or damage: scan for the next valid record, within the allocated
     * part (pos < bound here). */
    uint64_t limit = bound;
    uint64_t q = pos + 8;
    while (q + LK_MSG_HEADER <= limit) {
        if (*(const uint32_t *)(base + q) == LK_SENTINEL &&
            lk_valid_record(base, size, q, min_seq, min_pos, &total, &seq, &span, &state))
            break;
        q += 8;
    }
    if (q + LK_MSG_HEADER > limit) {
        /* No header before the limit: do not report the zeros that follow the
         * last non-zero byte as part of this range (they are unused space). */
        q = limit;
        if (first != 0) {
            while (q > pos + 8 && *(const uint64_t *)(base + q - 8) == 0)
                q -= 8;
        }
    }
    r->next = q;
    /* A range whose first word is zero is a claim whose state word was never
     * published (its writer died before [W1]); anything else is damage. */
    r->kind = first == 0 ? LK_REC_GAP : LK_REC_DAMAGED;
}

/* The allocation end a reader may walk to: NEXT*8 clamped to the region.
 * A scribbled word (NEXT inside the header or past the end) gives the whole
 * region, so a walk still finds everything, just more slowly. */
static inline uint64_t lk_read_bound(const uint8_t *base, uint64_t size) {
    uint64_t w = lk_reserve_word_load_acquire(LK_U64(base, LK_H_RESERVATION));
    uint64_t at = (w & LK_NEXT_MASK) * 8u;
    if (at < LK_HEADER_SIZE || at > size)
        return size;
    return at;
}


#endif /* LK_READER_H */
