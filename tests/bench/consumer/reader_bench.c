/*
 * Consumer benchmark, the library alone: reads every shard of STREAM from
 * TRIM_HORIZON through the stream reader (<kinesis/reader.h>, the public API
 * only) until every shard is caught up, touching each record's data (a
 * checksum over every byte, so nothing is skipped that kncat would copy),
 * and prints one JSON line:
 *   {"impl":"reader","records":N,"bytes":N,"checksum":N,"wall_s":S,
 *    "cpu_user_s":S,"cpu_sys_s":S,"maxrss_kib":N,"errors":N,"get_records_calls":N}
 * It is what `kncat -C -e` does without the output: the difference between
 * the two is the cost of kncat itself (option handling, formatting, stdio).
 *
 * Usage: reader_bench ENDPOINT STREAM [--idle SECONDS] [-X property=value]...
 *
 * --idle S: after every shard is caught up, go on reading for S seconds and
 * add what that cost to the JSON line: "idle_s", "idle_get_records_calls",
 * "idle_cpu_s" (user + sys), "idle_records" (what arrived meanwhile). That is
 * the price of keeping caught-up shards polled: per GetRecords call, and per
 * shard per second.
 * With READER_BENCH_PROGRESS set in the environment it also prints, about
 * once a second on stderr, the records read, the shards caught up and the
 * reader's statistics (for runs that take long, such as 1,000 shards).
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

static double cpu_of(const struct rusage *ru)
{
    return (double)ru->ru_utime.tv_sec + ru->ru_utime.tv_usec / 1e6 + (double)ru->ru_stime.tv_sec +
           ru->ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: reader_bench ENDPOINT STREAM [--idle SECONDS] [-X property=value]...\n");
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
    double idle_s = 0;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--idle") == 0) {
            char *end = NULL;
            idle_s = strtod(argv[i + 1], &end);
            if (!end || *end || idle_s < 0) {
                fprintf(stderr, "--idle needs a number of seconds, got %s\n", argv[i + 1]);
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
    double t0 = now_s();
    kn_error_t *cerr = kn_error_new();
    kn_reader_t *r = kn_reader_new(conf, argv[2], NULL, cerr);
    kn_conf_destroy(conf);
    if (!r) {
        fprintf(stderr, "kn_reader_new: %s\n", kn_error_message(cerr));
        return 2;
    }
    kn_error_destroy(cerr);
    long records = 0, errors = 0, caught_up = 0;
    uint64_t bytes = 0, sum = 0;
    double last_progress = t0;
    bool progress = getenv("READER_BENCH_PROGRESS") != NULL;
    for (;;) {
        const kn_reader_msg_t *m = kn_reader_poll(r, 1000);
        if (progress && now_s() - last_progress >= 1.0) {
            last_progress = now_s();
            fprintf(stderr, "%.1f s: %ld records, %ld shards caught up;", last_progress - t0, records,
                    caught_up);
            for (int k = 0; k < KN_READER_STAT__COUNT; k++)
                fprintf(stderr, " %s %lld", kn_reader_stat_name((kn_reader_stat_t)k),
                        (long long)kn_reader_stat(r, (kn_reader_stat_t)k));
            fprintf(stderr, "\n");
        }
        if (!m)
            continue;
        kn_reader_msg_type_t t = kn_reader_msg_type(m);
        if (t == KN_READER_SHARD_CAUGHT_UP)
            caught_up++;
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
    long long calls = (long long)kn_reader_stat(r, KN_READER_STAT_GETRECORDS);
    struct rusage ru, ru_end;
    getrusage(RUSAGE_SELF, &ru_end);
    double cpu_at_end = cpu_of(&ru_end);
    long idle_records = 0;
    if (idle_s > 0) {
        double until = now_s() + idle_s;
        while (now_s() < until) {
            const kn_reader_msg_t *m = kn_reader_poll(r, 100);
            if (m && kn_reader_msg_type(m) == KN_READER_RECORD)
                idle_records++;
        }
    }
    long long idle_calls = (long long)kn_reader_stat(r, KN_READER_STAT_GETRECORDS) - calls;
    getrusage(RUSAGE_SELF, &ru);
    double idle_cpu = cpu_of(&ru) - cpu_at_end;
    kn_reader_destroy(r);
    getrusage(RUSAGE_SELF, &ru);
    if (idle_s > 0)
        printf("{\"idle_s\":%.3f,\"idle_get_records_calls\":%lld,\"idle_cpu_s\":%.3f,"
               "\"idle_records\":%ld,", idle_s, idle_calls, idle_cpu, idle_records);
    else
        printf("{");
    printf("\"impl\":\"reader\",\"records\":%ld,\"bytes\":%llu,\"checksum\":%llu,\"wall_s\":%.3f,"
           "\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f,\"maxrss_kib\":%ld,\"errors\":%ld,\"get_records_calls\":%lld}\n",
           records, (unsigned long long)bytes, (unsigned long long)sum, wall,
           (double)ru_end.ru_utime.tv_sec + ru_end.ru_utime.tv_usec / 1e6,
           (double)ru_end.ru_stime.tv_sec + ru_end.ru_stime.tv_usec / 1e6, ru.ru_maxrss, errors, calls);
    return errors ? 1 : 0;
}
