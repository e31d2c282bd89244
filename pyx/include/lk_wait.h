/*
 * lk_wait.h -- waiting for messages: the waiter side of the wake-up handshake and the listener table
 *
 * Part of the segment core: lk_segment.h includes it (after the layout,
 * the atomics and the writer it builds on), and nothing else should.
 * The ordering labels ([R1], [A1], [F1] ...) are those of lk_segment.h.
 */
#ifndef LK_WAIT_H
#define LK_WAIT_H

#ifndef LK_SEGMENT_H
#error "include lk_segment.h, not lk_wait.h"
#endif

/* ---------------------------------------------------------------- wake-ups: waiter side */

enum {
    LK_WAIT_TIMEOUT = 0,
    LK_WAIT_READY = 1,
    LK_WAIT_INTERRUPTED = 2,   /* a signal: the caller handles it and calls again */
    LK_WAIT_CANCELLED = 3,     /* *cancel was set (Segment.cancel_waits): see [C1] */
};

/* [C1] Cancelling a wait from another thread of the same process.  The
 * canceller stores *cancel = 1 (seq_cst), then does [W4] (wake word += 1,
 * seq_cst, then FUTEX_WAKE).  The waiter loads *cancel (acquire) after [F2]
 * and before [F4].  If its [F2] read the bumped word, the bump comes after the
 * cancel store in the total order, so its load of *cancel sees 1.  If [F2]
 * read the word before the bump, [F4] either finds the word changed (EAGAIN)
 * or is queued before FUTEX_WAKE and woken; either way it loops to [F2] and
 * then sees the flag.  So a cancel is never slept through.  The flag lives in
 * the process (the Segment object), not in the file. */
static inline int lk_wait_cancelled(const uint32_t *cancel) {
    return cancel != NULL && lk_cancel_load_acquire(cancel) != 0;        /* [C1] */
}

/* [C1] The canceller's store: seq_cst, before its [W4] bump. */
static inline void lk_cancel_set(uint32_t *cancel) {
    lk_cancel_store_seq_cst(cancel, 1u);
}

/* Take a cancel (the waiter, once its wait ended): 1 if one was set. */
static inline uint32_t lk_cancel_take(uint32_t *cancel) {
    return lk_cancel_exchange_acq_rel(cancel, 0u);
}

/* [F3] Is there something for a waiter at `at`: the segment out of service,
 * or the state word at `at` neither zero (nothing, or a claim whose stub is
 * not yet published) nor RESERVED (a writer still at work)? */
static inline int lk_wait_ready(const uint8_t *base, uint64_t size, uint64_t at) {
    uint64_t w = lk_reserve_word_load_acquire(LK_U64(base, LK_H_RESERVATION));  /* [F3] */
    if (!(w & LK_IN_SERVICE))
        return 1;
    if (at < LK_HEADER_SIZE || (at & 7u) || at + LK_MSG_HEADER > size)
        return 0;                      /* no record can start there: only [O1] ends the wait */
    uint64_t sw = lk_state_load_acquire((const uint64_t *)(base + at));          /* [F3] = [A1] */
    return sw != 0 && sw != lk_state_word(LK_STATE_RESERVED);
}

/*
 * Sleep on the futex until `at` is ready ([F1]..[F5]), the monotonic clock
 * passes `deadline` (ns; < 0: no limit), or a signal arrives.  `base` is the
 * segment as mapped (possibly read-only): readiness is read there.  `hdr` is
 * a writable mapping of the same header page (often base itself): the
 * waiter count, the wake word and `slot_flags` (the waiter's listener slot
 * flags, or NULL when it is not listed) are written there.  *sleeps counts
 * the FUTEX_WAIT calls.
 */
