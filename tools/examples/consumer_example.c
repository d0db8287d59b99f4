/*
 * consumer_example: how to use the libkinesis consumer (the KCL of C). Copy
 * it and adapt.
 *
 *   consumer_example [-X property=value]... [-F file.properties] APP STREAM
 *
 * Runs one worker of the application (consumer group) APP on STREAM: the
 * worker shares the stream's shards with every other worker of APP, in this
 * process or elsewhere, through leases in the DynamoDB table APP (made if it
 * does not exist). Each record is printed as "shard seq/sub key: data", each
 * batch checkpointed once printed. Ctrl-C (SIGINT) or SIGTERM: a graceful
 * shutdown (every shard checkpointed and its lease released, so that the
 * other workers take over at once). Start a second one in another terminal
 * and watch them share the shards; kill -9 one and watch the other take its
 * shards within consumer.failover.ms (10 s by default).
 *
 * Endpoints, region and credentials come from the environment like any AWS
 * SDK (AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL_DYNAMODB, AWS_REGION, the
 * credential chain) or from properties, for example against kinesalite and
 * dynalite:
 *
 *   consumer_example -X kinesis.endpoint=http://127.0.0.1:4567 \
 *       -X dynamodb.endpoint=http://127.0.0.1:4568 -X aws.region=us-east-1 \
 *       -X aws.access.key.id=x -X aws.secret.access.key=y \
 *       -X consumer.initial.position=TRIM_HORIZON my-app my-stream
 *
 * A KCL .properties file works with -F (applicationName, failoverTimeMillis,
 * initialPositionInStream, maxLeasesForWorker, ... are understood).
 *
 * The pattern:
 *   1. a kn_processor_t from KN_PROCESSOR_INIT with the callbacks you need
 *      (process_records is required); state per shard comes from initialize;
 *   2. kn_consumer_new() with consumer.application.name set, then
 *      kn_consumer_start() (blocking: checks the stream, the lease table);
 *   3. process_records is called on the consumer's threads, one batch at a
 *      time per shard, in order; checkpoint with kn_checkpoint() when what
 *      you did with the batch is durable; return KN_ERR_OK, or an error to
 *      get the same batch again after a backoff;
 *   4. kn_consumer_shutdown() then kn_consumer_destroy() at the end.
 * Guarantees: at least once (records after the last checkpoint come again
 * after a crash), in order per shard, one worker per shard at a time.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kinesis/consumer.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* What initialize makes for one shard's tenure, handed to the other callbacks. */
typedef struct shard_state_s {
    char shard[64];
    long records;
} shard_state_t;

static kn_err_t on_initialize(void *app, const char *shard_id, const char *checkpoint,
                              uint64_t sub, void **state)
{
    (void)app;
    shard_state_t *s = calloc(1, sizeof(*s));
    if (!s)
        return KN_ERR_NOMEM; /* called again later */
    snprintf(s->shard, sizeof(s->shard), "%s", shard_id);
    fprintf(stderr, "%s: starting after %s/%llu\n", shard_id, checkpoint, (unsigned long long)sub);
    *state = s;
    return KN_ERR_OK;
}

static kn_err_t on_records(void *app, void *state, const kn_batch_t *batch, kn_checkpointer_t *cp)
{
    (void)app;
    shard_state_t *s = state;
    for (size_t i = 0; i < kn_batch_count(batch); i++) {
        size_t len = 0, klen = 0;
        const char *data = kn_batch_data(batch, i, &len);
        const char *key = kn_batch_partition_key(batch, i, &klen);
        printf("%s %s/%llu %s: %.*s\n", s->shard, kn_batch_sequence_number(batch, i),
               (unsigned long long)kn_batch_sub_sequence(batch, i), key, (int)len,
               data ? data : "");
    }
    s->records += (long)kn_batch_count(batch);
    if (fflush(stdout) != 0)
        return KN_ERR_IO; /* not durable: not checkpointed, the batch comes again */
    /* Done with the batch: checkpoint. A lost lease means another worker has the shard now. */
    kn_error_t *err = kn_error_new();
    kn_err_t rc = kn_checkpoint(cp, err);
    if (rc != KN_ERR_OK && rc != KN_ERR_STATE)
        fprintf(stderr, "%s: checkpoint: %s\n", s->shard, kn_error_message(err));
    kn_error_destroy(err);
    return KN_ERR_OK;
}

