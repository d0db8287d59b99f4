/*
 * The lease coordinator: the leases this worker holds or is acquiring, on
 * the client's loop thread. Each is a kn__held_t that goes
 *   TAKING (take in flight) or ASKED (its owner asked to hand it over) ->
 *   CLAIMING (the owner let go; a renew confirms it) -> HELD (its tenure
 *   runs) -> LETTING_GO (the tenure ended: release, or finish a handoff) ->
 *   GONE.
 * Writes of one lease go one at a time (renewals, checkpoints, the last
 * write), each conditioned on the counter of the previous one, so that a
 * worker that lost a lease cannot change it. Timing:
 *   - renewals every consumer.failover.ms / 3 (KCL: failover / 3 - 25 ms),
 *     sooner after a failed one; a checkpoint counts as one;
 *   - the fence: a lease whose last successful write was sent more than
 *     failover - margin ago (on this host's monotonic clock) is given up
 *     (lease_lost) before any observer can find it expired: observers count
 *     failover from when they first saw its counter change, which is after
 *     the write was sent;
 *   - a renew whose condition failed is checked with a consistent read: if
 *     we still hold it with the counter we would have written, an earlier
 *     attempt of the same write succeeded (its answer was lost) and nothing
 *     is lost.
 * Handoffs (KCL 3.x): an asker sets leaseOwner to itself and checkpointOwner
 * to the owner; the owner learns it from its next renew (the answer names
 * the new owner) or scan, lets its processor finish the batch and
 * checkpoint (shutdown_requested), then REMOVEs checkpointOwner; the asker,
 * seeing the lease free of checkpointOwner in a scan, claims it with a
 * renew. An owner that does not let go in consumer.handoff.timeout.ms lets
 * go anyway (its processor may still run; its checkpoints are refused); an
 * owner that dies meanwhile stops renewing, and the asker takes the lease
 * once it has expired.
 */
#include <stdlib.h>
#include <string.h>

#include "consumer_int.h"

#define TICK_MS 100
/* Retries of a last write (release, handoff) before leaving the lease to expire. */
#define LAST_WRITE_TRIES 4

typedef enum op_kind_e {
    OP_TAKE,
    OP_ASK,
    OP_CLAIM,
    OP_RENEW,
    OP_CHECKPOINT,
    OP_REREAD,   /* after a failed condition of renew or checkpoint */
    OP_RELEASE,
    OP_HANDOFF_DONE,
    OP_CANCEL,
    OP_LAST_READ, /* after a failed condition of a last write: what is there now */
} op_kind_t;

typedef struct op_s {
    kn__held_t *h;
    op_kind_t kind;
    int64_t sent_ms;
    int64_t counter;   /* the counter the write was conditioned on */
    kn__ckreq_t *q;    /* OP_CHECKPOINT, OP_REREAD of a checkpoint */
    bool was_renew;    /* OP_REREAD: of a renew */
} op_t;

static void pump(kn__held_t *h);
static void on_op(kn__lt_result_t *res, void *opaque);

static const char *state_name(kn__hstate_t s)
{
    switch (s) {
    case KN__H_TAKING: return "taking";
    case KN__H_ASKED: return "asked";
    case KN__H_CLAIMING: return "claiming";
    case KN__H_HELD: return "held";
    case KN__H_LETTING_GO: return "letting go";
    case KN__H_GONE: return "gone";
    }
    return "?";
}

const char *kn__leave_name(kn__leave_t why)
{
    switch (why) {
    case KN__LEAVE_NONE: return "none";
    case KN__LEAVE_SHUTDOWN: return "shutdown";
    case KN__LEAVE_HANDOFF: return "handoff";
    case KN__LEAVE_ERROR: return "error";
    case KN__LEAVE_SHARD_END: return "shard end";
    case KN__LEAVE_LOST: return "lost";
    }
    return "?";
}

/* ------------------------------------------------------------ the held list */

kn__held_t *kn__coord_find(kn_consumer_t *c, const char *key)
{
    for (kn__held_t *h = c->held; h; h = h->next)
        if (h->state != KN__H_GONE && strcmp(h->key, key) == 0)
            return h;
    return NULL;
}

bool kn__coord_counts(const kn__held_t *h)
{
    if (h->lost || h->handoff)
        return false;
    return h->state == KN__H_TAKING || h->state == KN__H_ASKED || h->state == KN__H_CLAIMING ||
           h->state == KN__H_HELD;
}

