/*
 * The checkpointer a processor gets in process_records, shard_ended and
 * shutdown_requested. A checkpoint is validated here, on the processor's
 * thread (not before the lease's checkpoint as this tenure knows it, not
 * after the last record delivered), then handed to the loop, which writes it
 * in the lease's turn (after a renewal in flight, conditioned on the counter
 * that renewal left) and answers; the processor waits for the answer.
 *
 * A checkpointer belongs to one tenure: a processor of an earlier tenure, or
 * of a lease lost meanwhile, gets KN_ERR_LEASE_LOST and nothing is written
 * (the loop checks the tenure against the lease it holds, and the write is
 * conditioned on the counter, so not even a write already on its way can
 * land after the lease moved).
 */
#include <stdlib.h>
#include <string.h>

#include "consumer_int.h"

/* A checkpoint that waits longer than this for the loop's answer gives up (it is not hung on). */
#define REPLY_WAIT_FLOOR_MS 30000

static void ck_task(kn_consumer_t *c, void *arg)
{
    kn__coord_checkpoint(c, arg);
}

/* Drops one of the request's two references (the waiter's, the loop's); the last frees it. */
static void ckreq_unref(kn_consumer_t *c, kn__ckreq_t *q)
{
    pthread_mutex_lock(&c->lock);
    bool last = --q->refs == 0;
    pthread_mutex_unlock(&c->lock);
    if (!last)
        return;
    kn__tenure_unref(q->t);
    free(q->seq);
    free(q);
}

void kn__ckreq_reply(kn_consumer_t *c, kn__ckreq_t *q, const kn_error_t *e)
{
    pthread_mutex_lock(&c->lock);
    if (e && e->code != KN_ERR_OK) {
        q->rc = e->code;
        kn__error_copy(&q->err, e);
    } else {
        q->rc = KN_ERR_OK;
    }
    q->done = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    ckreq_unref(c, q);
}

kn_err_t kn__checkpoint_write(kn__tenure_t *t, const char *seq, uint64_t sub, kn_error_t *err)
{
    kn_consumer_t *c = t->c;
    kn__ckreq_t *q = calloc(1, sizeof(*q));
    if (!q || !(q->seq = strdup(seq))) {
        free(q);
        return kn__error_set(err, KN_ERR_NOMEM, "checkpoint of shard %s: out of memory", t->shard_id);
    }
    atomic_fetch_add(&t->refs, 1);
    q->t = t;
    q->sub = sub;
    q->refs = 2;
    kn__error_clear(&q->err);
    if (!kn__consumer_post(c, ck_task, q)) {
        q->refs = 1;
        ckreq_unref(c, q);
        return kn__error_set(err, KN_ERR_STATE, "checkpoint of shard %s: the consumer is being destroyed",
                             t->shard_id);
    }
    /*
     * The write has deadlines of its own (a few attempts of the request
     * timeout each); this wait is only a backstop. A request given up on is
     * answered later into q, which lives until both sides let go of it.
     */
    int64_t wait_ms = 4 * c->failover_ms;
    if (wait_ms < REPLY_WAIT_FLOOR_MS)
        wait_ms = REPLY_WAIT_FLOOR_MS;
    struct timespec ts;
    kn__abs_after(&ts, wait_ms);
    pthread_mutex_lock(&c->lock);
    while (!q->done)
        if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) != 0)
            break;
    bool done = q->done;
    kn_err_t rc = done ? q->rc : KN_ERR_TIMEOUT;
    if (done && rc != KN_ERR_OK)
        kn__error_copy(err, &q->err);
    pthread_mutex_unlock(&c->lock);
    ckreq_unref(c, q);
    if (!done)
        return kn__error_set(err, KN_ERR_TIMEOUT, "checkpoint of shard %s: no answer within %lld ms",
                             t->shard_id, (long long)wait_ms);
    if (rc == KN_ERR_OK) {
        char *copy = strdup(seq);
        if (copy) {
            free(t->ck_seq);
            t->ck_seq = copy;
            t->ck_sub = sub;
        }
        if (t->ok_seq && kn__checkpoint_cmp(t->ok_seq, t->ok_sub, seq, sub) <= 0) {
            free(t->ok_seq);
            t->ok_seq = NULL; /* nothing processed is left without a checkpoint */
        }
    }
    return rc;
}

