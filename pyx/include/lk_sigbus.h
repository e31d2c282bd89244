/*
 * lk_sigbus.h: survive a segment file that shrinks under its mapping.
 *
 * Any process that can write a log file can ftruncate() it.  Every later
 * touch of a page past the new end, in every process that has the file
 * mapped, is then a SIGBUS, whose default action kills the process: one
 * hostile or mistaken truncate would kill every writer, reader and server
 * of the log.  This is systemd's answer (src/basic/sigbus.c, used by
 * journald), kept to what logkit needs:
 *
 *  - Every mapping logkit reads or writes is registered here while a
 *    Segment is attached to it (lk_sigbus_watch / lk_sigbus_unwatch, keyed
 *    by the Segment object).
 *  - The SIGBUS handler looks the faulting address up in that table.  Inside
 *    a registered mapping (and si_code BUS_ADRERR: an access past the end of
 *    the file), it maps one anonymous zero page over the faulting page
 *    (MAP_FIXED) and counts the fault in the slot; the faulting instruction
 *    then runs again and reads zeros (or writes into a private page nobody
 *    else sees).  The Cython layer looks at the slot after each read or
 *    write that matters (lk_sigbus_hits) and raises SegmentDamaged naming
 *    the file: readers report it, writers treat the segment as damaged (the
 *    message is not acknowledged and goes to the next segment).
 *  - Any other SIGBUS (outside every logkit mapping, or a kind other than
 *    BUS_ADRERR, or one sent with kill()) goes to the handler that was there
 *    before (Python's faulthandler, say), or to the default action: a real
 *    bug still crashes, with a core dump.
 *
 * The table is a fixed array of slots claimed and released with atomics (no
 * lock: the handler runs on any thread at any instant).  A slot's `start` is
 * published last with a release store [S1] and read by the handler with an
 * acquire load [S2], so the handler never sees a half-filled slot.  Hits are
 * counted with relaxed atomics plus a global event counter that lets the
 * common path (no SIGBUS ever) test one word.
 *
 * Limits: LK_SIGBUS_SLOTS mappings at once (more: the extra ones are simply
 * not protected, as before).  A view (memoryview) that outlives its Segment
 * keeps the mapping alive but no longer registered.  mmap() is not on the
 * POSIX list of async-signal-safe functions; on Linux it is a plain system
 * call, as systemd relies on too.
 *
 * This header keeps process-wide state in static variables: include it in
 * exactly one extension module (logkit._segment), which exports the checks.
 */
#ifndef LK_SIGBUS_H
#define LK_SIGBUS_H

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define LK_SIGBUS_SLOTS 1024

typedef struct {
    uintptr_t start;        /* 0: free; 1: being claimed; else the mapping's first byte [S1] */
    uintptr_t end;          /* one past its last byte */
    uintptr_t tag;          /* who registered it (the Segment object) */
    uint64_t hits;          /* faults absorbed in it */
    uintptr_t first_fault;  /* address of the first page absorbed, 0: none */
} lk_sigbus_slot;

static lk_sigbus_slot lk_sigbus_table[LK_SIGBUS_SLOTS];
static uint64_t lk_sigbus_events = 0;     /* faults absorbed in this process, ever */
static uint64_t lk_sigbus_chained = 0;    /* SIGBUS passed on (tests look at it) */
static struct sigaction lk_sigbus_old;    /* the handler that was there before ours */
static long lk_sigbus_page = 4096;

static void lk_sigbus_chain(int sig, siginfo_t *si, void *uc) {
    __atomic_fetch_add(&lk_sigbus_chained, 1, __ATOMIC_RELAXED);
    struct sigaction old = lk_sigbus_old;
    int sent = si == NULL || si->si_code <= 0;     /* kill(), tgkill(), raise(): not a fault */
    if ((old.sa_flags & SA_SIGINFO) && old.sa_sigaction != NULL) {
        old.sa_sigaction(sig, si, uc);
        if (sent)
            return;
    } else if (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN && old.sa_handler != NULL) {
        old.sa_handler(sig);
        if (sent)
            return;
    }
    /* Default action (also after a previous handler returned from a fault:
     * the fault would only come back, and a handler that chains to us, like
     * faulthandler installed after us, would loop): put it back and let the
     * signal happen again.  A fault re-executes its instruction when we
     * return; a signal sent with kill() is raised again (delivered once this
     * handler returns). */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGBUS, &dfl, NULL);
    if (sent)
        raise(SIGBUS);
}