static void acquiring_delta(kn_consumer_t *c, int d)
{
    pthread_mutex_lock(&c->lock);
    c->acquiring += d;
    pthread_mutex_unlock(&c->lock);
}

static kn__held_t *held_new(kn_consumer_t *c, const kn__lease_t *l, kn__hstate_t state)
{
    kn__held_t *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->c = c;
    h->key = strdup(l->key);
    if (!h->key || kn__lease_copy(&h->view, l) != KN_ERR_OK) {
        free(h->key);
        kn__lease_free(&h->view);
        free(h);
        return NULL;
    }
    h->state = state;
    h->counter = l->counter;
    h->since_ms = kn__mono_ms();
    h->next = c->held;
    c->held = h;
    acquiring_delta(c, 1);
    return h;
}

static void set_state(kn__held_t *h, kn__hstate_t s)
{
    bool was_acq = h->state == KN__H_TAKING || h->state == KN__H_ASKED || h->state == KN__H_CLAIMING;
    bool is_acq = s == KN__H_TAKING || s == KN__H_ASKED || s == KN__H_CLAIMING;
    if (was_acq != is_acq)
        acquiring_delta(h->c, is_acq ? 1 : -1);
    if (s == KN__H_GONE && h->state != KN__H_GONE)
        h->c->n_gone++;
    else if (s != KN__H_GONE && h->state == KN__H_GONE)
        h->c->n_gone--;
    KN_LOG(h->c->log, KN_LOG_DEBUG, KN_DBG_LEASE, "consumer %s: lease %s: %s -> %s",
           h->c->worker_id, h->key, state_name(h->state), state_name(s));
    h->state = s;
    h->since_ms = kn__mono_ms();
}

static void reply_all(kn__held_t *h, kn_err_t rc, const char *why)
{
    while (h->ck_head) {
        kn__ckreq_t *q = h->ck_head;
        h->ck_head = q->next;
        kn_error_t e;
        kn__error_clear(&e);
        kn__error_set(&e, rc, "lease %s: %s", h->key, why);
        kn__ckreq_reply(h->c, q, &e);
    }
    h->ck_tail = NULL;
}

static void held_gone(kn__held_t *h)
{
    reply_all(h, KN_ERR_LEASE_LOST, "the lease is no longer held by this worker");
    set_state(h, KN__H_GONE);
}

/*
 * Frees GONE entries with nothing in flight. It runs after every answer of
 * the lease table, so it walks the list only while there is something GONE
 * (with hundreds of leases held, a walk per renewal was a few percent of the
 * consumer's CPU).
 */
static void reap(kn_consumer_t *c)
{
    kn__held_t **pp = &c->held;
    while (c->n_gone > 0 && *pp) {
        kn__held_t *h = *pp;
        if (h->state == KN__H_GONE && h->ops == 0 && !h->tenure) {
            *pp = h->next;
            c->n_gone--;
            kn__lease_free(&h->view);
            free(h->key);
            free(h);
            continue;
        }
        pp = &h->next;
    }
}

/* ------------------------------------------------------------ sending */

static bool send_op(kn__held_t *h, op_kind_t kind, kn__ckreq_t *q, bool renew_reread)
{
    kn_consumer_t *c = h->c;
    op_t *op = calloc(1, sizeof(*op));
    if (!op)
        return false;
    op->h = h;
    op->kind = kind;
    op->sent_ms = kn__mono_ms();
    op->counter = h->counter;
    op->q = q;
    op->was_renew = renew_reread;
    const char *me = c->worker_id;
    kn_err_t rc = KN_ERR_NOMEM;
    switch (kind) {
    case OP_TAKE:
        rc = kn__lt_take(c->lt, h->key, h->view.owner, h->view.counter, me, on_op, op);
        break;
    case OP_ASK:
        rc = kn__lt_handoff_ask(c->lt, h->key, h->view.owner, me, on_op, op);
        break;
    case OP_CLAIM:
    case OP_RENEW:
        rc = kn__lt_renew(c->lt, h->key, me, h->counter, on_op, op);
        break;
    case OP_CHECKPOINT:
        if (strcmp(q->seq, KN__CK_SHARD_END) == 0) {
            kn__tenure_t *t = q->t;
            const char **kids = t->n_children ? calloc(t->n_children, sizeof(*kids)) : NULL;
            size_t nk = 0;
            for (size_t i = 0; kids && i < t->n_children; i++)
                kids[nk++] = t->children[i].shard_id;
            rc = kn__lt_shard_end(c->lt, h->key, me, h->counter, kids, nk, on_op, op);
            free(kids);
        } else {
            rc = kn__lt_checkpoint(c->lt, h->key, me, h->counter, q->seq, q->sub, on_op, op);
        }
        break;
    case OP_REREAD:
    case OP_LAST_READ:
        rc = kn__lt_get(c->lt, h->key, on_op, op);
        break;
    case OP_RELEASE:
        rc = kn__lt_release(c->lt, h->key, me, h->counter, on_op, op);
        break;
    case OP_HANDOFF_DONE:
        rc = kn__lt_handoff_done(c->lt, h->key, me, on_op, op);
        break;
    case OP_CANCEL:
        rc = kn__lt_handoff_cancel(c->lt, h->key, h->view.checkpoint_owner, me, on_op, op);
        break;
    }
    if (rc != KN_ERR_OK) {
        free(op);
        return false;
    }
    h->ops++;
    h->writing = true;
    kn__consumer_loop_ref(c);
    return true;
}

