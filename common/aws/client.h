/*
 * Internal: the client context. One I/O thread runs a libuv loop that owns
 * the HTTP multi handle, timers and sockets. Other threads hand work over
 * through a locked queue plus uv_async_send (kn__client_post). The structure
 * itself is in client_int.h, for common/ only.
 */
#ifndef KN_CLIENT_H
#define KN_CLIENT_H

#include <time.h>
#include <uv.h>

#include "conf.h"
#include "log.h"

/*
 * Runs fn(client, arg) on the loop thread, later (never inside this call).
 * Returns KN_ERR_DESTROYED if the client is shutting down (fn is not called).
 */
kn_err_t kn__client_post(kn_client_t *c, void (*fn)(kn_client_t *c, void *arg), void *arg);
/* Whether the caller is the client's loop thread. */
int kn__client_on_loop(const kn_client_t *c);
/* time(NULL) corrected by the measured clock skew. */
time_t kn__client_now(kn_client_t *c);
/*
 * Accessors for the components above common/ (producer/, consumer/), which
 * do not see the client's structure (common/aws/client_int.h).
 */
/* The I/O thread's loop: timers and work are created on it from loop tasks only. */
uv_loop_t *kn__client_loop(kn_client_t *c);
/* The client's logger (never NULL). */
kn__logger_t *kn__client_log(const kn_client_t *c);
/* The configuration the client was created from (read only). */
const kn_conf_t *kn__client_conf(const kn_client_t *c);

#endif