static void on_lease_lost(void *app, void *state)
{
    (void)app;
    fprintf(stderr, "%s: lease lost (another worker has it)\n", ((shard_state_t *)state)->shard);
}

static kn_err_t on_shard_ended(void *app, void *state, kn_checkpointer_t *cp)
{
    (void)app;
    (void)cp; /* SHARD_END is checkpointed for us once this returns (consumer.shard.end.checkpoint) */
    fprintf(stderr, "%s: shard closed and read to its end\n", ((shard_state_t *)state)->shard);
    return KN_ERR_OK;
}

static kn_err_t on_shutdown_requested(void *app, void *state, kn_checkpointer_t *cp)
{
    (void)app;
    (void)cp; /* the consumer checkpoints the last batch processed (consumer.checkpoint.on.shutdown) */
    fprintf(stderr, "%s: handing over\n", ((shard_state_t *)state)->shard);
    return KN_ERR_OK;
}

static void on_close(void *app, void *state)
{
    (void)app;
    shard_state_t *s = state;
    fprintf(stderr, "%s: %ld records in this tenure\n", s->shard, s->records);
    free(s);
}

static void usage(void)
{
    fprintf(stderr, "usage: consumer_example [-X property=value]... [-F file.properties] APP STREAM\n");
}

int main(int argc, char **argv)
{
    kn_conf_t *conf = kn_conf_new();
    char errstr[512];
    int opt;
    while ((opt = getopt(argc, argv, "X:F:h")) != -1) {
        if (opt == 'X') {
            char *eq = strchr(optarg, '=');
            if (!eq) {
                usage();
                return 2;
            }
            *eq = '\0';
            if (kn_conf_set(conf, optarg, eq + 1, errstr, sizeof(errstr)) != KN_ERR_OK) {
                fprintf(stderr, "%s\n", errstr);
                return 2;
            }
        } else if (opt == 'F') {
            if (kn_conf_load_properties(conf, optarg, errstr, sizeof(errstr)) != KN_ERR_OK) {
                fprintf(stderr, "%s\n", errstr);
                return 2;
            }
        } else {
            usage();
            return opt == 'h' ? 0 : 2;
        }
    }
    if (argc - optind != 2) {
        usage();
        return 2;
    }
    if (kn_conf_set(conf, "consumer.application.name", argv[optind], errstr, sizeof(errstr)) !=
        KN_ERR_OK) {
        fprintf(stderr, "%s\n", errstr);
        return 2;
    }

    kn_processor_t proc = KN_PROCESSOR_INIT;
    proc.initialize = on_initialize;
    proc.process_records = on_records;
    proc.lease_lost = on_lease_lost;
    proc.shard_ended = on_shard_ended;
    proc.shutdown_requested = on_shutdown_requested;
    proc.close = on_close;

    kn_error_t *err = kn_error_new();
    kn_consumer_t *c = kn_consumer_new(conf, argv[optind + 1], &proc, NULL, err);
    kn_conf_destroy(conf); /* copied */
    if (!c) {
        fprintf(stderr, "consumer: %s\n", kn_error_message(err));
        return 2;
    }
    if (kn_consumer_start(c, err) != KN_ERR_OK) {
        fprintf(stderr, "start: %s (%s)\n", kn_error_message(err), kn_err2name(kn_error_code(err)));
        kn_consumer_destroy(c);
        kn_error_destroy(err);
        return 1;
    }
    fprintf(stderr, "worker %s running; Ctrl-C to stop\n", kn_consumer_worker_id(c));
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    while (!stop)
        sleep(1);
    kn_err_t rc = kn_consumer_shutdown(c, 30000);
    fprintf(stderr, "shutdown: %s; %lld records, %lld checkpoints\n", kn_err2name(rc),
            (long long)kn_consumer_stat(c, KN_CONSUMER_STAT_RECORDS),
            (long long)kn_consumer_stat(c, KN_CONSUMER_STAT_CHECKPOINTS));
    kn_consumer_destroy(c);
    kn_error_destroy(err);
    return rc == KN_ERR_OK ? 0 : 1;
}