/* ------------------------------------------------------------ outcomes */

/* The lease is not ours any more: the tenure ends with lease_lost, no more writes. */
static void lose(kn__held_t *h, const char *why)
{
    kn_consumer_t *c = h->c;
    if (h->lost)
        return;
    h->lost = true;
    if (h->state == KN__H_HELD || h->tenure) {
        kn__cstat_add(c, KN_CONSUMER_STAT_LEASES_LOST, 1);
        KN_LOG(c->log, KN_LOG_WARN, KN_DBG_LEASE, "consumer %s: lease %s lost: %s", c->worker_id,
               h->key, why);
    }
    reply_all(h, KN_ERR_LEASE_LOST, why);
    if (h->tenure)
        kn__tenure_leave(h->tenure, KN__LEAVE_LOST);
    else
        held_gone(h);
}

/* h's view of its lease becomes l (kept as it was when out of memory). */
static void set_view(kn__held_t *h, const kn__lease_t *l)
{
    kn__lease_t copy;
    if (kn__lease_copy(&copy, l) == KN_ERR_OK) {
        kn__lease_free(&h->view);
        h->view = copy;
    }
}

/* A take or an ask that did not go through: someone else was quicker, or the table failed. */
static void acquire_failed(kn__held_t *h, const kn__lt_result_t *res)
{
    if (res->err.code != KN_ERR_CONDITION_FAILED && res->err.code != KN_ERR_OK)
        KN_LOG(h->c->log, KN_LOG_WARN, KN_DBG_LEASE, "consumer %s: %s", h->c->worker_id,
               res->err.message);
    held_gone(h);
}

/* A write of ours succeeded with res (ALL_NEW): counter, fence, and a handoff asked of us. */
static void wrote(kn__held_t *h, const op_t *op, const kn__lease_t *now)
{
    kn_consumer_t *c = h->c;
    h->counter = now->counter;
    if (op->sent_ms > h->sent_ms)
        h->sent_ms = op->sent_ms;
    h->next_renew_ms = op->sent_ms + c->renew_ms;
    h->write_fails = 0;
    set_view(h, now);
    bool asked = now->owner && strcmp(now->owner, c->worker_id) != 0 && now->checkpoint_owner &&
                 strcmp(now->checkpoint_owner, c->worker_id) == 0;
    if (asked && !h->handoff && (h->state == KN__H_HELD || h->state == KN__H_LETTING_GO)) {
        h->handoff = true;
        h->since_ms = kn__mono_ms();
        KN_LOG(c->log, KN_LOG_INFO, KN_DBG_LEASE,
               "consumer %s: worker %s asks for lease %s: handing it over", c->worker_id,
               now->owner, h->key);
        if (h->tenure)
            kn__tenure_leave(h->tenure, KN__LEAVE_HANDOFF);
    }
}

/* Whether item l shows us holding the lease right after a write conditioned on counter. */
static bool still_ours_after(const kn_consumer_t *c, const kn__lease_t *l, int64_t counter)
{
    const char *me = c->worker_id;
    bool holder = (l->owner && strcmp(l->owner, me) == 0 && !l->checkpoint_owner) ||
                  (l->checkpoint_owner && strcmp(l->checkpoint_owner, me) == 0);
    return holder && l->counter == counter + 1;
}