/* ------------------------------------------------------------ the API */

static bool is_sequence(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (s[n] < '0' || s[n] > '9')
            return false;
    return n > 0 && n <= 128;
}

static kn_err_t usable(kn_checkpointer_t *cp, kn_error_t *err)
{
    if (!cp || !cp->t)
        return kn__error_set(err, KN_ERR_INVALID_ARG, "checkpoint: no checkpointer (NULL)");
    if (!cp->usable)
        return kn__error_set(err, KN_ERR_STATE,
                             "checkpoint of shard %s: a checkpointer is valid only inside the "
                             "callback that received it",
                             cp->t->shard_id);
    return KN_ERR_OK;
}

KN_API kn_err_t kn_checkpoint(kn_checkpointer_t *cp, kn_error_t *err)
{
    if (err)
        kn__error_clear(err);
    kn_error_t e;
    kn__error_clear(&e);
    kn_err_t rc = usable(cp, &e);
    if (rc == KN_ERR_OK) {
        kn__tenure_t *t = cp->t;
        if (cp->shard_end) {
            rc = kn__checkpoint_write(t, KN__CK_SHARD_END, 0, &e);
        } else if (!t->last_seq) {
            rc = kn__error_set(&e, KN_ERR_STATE,
                               "checkpoint of shard %s: no record has been delivered in this tenure",
                               t->shard_id);
        } else if (t->ck_seq && kn__checkpoint_cmp(t->last_seq, t->last_sub, t->ck_seq, t->ck_sub) <= 0) {
            rc = KN_ERR_OK; /* already there */
        } else {
            rc = kn__checkpoint_write(t, t->last_seq, t->last_sub, &e);
        }
    }
    if (err && rc != KN_ERR_OK)
        kn__error_copy(err, &e);
    return rc;
}

KN_API kn_err_t kn_checkpoint_at(kn_checkpointer_t *cp, const char *seq, uint64_t sub_sequence,
                                 kn_error_t *err)
{
    if (err)
        kn__error_clear(err);
    kn_error_t e;
    kn__error_clear(&e);
    kn_err_t rc = usable(cp, &e);
    if (rc == KN_ERR_OK && (!seq || !is_sequence(seq)))
        rc = kn__error_set(&e, KN_ERR_INVALID_ARG,
                           "checkpoint of shard %s: \"%.40s\" is not a sequence number (decimal digits)",
                           cp->t->shard_id, seq ? seq : "(null)");
    if (rc == KN_ERR_OK) {
        kn__tenure_t *t = cp->t;
        if (t->ck_seq && kn__checkpoint_cmp(seq, sub_sequence, t->ck_seq, t->ck_sub) < 0) {
            rc = kn__error_set(&e, KN_ERR_INVALID_ARG,
                               "checkpoint of shard %s at %s/%llu: before the lease's checkpoint "
                               "%s/%llu (checkpoints only move forward)",
                               t->shard_id, seq, (unsigned long long)sub_sequence, t->ck_seq,
                               (unsigned long long)t->ck_sub);
        } else if (!t->last_seq ||
                   kn__checkpoint_cmp(seq, sub_sequence, t->last_seq, t->last_sub) > 0) {
            rc = kn__error_set(&e, KN_ERR_INVALID_ARG,
                               "checkpoint of shard %s at %s/%llu: after the last record delivered "
                               "(%s/%llu)",
                               t->shard_id, seq, (unsigned long long)sub_sequence,
                               t->last_seq ? t->last_seq : "none",
                               (unsigned long long)t->last_sub);
        } else if (t->ck_seq && kn__checkpoint_cmp(seq, sub_sequence, t->ck_seq, t->ck_sub) == 0) {
            rc = KN_ERR_OK;
        } else {
            rc = kn__checkpoint_write(t, seq, sub_sequence, &e);
        }
    }
    if (err && rc != KN_ERR_OK)
        kn__error_copy(err, &e);
    return rc;
}
