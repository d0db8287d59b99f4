/*
 * Producer benchmark, our side: puts COUNT records of 100 bytes with random
 * partition keys to STREAM as fast as the producer takes them, through the
 * public API only (<kinesis/producer.h>), and prints one JSON line:
 *   {"impl":"libkinesis","records":N,"ok":N,"failed":N,"wall_s":S,
 *    "cpu_user_s":S,"cpu_sys_s":S,"maxrss_kib":N,"first_error":"..."}
 * (CPU and RSS from getrusage of this process over the whole run).
 *
 * Usage: producer_bench ENDPOINT STREAM COUNT [-X property=value]...
 *        producer_bench --lines COUNT
 * The second form puts nothing: it prints the same COUNT records as
 * "key:data" lines on stdout, the input of `kncat -P -K :` in the benchmark,
 * so that kncat and the library put exactly the same records. The data are
 * printable (letters and digits), so that a line holds one record; hashing
 * and encoding cost the same for any bytes.
 * tests/bench/producer/bench.py runs it beside the peers; see README.md there.
 */
#include <stdint.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <kinesis/producer.h>

typedef struct tally_s {
    long ok, failed;
    char first_error[256];
} tally_t;

static void on_result(kn_producer_t *p, const kn_result_t *r, void *opaque)
{
    (void)p;
    tally_t *t = opaque;
    if (kn_result_err(r) == KN_ERR_OK) {
        t->ok++;
    } else {
        if (t->failed++ == 0)
            snprintf(t->first_error, sizeof(t->first_error), "%s: %.200s", kn_err2name(kn_result_err(r)),
                     kn_result_errstr(r));
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift64*: cheap random keys, the same sequence on every run. */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

/* Data: 100-byte windows into a pool of printable bytes (as the peers do); keys: 16 random hex digits. */
static unsigned char pool[65536];
static const char hex[] = "0123456789abcdef";

static void fill_pool(uint64_t *seed)
{
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    for (size_t i = 0; i < sizeof(pool); i++)
        pool[i] = (unsigned char)alnum[rnd(seed) % 62];
}

/* The i-th record of the run: key (16 hex digits, NUL-terminated) and data (100 bytes). */
static const unsigned char *next_record(uint64_t *seed, char key[17])
{
    uint64_t v = rnd(seed);
    for (int j = 0; j < 16; j++)
        key[j] = hex[(v >> (4 * j)) & 15];
    key[16] = 0;
    return pool + (size_t)(v >> 48) % (sizeof(pool) - 100);
}

static int print_lines(long count)
{
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    fill_pool(&seed);
    char key[17];
    for (long i = 0; i < count; i++) {
        const unsigned char *data = next_record(&seed, key);
        fputs(key, stdout);
        putchar(':');
        fwrite(data, 1, 100, stdout);
        putchar('\n');
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

/* One putting thread: its share of the records, its own key sequence. */
typedef struct putter_s {
    kn_producer_t *p;
    const char *stream;
    long count;
    uint64_t seed;
    long refused;
    char first_error[256];
} putter_t;

static void *put_main(void *arg)
{
    putter_t *w = arg;
    char key[17], errstr[512];
    for (long i = 0; i < w->count; i++) {
        const unsigned char *data = next_record(&w->seed, key);
        kn_record_t rec = {sizeof(kn_record_t), w->stream, key, 16, NULL, data, 100, NULL};
        kn_err_t rc = kn_producer_put(w->p, &rec, errstr, sizeof(errstr));
        if (rc != KN_ERR_OK && w->refused++ == 0)
            snprintf(w->first_error, sizeof(w->first_error), "put: %s: %.200s", kn_err2name(rc), errstr);
        if ((i & 4095) == 4095)
            kn_producer_poll(w->p, 0);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--lines") == 0)
        return print_lines(strtol(argv[2], NULL, 10));
    if (argc < 4) {
        fprintf(stderr, "usage: producer_bench ENDPOINT STREAM COUNT [-T threads] [-X property=value]...\n");
        return 2;
    }
    const char *endpoint = argv[1], *stream = argv[2];
    long count = strtol(argv[3], NULL, 10);
    char errstr[512];
    tally_t t = {0};
    kn_conf_t *conf = kn_conf_new();
    const char *kv[] = {"kinesis.endpoint", endpoint, "aws.region", "us-east-1", "aws.access.key.id", "AKIDBENCH",
                        "aws.secret.access.key", "bench-secret", NULL};
    for (int i = 0; kv[i]; i += 2)
        if (kn_conf_set(conf, kv[i], kv[i + 1], errstr, sizeof(errstr)) != KN_ERR_OK) {
            fprintf(stderr, "%s\n", errstr);
            return 2;
        }
    int threads = 1;
    for (int i = 4; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-T") == 0) {
            threads = atoi(argv[i + 1]);
            if (threads < 1 || threads > 64) {
                fprintf(stderr, "-T: 1 to 64 threads, not %s\n", argv[i + 1]);
                return 2;
            }
            continue;
        }
        char *eq = strchr(argv[i + 1], '=');
        if (strcmp(argv[i], "-X") != 0 || !eq) {
            fprintf(stderr, "expected -X property=value, got %s %s\n", argv[i], argv[i + 1]);
            return 2;
        }
        *eq = 0;
        if (kn_conf_set(conf, argv[i + 1], eq + 1, errstr, sizeof(errstr)) != KN_ERR_OK) {
            fprintf(stderr, "%s\n", errstr);
            return 2;
        }
    }
    kn_conf_set_result_cb(conf, on_result, &t);
    kn_error_t *cerr = kn_error_new();
    kn_producer_t *p = kn_producer_new(conf, cerr);
    kn_conf_destroy(conf);
    if (!p) {
        fprintf(stderr, "kn_producer_new: %s\n", kn_error_message(cerr));
        return 2;
    }

    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    fill_pool(&seed);
    long refused = 0;
    putter_t w[64];
    pthread_t tid[64];
    double t0 = now_s();
    for (int k = 0; k < threads; k++) {
        w[k] = (putter_t){p, stream, count / threads + (k == 0 ? count % threads : 0),
                          seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)k), 0, ""};
        if (threads == 1)
            put_main(&w[0]); /* on this thread, as before there were threads */
        else if (pthread_create(&tid[k], NULL, put_main, &w[k]) != 0) {
            fprintf(stderr, "cannot start thread %d\n", k);
            return 2;
        }
    }
    for (int k = 0; k < threads; k++) {
        if (threads > 1)
            pthread_join(tid[k], NULL);
        refused += w[k].refused;
        if (w[k].refused && !t.first_error[0])
            snprintf(t.first_error, sizeof(t.first_error), "%s", w[k].first_error);
    }
    kn_err_t frc = kn_producer_flush(p, 600000);
    double wall = now_s() - t0;
    if (frc != KN_ERR_OK && !t.first_error[0])
        snprintf(t.first_error, sizeof(t.first_error), "flush: %s", kn_err2name(frc));
    char *stats = kn_producer_stats_json(p);
    kn_producer_destroy(p);
    kn_error_destroy(cerr);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    for (char *c = t.first_error; *c; c++)
        if (*c == '"' || *c == '\\')
            *c = '\'';
    printf("{\"impl\":\"libkinesis\",\"threads\":%d,\"records\":%ld,\"ok\":%ld,\"failed\":%ld,\"wall_s\":%.3f,"
           "\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f,\"maxrss_kib\":%ld,\"first_error\":\"%s\"}\n",
           threads, count, t.ok, t.failed + refused, wall, (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6, ru.ru_maxrss, t.first_error);
    if (stats) {
        fprintf(stderr, "producer stats: %s\n", stats);
        kn_free(stats);
    }
    return t.ok == count ? 0 : 1;
}
