/*
 * kncat -C: every shard (or -p's) through the stream reader
 * (<kinesis/reader.h>), printed with -f or as -J envelopes. Output is flushed
 * whenever the reader has nothing more at hand (so at least after every
 * batch), or after every record with -u.
 */
#include <errno.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>

#include <kinesis/reader.h>

#include "kncat.h"

/* How long one poll waits, so signals and -e are noticed promptly. */
#define POLL_MS 200

/* Splits "a,b,c" into a malloc'd array of pointers into a malloc'd copy. */
static char **split_list(const char *s, size_t *n, char **copy)
{
    *copy = strdup(s);
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    char **v = calloc(cap, sizeof(*v));
    *n = 0;
    if (!*copy || !v) {
        free(*copy);
        free(v);
        *copy = NULL;
        return NULL;
    }
    char *save = NULL;
    for (char *t = strtok_r(*copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (*t)
            v[(*n)++] = t;
    return v;
}

/* Whether msg names the stream as the reader's messages do: stream "NAME". */
static bool names_stream(const char *msg, const char *stream)
{
    char quoted[600];
    snprintf(quoted, sizeof(quoted), "stream \"%s\"", stream);
    return strlen(stream) < 500 && strstr(msg, quoted) != NULL;
}

static bool stdout_broken(int *ec)
{
    if (!ferror(stdout))
        return false;
    if (errno != EPIPE) {
        kc_err("writing to stdout: %s", strerror(errno));
        *ec = KC_EXIT_FAIL;
    }
    return true;
}

int kc_consume(kc_opts_t *o)
{
    kc_format_t *fmt = NULL;
    kn_reader_t *r = NULL;
    kn_error_t *err = kn_error_new();
    char **shards = NULL, *shards_copy = NULL;
    size_t nshards = 0;
    int ec = KC_EXIT_OK;
    char errstr[512] = "";
    int64_t printed = 0;
    kc_progress_t progress;

    if (!err) {
        ec = KC_EXIT_FAIL;
        goto out;
    }
    if (!o->stream || !*o->stream) {
        kc_err("-C needs a stream (-t <stream>)");
        ec = KC_EXIT_USAGE;
        goto out;
    }
    if (o->json && o->format) {
        kc_err("-J and -f exclude each other");
        ec = KC_EXIT_USAGE;
        goto out;
    }
    /* kcat's habit: without -f, -K and -D shape the output (key<K>data<D>). */
    bool kcat_style = !o->json && !o->format && (o->delim_given || o->key_delim);
    if (!o->json && !kcat_style && !(fmt = kc_format_new(o->format ? o->format : "%s\\n", errstr,
                                          sizeof(errstr)))) {
        kc_err("%s", errstr);
        ec = KC_EXIT_USAGE;
        goto out;
    }
    if (o->shards) {
        shards = split_list(o->shards, &nshards, &shards_copy);
        if (!shards || nshards == 0) {
            kc_err("-p: no shard ids in \"%s\"", o->shards);
            ec = KC_EXIT_USAGE;
            goto out;
        }
    }
    kn_reader_opts_t ro = KN_READER_OPTS_INIT;
    ro.shard_ids = (const char *const *)shards;
    ro.shard_count = nshards;
    ro.raw = o->raw;
    ro.stop_at_ms = o->stop_ts_ms > 0 ? o->stop_ts_ms : 0;
    switch (o->start) {
    case KC_START_BEGINNING: ro.start.type = KN_POS_TRIM_HORIZON; break;
    case KC_START_END: ro.start.type = KN_POS_LATEST; break;
    case KC_START_TIMESTAMP:
        ro.start.type = KN_POS_AT_TIMESTAMP;
        ro.start.timestamp_ms = o->start_ts_ms;
        break;
    case KC_START_SEQUENCE:
        if (nshards != 1) {
            kc_err("-o <sequence number> needs exactly one shard (-p <shard>): a sequence number "
                   "belongs to one shard");
            ec = KC_EXIT_USAGE;
            goto out;
        }
        ro.start.type = KN_POS_AT_SEQUENCE_NUMBER;
        ro.start.sequence_number = o->start_seq;
        break;
    }
    kn_client_t *c = kc_client(o);
    if (!c) {
        ec = KC_EXIT_FAIL;
        goto out;
    }
    r = kn_reader_new_on(c, o->conf, o->stream, &ro, err);
    if (!r) {
        kn_err_t rc = kn_error_code(err);
        if (rc == KN_ERR_OK)
            rc = KN_ERR_INVALID_ARG;
        /* The stream is named once: the reader's messages name it themselves, as stream "NAME". */
        const char *msg = kn_error_message(err), *type = kn_error_aws_type(err);
        char what[600] = "";
        if (!names_stream(msg, o->stream))
            snprintf(what, sizeof(what), "stream %s: ", o->stream);
        if (*type)
            kc_err("%s%s (%s, %s)", what, msg, type, kn_err2name(rc));
        else
            kc_err("%s%s (%s)", what, msg, kn_err2name(rc));
        ec = kc_exit_code(rc);
        goto out;
    }

    static char outbuf[1 << 16];
    setvbuf(stdout, outbuf, _IOFBF, sizeof(outbuf));
    /* Only this thread writes stdout: no lock taken and released by every stdio call. */
    __fsetlocking(stdout, FSETLOCKING_BYCALLER);
    kc_progress_init(&progress, o);
    bool done = false;
    while (!done && !kc_stop) {
        const kn_reader_msg_t *m = kn_reader_poll(r, POLL_MS);
        while (m && !done) {
            const char *shard = kn_reader_msg_shard_id(m);
            switch (kn_reader_msg_type(m)) {
            case KN_READER_RECORD: {
                kc_rec_t rec;
                size_t dlen = 0, klen = 0;
                const void *data = kn_reader_msg_data(m, &dlen);
                rec.stream = kn_reader_msg_stream(m);
                rec.shard = shard;
                rec.seq = kn_reader_msg_sequence_number(m);
                rec.subseq = kn_reader_msg_sub_sequence(m);
                rec.ts_ms = kn_reader_msg_arrival_ms(m);
                rec.key = kn_reader_msg_partition_key(m, &klen);
                rec.key_len = klen;
                rec.data = data ? data : (const unsigned char *)"";
                rec.data_len = dlen;
                if (kn_reader_msg_err(m) != KN_ERR_OK)
                    kc_warn(o, "%s (record printed as received)", kn_reader_msg_errstr(m));
                if (o->json) {
                    kc_envelope_write(&rec, stdout);
                } else if (kcat_style) {
                    if (o->key_delim) {
                        fwrite(rec.key, 1, rec.key_len, stdout);
                        fwrite(o->key_delim, 1, o->key_delim_len, stdout);
                    }
                    fwrite(rec.data, 1, rec.data_len, stdout);
                    fwrite(o->delim, 1, o->delim_len, stdout);
                } else {
                    kc_format_write(fmt, &rec, stdout);
                }
                if (o->unbuffered)
                    fflush(stdout);
                kc_progress_add(&progress, 1, dlen);
                if (++printed == o->count)
                    done = true;
                break;
            }
            case KN_READER_SHARD_STARTED: kc_info(o, 1, "%s: reading", shard); break;
            case KN_READER_SHARD_CAUGHT_UP: kc_info(o, 2, "%s: caught up", shard); break;
            case KN_READER_SHARD_END:
                kc_info(o, 1, "%s: closed shard read to its end (%zu children)", shard,
                        kn_reader_msg_child_count(m));
                break;
            case KN_READER_SHARD_STOPPED: kc_info(o, 1, "%s: reached the -o e@ time", shard); break;
            case KN_READER_SHARD_ERROR: {
                kn_err_t rc = kn_reader_msg_err(m);
                kc_err("%s: %s (%s)", shard ? shard : o->stream, kn_reader_msg_errstr(m),
                       kn_err2name(rc));
                if (ec == KC_EXIT_OK)
                    ec = kc_exit_code(rc) == KC_EXIT_USAGE ? KC_EXIT_FAIL : kc_exit_code(rc);
                break;
            }
            case KN_READER_AT_END:
                kc_info(o, 1, "every shard is caught up or read to its end");
                if (o->exit_at_end)
                    done = true;
                break;
            }
            if (!done)
                m = kn_reader_poll(r, 0);
        }
        fflush(stdout);
        if (stdout_broken(&ec))
            break;
    }
    kc_progress_end(&progress);
    int64_t oor = kn_reader_stat(r, KN_READER_STAT_OUT_OF_RANGE);
    if (oor > 0)
        kc_info(o, 1, "%lld records had a hash key outside their shard's range (delivered)",
                (long long)oor);
    int64_t bad = kn_reader_stat(r, KN_READER_STAT_DECODE_ERRORS);
    if (bad > 0)
        kc_warn(o, "%lld records could not be decoded and were printed as received",
                (long long)bad);
    kc_info(o, 1, "%lld records printed", (long long)printed);
out:
    kn_reader_destroy(r);
    kc_format_destroy(fmt);
    kn_error_destroy(err);
    free(shards);
    free(shards_copy);
    return ec;
}