static void lk_sigbus_handler(int sig, siginfo_t *si, void *uc) {
    int saved_errno = errno;
    if (si != NULL && si->si_code == BUS_ADRERR && si->si_addr != NULL) {
        uintptr_t a = (uintptr_t)si->si_addr;
        uintptr_t page = a & ~((uintptr_t)lk_sigbus_page - 1);
        int found = 0;
        for (int i = 0; i < LK_SIGBUS_SLOTS; i++) {
            lk_sigbus_slot *s = &lk_sigbus_table[i];
            uintptr_t st = __atomic_load_n(&s->start, __ATOMIC_ACQUIRE);     /* [S2] pairs with [S1] */
            if (st <= 1 || a < st || a >= s->end)
                continue;
            found = 1;
            uintptr_t none = 0;
            __atomic_compare_exchange_n(&s->first_fault, &none, page, 0,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED);
            __atomic_fetch_add(&s->hits, 1, __ATOMIC_RELAXED);
        }
        if (found) {
            void *r = mmap((void *)page, (size_t)lk_sigbus_page, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
            if (r == (void *)page) {
                __atomic_fetch_add(&lk_sigbus_events, 1, __ATOMIC_SEQ_CST);
                errno = saved_errno;
                return;                /* the access runs again and finds zeros */
            }
        }
    }
    errno = saved_errno;
    lk_sigbus_chain(sig, si, uc);
}

/* Install the handler (again, if someone replaced it since: e.g.
 * faulthandler.enable() after logkit was imported; the replacement becomes
 * the handler we chain to).  0, or -1 with errno. */
static int lk_sigbus_install(void) {
    struct sigaction cur;
    if (sigaction(SIGBUS, NULL, &cur) != 0)
        return -1;
    if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == lk_sigbus_handler)
        return 0;
    long p = sysconf(_SC_PAGESIZE);     /* not from the handler: sysconf is not signal-safe */
    if (p > 0)
        lk_sigbus_page = p;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = lk_sigbus_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    lk_sigbus_old = cur;
    return sigaction(SIGBUS, &sa, NULL);
}

/* Register [start, start+len) for `tag`.  0, or -1 when the table is full
 * (the mapping is then not protected, as before this existed). */
static int lk_sigbus_watch(const void *start, uint64_t len, uintptr_t tag) {
    uintptr_t st = (uintptr_t)start;
    if (st <= 1 || len == 0)
        return -1;
    for (int i = 0; i < LK_SIGBUS_SLOTS; i++) {
        lk_sigbus_slot *s = &lk_sigbus_table[i];
        uintptr_t zero = 0;
        if (__atomic_load_n(&s->start, __ATOMIC_RELAXED) != 0)
            continue;
        if (!__atomic_compare_exchange_n(&s->start, &zero, (uintptr_t)1, 0,
                                         __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            continue;
        s->end = st + len;
        s->tag = tag;
        __atomic_store_n(&s->hits, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->first_fault, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->start, st, __ATOMIC_RELEASE);              /* [S1] */
        return 0;
    }
    return -1;
}

/* Forget every mapping registered for `tag`. */
static void lk_sigbus_unwatch(uintptr_t tag) {
    for (int i = 0; i < LK_SIGBUS_SLOTS; i++) {
        lk_sigbus_slot *s = &lk_sigbus_table[i];
        if (__atomic_load_n(&s->start, __ATOMIC_ACQUIRE) > 1 && s->tag == tag)
            __atomic_store_n(&s->start, (uintptr_t)0, __ATOMIC_RELEASE);
    }
}

/* Faults absorbed in mappings registered for `tag`; *first: the lowest
 * first-fault address among them (0: none). */
static uint64_t lk_sigbus_hits(uintptr_t tag, uintptr_t *first, uintptr_t *mstart) {
    uint64_t n = 0;
    *first = 0; *mstart = 0;
    if (__atomic_load_n(&lk_sigbus_events, __ATOMIC_SEQ_CST) == 0)
        return 0;                      /* the common case: one load */
    for (int i = 0; i < LK_SIGBUS_SLOTS; i++) {
        lk_sigbus_slot *s = &lk_sigbus_table[i];
        uintptr_t st = __atomic_load_n(&s->start, __ATOMIC_ACQUIRE);
        if (st <= 1 || s->tag != tag)
            continue;
        uint64_t h = __atomic_load_n(&s->hits, __ATOMIC_RELAXED);
        if (h) {
            uintptr_t f = __atomic_load_n(&s->first_fault, __ATOMIC_RELAXED);
            n += h;
            if (*first == 0 || (f && f < *first)) {
                *first = f;
                *mstart = st;
            }
        }
    }
    return n;
}

#endif /* LK_SIGBUS_H */