static inline int lk_wait_futex(const uint8_t *base, uint64_t size, uint8_t *hdr, uint64_t at,
                                int64_t deadline, uint32_t *slot_flags, uint64_t *sleeps,
                                const uint32_t *cancel) {
    uint32_t *waiters = LK_U32(hdr, LK_H_WAITERS);
    uint32_t *word = LK_U32(hdr, LK_H_WAKE_WORD);
    int rc;
    lk_waiters_enter(waiters);                                    /* [F1] + fence */
    if (slot_flags)
        lk_listener_flags_or(slot_flags, LK_LISTENER_WAITING);    /* [L3] after [F1] */
    for (;;) {
        uint32_t v = lk_wake_word_load_acquire(word);             /* [F2] pairs with [W4] */
        if (lk_wait_ready(base, size, at)) {                      /* [F3] */
            rc = LK_WAIT_READY;
            break;
        }
        if (lk_wait_cancelled(cancel)) {                          /* [C1] after [F2] */
            rc = LK_WAIT_CANCELLED;
            break;
        }
        int64_t left = -1;
        if (deadline >= 0) {
            left = deadline - lk_monotonic_ns();
            if (left <= 0) {
                rc = LK_WAIT_TIMEOUT;
                break;
            }
        }
        (*sleeps)++;
        if (lk_futex_wait(word, v, left) == LK_FUTEX_INTERRUPTED) {   /* [F4] */
            rc = LK_WAIT_INTERRUPTED;
            break;
        }
    }
    if (slot_flags) {
        /* [L3]: undo [F1] only if the bit was still ours to clear; a process
         * that judged us dead and reclaimed the slot has already undone it. */
        if (lk_listener_flags_and(slot_flags, ~LK_LISTENER_WAITING) & LK_LISTENER_WAITING)
            lk_waiters_leave(waiters);                            /* [F5] */
    } else {
        lk_waiters_leave(waiters);                                /* [F5] */
    }
    return rc;
}

/* The fallback where there is no futex (or a waiter cannot write the header):
 * look every `interval` ns (> 0) until ready or past `deadline`. */
static inline int lk_wait_poll(const uint8_t *base, uint64_t size, uint64_t at,
                               int64_t deadline, int64_t interval, uint64_t *sleeps,
                               const uint32_t *cancel) {
    for (;;) {
        if (lk_wait_ready(base, size, at))
            return LK_WAIT_READY;
        if (lk_wait_cancelled(cancel))
            return LK_WAIT_CANCELLED;        /* noticed within one interval */
        int64_t left = interval;
        if (deadline >= 0) {
            left = deadline - lk_monotonic_ns();
            if (left <= 0)
                return LK_WAIT_TIMEOUT;
            if (left > interval)
                left = interval;
        }
        (*sleeps)++;
        if (lk_sleep_ns(left) == LK_FUTEX_INTERRUPTED)
            return LK_WAIT_INTERRUPTED;
    }
}

/* ---------------------------------------------------------------- listener table */

static inline uint8_t *lk_listener_slot(uint8_t *hdr, uint32_t i) {
    return hdr + LK_H_LISTENERS + (uint64_t)i * LK_LISTENER_SLOT_BYTES;
}

/* The table is used only if its geometry is the one this code knows: the
 * header is writable by every writer, so a scribbled count is possible. */
static inline int lk_listener_table_sound(const uint8_t *hdr) {
    return *(const uint32_t *)(hdr + LK_H_LISTENER_COUNT) == LK_LISTENER_SLOTS &&
           *(const uint32_t *)(hdr + LK_H_LISTENER_SLOT_SIZE) == LK_LISTENER_SLOT_BYTES;
}

/* The caller owns the slot (won [L1]): undo a dead owner's [F1] if its
 * WAITING bit is still set ([L3]), then clear the fields. */
static inline void lk_listener_settle(uint8_t *hdr, uint8_t *slot) {
    if (lk_listener_flags_and(LK_U32(slot, LK_LS_FLAGS), 0) & LK_LISTENER_WAITING)
        lk_waiters_leave(LK_U32(hdr, LK_H_WAITERS));
    lk_listener_field_store_relaxed(LK_U64(slot, LK_LS_MIN_INTERVAL), 0);
    lk_listener_field_store_relaxed(LK_U64(slot, LK_LS_LAST_WAKE), 0);
    memset(slot + 24, 0, LK_LISTENER_SLOT_BYTES - 24);
}

/* Reclaim every slot of a dead process that died while counted as a waiter,
 * so the waiter count is right again (run at every registration: a dead
 * waiter otherwise costs every writer a system call per message). */
