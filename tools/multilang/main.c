/*
 * kinesis-multilang main: the options, the KCL MultiLang .properties file
 * (its keys unchanged: the library knows the KCL's names; the daemon's own,
 * executableName, streamName, timeoutInSeconds, ..., are read here; what
 * neither knows nor uses is named in a warning), the consumer, and the
 * signals: SIGTERM or SIGINT sends shutdownRequested to every child (after
 * its current action), checkpoints and releases the leases, then exits 0.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "multilang.h"

ml_daemon_t ml_daemon;
static volatile sig_atomic_t stop;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char usage_text[] =
    "Usage: kinesis-multilang --properties-file FILE [options]\n"
    "Runs KCL MultiLang record processors (aws-kcl for Node, amazon_kclpy for Python, the\n"
    "Ruby gem) on libkinesis's consumer, without a JVM: one child process per leased shard,\n"
    "started from executableName, speaking the KCL's JSON protocol on its stdin and stdout.\n"
    "\n"
    "Options:\n"
    "  -p, --properties-file FILE   the KCL MultiLang .properties file (also as the only argument)\n"
    "  -X property=value            set a property after the file (libkinesis or KCL names)\n"
    "  -v                           more diagnostics (lease moves, children's exits)\n"
    "  -q                           only errors\n"
    "  -V, --version                print the version\n"
    "  -h, --help                   this help\n"
    "\n"
    "Properties read from the file (the KCL's names): executableName, streamName or\n"
    "streamArn, applicationName, regionName, initialPositionInStream,\n"
    "initialPositionInStreamExtended (epoch seconds, for AT_TIMESTAMP), workerId,\n"
    "failoverTimeMillis, maxRecords, idleTimeBetweenReadsInMillis, maxLeasesForWorker,\n"
    "maxLeasesToStealAtOneTime, shardSyncIntervalMillis, cleanupLeasesUponShardCompletion,\n"
    "callProcessRecordsEvenForEmptyRecordList, timeoutInSeconds (a child that takes longer\n"
    "with one action is stopped; default: no limit, as the KCL), shutdownGraceMillis,\n"
    "kinesisEndpoint, dynamoDBEndpoint, AWSCredentialsProvider (the standard chain is used);\n"
    "any libkinesis property (kncat -X list) works too. Others are named in a warning.\n"
    "The endpoint and credential environment variables (AWS_ENDPOINT_URL_KINESIS,\n"
    "AWS_ENDPOINT_URL_DYNAMODB, AWS_REGION, AWS_ACCESS_KEY_ID, ...) work as everywhere.\n"
    "\n"
    "Unlike the Java daemon, a child that crashes, hangs past timeoutInSeconds or breaks the\n"
    "protocol fails only its shard (the child is restarted from the last checkpoint after a\n"
    "backoff; after consumer.processor.max.retries failures, 3 by default here, the shard is\n"
    "let go for another worker); each child's stderr goes to ours, prefixed with its shard.\n"
    "\n"
    "Exit status: 0 after a clean shutdown (SIGTERM, SIGINT); 1 if the consumer could not\n"
    "start or shut down cleanly; 2 for a usage or properties error.\n";

int64_t ml_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ml_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&log_lock);
    fputs("% ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    pthread_mutex_unlock(&log_lock);
    va_end(ap);
}

static void on_log(void *opaque, kn_log_level_t level, const char *ctx, const char *message)
{
    (void)opaque;
    (void)ctx;
    const char *lv = level <= KN_LOG_ERROR ? "ERROR " : level <= KN_LOG_WARN ? "WARN " : "";
    ml_log("%s%s", lv, message);
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* The daemon's own names among the KCL's pass-through ones; anything else is warned about. */
static const char *const understood[] = {
    "executableName", "streamName", "streamArn", "processingLanguage", "AWSCredentialsProvider",
    "AwsCredentialsProvider", "AWSCredentialsProviderDynamoDB", "AwsCredentialsProviderDynamoDB",
    "initialPositionInStreamExtended", "timeoutInSeconds", "shutdownGraceMillis",
    "parentShardPollIntervalMillis", NULL};

