/*
 * The consumer's record processor behind kinesis-multilang: each tenure of a
 * lease gets a child process running executableName, and each callback
 * becomes one action of the MultiLang protocol:
 *   initialize        -> the child started, "initialize" with the checkpoint
 *   process_records   -> "processRecords" (checkpoints allowed)
 *   lease_lost        -> "leaseLost" (checkpoints refused: ShutdownException)
 *   shard_ended       -> "shardEnded" (the child must checkpoint: SHARD_END)
 *   shutdown_requested-> "shutdownRequested" (checkpoints allowed)
 *   close             -> the child's stdin closed, the child waited for
 * A child that dies, hangs past timeoutInSeconds or breaks the protocol
 * fails that call only: it is stopped, the call returns an error, and the
 * consumer calls again after a backoff (the same batch), when a fresh child
 * is started and initialized from the last checkpoint first; after
 * consumer.processor.max.retries failures in a row the shard is let go for
 * another worker. Other shards and the daemon go on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "multilang.h"

/* How long a child may take to exit once its stdin is closed. */
#define ML_EXIT_GRACE_MS 5000

extern ml_daemon_t ml_daemon;

typedef struct ml_shard_s {
    char shard[64];
    ml_child_t child;
    bool started;       /* a child runs and has answered initialize */
    char ck[160];       /* the checkpoint a fresh child starts from */
    uint64_t ck_sub;
    kn_checkpointer_t *cp; /* during an action that may checkpoint */
    const kn_batch_t *batch;
} ml_shard_t;

