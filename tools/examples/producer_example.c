/*
 * producer_example: how to use the libkinesis producer. Copy it and adapt.
 *
 *   producer_example [-X property=value]... [-n COUNT] [-k KEYS] [-v] STREAM
 *
 * Puts one record per line of standard input (the line without its newline;
 * the partition key is the line number), or with -n COUNT that many generated
 * 100-byte records spread over KEYS partition keys (default 1000). Prints a
 * line for every failed record (and with -v for every record), then a
 * summary and the producer's statistics as JSON. Exits 0 when every record
 * was put, 1 when some failed, 2 on a usage or setup error.
 *
 * Endpoint, region and credentials come from the environment like any AWS
 * SDK (AWS_ENDPOINT_URL_KINESIS, AWS_REGION, the credential chain) or from
 * properties, for example against a local kinesalite:
 *
 *   producer_example -X kinesis.endpoint=http://127.0.0.1:4567 \
 *       -X aws.region=us-east-1 -X aws.access.key.id=x -X aws.secret.access.key=y \
 *       -n 100000 my-stream
 *
 * `kn-quickstart` and the tests create streams; this program expects the
 * stream to exist. Any producer property can be set with -X (see
 * kn_conf_list()), e.g. -X producer.ordering.strict=true.
 *
 * The pattern:
 *   1. build a kn_conf_t and set the result callback on it;
 *   2. kn_producer_new() (a kn_error_t says why it failed, if it does);
 *   3. kn_producer_put() for each record, built from KN_RECORD_INIT (it
 *      copies the record; the opaque pointer comes back in the result);
 *   4. call kn_producer_poll() now and then: results are delivered on the
 *      thread that polls (a put that waits for room serves them too);
 *   5. kn_producer_flush() at the end, then kn_producer_destroy().
 * Every record put successfully gets exactly one result.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* getline, clock_gettime */
#endif
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include <kinesis/producer.h>

/* The application's state, reached from the result callback through its opaque pointer. */
typedef struct app_s {
    bool verbose;
    long ok, failed;
} app_t;

/* Called once per record, on the thread that calls kn_producer_poll()/flush()/put(). */
static void on_result(kn_producer_t *p, const kn_result_t *r, void *opaque)
{
    (void)p;
    app_t *app = opaque;
    size_t key_len = 0;
    const char *key = kn_result_partition_key(r, &key_len);
    if (kn_result_err(r) == KN_ERR_OK) {
        app->ok++;
        if (app->verbose)
            printf("ok     key=%.*s shard=%s seq=%s sub=%llu attempts=%d\n", (int)key_len, key,
                   kn_result_shard_id(r), kn_result_sequence_number(r),
                   (unsigned long long)kn_result_sub_sequence(r), kn_result_attempt_count(r));
        return;
    }
    app->failed++;
    printf("FAILED key=%.*s %s: %s (after %d attempts)\n", (int)key_len, key, kn_err2name(kn_result_err(r)),
           kn_result_errstr(r), kn_result_attempt_count(r));
}

static void usage(void)
{
    fprintf(stderr, "usage: producer_example [-X property=value]... [-n COUNT] [-k KEYS] [-v] STREAM\n"
                    "  without -n, one record per line of standard input\n");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    app_t app = {0};
    long count = -1, nkeys = 1000;
    char errstr[512];
    int ch, rc = 2;
    kn_producer_t *p = NULL;
    char *line = NULL;
    size_t line_cap = 0;

    kn_conf_t *conf = kn_conf_new();
    kn_error_t *cerr = kn_error_new(); /* why a constructor failed */
    while ((ch = getopt(argc, argv, "X:n:k:vh")) != -1) {
        switch (ch) {
        case 'X': {
            char *eq = strchr(optarg, '=');
            if (!eq) {
                fprintf(stderr, "-X wants property=value, got %s\n", optarg);
                goto out;
            }
            *eq = 0;
            if (kn_conf_set(conf, optarg, eq + 1, errstr, sizeof(errstr)) != KN_ERR_OK) {
                fprintf(stderr, "%s\n", errstr);
                goto out;
            }
            break;
        }
        case 'n':
            count = strtol(optarg, NULL, 10);
            break;
        case 'k':
            nkeys = strtol(optarg, NULL, 10);
            break;
        case 'v':
            app.verbose = true;
            break;
        default:
            usage();
            goto out;
        }
    }
    if (optind != argc - 1 || nkeys < 1) {
        usage();
        goto out;
    }
    const char *stream = argv[optind];

    /* 1-2: the callback goes on the conf; the producer copies the conf. */
    kn_conf_set_result_cb(conf, on_result, &app);
    p = kn_producer_new(conf, cerr);
    if (!p) {
        fprintf(stderr, "kn_producer_new: %s (%s)\n", kn_error_message(cerr),
                kn_err2name(kn_error_code(cerr)));
        goto out;
    }

    /* 3-4: put, polling now and then so that results do not pile up. */
    double t0 = now_s();
    long n = 0;
    char key[32];
    unsigned char data[100];
    for (;; n++) {
        kn_record_t rec = KN_RECORD_INIT;
        rec.stream = stream;
        rec.partition_key = key;
        if (count >= 0) {
            if (n >= count)
                break;
            snprintf(key, sizeof(key), "key-%ld", n % nkeys);
            for (size_t i = 0; i < sizeof(data); i++)
                data[i] = (unsigned char)('a' + (n + (long)i) % 26);
            rec.data = data;
            rec.data_len = sizeof(data);
        } else {
            ssize_t len = getline(&line, &line_cap, stdin);
            if (len < 0)
                break;
            if (len > 0 && line[len - 1] == '\n')
                line[--len] = 0;
            snprintf(key, sizeof(key), "line-%ld", n + 1);
            rec.data = line;
            rec.data_len = (size_t)len;
        }
        kn_err_t err = kn_producer_put(p, &rec, errstr, sizeof(errstr));
        if (err != KN_ERR_OK) {
            /* No result follows for a record that put refused. */
            fprintf(stderr, "put %s: %s: %s\n", key, kn_err2name(err), errstr);
            app.failed++;
        }
        if (n % 1000 == 999)
            kn_producer_poll(p, 0);
    }

    /* 5: wait for every result, then print what happened. */
    if (kn_producer_flush(p, 60000) != KN_ERR_OK)
        fprintf(stderr, "flush: %lld records still pending after 60 s\n", (long long)kn_producer_pending(p));
    double secs = now_s() - t0;
    printf("%ld records: %ld put, %ld failed in %.2f s (%.0f records/s)\n", n, app.ok, app.failed, secs,
           secs > 0 ? (double)n / secs : 0.0);
    char *stats = kn_producer_stats_json(p);
    if (stats) {
        printf("stats: %s\n", stats);
        kn_free(stats);
    }
    rc = app.failed || app.ok != n ? 1 : 0;
out:
    kn_producer_destroy(p); /* NULL is a no-op */
    kn_conf_destroy(conf);
    kn_error_destroy(cerr);
    free(line);
    return rc;
}
