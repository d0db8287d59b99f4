/*
 * Metrics without a server: dimension sets by granularity and depth, levels,
 * batches that add up exactly as single samples do, windows that reset,
 * idle series dropped and made again, Operation/WorkerIdentifier dimensions,
 * and the PutMetricData form.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cloudwatch.h"
#include "metrics.h"
#include "test_new.h"

enum { M_SHARDY, M_STREAMY, M_DETAILED, M_KCL, M__COUNT };
static const kn__mdef_t defs[M__COUNT] = {
    [M_SHARDY] = {"Shardy", KN__MU_COUNT, KN__ML_SUMMARY, KN__MG_SHARD, NULL, false},
    [M_STREAMY] = {"Streamy", KN__MU_MS, KN__ML_SUMMARY, KN__MG_STREAM, NULL, false},
    [M_DETAILED] = {"Detailed", KN__MU_BYTES, KN__ML_DETAILED, KN__MG_SHARD, NULL, false},
    [M_KCL] = {"Kcl", KN__MU_COUNT, KN__ML_SUMMARY, KN__MG_SHARD, "ProcessTask", true},
};

typedef struct seen_s {
    char line[64][200]; /* "name{dims} sum/min/max/count unit" of the last window */
    int n, windows;
} seen_t;

static void on_metrics(const char *ns, const kn_metric_t *m, size_t n, void *opaque)
{
    (void)ns;
    seen_t *s = opaque;
    s->windows++;
    s->n = 0;
    for (size_t i = 0; i < n && s->n < 64; i++) {
        char dims[120] = "";
        size_t len = 0;
        for (size_t k = 0; k < m[i].n_dims; k++)
            len += (size_t)snprintf(dims + len, sizeof(dims) - len, "%s%s=%s", k ? "," : "", m[i].dims[k].name,
                                    m[i].dims[k].value);
        snprintf(s->line[s->n++], sizeof(s->line[0]), "%s{%s} %g/%g/%g/%llu %s", m[i].name, dims, m[i].sum,
                 m[i].min, m[i].max, (unsigned long long)m[i].count, m[i].unit);
    }
}

static bool has(const seen_t *s, const char *line)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->line[i], line) == 0)
            return true;
    return false;
}

static kn_client_t *g_client;

static int setup(void **state)
{
    (void)state;
    kn_conf_t *conf = kn_conf_new();
    char err[256];
    kn_conf_set(conf, "aws.access.key.id", "AKIDUNIT", err, sizeof(err));
    kn_conf_set(conf, "aws.secret.access.key", "unit-secret", err, sizeof(err));
    kn_conf_set(conf, "aws.region", "us-east-1", err, sizeof(err));
    g_client = kn_t_client_new(conf, err, sizeof(err));
    kn_conf_destroy(conf);
    return g_client ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kn_client_destroy(g_client);
    return 0;
}

static kn__metrics_t *start(seen_t *s, const char *level, const char *gran)
{
    memset(s, 0, sizeof(*s));
    kn_conf_t *conf = kn_conf_new();
    char err[256];
    assert_int_equal(kn_conf_set(conf, "metrics.level", level, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "metrics.granularity", gran, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "metrics.interval.ms", "3600000", err, sizeof(err)), KN_ERR_OK);
    kn_conf_set_metrics_cb(conf, on_metrics, s);
    kn__metrics_opts_t o = {defs, M__COUNT, "unit", "UnitNs", "worker-1", NULL, NULL};
    kn_error_t e;
    kn__metrics_t *m = NULL;
    assert_int_equal(kn__metrics_start(g_client, conf, &o, &m, &e), KN_ERR_OK);
    kn_conf_destroy(conf);
    assert_non_null(m);
    return m;
}