static void start_tenure(kn__held_t *h)
{
    kn_consumer_t *c = h->c;
    pthread_mutex_lock(&c->lock);
    bool shutting = c->state >= KN__C_SHUTTING;
    pthread_mutex_unlock(&c->lock);
    if (shutting) {
        set_state(h, KN__H_LETTING_GO);
        return;
    }
    if (kn__lease_finished(&h->view)) {
        /* Ended meanwhile (by its previous owner): nothing to process. */
        set_state(h, KN__H_LETTING_GO);
        return;
    }
    h->tenure = kn__tenure_new(c, h);
    if (!h->tenure) {
        KN_LOG(c->log, KN_LOG_WARN, KN_DBG_LEASE, "consumer %s: lease %s: out of memory",
               c->worker_id, h->key);
        set_state(h, KN__H_LETTING_GO);
        return;
    }
    set_state(h, KN__H_HELD);
    kn__cstat_add(c, KN_CONSUMER_STAT_LEASES_HELD, 1);
}

static void write_failed(kn__held_t *h, const kn_error_t *e, const char *what)
{
    kn_consumer_t *c = h->c;
    h->write_fails++;
    int level = h->write_fails == 1 || h->write_fails % 10 == 0 ? KN_LOG_WARN : KN_LOG_DEBUG;
    KN_LOG(c->log, level, KN_DBG_LEASE, "consumer %s: %s failed (%d in a row): %s", c->worker_id,
           what, h->write_fails, e->message);
    /* Sooner than the usual interval: the fence is coming. */
    int64_t soon = c->renew_ms / 4;
    if (soon < 200)
        soon = 200;
    h->next_renew_ms = kn__mono_ms() + soon;
}