static inline int lk_listener_sweep(uint8_t *hdr, uint32_t self) {
    int n = 0;
    if (!lk_listener_table_sound(hdr))
        return 0;
    for (uint32_t i = 0; i < LK_LISTENER_SLOTS; i++) {
        uint8_t *slot = lk_listener_slot(hdr, i);
        uint32_t p = lk_listener_pid_load_acquire(LK_U32(slot, LK_LS_PID));
        if (p == 0 || p == self)
            continue;
        if (!(lk_listener_flags_load_relaxed(LK_U32(slot, LK_LS_FLAGS)) & LK_LISTENER_WAITING))
            continue;
        if (!lk_identity_gone(p, lk_listener_start_load_relaxed(LK_U32(slot, LK_LS_START))))
            continue;
        if (lk_listener_pid_cas(LK_U32(slot, LK_LS_PID), &p, self)) {              /* [L1] */
            lk_listener_settle(hdr, slot);
            lk_listener_pid_store_release(LK_U32(slot, LK_LS_PID), 0);              /* [L2] */
            n++;
        }
    }
    return n;
}

/* Claim a slot for `self` ([L1]): a free one, else one whose owner is dead.
 * Returns its index, or -1 when the table is full of live processes (or
 * unsound).  Fills in the minimum interval; last wake-up 0. */
static inline int lk_listener_claim(uint8_t *hdr, uint32_t self, uint64_t min_interval_ns) {
    if (self == 0 || !lk_listener_table_sound(hdr))
        return -1;
    lk_listener_sweep(hdr, self);
    int got = -1;
    for (uint32_t i = 0; i < LK_LISTENER_SLOTS && got < 0; i++) {
        uint8_t *slot = lk_listener_slot(hdr, i);
        uint32_t p = 0;
        if (lk_listener_pid_load_acquire(LK_U32(slot, LK_LS_PID)) == 0 &&
            lk_listener_pid_cas(LK_U32(slot, LK_LS_PID), &p, self)) {               /* [L1] */
            /* A free slot has no outstanding increment ([L2] clears flags
             * first): clear whatever is there without touching the count. */
            lk_listener_flags_and(LK_U32(slot, LK_LS_FLAGS), 0);
            lk_listener_field_store_relaxed(LK_U64(slot, LK_LS_LAST_WAKE), 0);
            memset(slot + 24, 0, LK_LISTENER_SLOT_BYTES - 24);
            got = (int)i;
        }
    }
    for (uint32_t i = 0; i < LK_LISTENER_SLOTS && got < 0; i++) {
        uint8_t *slot = lk_listener_slot(hdr, i);
        uint32_t p = lk_listener_pid_load_acquire(LK_U32(slot, LK_LS_PID));
        if (p != 0 && p != self &&
            lk_identity_gone(p, lk_listener_start_load_relaxed(LK_U32(slot, LK_LS_START))) &&
            lk_listener_pid_cas(LK_U32(slot, LK_LS_PID), &p, self)) {               /* [L1] */
            lk_listener_settle(hdr, slot);
            got = (int)i;
        }
    }
    if (got >= 0) {
        uint8_t *slot = lk_listener_slot(hdr, (uint32_t)got);
        lk_listener_field_store_relaxed(LK_U64(slot, LK_LS_MIN_INTERVAL), min_interval_ns);
        lk_listener_start_store_relaxed(LK_U32(slot, LK_LS_START), lk_holder_start(hdr));  /* [L1] */
    }
    return got;
}

/* Give slot i back, if `self` still owns it ([L2]).  The caller is not
 * waiting on it (its WAITING bit is clear). */
static inline int lk_listener_release(uint8_t *hdr, uint32_t i, uint32_t self) {
    if (i >= LK_LISTENER_SLOTS || !lk_listener_table_sound(hdr))
        return 0;
    uint8_t *slot = lk_listener_slot(hdr, i);
    if (lk_listener_pid_load_acquire(LK_U32(slot, LK_LS_PID)) != self)
        return 0;                      /* reclaimed meanwhile: no longer ours */
    lk_listener_flags_and(LK_U32(slot, LK_LS_FLAGS), 0);
    lk_listener_field_store_relaxed(LK_U64(slot, LK_LS_MIN_INTERVAL), 0);
    lk_listener_field_store_relaxed(LK_U64(slot, LK_LS_LAST_WAKE), 0);
    lk_listener_start_store_relaxed(LK_U32(slot, LK_LS_START), 0u);
    lk_listener_pid_store_release(LK_U32(slot, LK_LS_PID), 0);                      /* [L2] */
    return 1;
}


#endif /* LK_WAIT_H */
