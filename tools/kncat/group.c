/*
 * kncat -G: a member of a consumer group through the lease-holding consumer
 * (<kinesis/consumer.h>), printing with -C's output options; and kncat -L -G,
 * a group's leases.
 *
 * Each batch is printed whole under one lock (processor threads run shards
 * in parallel; stdout is one stream), flushed, and only then checkpointed:
 * what a checkpoint covers has been written out (at least once, in order
 * per shard). A batch that could not be printed (-c reached, stdout gone) is
 * reported as not processed, so that nothing unprinted is ever checkpointed.
 * SIGINT/SIGTERM: a graceful shutdown (each shard checkpointed and its lease
 * released, so the other members take over at once). -e: exit once every
 * shard held is caught up.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kinesis/consumer.h>

#include "kncat.h"

typedef struct grp_s {
    kc_opts_t *o;
    kc_format_t *fmt;
    bool kcat_style;
    pthread_mutex_t lock;
    int64_t printed;
    bool full;   /* -c reached */
    bool broken; /* stdout failed */
    int ec;
    kc_progress_t progress;
} grp_t;

static void print_one(grp_t *g, const kn_batch_t *b, size_t i)
{
    kc_opts_t *o = g->o;
    kc_rec_t rec;
    size_t dlen = 0, klen = 0;
    const void *data = kn_batch_data(b, i, &dlen);
    rec.stream = o->stream;
    rec.shard = kn_batch_shard_id(b);
    rec.seq = kn_batch_sequence_number(b, i);
    rec.subseq = kn_batch_sub_sequence(b, i);
    rec.ts_ms = kn_batch_arrival_ms(b, i);
    rec.key = kn_batch_partition_key(b, i, &klen);
    rec.key_len = klen;
    rec.data = data ? data : (const unsigned char *)"";
    rec.data_len = dlen;
    if (o->json) {
        kc_envelope_write(&rec, stdout);
    } else if (g->kcat_style) {
        if (o->key_delim) {
            fwrite(rec.key, 1, rec.key_len, stdout);
            fwrite(o->key_delim, 1, o->key_delim_len, stdout);
        }
        fwrite(rec.data, 1, rec.data_len, stdout);
        fwrite(o->delim, 1, o->delim_len, stdout);
    } else {
        kc_format_write(g->fmt, &rec, stdout);
    }
    if (o->unbuffered)
        fflush(stdout);
}

static bool is_sequence(const char *s)
{
    return *s && strspn(s, "0123456789") == strlen(s);
}

static kn_err_t g_init(void *app, const char *shard, const char *ck, uint64_t sub, void **state)
{
    grp_t *g = app;
    (void)state;
    if (!is_sequence(ck))
        kc_info(g->o, 1, "%s: processing from %s", shard, ck);
    else
        kc_info(g->o, 1, "%s: processing after %s/%llu", shard, ck, (unsigned long long)sub);
    return KN_ERR_OK;
}

static kn_err_t g_process(void *app, void *state, const kn_batch_t *b, kn_checkpointer_t *cp)
{
    grp_t *g = app;
    (void)state;
    size_t n = kn_batch_count(b);
    pthread_mutex_lock(&g->lock);
    if (g->full || g->broken) {
        pthread_mutex_unlock(&g->lock);
        return KN_ERR_STATE; /* not printed: not processed, never checkpointed */
    }
    size_t k = n;
    if (g->o->count >= 0 && g->printed + (int64_t)n >= g->o->count) {
        k = (size_t)(g->o->count - g->printed);
        g->full = true;
    }
    uint64_t bytes = 0;
    for (size_t i = 0; i < k; i++) {
        print_one(g, b, i);
        size_t len = 0;
        kn_batch_data(b, i, &len);
        bytes += len;
    }
    g->printed += (int64_t)k;
    kc_progress_add(&g->progress, k, bytes);
    bool ok = fflush(stdout) == 0 && !ferror(stdout);
    if (!ok && !g->broken) {
        g->broken = true;
        if (errno != EPIPE) {
            kc_err("writing to stdout: %s", strerror(errno));
            g->ec = KC_EXIT_FAIL;
        }
    }
    pthread_mutex_unlock(&g->lock);
    if (!ok)
        return KN_ERR_IO;
    if (k == 0)
        return n == 0 ? KN_ERR_OK : KN_ERR_STATE;
    kn_error_t *err = kn_error_new();
    kn_err_t rc = k == n ? kn_checkpoint(cp, err)
                         : kn_checkpoint_at(cp, kn_batch_sequence_number(b, k - 1),
                                            kn_batch_sub_sequence(b, k - 1), err);
    if (rc == KN_ERR_LEASE_LOST)
        kc_info(g->o, 1, "%s: lease lost, not checkpointed: %s", kn_batch_shard_id(b),
                kn_error_message(err));
    else if (rc != KN_ERR_OK)
        kc_warn(g->o, "%s: checkpoint: %s (%s)", kn_batch_shard_id(b), kn_error_message(err),
                kn_err2name(rc));
    kn_error_destroy(err);
    return k == n ? KN_ERR_OK : KN_ERR_STATE;
}