static void on_op(kn__lt_result_t *res, void *opaque)
{
    op_t *op = opaque;
    kn__held_t *h = op->h;
    kn_consumer_t *c = h->c;
    h->ops--;
    h->writing = false;
    kn_err_t rc = res->err.code;
    bool closing = c->loop_closing;
    switch (op->kind) {
    case OP_TAKE:
        if (rc == KN_ERR_OK && !closing) {
            char prev[256];
            snprintf(prev, sizeof(prev), "%s", h->view.owner ? h->view.owner : "");
            wrote(h, op, &res->lease);
            kn__cstat_add(c, KN_CONSUMER_STAT_LEASES_TAKEN, 1);
            KN_LOG(c->log, KN_LOG_INFO, KN_DBG_LEASE, "consumer %s: took lease %s (%s%s%s)",
                   c->worker_id, h->key, prev[0] ? "expired, was held by " : "free", prev,
                   prev[0] && strcmp(prev, c->worker_id) == 0 ? ", an earlier run of this worker" : "");
            start_tenure(h);
        } else {
            acquire_failed(h, res);
        }
        break;
    case OP_ASK:
        if (rc == KN_ERR_OK && !closing) {
            set_view(h, &res->lease);
            h->since_ms = kn__mono_ms();
            KN_LOG(c->log, KN_LOG_INFO, KN_DBG_LEASE,
                   "consumer %s: asked worker %s to hand lease %s over", c->worker_id,
                   h->view.checkpoint_owner ? h->view.checkpoint_owner : "?", h->key);
        } else {
            acquire_failed(h, res);
        }
        break;
    case OP_CLAIM:
        if (rc == KN_ERR_OK && !closing) {
            wrote(h, op, &res->lease);
            kn__cstat_add(c, KN_CONSUMER_STAT_LEASES_STOLEN, 1);
            if (c->metrics && h->asked_ms)
                kn__cm_handoff(c, kn__mono_ms() - h->asked_ms);
            KN_LOG(c->log, KN_LOG_INFO, KN_DBG_LEASE, "consumer %s: lease %s handed over to us",
                   c->worker_id, h->key);
            start_tenure(h);
        } else {
            held_gone(h);
        }
        break;
    case OP_RENEW:
    case OP_CHECKPOINT:
        if (rc == KN_ERR_OK) {
            wrote(h, op, &res->lease);
            if (op->kind == OP_RENEW) {
                kn__cstat_add(c, KN_CONSUMER_STAT_RENEWALS, 1);
            } else {
                kn__cstat_add(c, KN_CONSUMER_STAT_CHECKPOINTS, 1);
                if (strcmp(op->q->seq, KN__CK_SHARD_END) == 0)
                    kn__cstat_add(c, KN_CONSUMER_STAT_SHARDS_ENDED, 1);
                kn__ckreq_reply(c, op->q, NULL);
            }
        } else if (rc == KN_ERR_CONDITION_FAILED) {
            /* Lost, or an earlier attempt of this very write succeeded: a consistent read says. */
            if (!send_op(h, OP_REREAD, op->q, op->kind == OP_RENEW)) {
                if (op->q)
                    kn__ckreq_reply(c, op->q, &res->err);
                lose(h, "a write's condition failed and it could not be read back");
            }
        } else {
            if (op->kind == OP_RENEW)
                kn__cstat_add(c, KN_CONSUMER_STAT_RENEW_FAILURES, 1);
            write_failed(h, &res->err, op->kind == OP_RENEW ? "renewal" : "checkpoint");
            if (op->q)
                kn__ckreq_reply(c, op->q, &res->err);
        }
        break;
    case OP_REREAD:
        if (rc == KN_ERR_OK && res->found && still_ours_after(c, &res->lease, op->counter) &&
            (op->was_renew || !op->q ||
             (res->lease.checkpoint &&
              kn__checkpoint_cmp(res->lease.checkpoint, res->lease.checkpoint_sub, op->q->seq,
                                 op->q->sub) == 0))) {
            /* The write had been done by an attempt whose answer was lost. */
            KN_LOG(c->log, KN_LOG_DEBUG, KN_DBG_LEASE,
                   "consumer %s: lease %s: the %s had landed (its answer was lost): still ours",
                   c->worker_id, h->key, op->was_renew ? "renewal" : "checkpoint");
            wrote(h, op, &res->lease);
            if (op->was_renew) {
                kn__cstat_add(c, KN_CONSUMER_STAT_RENEWALS, 1);
            } else if (op->q) {
                kn__cstat_add(c, KN_CONSUMER_STAT_CHECKPOINTS, 1);
                kn__ckreq_reply(c, op->q, NULL);
            }
        } else if (rc == KN_ERR_OK || rc == KN_ERR_CONDITION_FAILED) {
            if (op->q) {
                kn_error_t e;
                kn__error_clear(&e);
                kn__error_set(&e, KN_ERR_LEASE_LOST,
                              "lease %s: another worker holds it now (owner %s)", h->key,
                              res->found && res->lease.owner ? res->lease.owner : "none");
                kn__ckreq_reply(c, op->q, &e);
            }
            char why[512];
            snprintf(why, sizeof(why), "%s (owner now %s, counter %lld)",
                     res->found ? "another worker holds it" : "its item is gone",
                     res->found && res->lease.owner ? res->lease.owner : "none",
                     res->found ? (long long)res->lease.counter : -1LL);
            if (op->was_renew)
                kn__cstat_add(c, KN_CONSUMER_STAT_RENEW_FAILURES, 1);
            lose(h, why);
        } else {
            /* Cannot tell: treat as a failed write (the fence decides if this goes on). */
            if (op->was_renew)
                kn__cstat_add(c, KN_CONSUMER_STAT_RENEW_FAILURES, 1);
            write_failed(h, &res->err, "reading back a lease after a failed write");
            if (op->q)
                kn__ckreq_reply(c, op->q, &res->err);
        }
        break;
    case OP_RELEASE:
    case OP_HANDOFF_DONE:
    case OP_CANCEL:
        if (rc == KN_ERR_OK) {
            if (op->kind == OP_RELEASE) {
                kn__cstat_add(c, KN_CONSUMER_STAT_LEASES_RELEASED, 1);
                KN_LOG(c->log, KN_LOG_INFO, KN_DBG_LEASE, "consumer %s: released lease %s (%s)",
                       c->worker_id, h->key, kn__leave_name(h->why));
            } else if (op->kind == OP_HANDOFF_DONE) {
                kn__cstat_add(c, KN_CONSUMER_STAT_LEASES_HANDED, 1);
                KN_LOG(c->log, KN_LOG_INFO, KN_DBG_LEASE,
                       "consumer %s: handed lease %s over to %s", c->worker_id, h->key,
                       res->lease.owner ? res->lease.owner : "?");
            }
            held_gone(h);
        } else if (rc == KN_ERR_CONDITION_FAILED) {
            if (!send_op(h, OP_LAST_READ, NULL, false))
                held_gone(h);
        } else if (++h->write_fails >= LAST_WRITE_TRIES || closing) {
            KN_LOG(c->log, KN_LOG_WARN, KN_DBG_LEASE,
                   "consumer %s: lease %s left to expire: %s", c->worker_id, h->key,
                   res->err.message);
            held_gone(h);
        } else {
            h->next_renew_ms = kn__mono_ms() + 200 * h->write_fails;
        }
        break;
    case OP_LAST_READ: {
        /* A last write's condition failed: do what the item as it is now calls for. */
        const char *me = c->worker_id;
        const kn__lease_t *l = &res->lease;
        if (rc == KN_ERR_OK && res->found && l->checkpoint_owner &&
            strcmp(l->checkpoint_owner, me) == 0 && ++h->write_fails < LAST_WRITE_TRIES) {
            h->handoff = true; /* a handoff was asked meanwhile: finish it */
            if (h->state != KN__H_LETTING_GO)
                set_state(h, KN__H_LETTING_GO);
        } else if (rc == KN_ERR_OK && res->found && l->owner && strcmp(l->owner, me) == 0 &&
                   !l->checkpoint_owner && ++h->write_fails < LAST_WRITE_TRIES) {
            /* Ours with nobody asking (an asker withdrew, or the owner let go first): release it. */
            h->handoff = false;
            h->counter = l->counter;
            if (h->state != KN__H_LETTING_GO)
                set_state(h, KN__H_LETTING_GO);
        } else {
            held_gone(h);
        }
        break;
    }
    }
    free(op);
    if (h->state != KN__H_GONE)
        pump(h);
    reap(c);
    kn__consumer_loop_unref(c);
}

