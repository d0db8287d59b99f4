/*
 * The balancing decision (lease_balance.h): what this worker takes and what
 * it asks for, from one scan's view of the table. Pure: no I/O, no clock.
 */
#include <stdlib.h>
#include <string.h>

#include "lease_balance.h"

void kn__bal_plan_free(kn__bal_plan_t *p)
{
    if (!p)
        return;
    free(p->take);
    free(p->ask);
    memset(p, 0, sizeof(*p));
}

/* An order of the leases of this worker's own: a hash of the key mixed with the seed. */
static uint32_t rank_of(const char *key, uint32_t seed)
{
    uint32_t h = 2166136261u ^ seed;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 16777619u;
    h ^= h >> 15;
    h *= 0x2c1b3c6dU;
    h ^= h >> 12;
    return h;
}

typedef struct cand_s {
    size_t i;
    int group; /* 0: free, 1: expired (free ones first) */
    uint32_t rank;
} cand_t;

static int cand_cmp(const void *a, const void *b)
{
    const cand_t *x = a, *y = b;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Whether lease i counts for another worker's load: processable, owned, alive, not ours. */
static bool counts_for_other(const kn__bal_in_t *b)
{
    return b->processable && b->l->owner && !b->expired && !b->mine && !b->leaving;
}

kn_err_t kn__balance_plan(const kn__bal_in_t *in, size_t n, const char *me, int64_t max_leases,
                          int steal_max, uint32_t seed, kn__bal_plan_t *out)
{
    memset(out, 0, sizeof(*out));
    int64_t processable = 0;
    size_t n_owned = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i].processable)
            processable++;
        if (in[i].mine && !in[i].leaving)
            out->mine++;
        if (counts_for_other(&in[i]) && strcmp(in[i].l->owner, me) != 0)
            n_owned++;
    }
    /* The other workers and their loads: owners of the leases that count, sorted. */
    const char **owners = n_owned ? malloc(n_owned * sizeof(*owners)) : NULL;
    if (n_owned && !owners)
        return KN_ERR_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (counts_for_other(&in[i]) && strcmp(in[i].l->owner, me) != 0)
            owners[k++] = in[i].l->owner;
    if (n_owned > 1)
        qsort(owners, n_owned, sizeof(*owners), str_cmp);
    int64_t others = 0, busiest_load = 0;
    const char *busiest = NULL;
    for (size_t i = 0; i < n_owned;) {
        size_t j = i;
        while (j < n_owned && strcmp(owners[j], owners[i]) == 0)
            j++;
        others++;
        if ((int64_t)(j - i) > busiest_load) {
            busiest_load = (int64_t)(j - i);
            busiest = owners[i];
        }
        i = j;
    }
    out->workers = others + 1;
    out->target = processable == 0 ? 0 : (processable + out->workers - 1) / out->workers;
    if (out->target > max_leases)
        out->target = max_leases;
    int64_t needed = out->target - out->mine;

    /* What could be taken: free first, then expired, in this worker's own order. */
    cand_t *cands = n ? malloc(n * sizeof(*cands)) : NULL;
    if (n && !cands) {
        free(owners);
        return KN_ERR_NOMEM;
    }
    size_t nc = 0;
    for (size_t i = 0; i < n; i++) {
        const kn__bal_in_t *b = &in[i];
        if (!b->processable || b->mine || b->leaving || b->cooling)
            continue;
        if (b->l->owner && !b->expired)
            continue;
        cands[nc].i = i;
        cands[nc].group = b->l->owner ? 1 : 0;
        cands[nc].rank = rank_of(b->l->key, seed);
        nc++;
    }
    out->available = (int64_t)nc;
    kn_err_t rc = KN_ERR_OK;
    /* Beyond the share: neglected leases, up to max_leases. */
    size_t extra = 0;
    int64_t room = max_leases - out->mine - (needed > 0 ? needed : 0);
    for (size_t i = 0; i < nc && room > 0; i++)
        if (in[cands[i].i].neglected)
            extra++, room--;
    if ((needed > 0 || extra > 0) && nc > 0) {
        if (nc > 1)
            qsort(cands, nc, sizeof(*cands), cand_cmp);
        size_t want = needed > 0 ? ((size_t)needed < nc ? (size_t)needed : nc) : 0;
        out->take = malloc(nc * sizeof(*out->take));
        if (!out->take) {
            rc = KN_ERR_NOMEM;
            goto done;
        }
        for (size_t i = 0; i < want; i++)
            out->take[i] = cands[i].i;
        size_t k2 = want;
        for (size_t i = want; i < nc && extra > 0; i++) {
            if (in[cands[i].i].neglected) {
                out->take[k2++] = cands[i].i;
                extra--;
            }
        }
        out->n_take = k2;
    } else if (needed > 0 && steal_max > 0 && busiest && busiest_load >= out->mine + 2) {
        int64_t want = (busiest_load - out->mine) / 2;
        if (want > needed)
            want = needed;
        if (want > steal_max)
            want = steal_max;
        nc = 0;
        for (size_t i = 0; i < n; i++) {
            const kn__bal_in_t *b = &in[i];
            if (!counts_for_other(b) || b->cooling || b->l->checkpoint_owner ||
                strcmp(b->l->owner, busiest) != 0)
                continue;
            cands[nc].i = i;
            cands[nc].group = 0;
            cands[nc].rank = rank_of(b->l->key, seed);
            nc++;
        }
        if (nc > 1)
            qsort(cands, nc, sizeof(*cands), cand_cmp);
        if ((size_t)want > nc)
            want = (int64_t)nc;
        if (want > 0) {
            out->ask = malloc((size_t)want * sizeof(*out->ask));
            if (!out->ask) {
                rc = KN_ERR_NOMEM;
                goto done;
            }
            for (int64_t i = 0; i < want; i++)
                out->ask[i] = cands[i].i;
            out->n_ask = (size_t)want;
        }
    }
done:
    free(cands);
    free(owners);
    if (rc != KN_ERR_OK)
        kn__bal_plan_free(out);
    return rc;
}
