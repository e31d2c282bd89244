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
 *
 * Process identity.  A bare pid is fooled by reuse (a dead writer's pid
 * given to a new process) and by pid namespaces, so wherever logkit records
 * who holds something (a reservation stub, a listener slot) it also records
 * the holder's start time: field 22 of /proc/PID/stat (clock ticks since
 * boot), kept as its low 32 bits, with 0 mapped to 1 so that 0 can mean
 * "not recorded" (files written before this field existed).  Read once per
 * process (and again in a forked child), never on the write path.
 * lk_identity_gone(pid, start) is the one test every liveness judgement
 * uses (docs/format.md, "Process identity").  A zombie counts as gone.
 */
#ifndef LK_SYS_H
#define LK_SYS_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static uint32_t lk_pid_cached;            /* 0 until set-up ran in this module */
static uint32_t lk_fork_generation = 1;
static __thread uint32_t lk_tls_tid;
static __thread uint32_t lk_tls_generation;   /* 0: never set in this thread */

static uint32_t lk_start_cached;          /* this process's start time (see above), 0: unknown */

/* The start time of `pid` as logkit records it (low 32 bits of /proc/PID/stat
 * field 22, 0 mapped to 1), or 0 when it cannot be read (no such process, no
 * /proc).  Only open/read/close: async-signal-safe, so the fork handler may
 * call it. */
static uint32_t lk_proc_stat(uint32_t pid, char *state) {
    char path[48], buf[1024];
    int n = 0;
    uint32_t v = pid;
    char digits[12];
    if (pid == 0 || pid > (uint32_t)INT_MAX)
        return 0;
    do { digits[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    memcpy(path, "/proc/", 6);
    int k = 6;
    while (n) path[k++] = digits[--n];
    memcpy(path + k, "/stat", 6);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t got = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (got <= 0)
        return 0;
    buf[got] = 0;
    /* The command name (field 2) may hold spaces and parentheses: fields
     * are counted after the LAST ')'. */
    char *p = NULL;
    for (ssize_t i = got - 1; i >= 0; i--)
        if (buf[i] == ')') { p = buf + i + 1; break; }
    if (p == NULL)
        return 0;
    /* p is at " S ppid ...": field 3 is the state; starttime is field 22. */
    if (state)
        *state = p[0] == ' ' ? p[1] : 0;
    int field = 2;
    while (*p && field < 22) {
        if (*p == ' ') {
            field++;
            while (*p == ' ') p++;
            continue;
        }
        p++;
    }
    if (field != 22 || *p < '0' || *p > '9')
        return 0;
    uint64_t t = 0;
    while (*p >= '0' && *p <= '9')
        t = t * 10 + (uint64_t)(*p++ - '0');
    uint32_t s = (uint32_t)t;
    return s ? s : 1u;
}

static uint32_t lk_proc_start(uint32_t pid) {
    return lk_proc_stat(pid, NULL);
}

static void lk_atfork_child(void) {
    lk_pid_cached = (uint32_t)getpid();
    lk_start_cached = lk_proc_start(lk_pid_cached);
    lk_fork_generation++;
}

/* Runs once per extension module that includes this header (each has its own
 * static copy); lk_process_id() calls it lazily, so a module that cimports the
 * core needs no explicit set-up. */
static void lk_sys_setup(void) {
    if (lk_pid_cached == 0) {
        pthread_atfork(NULL, NULL, lk_atfork_child);
        lk_start_cached = lk_proc_start((uint32_t)getpid());
        lk_pid_cached = (uint32_t)getpid();
    }
}

static inline uint32_t lk_process_id(void) {
    if (__builtin_expect(lk_pid_cached == 0, 0))
        lk_sys_setup();
    return lk_pid_cached;
}

/* This process's start time (see lk_proc_start); 0 if /proc was unreadable. */
static inline uint32_t lk_process_start(void) {
    if (__builtin_expect(lk_pid_cached == 0, 0))
        lk_sys_setup();
    return lk_start_cached;
}

/* True only if the process recorded as (pid, start) certainly no longer
 * runs: kill(pid, 0) says ESRCH, or a process with that pid runs but started
 * at another time (the pid was reused, or it is another pid namespace's
 * process: docs/security.md, "Sharing a log across containers").  start 0
 * (not recorded) falls back to the pid alone.  EPERM counts as alive. */
#define LK_PID_MAX 4194304u        /* Linux's largest pid_max: a larger pid field is damage */

static inline int lk_identity_gone(uint32_t pid, uint32_t start) {
    if (pid == 0 || pid > LK_PID_MAX)
        return 1;
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
        return 1;
    char state = 0;
    uint32_t now = lk_proc_stat(pid, &state);
    if (state == 'Z' || state == 'X')
        return 1;                      /* exited, not yet reaped: runs no more */
    return start != 0 && now != 0 && now != start;
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
