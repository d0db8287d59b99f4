/*
 * kinesis-multilang: the KCL MultiLangDaemon on our consumer. Record
 * processors written for the KCL's language packages (aws-kcl for Node,
 * amazon_kclpy for Python, the Ruby gem) run unchanged: one child process per
 * leased shard, speaking the KCL's JSON line protocol on its stdin/stdout.
 * Its parts:
 *   main.c      options, the .properties file, the consumer, signals
 *   child.c     a child process: spawn, lines in and out with deadlines, its
 *               stderr to our log, ending it
 *   protocol.c  the messages and one action's conversation (the action, the
 *               child's checkpoint requests answered, its status)
 *   bridge.c    the consumer's record processor that drives a child per shard
 * It links libkinesis like any user (public headers only).
 */
#ifndef KN_MULTILANG_H
#define KN_MULTILANG_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>
#include <kinesis/consumer.h>

/* ------------------------------------------------------------ main.c */

typedef struct ml_daemon_s {
    char **argv;           /* executableName split on white space (NULL-terminated) */
    int64_t timeout_ms;    /* timeoutInSeconds: one action's limit; 0: none (the KCL's default) */
    int64_t shutdown_grace_ms; /* shutdownGraceMillis: shutdownRequested's limit; 0: timeout_ms */
    int verbosity;
} ml_daemon_t;

/* "% " + message on stderr (one write per line, any thread). */
void ml_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int64_t ml_now_ms(void);

/* ------------------------------------------------------------ child.c */

typedef struct ml_child_s {
    pid_t pid;
    int in_fd, out_fd, err_fd;
    char shard[64];
    pthread_t err_thread;
    bool err_thread_started;
    char *buf;             /* stdout bytes read and not yet returned as lines */
    size_t len, cap, start;
    bool eof;
} ml_child_t;

/* The longest line the child may write (a message): longer is a protocol error. */
#define ML_MAX_LINE (16u << 20)

/* Starts argv[0] with argv; its stderr goes to our log prefixed with shard. -1 with why in err. */
int ml_child_start(ml_child_t *ch, char *const argv[], const char *shard, char *err, size_t size);
/* Writes line and a newline. -1 (the child is gone) with why in err. */
int ml_child_send(ml_child_t *ch, const char *line, size_t len, char *err, size_t size);
/*
 * The next line from the child's stdout (NUL-terminated, without its
 * newline, valid until the next call): 1; 0 when deadline_ms (monotonic;
 * INT64_MAX: none) passed first; -1 at end of file, on a read error or a line
 * over ML_MAX_LINE, with why in err.
 */
int ml_child_read_line(ml_child_t *ch, int64_t deadline_ms, char **line, char *err, size_t size);
/*
 * Ends the child: closes its stdin (a KCL processor exits then), waits up to
 * grace_ms, then SIGTERM, then SIGKILL; reaps it and its stderr reader.
 * Returns its exit status as from waitpid. Safe on a child never started.
 */
int ml_child_end(ml_child_t *ch, int grace_ms);
bool ml_child_running(const ml_child_t *ch);

/* ------------------------------------------------------------ protocol.c */

/*
 * A checkpoint the child asked for: seq NULL for "at the last record
 * delivered"; has_sub whether it gave a subSequenceNumber. Returns the
 * KCL's exception name for the reply, or NULL on success.
 */
typedef const char *(ml_ck_fn_t)(void *opaque, const char *seq, bool has_sub, uint64_t sub);

/* The messages the daemon sends (json-c objects; the caller puts them). */
json_object *ml_msg_initialize(const char *shard, const char *seq, uint64_t sub);
json_object *ml_msg_process_records(const kn_batch_t *b);
json_object *ml_msg_action(const char *action); /* leaseLost, shardEnded, shutdownRequested */

/*
 * One action: sends msg (taken), then serves the child until its
 * {"action":"status","responseFor":<action>}: each checkpoint request goes to
 * ck (NULL: none allowed now, answered with refusal, the KCL's
 * exception name for it) and is answered; lines that are not messages are
 * ignored (as the Java daemon does), up to a bound. 0 on the status; -1 when
 * the child died, timed out (timeout_ms, 0: none) or broke the protocol, with
 * why in err.
 */
int ml_conversation(ml_child_t *ch, const char *action, json_object *msg, ml_ck_fn_t *ck,
                    void *opaque, const char *refusal, int64_t timeout_ms, char *err, size_t size);

/* The KCL exception name for an error of kn_checkpoint (NULL for KN_ERR_OK). */
const char *ml_exception_for(kn_err_t rc);

/* ------------------------------------------------------------ bridge.c */

/* The record processor that runs one child per shard tenure. */
kn_processor_t ml_processor(void);

#endif