static int on_line(void *opaque, const char *name, kn_err_t err, const char *message)
{
    (void)opaque;
    if (err == KN_ERR_NOT_SUPPORTED) {
        for (int i = 0; understood[i]; i++)
            if (!strcmp(understood[i], name))
                return 0;
        ml_log("WARN %s: not supported by kinesis-multilang, ignored", message);
        return 0;
    }
    ml_log("WARN %s: ignored", message);
    return 0;
}

/* A pass-through value from the file ("" when unset), into buf. */
static const char *get(kn_conf_t *conf, const char *name, char *buf, size_t size)
{
    size_t n = size;
    if (kn_conf_get(conf, name, buf, &n) != KN_ERR_OK)
        buf[0] = '\0';
    return buf;
}

static int set(kn_conf_t *conf, const char *name, const char *value)
{
    char err[512];
    if (kn_conf_set(conf, name, value, err, sizeof(err)) != KN_ERR_OK) {
        ml_log("ERROR %s", err);
        return -1;
    }
    return 0;
}

/* executableName split on white space, as the Java daemon splits it. */
static char **split_words(const char *s)
{
    size_t cap = 8, n = 0;
    char **v = calloc(cap, sizeof(*v));
    char *copy = strdup(s);
    if (!v || !copy) {
        free(v);
        free(copy);
        return NULL;
    }
    char *save = NULL;
    for (char *t = strtok_r(copy, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        if (n + 2 > cap) {
            cap *= 2;
            char **w = realloc(v, cap * sizeof(*v));
            if (!w)
                break;
            v = w;
        }
        v[n++] = strdup(t);
    }
    v[n] = NULL;
    free(copy);
    return v;
}

static bool is_positive_int(const char *s, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || !end || *end || end == s || v < 0)
        return false;
    *out = v;
    return true;
}