static void g_lost(void *app, void *state)
{
    grp_t *g = app;
    (void)state;
    kc_info(g->o, 1, "a lease went to another member");
}

static kn_err_t g_ended(void *app, void *state, kn_checkpointer_t *cp)
{
    (void)app;
    (void)state;
    (void)cp; /* SHARD_END is checkpointed by the consumer once this returns */
    return KN_ERR_OK;
}

static int start_position(kc_opts_t *o)
{
    const char *pos = "LATEST";
    char ts[32];
    switch (o->start) {
    case KC_START_BEGINNING: pos = "TRIM_HORIZON"; break;
    case KC_START_END: pos = "LATEST"; break;
    case KC_START_TIMESTAMP:
        pos = "AT_TIMESTAMP";
        snprintf(ts, sizeof(ts), "%lld", (long long)o->start_ts_ms);
        if (kn_conf_set(o->conf, "consumer.initial.timestamp.ms", ts, NULL, 0) != KN_ERR_OK)
            return -1;
        break;
    case KC_START_SEQUENCE:
        kc_err("-o <sequence number> is not for -G: a group resumes each shard from its "
               "checkpoint; -o only says where shards without one begin");
        return -1;
    }
    return kn_conf_set(o->conf, "consumer.initial.position", pos, NULL, 0) == KN_ERR_OK ? 0 : -1;
}

int kc_group(kc_opts_t *o)
{
    grp_t g;
    memset(&g, 0, sizeof(g));
    g.o = o;
    pthread_mutex_init(&g.lock, NULL);
    kn_consumer_t *c = NULL;
    kn_error_t *err = kn_error_new();
    char errstr[512] = "";
    int ec = KC_EXIT_OK;
    if (!err) {
        ec = KC_EXIT_FAIL;
        goto out;
    }
    if (!o->stream || !*o->stream) {
        kc_err("-G needs a stream (-t <stream>)");
        ec = KC_EXIT_USAGE;
        goto out;
    }
    if (!o->group || !*o->group) {
        kc_err("-G needs a group name");
        ec = KC_EXIT_USAGE;
        goto out;
    }
    if (o->shards) {
        kc_err("-p is not for -G: the group shares every shard among its members");
        ec = KC_EXIT_USAGE;
        goto out;
    }
    if (o->stop_ts_ms > 0) {
        kc_err("-o e@<time> is not for -G");
        ec = KC_EXIT_USAGE;
        goto out;
    }
    if (o->raw) {
        kc_err("--raw is not for -G (a group's records are always decoded)");
        ec = KC_EXIT_USAGE;
        goto out;
    }
    if (o->json && o->format) {
        kc_err("-J and -f exclude each other");
        ec = KC_EXIT_USAGE;
        goto out;
    }
    g.kcat_style = !o->json && !o->format && (o->delim_given || o->key_delim);
    if (!o->json && !g.kcat_style &&
        !(g.fmt = kc_format_new(o->format ? o->format : "%s\\n", errstr, sizeof(errstr)))) {
        kc_err("%s", errstr);
        ec = KC_EXIT_USAGE;
        goto out;
    }
    if (start_position(o) != 0 ||
        kn_conf_set(o->conf, "consumer.application.name", o->group, errstr, sizeof(errstr)) !=
            KN_ERR_OK) {
        if (errstr[0])
            kc_err("%s", errstr);
        ec = KC_EXIT_USAGE;
        goto out;
    }
    kn_client_t *client = kc_client(o);
    if (!client) {
        ec = KC_EXIT_FAIL;
        goto out;
    }
    kn_processor_t proc = KN_PROCESSOR_INIT;
    proc.initialize = g_init;
    proc.process_records = g_process;
    proc.lease_lost = g_lost;
    proc.shard_ended = g_ended;
    c = kn_consumer_new_on(client, o->conf, o->stream, &proc, &g, err);
    if (!c) {
        ec = kc_report_error("group", kn_error_code(err), err);
        goto out;
    }
    static char outbuf[1 << 16];
    setvbuf(stdout, outbuf, _IOFBF, sizeof(outbuf));
    __fsetlocking(stdout, FSETLOCKING_BYCALLER); /* every write is under g.lock */
    kc_progress_init(&g.progress, o);
    kn_err_t rc = kn_consumer_start(c, err);
    if (rc != KN_ERR_OK) {
        char what[300];
        snprintf(what, sizeof(what), "group %s on stream %s", o->group, o->stream);
        ec = kc_report_error(what, rc, err);
        goto out;
    }
    kc_info(o, 1, "group %s: member %s", o->group, kn_consumer_worker_id(c));
    for (;;) {
        usleep(100 * 1000);
        pthread_mutex_lock(&g.lock);
        bool stop = g.full || g.broken;
        pthread_mutex_unlock(&g.lock);
        if (stop || kc_stop)
            break;
        if (o->exit_at_end && kn_consumer_caught_up(c)) {
            kc_info(o, 1, "every shard of this member is caught up");
            break;
        }
    }
    kc_info(o, 1, "leaving the group: checkpointing and releasing the leases");
    if (kn_consumer_shutdown(c, 30000) != KN_ERR_OK)
        kc_warn(o, "not every shard could be checkpointed and released in time");
out:
    if (c && kn_consumer_destroy(c) != KN_ERR_OK && ec == KC_EXIT_OK)
        ec = KC_EXIT_FAIL;
    if (ec == KC_EXIT_OK && g.ec)
        ec = g.ec;
    kc_progress_end(&g.progress);
    if (c)
        kc_info(o, 1, "%lld records printed", (long long)g.printed);
    kc_format_destroy(g.fmt);
    kn_error_destroy(err);
    pthread_mutex_destroy(&g.lock);
    return ec;
}