static void test_dimensions_follow_granularity_and_depth(void **state)
{
    (void)state;
    seen_t s;
    kn__metrics_t *m = start(&s, "detailed", "shard");
    kn__metrics_add(m, M_SHARDY, "st", "sh1", NULL, 2, 3);
    kn__metrics_add(m, M_STREAMY, "st", "sh1", NULL, 7, 1);
    kn__metrics_add(m, M_SHARDY, "st", "sh2", "Boom", 1, 1);
    kn__metrics_flush(m);
    assert_int_equal(s.windows, 1);
    assert_true(has(&s, "Shardy{} 6/2/2/3 Count"));
    assert_true(has(&s, "Shardy{StreamName=st} 6/2/2/3 Count"));
    assert_true(has(&s, "Shardy{StreamName=st,ShardId=sh1} 6/2/2/3 Count"));
    assert_true(has(&s, "Streamy{} 7/7/7/1 Milliseconds"));
    assert_true(has(&s, "Streamy{StreamName=st} 7/7/7/1 Milliseconds"));
    assert_true(has(&s, "Shardy{ErrorCode=Boom} 1/1/1/1 Count"));
    assert_true(has(&s, "Shardy{ErrorCode=Boom,StreamName=st,ShardId=sh2} 1/1/1/1 Count"));
    assert_int_equal(s.n, 8); /* Streamy has no shard figure: its depth is the stream */
    /* The window starts again empty. */
    kn__metrics_flush(m);
    assert_int_equal(s.windows, 1); /* nothing to say: no callback */
    kn__metrics_destroy(m);

    m = start(&s, "detailed", "stream");
    kn__metrics_add(m, M_SHARDY, "st", "sh1", NULL, 1, 1);
    kn__metrics_add(m, M_KCL, NULL, "sh1", NULL, 5, 1);
    kn__metrics_flush(m);
    assert_true(has(&s, "Shardy{} 1/1/1/1 Count"));
    assert_true(has(&s, "Shardy{StreamName=st} 1/1/1/1 Count"));
    assert_true(has(&s, "Kcl{Operation=ProcessTask,WorkerIdentifier=worker-1} 5/5/5/1 Count"));
    assert_int_equal(s.n, 3);
    kn__metrics_destroy(m);

    m = start(&s, "detailed", "shard");
    kn__metrics_add(m, M_KCL, NULL, "sh1", NULL, 5, 1);
    kn__metrics_flush(m);
    assert_true(has(&s, "Kcl{Operation=ProcessTask,ShardId=sh1,WorkerIdentifier=worker-1} 5/5/5/1 Count"));
    assert_int_equal(s.n, 2);
    kn__metrics_destroy(m);
}

static void test_levels(void **state)
{
    (void)state;
    seen_t s;
    kn__metrics_t *m = start(&s, "SUMMARY", "global");
    assert_false(kn__metrics_wants(m, M_DETAILED));
    assert_true(kn__metrics_wants(m, M_SHARDY));
    kn__metrics_add(m, M_DETAILED, "st", "sh", NULL, 1, 1);
    kn__metrics_add(m, M_SHARDY, "st", "sh", NULL, 1, 1);
    kn__metrics_flush(m);
    assert_int_equal(s.n, 1);
    assert_true(has(&s, "Shardy{} 1/1/1/1 Count"));
    kn__metrics_destroy(m);
    /* none, or no callback and no CloudWatch: nothing is started at all */
    kn_conf_t *conf = kn_conf_new();
    kn__metrics_opts_t o = {defs, M__COUNT, "unit", "UnitNs", NULL, NULL, NULL};
    kn_error_t e;
    kn__metrics_t *none = (kn__metrics_t *)&s; /* anything but NULL: start must clear it */
    assert_int_equal(kn__metrics_start(g_client, conf, &o, &none, &e), KN_ERR_OK);
    assert_null(none);
    char err[128];
    kn_conf_set_metrics_cb(conf, on_metrics, &s);
    kn_conf_set(conf, "metrics.level", "none", err, sizeof(err));
    none = (kn__metrics_t *)&s;
    assert_int_equal(kn__metrics_start(g_client, conf, &o, &none, &e), KN_ERR_OK);
    assert_null(none);
    kn_conf_destroy(conf);
    assert_false(kn__metrics_wants(NULL, M_SHARDY));
    kn__metrics_add(NULL, M_SHARDY, "st", "sh", NULL, 1, 1); /* a no-op */
}

/* A batch adds up exactly as the same samples recorded one by one; a full batch commits itself. */
static void test_batches_are_exact(void **state)
{
    (void)state;
    seen_t a, b;
    kn__metrics_t *ma = start(&a, "detailed", "shard");
    kn__metrics_t *mb = start(&b, "detailed", "shard");
    kn__mbatch_t batch;
    kn__mbatch_init(&batch, mb);
    char shard[KN__MBATCH_MAX + 10][16];
    for (int i = 0; i < KN__MBATCH_MAX + 10; i++) {
        snprintf(shard[i], sizeof(shard[i]), "sh%d", i % (KN__MBATCH_MAX + 10));
        for (int k = 0; k < 3; k++) {
            double v = (double)(i * 3 + k);
            kn__metrics_add(ma, M_SHARDY, "st", shard[i], NULL, v, 1);
            kn__mbatch_add(&batch, M_SHARDY, "st", shard[i], NULL, v, 1);
        }
    }
    kn__mbatch_commit(&batch);
    kn__metrics_flush(ma);
    kn__metrics_flush(mb);
    assert_int_equal(a.n, b.n > 64 ? 64 : b.n);
    for (int i = 0; i < a.n; i++)
        if (!has(&b, a.line[i]))
            fail_msg("%s recorded one by one, not so through a batch", a.line[i]);
    assert_true(has(&a, "Shardy{} 15051/0/173/174 Count"));
    kn__metrics_destroy(ma);
    kn__metrics_destroy(mb);
}

