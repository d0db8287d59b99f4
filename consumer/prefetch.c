/*
 * The prefetch bound and its queue of shards waiting for room, given in
 * order (see prefetch.h).
 */
#include "prefetch.h"

void kn__rbudget_init(kn__rbudget_t *b, int64_t max)
{
    pthread_mutex_init(&b->lock, NULL);
    b->queued = 0;
    b->reserved = 0;
    b->max = max;
    b->head = b->tail = NULL;
    atomic_init(&b->waiting, 0);
}

void kn__rbudget_destroy(kn__rbudget_t *b) { pthread_mutex_destroy(&b->lock); }

static bool fits(kn__rbudget_t *b, int64_t need)
{
    pthread_mutex_lock(&b->lock);
    int64_t held = b->queued + b->reserved;
    pthread_mutex_unlock(&b->lock);
    return held <= 0 || held + need <= b->max;
}

static void unlink_wait(kn__rbudget_t *b, kn__rwait_t *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        b->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        b->tail = w->prev;
    w->prev = w->next = NULL;
    w->queued = false;
    atomic_fetch_sub(&b->waiting, 1);
}

bool kn__rbudget_admit(kn__rbudget_t *b, kn__rwait_t *w, int64_t need)
{
    w->need = need;
    bool first = w->queued ? b->head == w : b->head == NULL;
    if (first && fits(b, need)) {
        if (w->queued)
            unlink_wait(b, w);
        b->reserved += need;
        return true;
    }
    if (!w->queued) {
        w->queued = true;
        w->next = NULL;
        w->prev = b->tail;
        if (b->tail)
            b->tail->next = w;
        else
            b->head = w;
        b->tail = w;
        atomic_fetch_add(&b->waiting, 1);
    }
    return false;
}

void kn__rbudget_unreserve(kn__rbudget_t *b, int64_t need) { b->reserved -= need; }

void kn__rbudget_cancel(kn__rbudget_t *b, kn__rwait_t *w)
{
    if (w->queued)
        unlink_wait(b, w);
}

kn__rwait_t *kn__rbudget_ready(kn__rbudget_t *b)
{
    return b->head && fits(b, b->head->need) ? b->head : NULL;
}

void kn__rbudget_hold(kn__rbudget_t *b, int64_t bytes)
{
    pthread_mutex_lock(&b->lock);
    b->queued += bytes;
    pthread_mutex_unlock(&b->lock);
}

void kn__rbudget_release(kn__rbudget_t *b, int64_t bytes)
{
    pthread_mutex_lock(&b->lock);
    b->queued -= bytes;
    pthread_mutex_unlock(&b->lock);
}
