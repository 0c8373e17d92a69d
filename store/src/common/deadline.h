/* Deadlines for timed waits. Internal. */
#ifndef KCACHE_COMMON_DEADLINE_H
#define KCACHE_COMMON_DEADLINE_H

#include <stdint.h>
#include <time.h>

/* Now on clock, plus ns nanoseconds: the absolute time that
 * pthread_cond_timedwait and pthread_mutex_timedlock take. */
static inline struct timespec kc__deadline_after(clockid_t clock, uint64_t ns)
{
    struct timespec t;
    clock_gettime(clock, &t);
    t.tv_sec += (time_t)(ns / 1000000000u);
    t.tv_nsec += (long)(ns % 1000000000u);
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

#endif
