/*
 * Shared-client benchmark: does a busy producer delay a reader that shares
 * its client (its I/O thread)? One client carries a producer that puts
 * compressible JSON lines as fast as it can (compressed with --codec, at
 * --scope) to the stream BUSY, and a reader that follows the stream PROBE.
 * A second client, alone, puts one probe record every 20 ms to PROBE whose
 * data is its send time. For each probe the reader delivers, the latency is
 * the time from that put call to the reader handing the record over. The
 * same is measured with the busy producer idle (the baseline): the
 * difference is the delay the producer's work on the shared I/O thread adds.
 * kinesalite runs on the same cores and slows down under the busy load too,
 * so the probe latency mixes both; the loop lag isolates the I/O thread: a
 * task posted to the shared client's loop every 5 ms (kn__client_post, the
 * way every answer and timer of a reader is handled there) records how late
 * it runs. Prints one JSON line per phase:
 *   {"phase":"idle"|"busy","probes":N,"p50_ms":..,"p90_ms":..,"p99_ms":..,
 *    "max_ms":..,"lag_p50_ms":..,"lag_p99_ms":..,"lag_max_ms":..,
 *    "busy_records":N,"cpu_s":..}
 *
 * Usage: sharing_bench ENDPOINT BUSY PROBE [--seconds S] [--codec gzip|zstd|none]
 *                      [--scope aggregate|record]
 * The public API, and the client's internal task queue for the loop lag.
 * Figures only.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <kinesis/producer.h>
#include <kinesis/reader.h>

#include "client.h"

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void conf_set(kn_conf_t *c, const char *k, const char *v)
{
    char err[512];
    if (kn_conf_set(c, k, v, err, sizeof(err)) != KN_ERR_OK) {
        fprintf(stderr, "%s=%s: %s\n", k, v, err);
        exit(2);
    }
}

static kn_conf_t *base(const char *endpoint)
{
    kn_conf_t *c = kn_conf_new();
    conf_set(c, "kinesis.endpoint", endpoint);
    conf_set(c, "aws.region", "us-east-1");
    conf_set(c, "aws.access.key.id", "AKIDBENCH");
    conf_set(c, "aws.secret.access.key", "bench-secret");
    return c;
}

typedef struct busy_s {
    kn_producer_t *p;
    const char *stream;
    atomic_bool run, stop;
    atomic_long put;
} busy_t;

static void *busy_main(void *arg)
{
    busy_t *b = arg;
    char line[512], key[32], err[256];
    uint64_t x = 88172645463325252ULL;
    long i = 0;
    while (!atomic_load(&b->stop)) {
        if (!atomic_load(&b->run)) {
            kn_producer_poll(b->p, 10);
            continue;
        }
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        snprintf(key, sizeof(key), "k%llu", (unsigned long long)(x % 1000));
        int n = snprintf(line, sizeof(line),
                         "{\"ts\":%ld,\"level\":\"info\",\"service\":\"checkout\",\"user\":%llu,"
                         "\"msg\":\"order accepted\",\"items\":%llu,\"path\":\"/api/v2/orders\","
                         "\"latency_ms\":%llu,\"region\":\"eu-west-1\",\"trace\":\"%016llx\"}",
                         i, (unsigned long long)(x % 100000), (unsigned long long)(x % 9),
                         (unsigned long long)(x % 250), (unsigned long long)x);
        kn_record_t r = {sizeof(kn_record_t), b->stream, key, 0, NULL, line, (size_t)n, NULL};
        if (kn_producer_put(b->p, &r, err, sizeof(err)) == KN_ERR_OK)
            atomic_fetch_add(&b->put, 1);
        if ((++i & 255) == 0)
            kn_producer_poll(b->p, 0);
    }
    return NULL;
}

typedef struct probe_s {
    kn_producer_t *p;
    const char *stream;
    atomic_bool stop;
} probe_t;

static void *probe_main(void *arg)
{
    probe_t *t = arg;
    char data[32], err[256];
    while (!atomic_load(&t->stop)) {
        int n = snprintf(data, sizeof(data), "%lld", (long long)now_us());
        kn_record_t r = {sizeof(kn_record_t), t->stream, "probe", 0, NULL, data, (size_t)n, NULL};
        kn_producer_put(t->p, &r, err, sizeof(err));
        kn_producer_poll(t->p, 0);
        usleep(20000);
    }
    return NULL;
}

/* Loop lag: tasks posted every 5 ms, each noting how late the loop ran it. */
typedef struct lag_s {
    kn_client_t *c;
    atomic_bool stop;
    pthread_mutex_t lock;
    int64_t *v;
    size_t n, cap;
} lag_t;

typedef struct lag_task_s {
    lag_t *l;
    int64_t posted;
} lag_task_t;

static void lag_run(kn_client_t *c, void *arg)
{
    (void)c;
    lag_task_t *t = arg;
    int64_t late = now_us() - t->posted;
    pthread_mutex_lock(&t->l->lock);
    if (t->l->n == t->l->cap)
        t->l->v = realloc(t->l->v, (t->l->cap = t->l->cap ? t->l->cap * 2 : 4096) * sizeof(int64_t));
    t->l->v[t->l->n++] = late;
    pthread_mutex_unlock(&t->l->lock);
    free(t);
}

