/*
 * Internal to common/: the client context's structure (client.h has the
 * functions everyone else uses). One I/O thread runs a libuv loop that owns
 * the HTTP multi handle, timers and sockets.
 */
#ifndef KN_CLIENT_INT_H
#define KN_CLIENT_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

#include "client.h"
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
    char *endpoint[KN__SVC__COUNT]; /* resolved base URLs, without a trailing slash */
    char *url[KN__SVC__COUNT];      /* URL to POST to (endpoint, with "/" when it has no path) */
    char *host[KN__SVC__COUNT];     /* Host header value for signing */
    const char *path[KN__SVC__COUNT]; /* path part of url (points into url) */
    bool plain_remote[KN__SVC__COUNT];  /* http:// to a host that is not this machine */
    atomic_bool token_warned[KN__SVC__COUNT]; /* a session token went there in clear: said once */
    kn__creds_cache_t *creds;
    kn__sigv4_cache_t *sigv4;

    /* Loop-thread state (threaded_data). */
    uv_loop_t loop;
    uv_async_t wakeup;
    kn__http_t *http;
    pthread_t thread;
    int64_t clock_skew_s; /* added to time(NULL) when signing (atomic access) */
    int creds_refreshing;   /* a refresh runs on the credentials thread */
    uv_timer_t creds_timer; /* refreshes temporary credentials before they expire */
    kn_error_t creds_err;   /* result of the last refresh (written by the credentials thread) */
    struct kn__aws_call_s *calls; /* every call in progress (list for shutdown) */

    /* Shared state (synced_data), under lock. */
    pthread_mutex_t lock;
    kn__task_t *tasks_head, *tasks_tail;
    int stopping;
    int stop_started;
    /*
     * The credentials thread, started with the first refresh: refreshes that
     * may block for long (IMDS, STS, SSO, a credential_process) run there,
     * never on the loop and never on libuv's thread pool, where request
     * bodies are built. It posts kn__aws_creds_done to the loop when done.
     */
    pthread_t creds_thread;
    bool creds_thread_started;
    pthread_cond_t creds_cond;
    bool creds_wanted, creds_quit;
};

/*
 * Loop thread: asks the credentials thread for a refresh of c->creds; its
 * result (c->creds_err) comes with kn__aws_creds_done on the loop.
 */
kn_err_t kn__client_creds_refresh(kn_client_t *c);

#endif
