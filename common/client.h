/*
 * Internal: the client context. One I/O thread runs a libuv loop that owns
 * the HTTP multi handle, timers and sockets. Other threads hand work over
 * through a locked queue plus uv_async_send (kn__client_post).
 */
#ifndef KN_CLIENT_H
#define KN_CLIENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

#include "conf.h"
#include "creds.h"
#include "endpoint.h"
#include "http.h"
#include "log.h"
#include "sigv4.h"

typedef struct kn__task_s kn__task_t;

struct kn_client_s {
    atomic_int refcnt;
    kn_conf_t *conf;
    kn__logger_t *log;
    char *region;
    char *profile;
    char *endpoint[KN__SVC__COUNT]; /* resolved URLs (NULL for services not used) */
    kn__creds_cache_t *creds;
    kn__sigv4_cache_t *sigv4;

    /* Loop-thread state (threaded_data). */
    uv_loop_t loop;
    uv_async_t wakeup;
    kn__http_t *http;
    pthread_t thread;
    int64_t clock_skew_s; /* added to time(NULL) when signing (atomic access) */
    int creds_refreshing;   /* a refresh runs on the thread pool */
    struct kn__aws_call_s *creds_waiters; /* calls waiting for credentials */

    /* Shared state (synced_data), under lock. */
    pthread_mutex_t lock;
    kn__task_t *tasks_head, *tasks_tail;
    int stopping;
};

/*
 * Runs fn(client, arg) on the loop thread, later (never inside this call).
 * Returns KN_ERR_DESTROYED if the client is shutting down (fn is not called).
 */
kn_err_t kn__client_post(kn_client_t *c, void (*fn)(kn_client_t *c, void *arg), void *arg);
/* Whether the caller is the client's loop thread. */
int kn__client_on_loop(const kn_client_t *c);
/* time(NULL) corrected by the measured clock skew. */
time_t kn__client_now(kn_client_t *c);

#endif