/* ------------------------------------------------------------ what to write next */

static void pump(kn__held_t *h)
{
    kn_consumer_t *c = h->c;
    if (h->writing || h->state == KN__H_GONE || c->loop_closing)
        return;
    int64_t now = kn__mono_ms();
    switch (h->state) {
    case KN__H_HELD:
        if (h->lost)
            return;
        if (h->ck_head) {
            kn__ckreq_t *q = h->ck_head;
            h->ck_head = q->next;
            if (!h->ck_head)
                h->ck_tail = NULL;
            q->next = NULL;
            if (!send_op(h, OP_CHECKPOINT, q, false)) {
                kn_error_t e;
                kn__error_clear(&e);
                kn__error_set(&e, KN_ERR_NOMEM, "lease %s: checkpoint not sent (out of memory)",
                              h->key);
                kn__ckreq_reply(c, q, &e);
            }
            return;
        }
        if (now >= h->next_renew_ms)
            send_op(h, OP_RENEW, NULL, false);
        return;
    case KN__H_LETTING_GO:
        reply_all(h, KN_ERR_LEASE_LOST, "the lease is being let go");
        if (h->lost) {
            if (!h->tenure)
                held_gone(h);
            return;
        }
        if (now < h->next_renew_ms)
            return; /* a retry's wait */
        if (!send_op(h, h->handoff ? OP_HANDOFF_DONE : OP_RELEASE, NULL, false))
            h->next_renew_ms = now + 200;
        return;
    default:
        return;
    }
}

/* ------------------------------------------------------------ requests */

void kn__coord_take(kn_consumer_t *c, const kn__lease_t *l, bool expired)
{
    if (kn__coord_find(c, l->key))
        return;
    kn__held_t *h = held_new(c, l, KN__H_TAKING);
    if (!h)
        return;
    KN_LOG(c->log, KN_LOG_DEBUG, KN_DBG_LEASE, "consumer %s: taking lease %s (%s%s)", c->worker_id,
           l->key, expired ? "expired, owner " : "free", expired && l->owner ? l->owner : "");
    if (!send_op(h, OP_TAKE, NULL, false))
        held_gone(h);
}

void kn__coord_ask(kn_consumer_t *c, const kn__lease_t *l)
{
    if (kn__coord_find(c, l->key) || !l->owner)
        return;
    kn__held_t *h = held_new(c, l, KN__H_ASKED);
    if (!h)
        return;
    h->asked_ms = kn__mono_ms();
    if (!send_op(h, OP_ASK, NULL, false))
        held_gone(h);
}

