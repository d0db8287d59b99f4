/*
 * agg_bench: the cost of our KPL aggregation per user record, for
 * tests/bench/agg_bench.js, which runs aws-kinesis-agg on the same job in the
 * same run and prints both side by side.
 *
 *   agg_bench [--records N] [--sizes 100,1024] [--min-ms MS] [--seed S]
 *
 * For each payload size: N user records with random 8..36 character
 * partition keys (all different, as when every record has its own key; the
 * KPL's common case), no explicit hash key, random payload bytes. One
 * "encode" pass aggregates all of them at the KPL's 51200-byte limit exactly
 * as a producer does (size check, add, finish each full aggregate into a
 * Kinesis record: magic + protobuf + MD5); one "decode" pass detects and
 * splits every aggregate (MD5 check, parse) as a consumer does. Passes repeat
 * until --min-ms (default 1500) of wall time per measurement and at least 3
 * passes; the best pass (least disturbed by other processes on a shared
 * machine), the median pass and the process CPU time (user+sys) per record
 * over all passes are reported.
 *
 * Then the compression ratio of the two scopes on realistic JSON log lines
 * (record scope: each record's data gzip/zstd compressed and tagged inside a
 * normal aggregate; aggregate scope: the whole aggregate compressed into one
 * frame), as Kinesis bytes with compression / bytes without.
 *
 * Prints one JSON object on stdout: figures, CPU time (user+sys) and peak
 * RSS of the process. Never fails on time.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "agg.h"
#include "buf.h"
#include "err.h"
#include "record_codec.h"

#define LIMIT KN__AGG_DEFAULT_MAX_BYTES

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t rnd_range(size_t lo, size_t hi) { return lo + (size_t)(rnd() % (hi - lo + 1)); }

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void die(const char *what, const kn_error_t *err)
{
    fprintf(stderr, "agg_bench: %s: %s\n", what, err ? err->message : strerror(errno));
    exit(1);
}

typedef struct records_s {
    size_t n;
    char *keys;       /* n keys, each at keys + i * 40 */
    size_t *key_lens;
    unsigned char *data; /* n payloads, each at data + i * size */
    size_t size;
} records_t;

static void gen_records(records_t *r, size_t n, size_t size)
{
    static const char alnum[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    r->n = n;
    r->size = size;
    r->keys = malloc(n * 40);
    r->key_lens = malloc(n * sizeof(size_t));
    r->data = malloc(n * size + 8);
    if (!r->keys || !r->key_lens || !r->data)
        die("out of memory", NULL);
    for (size_t i = 0; i < n; i++) {
        size_t len = rnd_range(8, 36);
        for (size_t j = 0; j < len; j++)
            r->keys[i * 40 + j] = alnum[rnd() % 62];
        r->key_lens[i] = len;
    }
    for (size_t i = 0; i < n * size; i += 8) {
        uint64_t v = rnd();
        memcpy(r->data + i, &v, 8);
    }
}

static void free_records(records_t *r)
{
    free(r->keys);
    free(r->key_lens);
    free(r->data);
}

typedef struct aggs_s {
    kn__agg_out_t *out;
    size_t n, cap;
} aggs_t;

static void aggs_clear(aggs_t *a)
{
    for (size_t i = 0; i < a->n; i++)
        kn__agg_out_free(&a->out[i]);
    a->n = 0;
}

static kn__agg_out_t *aggs_next(aggs_t *a)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 256;
        kn__agg_out_t *p = realloc(a->out, cap * sizeof(*p));
        if (!p)
            die("out of memory", NULL);
        a->out = p;
        a->cap = cap;
    }
    kn__agg_out_t *o = &a->out[a->n++];
    memset(o, 0, sizeof(*o));
    return o;
}

/* One encode pass: all records into aggregates of at most LIMIT bytes. */
static void encode_pass(kn__agg_builder_t *b, const records_t *r, aggs_t *aggs)
{
    kn_error_t err = {0};
    aggs_clear(aggs);
    kn__agg_builder_reset(b);
    for (size_t i = 0; i < r->n; i++) {
        kn__agg_in_t in = {
            .partition_key = r->keys + i * 40,
            .partition_key_len = r->key_lens[i],
            .data = r->data + i * r->size,
            .data_len = r->size,
        };
        if (kn__agg_builder_count(b) > 0 && kn__agg_builder_size_with(b, &in) > LIMIT) {
            if (kn__agg_builder_finish(b, "a", false, aggs_next(aggs), &err) != KN_ERR_OK)
                die("finish", &err);
            kn__agg_builder_reset(b);
        }
        if (kn__agg_builder_add(b, &in, &err) != KN_ERR_OK)
            die("add", &err);
    }
    if (kn__agg_builder_finish(b, "a", false, aggs_next(aggs), &err) != KN_ERR_OK)
        die("finish", &err);
}

