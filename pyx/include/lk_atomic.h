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

/* Token word (header offset 456: a family's rotation token, a partition
 * half's state token; lk_segment.h "Tokens").  [T1] load acquire: pairs with
 * the release half of [T2], so a process that sees a token also sees what its
 * holder did before storing it (e.g. a new live segment installed before the
 * token said DONE, a half formatted before it said LIVE). */
static inline uint64_t lk_token_load_acquire(const uint64_t *w) {
    return __atomic_load_n(w, __ATOMIC_ACQUIRE);
}

/* [T2] token CAS, acq_rel: acquire so the winner's work on what the token
 * guards (renames, formatting a half, draining it) cannot be hoisted above
 * the claim; release so whoever loads the new token ([T1]) or claims it next
 * sees the work done before it.  Strong: exactly one of several racing
 * claimers wins, which is the election.  Failure relaxed: the caller
 * re-reads and judges again. */
static inline int lk_token_cas(uint64_t *w, uint64_t *expected, uint64_t desired) {
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

/* The writer's commit (reserved -> committed) and salvage's abandon (reserved
 * -> abandoned) are both this CAS, so a writer that finishes at the same
 * instant as salvage wins or loses cleanly, never both.  Success ordering
 * seq_cst, not just acq_rel: besides publishing the message (release, pairs
 * with lk_state_load_acquire) it is the store half of the wake-up handshake
 * (lk_segment.h [W2]/[W3] against [F1]/[F3]): the writer's later load of the
 * waiter count must not be ordered before it.  On x86 this is the same
 * LOCK CMPXCHG as acq_rel; on AArch64 the same CASAL.  Failure: acquire, so a
 * loser sees the winner's stores. */
/* The same CAS publishes a stub ([W1]: 0 -> reserved), so that a writer that
 * paused between its claim and its stub never overwrites the state of a
 * filler salvage wrote meanwhile: the release half of its success ordering
 * publishes the stub fields stored before it (pairs with
 * lk_state_load_acquire, [A1]); seq_cst costs nothing more on x86/AArch64. */
static inline int lk_state_cas(uint64_t *w, uint64_t *expected, uint64_t desired) {
    return __atomic_compare_exchange_n(w, expected, desired, 0,
                                       __ATOMIC_SEQ_CST, __ATOMIC_ACQUIRE);
}

/* Taking a segment out of service (and back): a CAS on the reservation word
 * like lk_reserve_word_cas, but seq_cst, because it too is the store half of
 * the wake-up handshake ([O1] then [O2] in lk_segment.h): a waiter that
 * registered before the writer looked at the waiter count is woken, one that
 * registered after sees the flag cleared. */
static inline int lk_service_word_cas(uint64_t *w, uint64_t *expected, uint64_t desired) {
    return __atomic_compare_exchange_n(w, expected, desired, 0 /* strong */,
                                       __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------- wake-ups
 * The waiter count (LK_H_WAITERS), the wake word (LK_H_WAKE_WORD) and the
 * listener table.  lk_segment.h, "Wake-ups", names every pairing. */

/* [F1] A waiter announces itself: seq_cst add, then a seq_cst fence, so that
 * its re-check of the segment ([F3], acquire loads) cannot be satisfied from
 * before the add.  The fence is what makes the Dekker-style argument hold in
 * the C11 model (store waiters / load state against store state / load
 * waiters); waiters pay it, writers do not. */
static inline void lk_waiters_enter(uint32_t *w) {
    __atomic_fetch_add(w, 1, __ATOMIC_SEQ_CST);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* [F5] A waiter leaves: never below zero (a scribbled or already-corrected
 * count must not wrap to 2^32 - 1, which would cost every writer a system
 * call for the rest of the segment).  Relaxed: a writer that still sees the
 * old count makes one needless wake-up, nothing worse. */
static inline void lk_waiters_leave(uint32_t *w) {
    uint32_t v = __atomic_load_n(w, __ATOMIC_RELAXED);
    while (v != 0 && !__atomic_compare_exchange_n(w, &v, v - 1, 1,
                                                  __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

/* [W3]/[O2] The writer's look at the waiter count, after its seq_cst commit
 * or out-of-service CAS.  seq_cst: it must not be satisfied before that CAS
 * (store-load order, which acquire would not give).  On x86 and AArch64 a
 * plain load (MOV / LDAR): this is the only cost a write pays when nobody
 * waits. */
static inline uint32_t lk_waiters_load_seq_cst(const uint32_t *w) {
    return __atomic_load_n(w, __ATOMIC_SEQ_CST);
}

/* [W4] A writer that saw waiters changes the wake word before FUTEX_WAKE, so
 * a waiter between reading the word [F2] and sleeping [F4] finds it changed
 * and does not sleep.  seq_cst (release would do for the pairing with [F2]'s
 * acquire; seq_cst keeps the whole handshake in one total order). */
static inline void lk_wake_word_bump(uint32_t *w) {
    __atomic_fetch_add(w, 1, __ATOMIC_SEQ_CST);
}

/* [F2] The waiter reads the wake word before re-checking: acquire, pairs with
 * [W4], so a waiter that reads a writer's bump also sees that writer's commit. */
static inline uint32_t lk_wake_word_load_acquire(const uint32_t *w) {
    return __atomic_load_n(w, __ATOMIC_ACQUIRE);
}

/* [L1] Listener slot claim: CAS of the slot's pid word (0 or a dead pid ->
 * ours).  acq_rel: the claimer's stores into the slot follow its ownership,
 * and a later claimer sees them.  Exactly one of racing claimers wins. */
static inline int lk_listener_pid_cas(uint32_t *pid, uint32_t *expected, uint32_t desired) {
    return __atomic_compare_exchange_n(pid, expected, desired, 0,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* [L2] Listener slot release: the owner's last store, release, after it
 * cleared the slot's other fields. */
static inline void lk_listener_pid_store_release(uint32_t *pid, uint32_t v) {
    __atomic_store_n(pid, v, __ATOMIC_RELEASE);
}

static inline uint32_t lk_listener_pid_load_acquire(const uint32_t *pid) {
    return __atomic_load_n(pid, __ATOMIC_ACQUIRE);
}

/* [L3] The slot's flags word: the WAITING bit is set after [F1] and whoever
 * clears it (the owner leaving, or a reclaimer) is the one who undoes the
 * owner's [F1].  Only atomicity matters (exactly one clearer), so relaxed. */
static inline uint32_t lk_listener_flags_or(uint32_t *f, uint32_t bits) {
    return __atomic_fetch_or(f, bits, __ATOMIC_RELAXED);
}
static inline uint32_t lk_listener_flags_and(uint32_t *f, uint32_t bits) {
    return __atomic_fetch_and(f, bits, __ATOMIC_RELAXED);
}

/* [L1] The owner's start time in its listener slot (+24): stored relaxed by
 * the owner after its pid CAS won, read relaxed by a reclaimer.  No ordering
 * is needed: a reclaimer that pairs a pid with another owner's start time
 * only misjudges the owner of the pid it read, and its CAS on that pid fails
 * once the slot changed hands. */
static inline void lk_listener_start_store_relaxed(uint32_t *s, uint32_t v) {
    __atomic_store_n(s, v, __ATOMIC_RELAXED);
}
static inline uint32_t lk_listener_start_load_relaxed(const uint32_t *s) {
    return __atomic_load_n(s, __ATOMIC_RELAXED);
}

/* Listener slot fields other than pid and flags (interval, last wake-up):
 * relaxed, for inspection only. */
static inline void lk_listener_field_store_relaxed(uint64_t *f, uint64_t v) {
    __atomic_store_n(f, v, __ATOMIC_RELAXED);
}
static inline uint64_t lk_listener_field_load_relaxed(const uint64_t *f) {
    return __atomic_load_n(f, __ATOMIC_RELAXED);
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

/* Words of other headers that one holder updates and anyone reads (the
 * partition header's progress, mark, counters: backends/partition.py).  The
 * point is the single 8-byte store: a process killed anywhere leaves the old
 * value or the new one, never a mixture (struct.pack_into zeroes the field,
 * then stores it byte by byte; a SIGKILL in between left a drain's progress
 * 0, and the next drain copied everything again).  Release/acquire: the
 * holder's earlier stores (the copy a progress word records) are visible to
 * whoever reads the new value. */
static inline void lk_word_store_release(uint64_t *w, uint64_t v) {
    __atomic_store_n(w, v, __ATOMIC_RELEASE);
}
static inline uint64_t lk_word_load_acquire(const uint64_t *w) {
    return __atomic_load_n(w, __ATOMIC_ACQUIRE);
}

/* A seq_cst fence after a publication that was only a release store
 * (salvage's filler): it gives that store the store-load order the wake-up
 * handshake needs before the waiter count is read ([W3], lk_segment.h). */
static inline void lk_fence_seq_cst(void) {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* The cancel flag of a wait (a word of the process, in the Segment object,
 * not in the file; [C1] in lk_segment.h).  The waiter's check is acquire;
 * the canceller's store is seq_cst because it must precede its own wake-word
 * bump [W4] in the total order the waiter's [F1] fence is part of; taking
 * the flag when a wait ends is an exchange (acq_rel), so one cancel is taken
 * once. */
static inline uint32_t lk_cancel_load_acquire(const uint32_t *c) {
    return __atomic_load_n(c, __ATOMIC_ACQUIRE);
}
static inline void lk_cancel_store_seq_cst(uint32_t *c, uint32_t v) {
    __atomic_store_n(c, v, __ATOMIC_SEQ_CST);
}
static inline uint32_t lk_cancel_exchange_acq_rel(uint32_t *c, uint32_t v) {
    return __atomic_exchange_n(c, v, __ATOMIC_ACQ_REL);
}

/* A listener slot's flags word, read by a sweeper deciding whether a slot
 * may be reclaimed: relaxed, because the decision is made by the pid CAS
 * [L1] that follows, which re-checks ownership; the flags only skip slots
 * early. */
static inline uint32_t lk_listener_flags_load_relaxed(const uint32_t *f) {
    return __atomic_load_n(f, __ATOMIC_RELAXED);
}

/* A statistics counter of this process (not in a shared mapping: e.g. how
 * many wake-up system calls it made).  Relaxed: it orders nothing. */
static inline void lk_stat_add_relaxed(uint64_t *c, uint64_t n) {
    __atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

#endif /* LK_ATOMIC_H */
