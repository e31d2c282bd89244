/*
 * lk_atomic.h -- the atomic operations logkit uses on shared mappings.
 *
 * Every word here is shared between processes through a MAP_SHARED mapping,
 * so each operation must be lock-free (a lock-based fallback would live in
 * one process's memory and protect nothing).  The _Static_asserts below make
 * the build fail on a target where a 32- or 64-bit atomic is not lock-free.
 *
 * Each wrapper is named for what it does at its call site and carries the
 * memory ordering that use needs; the pairing partner of every release and
 * acquire is named in lk_segment.h next to the call.
 */
#ifndef LK_ATOMIC_H
#define LK_ATOMIC_H

#include <stdint.h>

_Static_assert(__atomic_always_lock_free(sizeof(uint64_t), 0),
               "logkit needs lock-free 64-bit atomics for shared mappings");
_Static_assert(__atomic_always_lock_free(sizeof(uint32_t), 0),
               "logkit needs lock-free 32-bit atomics for shared mappings");

/* Reservation word: a relaxed load is enough to start a CAS loop, because the
 * CAS itself re-checks the value; the reader's snapshot uses acquire (below). */
static inline uint64_t lk_reserve_word_load_relaxed(const uint64_t *w) {
    return __atomic_load_n(w, __ATOMIC_RELAXED);
}

/* Writer's first look at the reservation word, taking the cache line in
 * exclusive state (an atomic add of zero) rather than shared: the CAS that
 * follows then usually succeeds without a second coherence transfer.  Under
 * contention a plain load costs two transfers per reservation (share, then
 * upgrade); this costs one.  Relaxed: the CAS re-checks the value. */
static inline uint64_t lk_reserve_word_load_exclusive(uint64_t *w) {
    return __atomic_fetch_add(w, 0, __ATOMIC_RELAXED);
}

/* Reader's snapshot of the reservation word: acquire, pairs with the release
 * half of lk_reserve_word_cas and with lk_reserve_word_store_release (format),
 * so a reader that sees a bound also sees the header stored before it.  It
 * does NOT make message contents visible: those are published per message by
 * lk_state_store_release and read with lk_state_load_acquire. */
static inline uint64_t lk_reserve_word_load_acquire(const uint64_t *w) {
    return __atomic_load_n(w, __ATOMIC_ACQUIRE);
}

/* Claim space and a sequence number in one step.  Success ordering acq_rel:
 * acquire so the claiming writer's later stores into its message cannot be
 * hoisted above the claim (it would write space it does not yet own), release
 * so a rotator that takes the segment out of service observes every claim that
 * precedes its own CAS.  Failure ordering relaxed: the loop retries. */
static inline int lk_reserve_word_cas(uint64_t *w, uint64_t *expected, uint64_t desired) {
    return __atomic_compare_exchange_n(w, expected, desired, 0 /* strong */,
                                       __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}

/* Plain store of the reservation word, used only while no other process can
 * see the region (formatting a new segment, or salvage of a region the caller
 * owns exclusively).  Release so the header stored before it is visible first. */
static inline void lk_reserve_word_store_release(uint64_t *w, uint64_t v) {
    __atomic_store_n(w, v, __ATOMIC_RELEASE);
}

/* Message state word (sentinel | state << 32).
 * Writer publishes with release: every byte of the message (stub, payload,
 * checksum) is written before the word that says "committed" becomes visible.
 * Pairs with lk_state_load_acquire in the reader. */
static inline void lk_state_store_release(uint64_t *w, uint64_t v) {
    __atomic_store_n(w, v, __ATOMIC_RELEASE);
}

/* Reader side of the pairing above: once the reader sees "reserved" or
 * "committed", every field the writer stored before that release is visible. */
static inline uint64_t lk_state_load_acquire(const uint64_t *w) {
    return __atomic_load_n(w, __ATOMIC_ACQUIRE);
}

/* Salvage turns "reserved" into "abandoned" only if the word still says
 * "reserved": a writer that finishes at the same instant wins or loses
 * cleanly, never both.  acq_rel/acquire: salvage must see the writer's stores
 * if it loses, and publish its own if it wins. */
static inline int lk_state_cas(uint64_t *w, uint64_t *expected, uint64_t desired) {
    return __atomic_compare_exchange_n(w, expected, desired, 0,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* Statistics counters: relaxed.  They order nothing; readers sum them and
 * accept a value that is a few increments behind. */
static inline void lk_counter_add_relaxed(uint64_t *c, uint64_t n) {
    __atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}
static inline uint64_t lk_counter_load_relaxed(const uint64_t *c) {
    return __atomic_load_n(c, __ATOMIC_RELAXED);
}

/* Header hints (last offset, first time): relaxed store and load.  Readers
 * validate whatever a hint points at, so a stale or torn-by-race hint costs a
 * longer walk, never a wrong answer. */
static inline void lk_hint_store_relaxed(uint64_t *h, uint64_t v) {
    __atomic_store_n(h, v, __ATOMIC_RELAXED);
}
static inline uint64_t lk_hint_load_relaxed(const uint64_t *h) {
    return __atomic_load_n(h, __ATOMIC_RELAXED);
}

#endif /* LK_ATOMIC_H */
