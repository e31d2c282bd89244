/*
 * lk_futex.h -- the operating-system side of waiting: futex wait and wake on
 * a word of a shared mapping, the polling fallback, a monotonic clock, and
 * "is this process gone".  The protocol built on it (who increments what, in
 * which order, and why no wake-up is lost) is in lk_segment.h, "Wake-ups".
 *
 * Linux: FUTEX_WAIT / FUTEX_WAKE, deliberately NOT the _PRIVATE variants.
 * The word lives in a MAP_SHARED file mapping that other processes map at
 * other addresses; a shared futex is keyed by (file, page, offset), so a
 * wake in one process finds a waiter in another.  A _PRIVATE futex is keyed
 * by (mm, address) and would never see the other process.
 *
 * Elsewhere (LK_HAVE_FUTEX 0) there is no wait primitive on a shared word:
 * a waiter polls at an interval its caller chooses, and a writer never makes
 * a system call (nobody registers as a futex waiter, so none is needed).
 *
 * lk_wake_syscalls counts the FUTEX_WAKE calls this module made (each
 * extension module that includes this header has its own copy): tests read
 * it to prove that a write with no waiter makes none.
 */
#ifndef LK_FUTEX_H
#define LK_FUTEX_H

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "lk_atomic.h"

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#define LK_HAVE_FUTEX 1
#else
#define LK_HAVE_FUTEX 0
#endif

/* Results of lk_futex_wait and lk_sleep_ns. */
enum {
    LK_FUTEX_WOKEN = 0,      /* woken, or the word had already changed (EAGAIN) */
    LK_FUTEX_TIMEOUT = 1,
    LK_FUTEX_INTERRUPTED = 2 /* a signal arrived: the caller checks for it and retries */
};

static uint64_t lk_wake_syscalls __attribute__((unused));   /* FUTEX_WAKE calls made by this module */

static inline int64_t lk_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline struct timespec lk_timespec(int64_t ns) {
    struct timespec ts;
    ts.tv_sec = (time_t)(ns / 1000000000LL);
    ts.tv_nsec = (long)(ns % 1000000000LL);
    return ts;
}

/* Sleep `ns` (> 0) nanoseconds, or until a signal. */
static inline int lk_sleep_ns(int64_t ns) {
    struct timespec ts = lk_timespec(ns);
    if (nanosleep(&ts, NULL) == 0)
        return LK_FUTEX_TIMEOUT;
    return errno == EINTR ? LK_FUTEX_INTERRUPTED : LK_FUTEX_TIMEOUT;
}

/*
 * Sleep while *word == expected, at most timeout_ns (< 0: no limit).  The
 * kernel compares and enqueues atomically with respect to FUTEX_WAKE on the
 * same word, so a wake that follows a change of the word is never missed.
 * Without futex: sleeps for the timeout (the caller bounds it by its poll
 * interval), then reports a timeout.
 */
static inline int lk_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns) {
#if LK_HAVE_FUTEX
    struct timespec ts, *tp = NULL;
    if (timeout_ns >= 0) {
        ts = lk_timespec(timeout_ns);
        tp = &ts;
    }
    /* FUTEX_WAIT's timeout is relative (CLOCK_MONOTONIC). */
    if (syscall(SYS_futex, word, FUTEX_WAIT, expected, tp, NULL, 0) == 0)
        return LK_FUTEX_WOKEN;
    if (errno == ETIMEDOUT)
        return LK_FUTEX_TIMEOUT;
    if (errno == EINTR)
        return LK_FUTEX_INTERRUPTED;
    return LK_FUTEX_WOKEN;            /* EAGAIN: the word changed first; others: re-check */
#else
    (void)word; (void)expected;
    if (timeout_ns < 0)
        timeout_ns = 10000000;        /* no limit asked: re-check every 10 ms */
    return lk_sleep_ns(timeout_ns) == LK_FUTEX_INTERRUPTED ? LK_FUTEX_INTERRUPTED : LK_FUTEX_TIMEOUT;
#endif
}

/* Wake every process sleeping in lk_futex_wait on `word` (all of them: each
 * waits for its own condition and re-checks it). */
static inline void lk_futex_wake_all(uint32_t *word) {
#if LK_HAVE_FUTEX
    lk_stat_add_relaxed(&lk_wake_syscalls, 1);
    syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
#else
    (void)word;
#endif
}

/* True only if `pid` certainly names no process: kill(pid, 0) fails with
 * ESRCH.  EPERM (a process of another user) counts as alive. */
static inline int lk_pid_gone(uint32_t pid) {
    if (pid == 0 || pid > (uint32_t)INT_MAX)
        return 1;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

#endif /* LK_FUTEX_H */