/* One decode pass: every aggregate split into its user records. Returns the count. */
static size_t decode_pass(const aggs_t *aggs, kn__agg_decoded_t *dec, uint64_t *sink)
{
    kn_error_t err = {0};
    size_t count = 0;
    for (size_t i = 0; i < aggs->n; i++) {
        const kn__agg_out_t *o = &aggs->out[i];
        if (kn__agg_decode(o->data.data, o->data.len, o->partition_key.data, o->partition_key.len,
                           o->explicit_hash_key.len ? o->explicit_hash_key.data : NULL,
                           o->explicit_hash_key.len, dec, &err) != KN_ERR_OK)
            die("decode", &err);
        count += dec->count;
        for (size_t j = 0; j < dec->count; j++)
            *sink += dec->records[j].data_len + dec->records[j].partition_key_len;
    }
    return count;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define MAX_PASSES 1000

static double cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ((double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec) * 1e9 +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) * 1e3;
}

/*
 * Best and median wall ns per record over passes of body until min_ms and at
 * least 3 passes, and the process CPU time per record over all the passes.
 */
#define MEASURE(best, median, cpu, min_ms, nrec, body)                                             \
    do {                                                                                           \
        static double samples_[MAX_PASSES];                                                        \
        size_t np_ = 0;                                                                            \
        double start_ = now_ns(), cpu_ = cpu_ns();                                                 \
        while (np_ < MAX_PASSES && (np_ < 3 || now_ns() - start_ < (min_ms) * 1e6)) {              \
            double t_ = now_ns();                                                                  \
            body;                                                                                  \
            samples_[np_++] = (now_ns() - t_) / (double)(nrec);                                    \
        }                                                                                          \
        (cpu) = (cpu_ns() - cpu_) / ((double)(nrec) * (double)np_);                                 \
        qsort(samples_, np_, sizeof(double), cmp_double);                                          \
        (best) = samples_[0];                                                                      \
        (median) = samples_[np_ / 2];                                                              \
    } while (0)

/* ------------------------------------------------------------ compression */

static const char *const services[] = {"checkout", "payments", "inventory", "search", "auth", "shipping"};
static const char *const levels[] = {"INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"};
static const char *const methods[] = {"GET", "GET", "POST", "PUT", "DELETE"};
static const char *const paths[] = {"/api/v1/orders", "/api/v1/cart", "/api/v2/products", "/healthz",
                                    "/api/v1/users", "/api/v1/payments/authorize"};
static const char *const msgs[] = {"request completed", "cache miss, loading from store",
                                   "upstream responded slowly", "validation failed for field quantity",
                                   "retrying after throttling", "user session refreshed"};

/* A JSON log line like a service's structured log (about 300-400 bytes). */
static void log_line(kn_buf_t *b, uint64_t i)
{
    int status = (rnd() % 20 == 0) ? 500 : (rnd() % 10 == 0) ? 404 : 200;
    unsigned ms = (unsigned)(i % 1000);
    kn__buf_reset(b);
    kn__buf_printf(b,
                   "{\"ts\":\"2026-11-25T22:%02u:%02u.%03uZ\",\"level\":\"%s\",\"service\":\"%s\","
                   "\"host\":\"ip-10-0-%u-%u.ec2.internal\",\"trace_id\":\"%016llx%016llx\","
                   "\"span_id\":\"%016llx\",\"method\":\"%s\",\"path\":\"%s/%u\",\"status\":%d,"
                   "\"latency_ms\":%u,\"bytes\":%u,\"user_agent\":\"Mozilla/5.0 (X11; Linux x86_64)\","
                   "\"msg\":\"%s\"}",
                   (unsigned)(i / 60000 % 60), (unsigned)(i / 1000 % 60), ms, levels[rnd() % 6],
                   services[rnd() % 6], (unsigned)(rnd() % 8), (unsigned)(rnd() % 250),
                   (unsigned long long)rnd(), (unsigned long long)rnd(), (unsigned long long)rnd(),
                   methods[rnd() % 5], paths[rnd() % 6], (unsigned)(rnd() % 100000), status,
                   (unsigned)(rnd() % 900 + 1), (unsigned)(rnd() % 50000), msgs[rnd() % 6]);
}