/* ------------------------------------------------------------------ -L -G */

int kc_group_list(kc_opts_t *o)
{
    kn_client_t *client = kc_client(o);
    kn_error_t *err = kn_error_new();
    if (!client || !err) {
        kn_error_destroy(err);
        return KC_EXIT_FAIL;
    }
    char table[512];
    size_t tl = sizeof(table);
    if (kn_conf_get(o->conf, "consumer.table.name", table, &tl) != KN_ERR_OK || !table[0])
        snprintf(table, sizeof(table), "%s", o->group);
    kn_group_lease_t *v = NULL;
    size_t n = 0;
    kn_err_t rc = kn_group_leases(client, table, o->stream, &v, &n, err);
    if (rc != KN_ERR_OK) {
        char what[600];
        snprintf(what, sizeof(what), "group %s", o->group);
        int ec = kc_report_error(what, rc, err);
        kn_error_destroy(err);
        return ec;
    }
    if (o->json) {
        fputs("{\"group\":", stdout);
        kc_json_string(stdout, o->group, strlen(o->group));
        fputs(",\"table\":", stdout);
        kc_json_string(stdout, table, strlen(table));
        fputs(",\"leases\":[", stdout);
        for (size_t i = 0; i < n; i++) {
            const kn_group_lease_t *l = &v[i];
            fputs(i ? ",{\"shard\":" : "{\"shard\":", stdout);
            kc_json_string(stdout, l->shard_id, strlen(l->shard_id));
            fputs(",\"owner\":", stdout);
            if (l->owner)
                kc_json_string(stdout, l->owner, strlen(l->owner));
            else
                fputs("null", stdout);
            fputs(",\"handing_over\":", stdout);
            if (l->handing_over)
                kc_json_string(stdout, l->handing_over, strlen(l->handing_over));
            else
                fputs("null", stdout);
            fputs(",\"checkpoint\":", stdout);
            kc_json_string(stdout, l->checkpoint ? l->checkpoint : "", l->checkpoint ? strlen(l->checkpoint) : 0);
            printf(",\"subseq\":%llu,\"counter\":%lld,\"parents\":[",
                   (unsigned long long)l->checkpoint_sub, (long long)l->counter);
            if (l->parents) {
                const char *p = l->parents;
                for (bool first = true; *p; first = false) {
                    size_t len = strcspn(p, ",");
                    if (!first)
                        fputc(',', stdout);
                    kc_json_string(stdout, p, len);
                    p += len;
                    if (*p == ',')
                        p++;
                }
            }
            fputs("],\"lag_ms\":", stdout);
            if (l->lag_ms >= 0)
                printf("%lld}", (long long)l->lag_ms);
            else
                fputs("null}", stdout);
        }
        fputs("]}\n", stdout);
    } else {
        size_t owners = 0;
        for (size_t i = 0; i < n; i++) {
            bool seen = false;
            for (size_t j = 0; j < i && v[i].owner; j++)
                if (v[j].owner && !strcmp(v[j].owner, v[i].owner))
                    seen = true;
            owners += v[i].owner && !seen;
        }
        printf("group %s (table %s): %zu leases, %zu members holding them\n", o->group, table, n,
               owners);
        for (size_t i = 0; i < n; i++) {
            const kn_group_lease_t *l = &v[i];
            printf("  %s  owner %s", l->shard_id, l->owner ? l->owner : "(free)");
            if (l->handing_over)
                printf(" (from %s, handing over)", l->handing_over);
            printf("  checkpoint %s", l->checkpoint ? l->checkpoint : "?");
            if (l->checkpoint_sub)
                printf("/%llu", (unsigned long long)l->checkpoint_sub);
            printf("  counter %lld", (long long)l->counter);
            if (l->lag_ms >= 0)
                printf("  lag %lld ms", (long long)l->lag_ms);
            if (l->parents)
                printf("  parents %s", l->parents);
            printf("\n");
        }
    }
    kn_group_leases_free(v, n);
    kn_error_destroy(err);
    return fflush(stdout) == 0 ? KC_EXIT_OK : KC_EXIT_FAIL;
}