void kn__coord_seen(kn_consumer_t *c, kn__held_t *h, const kn__known_t *k, int64_t scan_started_ms)
{
    const char *me = c->worker_id;
    int64_t now = kn__mono_ms();
    if (h->writing || h->state == KN__H_GONE)
        return;
    /* A scan that began before this state did may show the lease as it was before our last write. */
    bool stale = scan_started_ms < h->since_ms;
    if (h->state == KN__H_ASKED) {
        pthread_mutex_lock(&c->lock);
        bool shutting = c->state >= KN__C_SHUTTING;
        pthread_mutex_unlock(&c->lock);
        if (shutting) {
            /* Withdraw (its condition says whether the ask still stands). */
            h->why = KN__LEAVE_SHUTDOWN;
            if (!send_op(h, OP_CANCEL, NULL, false))
                held_gone(h);
        } else if (stale) {
            return;
        } else if (!k || !k->l.owner || strcmp(k->l.owner, me) != 0) {
            held_gone(h); /* taken by someone else */
        } else if (!k->l.checkpoint_owner) {
            /* The owner let go: confirm with a renew on the counter it left. */
            h->counter = k->l.counter;
            set_view(h, &k->l);
            set_state(h, KN__H_CLAIMING);
            if (!send_op(h, OP_CLAIM, NULL, false))
                held_gone(h);
        } else if (now - k->changed_ms > c->failover_ms ||
                   now - h->since_ms > c->handoff_ms + c->failover_ms) {
            /* The owner died during the handoff (its counter stopped), or never answers. */
            KN_LOG(c->log, KN_LOG_WARN, KN_DBG_LEASE,
                   "consumer %s: worker %s did not hand lease %s over (%s): taking it",
                   c->worker_id, k->l.checkpoint_owner, h->key,
                   now - k->changed_ms > c->failover_ms ? "its lease expired" : "timed out");
            set_view(h, &k->l);
            set_state(h, KN__H_TAKING);
            if (!send_op(h, OP_TAKE, NULL, false))
                held_gone(h);
        }
        return;
    }
    if (h->state == KN__H_HELD && k && !stale && !h->handoff && !h->lost && k->l.owner &&
        strcmp(k->l.owner, me) != 0 && k->l.checkpoint_owner &&
        strcmp(k->l.checkpoint_owner, me) == 0) {
        h->handoff = true;
        h->since_ms = now;
        KN_LOG(c->log, KN_LOG_INFO, KN_DBG_LEASE,
               "consumer %s: worker %s asks for lease %s: handing it over", c->worker_id,
               k->l.owner, h->key);
        if (h->tenure)
            kn__tenure_leave(h->tenure, KN__LEAVE_HANDOFF);
    }
}

void kn__coord_checkpoint(kn_consumer_t *c, kn__ckreq_t *q)
{
    kn__tenure_t *t = q->t;
    kn__held_t *h = t->held;
    pthread_mutex_lock(&c->lock);
    bool over = t->over;
    pthread_mutex_unlock(&c->lock);
    if (!h || h->tenure != t || h->lost || over || h->state != KN__H_HELD || c->loop_closing) {
        kn_error_t e;
        kn__error_clear(&e);
        kn__error_set(&e, KN_ERR_LEASE_LOST,
                      "lease %s: this tenure of the lease is over (lost, handed over or released)",
                      t->shard_id);
        kn__ckreq_reply(c, q, &e);
        return;
    }
    q->next = NULL;
    if (h->ck_tail)
        h->ck_tail->next = q;
    else
        h->ck_head = q;
    h->ck_tail = q;
    pump(h);
}

void kn__coord_shard_end_seen(kn_consumer_t *c, kn__tenure_t *t)
{
    kn__sync_children(c, t->children, t->n_children);
}

void kn__coord_tenure_done(kn_consumer_t *c, kn__tenure_t *t, kn__leave_t why)
{
    kn__held_t *h = t->held;
    t->held = NULL;
    if (h && h->tenure == t) {
        h->tenure = NULL;
        h->why = why;
        if (why == KN__LEAVE_ERROR)
            kn__scan_cool(c, h->key, kn__mono_ms() + 3 * c->failover_ms);
        if (why == KN__LEAVE_SHARD_END)
            c->scan_soon = true; /* its children may start now */
        if (h->state == KN__H_HELD || h->state == KN__H_LETTING_GO) {
            if (h->state == KN__H_HELD)
                kn__cstat_add(c, KN_CONSUMER_STAT_LEASES_HELD, -1);
            if (h->lost)
                held_gone(h);
            else {
                if (h->state == KN__H_HELD)
                    set_state(h, KN__H_LETTING_GO);
                h->write_fails = 0;
                h->next_renew_ms = 0;
                pump(h);
            }
        }
    }
    kn__tenure_unref(t); /* the loop's reference */
    reap(c);
}