typedef struct ratio_s {
    size_t plain_bytes, rec_gzip, rec_zstd, agg_gzip, agg_zstd, raw_bytes, lines;
} ratio_t;

/*
 * Encodes the log lines into aggregates of at most LIMIT bytes without
 * compression, with record scope, and with aggregate scope, and adds up the
 * Kinesis record bytes each sends.
 */
static size_t scope_bytes(kn__zctx_t *z, kn__codec_t codec, kn__rc_scope_t scope, bool compress,
                          size_t nlines, uint64_t seed)
{
    kn__agg_builder_t *b = kn__agg_builder_new();
    kn_buf_t line = KN_BUF_INIT, comp = KN_BUF_INIT, frame = KN_BUF_INIT;
    kn_error_t err = {0};
    size_t total = 0;
    char key[24];
    if (!b)
        die("out of memory", NULL);
    rng_state = seed;
    for (size_t i = 0; i <= nlines; i++) {
        kn__agg_in_t in = {0};
        kn__agg_tag_t tag;
        if (i < nlines) {
            log_line(&line, i);
            in.partition_key = key;
            in.partition_key_len = (size_t)snprintf(key, sizeof(key), "%llu", (unsigned long long)(rnd() % 1000000));
            in.data = line.data;
            in.data_len = line.len;
            if (compress && scope == KN__RC_SCOPE_RECORD) {
                bool done = false;
                kn__buf_reset(&comp);
                if (kn__rc_compress_record(z, codec, KN__CODEC_LEVEL_DEFAULT, line.data, line.len, true,
                                           &comp, &tag, &done, &err) != KN_ERR_OK)
                    die("record-scope compression", &err);
                if (done) {
                    in.data = comp.data;
                    in.data_len = comp.len;
                    in.tags = &tag;
                    in.n_tags = 1;
                }
            }
        }
        if (kn__agg_builder_count(b) > 0 && (i == nlines || kn__agg_builder_size_with(b, &in) > LIMIT)) {
            kn__agg_out_t out;
            memset(&out, 0, sizeof(out));
            bool force = compress && scope == KN__RC_SCOPE_RECORD;
            if (kn__agg_builder_finish(b, "a", force, &out, &err) != KN_ERR_OK)
                die("finish", &err);
            size_t sent = out.data.len + out.partition_key.len;
            if (compress && scope == KN__RC_SCOPE_AGGREGATE) {
                bool wrapped = false;
                kn__buf_reset(&frame);
                if (kn__rc_wrap(z, codec, KN__CODEC_LEVEL_DEFAULT, out.data.data, out.data.len, true, &frame,
                                &wrapped, &err) != KN_ERR_OK)
                    die("aggregate-scope compression", &err);
                if (wrapped)
                    sent = frame.len + out.partition_key.len;
            }
            total += sent;
            kn__agg_out_free(&out);
            kn__agg_builder_reset(b);
        }
        if (i < nlines && kn__agg_builder_add(b, &in, &err) != KN_ERR_OK)
            die("add", &err);
    }
    kn__buf_free(&line);
    kn__buf_free(&comp);
    kn__buf_free(&frame);
    kn__agg_builder_destroy(b);
    return total;
}

