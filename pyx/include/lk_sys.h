/*
 * lk_sys.h -- process id, thread id and clock without system calls on the
 * write path.
 *
 * glibc no longer caches getpid(), and gettid() is always a system call, so
 * both are cached: the pid once per process, the tid once per thread.  A
 * fork() runs lk_atfork_child in the child, which refreshes the pid and bumps
 * a generation number that makes every thread-local tid stale, so a forked
 * child writes with its own pid and tid, never its parent's.
 * CLOCK_REALTIME is read through the vDSO (no kernel entry on Linux).
 */
#ifndef LK_SYS_H
#define LK_SYS_H

#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static uint32_t lk_pid_cached;            /* 0 until set-up ran in this module */
static uint32_t lk_fork_generation = 1;
static __thread uint32_t lk_tls_tid;
static __thread uint32_t lk_tls_generation;   /* 0: never set in this thread */

static void lk_atfork_child(void) {
    lk_pid_cached = (uint32_t)getpid();
    lk_fork_generation++;
}

/* Runs once per extension module that includes this header (each has its own
 * static copy); lk_process_id() calls it lazily, so a module that cimports the
 * core needs no explicit set-up. */
static void lk_sys_setup(void) {
    if (lk_pid_cached == 0) {
        pthread_atfork(NULL, NULL, lk_atfork_child);
        lk_pid_cached = (uint32_t)getpid();
    }
}

static inline uint32_t lk_process_id(void) {
    if (__builtin_expect(lk_pid_cached == 0, 0))
        lk_sys_setup();
    return lk_pid_cached;
}

static inline uint32_t lk_thread_id(void) {
    if (__builtin_expect(lk_tls_generation != lk_fork_generation, 0)) {
        lk_tls_tid = (uint32_t)syscall(SYS_gettid);
        lk_tls_generation = lk_fork_generation;
    }
    return lk_tls_tid;
}

static inline int64_t lk_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

#endif /* LK_SYS_H */
