/* Internal: the clocks the library reads, in milliseconds, and deadlines for timed waits. */
#ifndef KN_CLOCK_H
#define KN_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Monotonic milliseconds: for intervals, deadlines and timeouts. */
static inline int64_t kn__mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wall-clock milliseconds since the epoch: for comparing with times the service sends. */
static inline int64_t kn__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The absolute CLOCK_REALTIME time ms from now, as pthread_cond_timedwait wants it. */
static inline void kn__abs_after(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

#endif