static void *lag_main(void *arg)
{
    lag_t *l = arg;
    while (!atomic_load(&l->stop)) {
        lag_task_t *t = malloc(sizeof(*t));
        t->l = l;
        t->posted = now_us();
        if (kn__client_post(l->c, lag_run, t) != KN_ERR_OK)
            free(t);
        usleep(5000);
    }
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Reads probes for seconds s; returns their latencies (us), sorted, count in *n. */
static int64_t *measure(kn_reader_t *r, double s, size_t *n)
{
    size_t cap = 4096;
    int64_t *v = malloc(cap * sizeof(*v));
    *n = 0;
    int64_t end = now_us() + (int64_t)(s * 1e6);
    while (now_us() < end) {
        const kn_reader_msg_t *m = kn_reader_poll(r, 50);
        if (!m || kn_reader_msg_type(m) != KN_READER_RECORD)
            continue;
        int64_t got = now_us();
        size_t len = 0;
        const char *d = kn_reader_msg_data(m, &len);
        char buf[32];
        if (len == 0 || len >= sizeof(buf))
            continue;
        memcpy(buf, d, len);
        buf[len] = 0;
        int64_t sent = atoll(buf);
        if (*n == cap)
            v = realloc(v, (cap *= 2) * sizeof(*v));
        v[(*n)++] = got - sent;
    }
    qsort(v, *n, sizeof(*v), cmp_i64);
    return v;
}

static double pct(const int64_t *v, size_t n, double q)
{
    if (!n)
        return -1;
    size_t i = (size_t)(q * (double)(n - 1));
    return (double)v[i] / 1000.0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: sharing_bench ENDPOINT BUSY PROBE [--seconds S] [--codec C] [--scope S]\n");
        return 2;
    }
    const char *endpoint = argv[1], *busy_stream = argv[2], *probe_stream = argv[3];
    double seconds = 8;
    const char *codec = "gzip", *scope = "aggregate";
    for (int i = 4; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--codec"))
            codec = argv[i + 1];
        else if (!strcmp(argv[i], "--scope"))
            scope = argv[i + 1];
    }
    kn_error_t *e = kn_error_new();
    /* The shared client: the busy producer and the reader. */
    kn_conf_t *shared_conf = base(endpoint);
    kn_client_t *shared = kn_client_new(shared_conf, e);
    if (!shared) {
        fprintf(stderr, "client: %s\n", kn_error_message(e));
        return 2;
    }
    kn_conf_t *pc = kn_conf_dup(shared_conf);
    conf_set(pc, "producer.compression.codec", codec);
    conf_set(pc, "producer.compression.scope", scope);
    conf_set(pc, "producer.rate.limit.percent", "10000");
    kn_producer_t *bp = kn_producer_new_on(shared, pc, e);
    if (!bp) {
        fprintf(stderr, "producer: %s\n", kn_error_message(e));
        return 2;
    }
    kn_conf_t *rc = kn_conf_dup(shared_conf);
    conf_set(rc, "consumer.idle.time.ms", "0");
    conf_set(rc, "consumer.getrecords.interval.ms", "20");
    kn_reader_opts_t ro = KN_READER_OPTS_INIT;
    ro.start.type = KN_POS_LATEST;
    kn_reader_t *r = kn_reader_new_on(shared, rc, probe_stream, &ro, e);
    if (!r) {
        fprintf(stderr, "reader: %s\n", kn_error_message(e));
        return 2;
    }
    /* The probe producer: a client of its own. */
    kn_conf_t *qc = base(endpoint);
    conf_set(qc, "producer.record.max.buffered.ms", "1");
    kn_producer_t *qp = kn_producer_new(qc, e);
    if (!qp) {
        fprintf(stderr, "probe producer: %s\n", kn_error_message(e));
        return 2;
    }
    busy_t b = {bp, busy_stream, false, false, 0};
    probe_t t = {qp, probe_stream, false};
    lag_t l = {.c = shared};
    pthread_mutex_init(&l.lock, NULL);
    pthread_t bt, tt, lt;
    pthread_create(&bt, NULL, busy_main, &b);
    pthread_create(&tt, NULL, probe_main, &t);
    pthread_create(&lt, NULL, lag_main, &l);
    size_t n;
    int64_t *v = measure(r, 1.0, &n); /* warm up: connections, iterators */
    free(v);
    for (int phase = 0; phase < 2; phase++) {
        atomic_store(&b.run, phase == 1);
        long put0 = atomic_load(&b.put);
        double c0 = cpu_s();
        pthread_mutex_lock(&l.lock);
        l.n = 0;
        pthread_mutex_unlock(&l.lock);
        v = measure(r, seconds, &n);
        pthread_mutex_lock(&l.lock);
        qsort(l.v, l.n, sizeof(*l.v), cmp_i64);
        printf("{\"phase\":\"%s\",\"codec\":\"%s\",\"scope\":\"%s\",\"probes\":%zu,\"p50_ms\":%.2f,"
               "\"p90_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f,\"lag_p50_ms\":%.3f,\"lag_p99_ms\":%.3f,"
               "\"lag_max_ms\":%.3f,\"busy_records\":%ld,\"cpu_s\":%.2f}\n",
               phase ? "busy" : "idle", codec, scope, n, pct(v, n, 0.5), pct(v, n, 0.9), pct(v, n, 0.99),
               pct(v, n, 1.0), pct(l.v, l.n, 0.5), pct(l.v, l.n, 0.99), pct(l.v, l.n, 1.0),
               atomic_load(&b.put) - put0, cpu_s() - c0);
        pthread_mutex_unlock(&l.lock);
        fflush(stdout);
        free(v);
    }
    atomic_store(&b.stop, true);
    atomic_store(&t.stop, true);
    atomic_store(&l.stop, true);
    pthread_join(bt, NULL);
    pthread_join(tt, NULL);
    pthread_join(lt, NULL);
    free(l.v);
    kn_reader_destroy(r);
    kn_producer_destroy(bp);
    kn_producer_destroy(qp);
    kn_client_destroy(shared);
    kn_conf_destroy(shared_conf);
    kn_conf_destroy(pc);
    kn_conf_destroy(rc);
    kn_conf_destroy(qc);
    kn_error_destroy(e);
    return 0;
}