/* A series without samples for three windows goes (memory follows the shards that exist), and comes back. */
static void test_idle_series_are_dropped(void **state)
{
    (void)state;
    seen_t s;
    kn__metrics_t *m = start(&s, "detailed", "shard");
    kn__metrics_add(m, M_SHARDY, "st", "gone", NULL, 1, 1);
    kn__metrics_add(m, M_SHARDY, "st", "stays", NULL, 1, 1);
    kn__metrics_flush(m);
    kn__metrics_counters_t c;
    kn__metrics_counters(m, &c);
    assert_int_equal(c.series, 4); /* global, stream, two shards */
    for (int w = 0; w < 3; w++) {
        kn__metrics_add(m, M_SHARDY, "st", "stays", NULL, 1, 1);
        kn__metrics_flush(m);
    }
    kn__metrics_counters(m, &c);
    assert_int_equal(c.series, 3);
    assert_int_equal(c.windows, 4);
    kn__metrics_add(m, M_SHARDY, "st", "gone", NULL, 4, 1);
    kn__metrics_flush(m);
    assert_true(has(&s, "Shardy{StreamName=st,ShardId=gone} 4/4/4/1 Count"));
    assert_true(has(&s, "Shardy{} 4/4/4/1 Count"));
    kn__metrics_counters(m, &c);
    assert_int_equal(c.series, 4);
    kn__metrics_destroy(m);
}

/*
 * Without a sampler the metrics thread sleeps between windows: it once woke
 * at every turn of its loop after the first second (a core's worth of CPU in
 * every reader with metrics on). Over 2.5 s it uses far less than 0.3 s.
 */
static void test_no_sampler_no_spinning(void **state)
{
    (void)state;
    seen_t s;
    kn__metrics_t *m = start(&s, "detailed", "shard");
    struct timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    usleep(2500 * 1000);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    double cpu = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) / 1e9;
    print_message("metrics without a sampler: %.3f s of CPU in 2.5 s\n", cpu);
    assert_true(cpu < 0.3);
    kn__metrics_add(m, M_SHARDY, "st", "one", NULL, 2, 1);
    kn__metrics_flush(m); /* still answers a flush */
    assert_true(has(&s, "Shardy{StreamName=st,ShardId=one} 2/2/2/1 Count"));
    kn__metrics_destroy(m);
}

/* The PutMetricData form of one datum, byte for byte (names with spaces and odd characters encoded). */
static void test_cloudwatch_form(void **state)
{
    (void)state;
    kn_metric_dim_t dims[] = {{"StreamName", "a b/c"}, {"ShardId", "shardId-000000000001"}};
    kn_metric_t m = {sizeof(kn_metric_t), "Request Time", "Milliseconds", dims, 2, 12.5, 0.5, 9, 3,
                     1796300000000, 1796300060123};
    kn_buf_t b = KN_BUF_INIT;
    assert_int_equal(kn__cw_form(&b, "My/Ns", &m, 1), 0);
    assert_int_equal(kn__buf_putc(&b, '\0'), 0);
    assert_string_equal(b.data,
                        "Action=PutMetricData&Version=2010-08-01&Namespace=My%2FNs"
                        "&MetricData.member.1.MetricName=Request%20Time"
                        "&MetricData.member.1.Unit=Milliseconds"
                        "&MetricData.member.1.Timestamp=2026-12-03T12%3A14%3A20.123Z"
                        "&MetricData.member.1.StatisticValues.Sum=12.5"
                        "&MetricData.member.1.StatisticValues.Minimum=0.5"
                        "&MetricData.member.1.StatisticValues.Maximum=9"
                        "&MetricData.member.1.StatisticValues.SampleCount=3"
                        "&MetricData.member.1.Dimensions.member.1.Name=StreamName"
                        "&MetricData.member.1.Dimensions.member.1.Value=a%20b%2Fc"
                        "&MetricData.member.1.Dimensions.member.2.Name=ShardId"
                        "&MetricData.member.1.Dimensions.member.2.Value=shardId-000000000001");
    kn__buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dimensions_follow_granularity_and_depth),
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_batches_are_exact),
        cmocka_unit_test(test_idle_series_are_dropped),
        cmocka_unit_test(test_cloudwatch_form),
        cmocka_unit_test(test_no_sampler_no_spinning),
    };
    return cmocka_run_group_tests_name("metrics", tests, setup, teardown);
}
