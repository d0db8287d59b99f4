/*
 * Consumer benchmark, the library alone: reads every shard of STREAM from
 * TRIM_HORIZON through the stream reader (<kinesis/reader.h>, the public API
 * only) until every shard is caught up, touching each record's data (a
 * checksum over every byte, so nothing is skipped that kncat would copy),
 * and prints one JSON line:
 *   {"impl":"reader","records":N,"bytes":N,"checksum":N,"wall_s":S,
 *    "cpu_user_s":S,"cpu_sys_s":S,"maxrss_kib":N,"errors":N}
 * It is what `kncat -C -e` does without the output: the difference between
 * the two is the cost of kncat itself (option handling, formatting, stdio).
 *
 * Usage: reader_bench ENDPOINT STREAM [-X property=value]...
 * tests/bench/consumer/bench.py runs it beside kncat and the JavaScript peer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <kinesis/reader.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: reader_bench ENDPOINT STREAM [-X property=value]...\n");
        return 2;
    }
    char errstr[512];
    kn_conf_t *conf = kn_conf_new();
    const char *kv[] = {"kinesis.endpoint", argv[1], "aws.region", "us-east-1", NULL};
    for (int i = 0; kv[i]; i += 2)
        if (kn_conf_set(conf, kv[i], kv[i + 1], errstr, sizeof(errstr)) != KN_ERR_OK) {
            fprintf(stderr, "%s\n", errstr);
            return 2;
        }
    for (int i = 3; i + 1 < argc; i += 2) {
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
    double t0 = now_s();
    kn_error_t *cerr = kn_error_new();
    kn_reader_t *r = kn_reader_new(conf, argv[2], NULL, cerr);
    kn_conf_destroy(conf);
    if (!r) {
        fprintf(stderr, "kn_reader_new: %s\n", kn_error_message(cerr));
        return 2;
    }
    kn_error_destroy(cerr);
    long records = 0, errors = 0;
    uint64_t bytes = 0, sum = 0;
    for (;;) {
        const kn_reader_msg_t *m = kn_reader_poll(r, 1000);
        if (!m)
            continue;
        kn_reader_msg_type_t t = kn_reader_msg_type(m);
        if (t == KN_READER_RECORD) {
            size_t len = 0;
            const unsigned char *d = kn_reader_msg_data(m, &len);
            for (size_t i = 0; i < len; i++)
                sum += d[i];
            bytes += len;
            records++;
        } else if (t == KN_READER_SHARD_ERROR) {
            fprintf(stderr, "%s\n", kn_reader_msg_errstr(m));
            errors++;
        } else if (t == KN_READER_AT_END) {
            break;
        }
    }
    double wall = now_s() - t0;
    kn_reader_destroy(r);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"impl\":\"reader\",\"records\":%ld,\"bytes\":%llu,\"checksum\":%llu,\"wall_s\":%.3f,"
           "\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f,\"maxrss_kib\":%ld,\"errors\":%ld}\n",
           records, (unsigned long long)bytes, (unsigned long long)sum, wall,
           (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6, ru.ru_maxrss, errors);
    return errors ? 1 : 0;
}