/* ------------------------------------------------------------ the tick */

static void tick(kn_consumer_t *c)
{
    int64_t now = kn__mono_ms();
    pthread_mutex_lock(&c->lock);
    kn__cstate_t st = c->state;
    pthread_mutex_unlock(&c->lock);
    bool any = false;
    for (kn__held_t *h = c->held; h; h = h->next) {
        if (h->state == KN__H_GONE)
            continue;
        any = true;
        if (h->state == KN__H_HELD && h->tenure && !h->lost && now >= h->sent_ms + c->fence_ms) {
            char why[160];
            snprintf(why, sizeof(why),
                     "not renewed for %lld ms (failover %lld ms): stopped before it can expire",
                     (long long)(now - h->sent_ms), (long long)c->failover_ms);
            lose(h, why);
            continue;
        }
        if (h->handoff && h->state == KN__H_HELD && now - h->since_ms > c->handoff_ms) {
            KN_LOG(c->log, KN_LOG_WARN, KN_DBG_LEASE,
                   "consumer %s: lease %s: the processor did not finish within "
                   "consumer.handoff.timeout.ms (%lld ms): handing it over without it",
                   c->worker_id, h->key, (long long)c->handoff_ms);
            if (h->tenure)
                kn__tenure_leave(h->tenure, KN__LEAVE_LOST); /* refuses its checkpoints */
            kn__cstat_add(c, KN_CONSUMER_STAT_LEASES_HELD, -1);
            set_state(h, KN__H_LETTING_GO);
            h->next_renew_ms = 0;
        }
        pump(h);
    }
    reap(c);
    if (st == KN__C_RUNNING || st == KN__C_STARTING) {
        if (now - c->last_sync_ms >= c->sync_ms)
            c->sync_wanted = true;
        if (!c->scanning && (c->scan_soon || c->sync_wanted || now - c->last_scan_ms >= c->scan_ms)) {
            c->scan_soon = false;
            kn__scan_start(c);
        }
    } else if (st == KN__C_SHUTTING && !any) {
        pthread_mutex_lock(&c->lock);
        if (c->state == KN__C_SHUTTING) {
            c->state = KN__C_STOPPED;
            pthread_cond_broadcast(&c->cond);
        }
        pthread_mutex_unlock(&c->lock);
    }
}

static void on_tick(uv_timer_t *t) { tick(t->data); }

static void on_tick_closed(uv_handle_t *hd)
{
    kn_consumer_t *c = hd->data;
    kn__consumer_loop_unref(c);
}

void kn__coord_begin(kn_consumer_t *c)
{
    uv_timer_init(kn__client_loop(c->client), &c->tick);
    c->tick.data = c;
    c->tick_init = true;
    kn__consumer_loop_ref(c); /* dropped when the timer is closed */
    c->last_sync_ms = kn__mono_ms() - c->sync_ms; /* the first sync follows the first scan */
    c->sync_wanted = true;
    uv_timer_start(&c->tick, on_tick, 0, TICK_MS);
}

void kn__coord_shutdown(kn_consumer_t *c)
{
    for (kn__held_t *h = c->held; h; h = h->next) {
        if (h->state == KN__H_HELD && h->tenure && !h->lost)
            kn__tenure_leave(h->tenure, h->handoff ? KN__LEAVE_HANDOFF : KN__LEAVE_SHUTDOWN);
        else if (h->state == KN__H_ASKED && !h->writing)
            kn__coord_seen(c, h, kn__scan_find(c, h->key), 0); /* withdraws the ask */
    }
    tick(c);
}

void kn__coord_close(kn_consumer_t *c)
{
    c->loop_closing = true;
    for (kn__held_t *h = c->held; h; h = h->next) {
        reply_all(h, KN_ERR_STATE, "the consumer is being destroyed");
        if (h->tenure)
            kn__tenure_leave(h->tenure, KN__LEAVE_LOST);
    }
    if (c->tick_init) {
        c->tick_init = false;
        uv_timer_stop(&c->tick);
        uv_close((uv_handle_t *)&c->tick, on_tick_closed);
    }
}