static void free_words(char **v)
{
    for (int i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

int main(int argc, char **argv)
{
    static const struct option longs[] = {{"properties-file", required_argument, NULL, 'p'},
                                          {"help", no_argument, NULL, 'h'},
                                          {"version", no_argument, NULL, 'V'},
                                          {NULL, 0, NULL, 0}};
    const char *props = NULL;
    char **overrides = calloc((size_t)argc + 1, sizeof(char *));
    kn_conf_t *conf = NULL;
    kn_consumer_t *cons = NULL;
    kn_error_t *e = NULL;
    int n_over = 0, c, rc = 2;
    char err[1024], buf[4096], stream[2048];
    if (!overrides)
        return 2;
    while ((c = getopt_long(argc, argv, "p:X:vqVh", longs, NULL)) != -1) {
        switch (c) {
        case 'p': props = optarg; break;
        case 'X': overrides[n_over++] = optarg; break;
        case 'v': ml_daemon.verbosity++; break;
        case 'q': ml_daemon.verbosity = -1; break;
        case 'V':
            printf("kinesis-multilang (libkinesis %s)\n", kn_version_str());
            rc = 0;
            goto out;
        case 'h':
            fputs(usage_text, stdout);
            rc = 0;
            goto out;
        default: fputs("see kinesis-multilang --help\n", stderr); goto out;
        }
    }
    if (!props && optind == argc - 1)
        props = argv[optind++];
    if (!props || optind != argc) {
        fputs("kinesis-multilang: give the KCL .properties file: --properties-file FILE "
              "(see --help)\n", stderr);
        goto out;
    }
    conf = kn_conf_new();
    e = kn_error_new();
    if (!conf || !e)
        goto out;
    /* The daemon's defaults, before the file: a broken child gives its shard up after 3 tries. */
    if (set(conf, "consumer.processor.max.retries", "3") != 0)
        goto out;
    if (kn_conf_load_properties_cb(conf, props, on_line, NULL, err, sizeof(err)) != KN_ERR_OK) {
        ml_log("ERROR %s", err);
        goto out;
    }
    for (int i = 0; i < n_over; i++) {
        char *eq = strchr(overrides[i], '=');
        if (!eq) {
            ml_log("ERROR -X %s: use property=value", overrides[i]);
            goto out;
        }
        *eq = '\0';
        if (set(conf, overrides[i], eq + 1) != 0)
            goto out;
    }
    const char *level = ml_daemon.verbosity < 0 ? "error" : ml_daemon.verbosity == 0 ? "warn" : "info";
    if (set(conf, "log.level", level) != 0)
        goto out;
    kn_conf_set_log_cb(conf, on_log, NULL);

    if (!*get(conf, "executableName", buf, sizeof(buf))) {
        ml_log("ERROR %s: executableName is required (the record processor to run)", props);
        goto out;
    }
    ml_daemon.argv = split_words(buf);
    if (!ml_daemon.argv || !ml_daemon.argv[0]) {
        ml_log("ERROR %s: executableName is empty", props);
        goto out;
    }
    get(conf, "streamArn", stream, sizeof(stream));
    if (!*stream)
        get(conf, "streamName", stream, sizeof(stream));
    if (!*stream) {
        ml_log("ERROR %s: streamName (or streamArn) is required", props);
        goto out;
    }
    int64_t v = 0;
    if (*get(conf, "timeoutInSeconds", buf, sizeof(buf))) {
        if (!is_positive_int(buf, &v)) {
            ml_log("ERROR %s: timeoutInSeconds \"%s\" is not a number of seconds", props, buf);
            goto out;
        }
        ml_daemon.timeout_ms = v * 1000;
    }
    if (*get(conf, "shutdownGraceMillis", buf, sizeof(buf))) {
        if (!is_positive_int(buf, &v)) {
            ml_log("ERROR %s: shutdownGraceMillis \"%s\" is not a number", props, buf);
            goto out;
        }
        ml_daemon.shutdown_grace_ms = v;
    }
    if (*get(conf, "initialPositionInStreamExtended", buf, sizeof(buf))) {
        char ms[32];
        if (!is_positive_int(buf, &v)) {
            ml_log("ERROR %s: initialPositionInStreamExtended \"%s\" is not epoch seconds", props, buf);
            goto out;
        }
        snprintf(ms, sizeof(ms), "%lld", (long long)v * 1000);
        if (set(conf, "consumer.initial.position", "AT_TIMESTAMP") ||
            set(conf, "consumer.initial.timestamp.ms", ms))
            goto out;
    }
    const char *creds = get(conf, "AWSCredentialsProvider", buf, sizeof(buf));
    if (*creds && !strstr(creds, "Default") && !strstr(creds, "default"))
        ml_log("WARN %s: AWSCredentialsProvider %s: the standard credential chain is used "
               "(environment, profile, web identity, container, instance metadata)",
               props, creds);

    kn_processor_t proc = ml_processor();
    cons = kn_consumer_new(conf, stream, &proc, NULL, e);
    if (!cons) {
        ml_log("ERROR %s", kn_error_message(e));
        goto out;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a child that exits: EPIPE on its stdin, handled */
    rc = 1;
    if (kn_consumer_start(cons, e) != KN_ERR_OK) {
        ml_log("ERROR stream %s: %s (%s)", stream, kn_error_message(e), kn_err2name(kn_error_code(e)));
        goto out;
    }
    if (ml_daemon.verbosity >= 0)
        ml_log("worker %s running %s for stream %s", kn_consumer_worker_id(cons), ml_daemon.argv[0], stream);
    while (!stop)
        usleep(100 * 1000);
    int64_t grace = ml_daemon.shutdown_grace_ms > 0 ? ml_daemon.shutdown_grace_ms + 5000 : 30000;
    kn_err_t src = kn_consumer_shutdown(cons, (int)grace);
    if (src != KN_ERR_OK)
        ml_log("WARN not every shard was checkpointed and released within %lld ms", (long long)grace);
    kn_err_t drc = kn_consumer_destroy(cons);
    cons = NULL;
    rc = src == KN_ERR_OK && drc == KN_ERR_OK ? 0 : 1;
    if (ml_daemon.verbosity >= 0)
        ml_log("stopped");
out:
    if (cons)
        kn_consumer_destroy(cons);
    kn_error_destroy(e);
    kn_conf_destroy(conf);
    free(overrides);
    free_words(ml_daemon.argv);
    ml_daemon.argv = NULL;
    return rc;
}
