/*
 * A consumer worker process for the multi-worker tests (test_workers.py):
 * one kn_consumer_t that writes what happens to it as lines on stdout, each
 * with the monotonic clock (the same clock for every process on the host,
 * so that the test can order events of different workers):
 *   <ms> START <worker id>
 *   <ms> INIT <shard> <checkpoint> <sub>        a tenure begins
 *   <ms> REC <shard> <seq> <sub> <data>         a record processed
 *   <ms> CK <shard> <seq> <sub> <KN_ERR_...>    a checkpoint and its result
 *   <ms> LOST|ENDED|SHUTDOWN|CLOSE <shard>
 *   <ms> STOP <rc>                              shut down after SIGTERM
 *   <ms> STATS <held> <ddb requests> <renewals> <scans> <taken> <stolen> <handed>   every second
 * Records of a batch are written and flushed before its checkpoint.
 * Usage: worker STREAM APP WORKER_ID [property=value ...]
 *   pause.ms=N (ours, not a library property): sleep N ms after writing a
 *   batch and before checkpointing it (so that a SIGSTOP lands between).
 * Endpoints and credentials come from the environment (AWS_ENDPOINT_URL_*).
 */
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kinesis/consumer.h"

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile sig_atomic_t stop;
static int pause_ms;

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void line(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&out_lock);
    printf("%lld ", mono_ms());
    vprintf(fmt, ap);
    putchar('\n');
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
    va_end(ap);
}

typedef struct st_s {
    char shard[64];
} st_t;

static kn_err_t w_init(void *app, const char *shard, const char *ck, uint64_t sub, void **state)
{
    (void)app;
    st_t *s = calloc(1, sizeof(*s));
    snprintf(s->shard, sizeof(s->shard), "%s", shard);
    *state = s;
    line("INIT %s %s %llu", shard, ck, (unsigned long long)sub);
    return KN_ERR_OK;
}

static kn_err_t w_process(void *app, void *state, const kn_batch_t *b, kn_checkpointer_t *cp)
{
    (void)app;
    st_t *s = state;
    size_t n = kn_batch_count(b);
    if (n == 0)
        return KN_ERR_OK;
    pthread_mutex_lock(&out_lock);
    long long now = mono_ms();
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        const char *d = kn_batch_data(b, i, &len);
        printf("%lld REC %s %s %llu %.*s\n", now, s->shard, kn_batch_sequence_number(b, i),
               (unsigned long long)kn_batch_sub_sequence(b, i), (int)len, d ? d : "");
    }
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
    if (pause_ms)
        usleep((useconds_t)pause_ms * 1000);
    kn_error_t *e = kn_error_new();
    kn_err_t rc = kn_checkpoint(cp, e);
    line("CK %s %s %llu %s", s->shard, kn_batch_sequence_number(b, n - 1),
         (unsigned long long)kn_batch_sub_sequence(b, n - 1), kn_err2name(rc));
    kn_error_destroy(e);
    return KN_ERR_OK;
}

static void w_lost(void *app, void *state)
{
    (void)app;
    line("LOST %s", ((st_t *)state)->shard);
}

static kn_err_t w_ended(void *app, void *state, kn_checkpointer_t *cp)
{
    (void)app;
    kn_error_t *e = kn_error_new();
    kn_err_t rc = kn_checkpoint(cp, e);
    line("ENDED %s %s", ((st_t *)state)->shard, kn_err2name(rc));
    kn_error_destroy(e);
    return rc;
}

static kn_err_t w_shutdown(void *app, void *state, kn_checkpointer_t *cp)
{
    (void)app;
    (void)cp;
    line("SHUTDOWN %s", ((st_t *)state)->shard);
    return KN_ERR_OK;
}

static void w_close(void *app, void *state)
{
    (void)app;
    line("CLOSE %s", ((st_t *)state)->shard);
    free(state);
}

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static void on_log(void *opaque, kn_log_level_t level, const char *ctx, const char *message)
{
    (void)opaque;
    (void)level;
    fprintf(stderr, "%lld [%s] %s\n", mono_ms(), ctx ? ctx : "", message);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: worker STREAM APP WORKER_ID [property=value ...]\n");
        return 2;
    }
    kn_conf_t *conf = kn_conf_new();
    char err[512];
    const char *defaults[][2] = {{"consumer.application.name", argv[2]},
                                 {"consumer.worker.id", argv[3]},
                                 {"consumer.initial.position", "TRIM_HORIZON"},
                                 {"consumer.idle.time.ms", "100"},
                                 {"consumer.getrecords.interval.ms", "50"},
                                 {"log.level", "info"}};
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        if (kn_conf_set(conf, defaults[i][0], defaults[i][1], err, sizeof(err)) != KN_ERR_OK) {
            fprintf(stderr, "%s\n", err);
            return 2;
        }
    for (int i = 4; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) {
            fprintf(stderr, "bad argument %s\n", argv[i]);
            return 2;
        }
        *eq = '\0';
        if (!strcmp(argv[i], "pause.ms")) {
            pause_ms = atoi(eq + 1);
            continue;
        }
        if (kn_conf_set(conf, argv[i], eq + 1, err, sizeof(err)) != KN_ERR_OK) {
            fprintf(stderr, "%s\n", err);
            return 2;
        }
    }
    kn_conf_set_log_cb(conf, on_log, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    kn_processor_t p = KN_PROCESSOR_INIT;
    p.initialize = w_init;
    p.process_records = w_process;
    p.lease_lost = w_lost;
    p.shard_ended = w_ended;
    p.shutdown_requested = w_shutdown;
    p.close = w_close;
    kn_error_t *e = kn_error_new();
    kn_consumer_t *c = kn_consumer_new(conf, argv[1], &p, NULL, e);
    kn_conf_destroy(conf);
    if (!c) {
        fprintf(stderr, "kn_consumer_new: %s\n", kn_error_message(e));
        return 1;
    }
    if (kn_consumer_start(c, e) != KN_ERR_OK) {
        fprintf(stderr, "kn_consumer_start: %s\n", kn_error_message(e));
        return 1;
    }
    line("START %s", kn_consumer_worker_id(c));
    long long next_stats = mono_ms() + 1000;
    while (!stop) {
        usleep(20000);
        if (mono_ms() >= next_stats) {
            next_stats += 1000;
            line("STATS %lld %lld %lld %lld %lld %lld %lld",
                 (long long)kn_consumer_stat(c, KN_CONSUMER_STAT_LEASES_HELD),
                 (long long)kn_consumer_stat(c, KN_CONSUMER_STAT_DDB_REQUESTS),
                 (long long)kn_consumer_stat(c, KN_CONSUMER_STAT_RENEWALS),
                 (long long)kn_consumer_stat(c, KN_CONSUMER_STAT_SCANS),
                 (long long)kn_consumer_stat(c, KN_CONSUMER_STAT_LEASES_TAKEN),
                 (long long)kn_consumer_stat(c, KN_CONSUMER_STAT_LEASES_STOLEN),
                 (long long)kn_consumer_stat(c, KN_CONSUMER_STAT_LEASES_HANDED));
        }
    }
    kn_err_t rc = kn_consumer_shutdown(c, 20000);
    line("STOP %s", kn_err2name(rc));
    kn_err_t drc = kn_consumer_destroy(c);
    kn_error_destroy(e);
    return rc == KN_ERR_OK && drc == KN_ERR_OK ? 0 : 1;
}