static void compression_ratios(size_t nlines, ratio_t *r)
{
    kn__zctx_t *z = kn__zctx_new();
    if (!z)
        die("out of memory", NULL);
    const uint64_t seed = 42;
    kn_buf_t line = KN_BUF_INIT;
    rng_state = seed;
    r->raw_bytes = 0;
    for (size_t i = 0; i < nlines; i++) {
        log_line(&line, i);
        rnd(); /* the partition key's draw, as in scope_bytes */
        r->raw_bytes += line.len;
    }
    kn__buf_free(&line);
    r->lines = nlines;
    r->plain_bytes = scope_bytes(z, KN__CODEC_GZIP, KN__RC_SCOPE_AGGREGATE, false, nlines, seed);
    r->rec_gzip = scope_bytes(z, KN__CODEC_GZIP, KN__RC_SCOPE_RECORD, true, nlines, seed);
    r->rec_zstd = scope_bytes(z, KN__CODEC_ZSTD, KN__RC_SCOPE_RECORD, true, nlines, seed);
    r->agg_gzip = scope_bytes(z, KN__CODEC_GZIP, KN__RC_SCOPE_AGGREGATE, true, nlines, seed);
    r->agg_zstd = scope_bytes(z, KN__CODEC_ZSTD, KN__RC_SCOPE_AGGREGATE, true, nlines, seed);
    kn__zctx_destroy(z);
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    size_t nrec = 100000, sizes[8] = {100, 1024}, nsizes = 2, log_lines = 20000;
    double min_ms = 1500;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--records") == 0 && i + 1 < argc) {
            nrec = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--min-ms") == 0 && i + 1 < argc) {
            min_ms = strtod(argv[++i], NULL);
        } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--log-lines") == 0 && i + 1 < argc) {
            log_lines = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--sizes") == 0 && i + 1 < argc) {
            char *s = argv[++i], *end;
            nsizes = 0;
            while (*s && nsizes < 8) {
                sizes[nsizes++] = strtoul(s, &end, 10);
                s = *end == ',' ? end + 1 : end;
                if (end == s && *s)
                    break;
            }
        } else {
            fprintf(stderr, "usage: agg_bench [--records N] [--sizes 100,1024] [--min-ms MS] [--seed S] "
                            "[--log-lines N]\n");
            return 2;
        }
    }
    if (nrec == 0 || nsizes == 0) {
        fprintf(stderr, "agg_bench: --records and --sizes must be positive\n");
        return 2;
    }
    rng_state = seed;
    kn__agg_builder_t *b = kn__agg_builder_new();
    if (!b)
        die("out of memory", NULL);
    aggs_t aggs = {0};
    kn__agg_decoded_t dec;
    memset(&dec, 0, sizeof(dec));
    uint64_t sink = 0;

    printf("{\"impl\":\"libkinesis (C)\",\"records\":%zu,\"limit\":%d,\"results\":[", nrec, LIMIT);
    for (size_t s = 0; s < nsizes; s++) {
        records_t r;
        gen_records(&r, nrec, sizes[s]);
        double enc_ns, dec_ns, enc_med, dec_med, enc_cpu, dec_cpu;
        MEASURE(enc_ns, enc_med, enc_cpu, min_ms, nrec, encode_pass(b, &r, &aggs));
        size_t n_aggs = aggs.n, agg_bytes = 0;
        for (size_t i = 0; i < aggs.n; i++)
            agg_bytes += aggs.out[i].data.len;
        MEASURE(dec_ns, dec_med, dec_cpu, min_ms, nrec, {
            if (decode_pass(&aggs, &dec, &sink) != nrec) {
                fprintf(stderr, "agg_bench: decode lost records\n");
                return 1;
            }
        });
        printf("%s{\"size\":%zu,\"encode_ns\":%.1f,\"decode_ns\":%.1f,\"encode_median_ns\":%.1f,"
               "\"decode_median_ns\":%.1f,\"encode_cpu_ns\":%.1f,\"decode_cpu_ns\":%.1f,"
               "\"aggregates\":%zu,\"aggregate_bytes\":%zu}",
               s ? "," : "", sizes[s], enc_ns, dec_ns, enc_med, dec_med, enc_cpu, dec_cpu, n_aggs, agg_bytes);
        aggs_clear(&aggs);
        free_records(&r);
    }
    /* CPU time and peak RSS of the encode/decode work (what the peer does too), before compression. */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu_ms = (double)ru.ru_utime.tv_sec * 1e3 + (double)ru.ru_utime.tv_usec / 1e3 +
                    (double)ru.ru_stime.tv_sec * 1e3 + (double)ru.ru_stime.tv_usec / 1e3;
    printf("],\"cpu_ms\":%.0f,\"peak_rss_kib\":%ld", cpu_ms, ru.ru_maxrss);
    if (log_lines > 0) {
        ratio_t q;
        compression_ratios(log_lines, &q);
        printf(",\"compression\":{\"log_lines\":%zu,\"raw_data_bytes\":%zu,\"kinesis_bytes\":{\"none\":%zu,"
               "\"record_gzip\":%zu,\"record_zstd\":%zu,\"aggregate_gzip\":%zu,\"aggregate_zstd\":%zu}}",
               q.lines, q.raw_bytes, q.plain_bytes, q.rec_gzip, q.rec_zstd, q.agg_gzip, q.agg_zstd);
    }
    printf(",\"sink\":%llu}\n", (unsigned long long)(sink & 1));
    aggs_clear(&aggs);
    free(aggs.out);
    kn__agg_decoded_free(&dec);
    kn__agg_builder_destroy(b);
    return 0;
}