/* How a stopped child ended, for the log. */
static void describe_exit(int status, char *out, size_t size)
{
    if (WIFEXITED(status))
        snprintf(out, size, "it exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, size, "it ended on signal %d", WTERMSIG(status));
    else
        snprintf(out, size, "it ended");
}

static void stop_child(ml_shard_t *s, const char *what, const char *err)
{
    /* A short grace: a child that broke off is usually exiting already. */
    int status = ml_child_end(&s->child, 500);
    char how[64];
    describe_exit(status, how, sizeof(how));
    ml_log("%s: %s: %s; %s; the shard is retried with a new processor", s->shard, what, err, how);
    s->started = false;
}

/* A fresh child for the shard, initialized; false (and the child stopped) with why logged. */
static bool start_child(ml_shard_t *s)
{
    char err[512];
    if (ml_child_start(&s->child, ml_daemon.argv, s->shard, err, sizeof(err)) != 0) {
        ml_log("%s: %s", s->shard, err);
        return false;
    }
    if (ml_conversation(&s->child, "initialize", ml_msg_initialize(s->shard, s->ck, s->ck_sub), NULL,
                        NULL, NULL, ml_daemon.timeout_ms, err, sizeof(err)) != 0) {
        stop_child(s, "initialize", err);
        return false;
    }
    s->started = true;
    return true;
}

/* The sub-sequence a checkpoint without one means: the whole Kinesis record, if it was delivered. */
static uint64_t whole_record(const kn_batch_t *b, const char *seq)
{
    for (size_t i = b ? kn_batch_count(b) : 0; i > 0; i--)
        if (!strcmp(kn_batch_sequence_number(b, i - 1), seq))
            return kn_batch_sub_sequence(b, i - 1);
    return 0;
}

static const char *on_checkpoint(void *opaque, const char *seq, bool has_sub, uint64_t sub)
{
    ml_shard_t *s = opaque;
    kn_error_t *e = kn_error_new();
    kn_err_t rc;
    if (!seq) {
        rc = kn_checkpoint(s->cp, e);
    } else {
        /*
         * Without a sub-sequence number (the Node package never sends one) a
         * sequence number stands for its whole Kinesis record: every KPL
         * sub-record of it delivered so far, not only the first.
         */
        uint64_t at = has_sub ? sub : whole_record(s->batch, seq);
        rc = kn_checkpoint_at(s->cp, seq, at, e);
        if (rc == KN_ERR_OK) {
            snprintf(s->ck, sizeof(s->ck), "%s", seq);
            s->ck_sub = at;
        }
    }
    if (rc == KN_ERR_OK && !seq && s->batch && kn_batch_count(s->batch) > 0) {
        size_t n = kn_batch_count(s->batch);
        snprintf(s->ck, sizeof(s->ck), "%s", kn_batch_sequence_number(s->batch, n - 1));
        s->ck_sub = kn_batch_sub_sequence(s->batch, n - 1);
    }
    if (rc != KN_ERR_OK && rc != KN_ERR_LEASE_LOST)
        ml_log("%s: checkpoint: %s", s->shard, kn_error_message(e));
    kn_error_destroy(e);
    return ml_exception_for(rc);
}

static kn_err_t b_init(void *app, const char *shard, const char *ck, uint64_t sub, void **state)
{
    (void)app;
    ml_shard_t *s = calloc(1, sizeof(*s));
    if (!s)
        return KN_ERR_NOMEM;
    snprintf(s->shard, sizeof(s->shard), "%s", shard);
    snprintf(s->ck, sizeof(s->ck), "%s", ck);
    s->ck_sub = sub;
    if (!start_child(s)) {
        free(s);
        return KN_ERR_IO;
    }
    *state = s;
    return KN_ERR_OK;
}

static kn_err_t b_process(void *app, void *state, const kn_batch_t *b, kn_checkpointer_t *cp)
{
    (void)app;
    ml_shard_t *s = state;
    if (!s->started && !start_child(s))
        return KN_ERR_IO;
    char err[512];
    s->cp = cp;
    s->batch = b;
    int rc = ml_conversation(&s->child, "processRecords", ml_msg_process_records(b), on_checkpoint, s,
                             NULL, ml_daemon.timeout_ms, err, sizeof(err));
    s->cp = NULL;
    s->batch = NULL;
    if (rc != 0) {
        stop_child(s, "processRecords", err);
        return KN_ERR_IO;
    }
    return KN_ERR_OK;
}

static void b_lost(void *app, void *state)
{
    (void)app;
    ml_shard_t *s = state;
    if (!s->started)
        return;
    char err[512];
    if (ml_conversation(&s->child, "leaseLost", ml_msg_action("leaseLost"), NULL, NULL, "ShutdownException",
                        ml_daemon.timeout_ms, err, sizeof(err)) != 0)
        stop_child(s, "leaseLost", err);
}

static kn_err_t end_action(ml_shard_t *s, const char *action, kn_checkpointer_t *cp, int64_t timeout_ms)
{
    if (!s->started && !start_child(s))
        return KN_ERR_IO;
    char err[512];
    s->cp = cp;
    int rc = ml_conversation(&s->child, action, ml_msg_action(action), on_checkpoint, s, NULL, timeout_ms,
                             err, sizeof(err));
    s->cp = NULL;
    if (rc != 0) {
        stop_child(s, action, err);
        return KN_ERR_IO;
    }
    return KN_ERR_OK;
}

static kn_err_t b_ended(void *app, void *state, kn_checkpointer_t *cp)
{
    (void)app;
    return end_action(state, "shardEnded", cp, ml_daemon.timeout_ms);
}

static kn_err_t b_shutdown(void *app, void *state, kn_checkpointer_t *cp)
{
    (void)app;
    ml_shard_t *s = state;
    if (!s->started)
        return KN_ERR_OK; /* nothing to tell: the consumer checkpoints what was processed */
    return end_action(s, "shutdownRequested", cp,
                      ml_daemon.shutdown_grace_ms > 0 ? ml_daemon.shutdown_grace_ms : ml_daemon.timeout_ms);
}

static void b_close(void *app, void *state)
{
    (void)app;
    ml_shard_t *s = state;
    if (s->started || ml_child_running(&s->child)) {
        int status = ml_child_end(&s->child, ML_EXIT_GRACE_MS);
        if (ml_daemon.verbosity > 0)
            ml_log("%s: the processor exited (status %d)", s->shard, status);
    }
    free(s);
}

kn_processor_t ml_processor(void)
{
    kn_processor_t p = KN_PROCESSOR_INIT;
    p.initialize = b_init;
    p.process_records = b_process;
    p.lease_lost = b_lost;
    p.shard_ended = b_ended;
    p.shutdown_requested = b_shutdown;
    p.close = b_close;
    return p;
}
