/*
 * kncat -P: records from stdin (split at -D) or one per file argument, put
 * through the libkinesis producer. Single-threaded: results are served by
 * kn_producer_poll()/flush() here, and by a put that waits for room.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <kinesis/producer.h>

#include "kncat.h"

#define READ_CHUNK 65536

typedef struct prod_s {
    kc_opts_t *o;
    kn_producer_t *p;
    uint64_t next_index; /* 1-based record number, for messages */
    uint64_t ok, failed, skipped;
    bool warned_no_key_delim;
    uint64_t rng;
    kc_progress_t progress;
} prod_t;

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: random partition keys only need to spread. */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ULL;
}

/* Counts a record's outcome, prints a failure on stderr and the --report line. */
static void outcome(prod_t *st, uint64_t index, const char *key, size_t key_len, kn_err_t rc,
                    const char *errstr, const char *shard, const char *seq, uint64_t subseq)
{
    kc_opts_t *o = st->o;
    if (!key)
        key = "";
    if (rc == KN_ERR_OK) {
        st->ok++;
    } else {
        st->failed++;
        kc_err("record %llu (key %.*s) failed: %s: %s", (unsigned long long)index, (int)key_len,
               key, kn_err2name(rc), errstr);
    }
    if (!o->report)
        return;
    if (o->json) {
        printf("{\"record\":%llu,\"key\":", (unsigned long long)index);
        kc_json_string(stdout, key, key_len);
        if (rc == KN_ERR_OK) {
            printf(",\"status\":\"ok\",\"shard\":");
            kc_json_string(stdout, shard, strlen(shard));
            printf(",\"seq\":");
            kc_json_string(stdout, seq, strlen(seq));
            printf(",\"subseq\":%llu}\n", (unsigned long long)subseq);
        } else {
            printf(",\"status\":\"error\",\"error\":\"%s\",\"message\":", kn_err2name(rc));
            kc_json_string(stdout, errstr, strlen(errstr));
            printf("}\n");
        }
    } else if (rc == KN_ERR_OK) {
        printf("%.*s\t%s\t%s\n", (int)key_len, key, shard, seq);
    } else {
        printf("%.*s\tERROR\t%s: %s\n", (int)key_len, key, kn_err2name(rc), errstr);
    }
    if (o->unbuffered)
        fflush(stdout);
}

/* Runs on this thread, inside kn_producer_poll/flush/put/destroy. */
static void on_result(kn_producer_t *p, const kn_result_t *r, void *opaque)
{
    (void)p;
    prod_t *st = opaque;
    /* The usual case touches nothing of the record: counted, no report asked for. */
    if (!st->o->report && kn_result_err(r) == KN_ERR_OK) {
        st->ok++;
        return;
    }
    size_t key_len = 0;
    const char *key = kn_result_partition_key(r, &key_len);
    kn_err_t rc = kn_result_err(r);
    outcome(opaque, (uint64_t)(uintptr_t)kn_result_opaque(r), key, key_len, rc,
            kn_result_errstr(r), rc ? NULL : kn_result_shard_id(r),
            rc ? NULL : kn_result_sequence_number(r), kn_result_sub_sequence(r));
}

/* Puts one record; a put error counts as a failed record. */
static void put_one(prod_t *st, const char *key, size_t key_len, const char *hash_key,
                    const void *data, size_t len)
{
    kc_opts_t *o = st->o;
    uint64_t index = ++st->next_index;
    char rkey[24];
    if (!key || key_len == 0) {
        if (o->key) {
            key = o->key;
            key_len = strlen(o->key);
        } else {
            snprintf(rkey, sizeof(rkey), "%016llx", (unsigned long long)rng_next(&st->rng));
            key = rkey;
            key_len = 16;
        }
    }
    kn_record_t rec = {
        .struct_size = sizeof(kn_record_t),
        .stream = o->stream,
        .partition_key = key,
        .partition_key_len = key_len,
        .explicit_hash_key = hash_key ? hash_key : o->hash_key,
        .data = data,
        .data_len = len,
        .opaque = (void *)(uintptr_t)index,
    };
    char errstr[512] = "";
    kn_err_t rc = kn_producer_put(st->p, &rec, errstr, sizeof(errstr));
    if (rc) {
        outcome(st, index, key, key_len, rc, errstr[0] ? errstr : kn_err2str(rc), NULL, NULL, 0);
        return;
    }
    kc_progress_add(&st->progress, 1, len);
    if ((index & 255) == 0)
        kn_producer_poll(st->p, 0);
}

/*
 * One input record (a line, or a whole file when is_file): splits key and
 * data per -K / -J. An empty line is skipped and counted unless -Z; an empty
 * file, an envelope with an empty payload and "key<delim>" are records.
 */
static void handle_record(prod_t *st, const char *buf, size_t len, bool is_file)
{
    kc_opts_t *o = st->o;
    if (len == 0 && !is_file && !o->empty_lines && !o->json) {
        st->skipped++;
        return;
    }
    if (o->json) {
        if (len == 0 && !is_file)
            return; /* blank lines between envelopes are not records */
        kc_envelope_in_t e;
        char errstr[256], msg[300];
        if (kc_envelope_parse(buf, len, &e, errstr, sizeof(errstr))) {
            snprintf(msg, sizeof(msg), "bad JSON envelope: %s", errstr);
            outcome(st, ++st->next_index, "", 0, KN_ERR_INVALID_ARG, msg, NULL, NULL, 0);
            return;
        }
        put_one(st, e.key, e.key ? strlen(e.key) : 0, e.hash_key, e.data, e.data_len);
        kc_envelope_in_free(&e);
        return;
    }
    if (o->key_delim) {
        const char *d = memmem(buf, len, o->key_delim, o->key_delim_len);
        if (d) {
            size_t klen = (size_t)(d - buf);
            put_one(st, buf, klen, NULL, d + o->key_delim_len, len - klen - o->key_delim_len);
            return;
        }
        if (!st->warned_no_key_delim) {
            st->warned_no_key_delim = true;
            kc_warn(o, "record %llu has no key delimiter: the whole record is the data (%s key)",
                    (unsigned long long)st->next_index + 1, o->key ? "-k" : "random");
        }
    }
    put_one(st, NULL, 0, NULL, buf, len);
}

/* Splits fd's bytes at the -D delimiter. Returns 0, or -1 on a read error (printed). */
static int read_delimited(prod_t *st, int fd, const char *name)
{
    kc_opts_t *o = st->o;
    size_t cap = READ_CHUNK * 2, len = 0, scan = 0;
    char *buf = malloc(cap);
    int rc = 0;
    if (!buf) {
        kc_err("out of memory");
        return -1;
    }
    for (;;) {
        if (kc_stop)
            break;
        if (cap - len < READ_CHUNK) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                kc_err("out of memory (a record longer than %zu bytes?)", cap);
                rc = -1;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            kc_err("reading %s: %s", name, strerror(errno));
            rc = -1;
            break;
        }
        if (n == 0) {
            if (len > 0)
                handle_record(st, buf, len, false);
            break;
        }
        len += (size_t)n;
        size_t start = 0;
        for (;;) {
            /* Back up so a delimiter split across reads is found. */
            size_t from = scan > start + o->delim_len ? scan - o->delim_len + 1 : start;
            char *d = memmem(buf + from, len - from, o->delim, o->delim_len);
            if (!d)
                break;
            size_t end = (size_t)(d - buf);
            handle_record(st, buf + start, end - start, false);
            start = end + o->delim_len;
            scan = start;
        }
        memmove(buf, buf + start, len - start);
        len -= start;
        scan = len;
    }
    free(buf);
    return rc;
}

/* A whole file as one record. */
static int read_file(prod_t *st, const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        kc_err("cannot open %s: %s", path, strerror(errno));
        st->failed++;
        return -1;
    }
    size_t cap = READ_CHUNK, len = 0;
    char *buf = malloc(cap);
    int rc = 0;
    for (;;) {
        if (!buf) {
            kc_err("out of memory reading %s", path);
            rc = -1;
            break;
        }
        if (len == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                continue;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            kc_err("reading %s: %s", path, strerror(errno));
            rc = -1;
            break;
        }
        if (n == 0) {
            handle_record(st, buf, len, true);
            break;
        }
        len += (size_t)n;
    }
    if (rc)
        st->failed++;
    free(buf);
    close(fd);
    return rc;
}

static uint64_t seed(void)
{
    uint64_t s = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd >= 0) {
        if (read(fd, &s, sizeof(s)) != (ssize_t)sizeof(s))
            s = 0;
        close(fd);
    }
    if (!s)
        s = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
    return s;
}

int kc_produce(kc_opts_t *o)
{
    prod_t st;
    memset(&st, 0, sizeof(st));
    st.o = o;
    st.rng = seed();
    kn_conf_t *conf = NULL;
    kn_error_t *err = kn_error_new();
    int rc = KC_EXIT_FAIL;
    char errstr[512] = "";

    if (!o->stream) {
        kc_err("-P needs a stream (-t <stream>)");
        rc = KC_EXIT_USAGE;
        goto out;
    }
    if (o->key && !*o->key) {
        kc_err("-k: the partition key is empty");
        rc = KC_EXIT_USAGE;
        goto out;
    }
    if (o->hash_key) {
        static const char max[] = "340282366920938463463374607431768211455";
        size_t n = strlen(o->hash_key);
        if (!n || strspn(o->hash_key, "0123456789") != n || n > 39 ||
            (n == 39 && strcmp(o->hash_key, max) > 0)) {
            kc_err("--hash-key: \"%s\" is not a hash key (a decimal number from 0 to 2^128-1)",
                   o->hash_key);
            rc = KC_EXIT_USAGE;
            goto out;
        }
    }
    kn_client_t *client = kc_client(o);
    if (!client || !err)
        goto out;
    /* Check the stream first: a clear "not found" (or credentials/endpoint) error before any input is read. */
    kn_stream_info_t *info = NULL;
    kn_err_t krc = kn_admin_describe_stream(client, o->stream, &info, err);
    if (krc) {
        char what[300];
        snprintf(what, sizeof(what), "stream %s", o->stream);
        rc = kc_report_error(what, krc, err);
        goto out;
    }
    kn_stream_info_destroy(info);

    if (!(conf = kn_conf_dup(o->conf)))
        goto out;
    if (o->compression && kn_conf_set(conf, "producer.compression.codec", o->compression, errstr,
                                      sizeof(errstr))) {
        kc_err("-z: %s", errstr);
        rc = KC_EXIT_USAGE;
        goto out;
    }
    kn_conf_set_result_cb(conf, on_result, &st);
    st.p = kn_producer_new_on(client, conf, err);
    if (!st.p) {
        kc_err("cannot create the producer: %s", kn_error_message(err));
        rc = KC_EXIT_USAGE;
        goto out;
    }
    kc_progress_init(&st.progress, o);
    if (o->nfiles == 0) {
        read_delimited(&st, STDIN_FILENO, "stdin");
    } else {
        for (int i = 0; i < o->nfiles && !kc_stop; i++)
            read_file(&st, o->files[i]);
    }
    if (kn_producer_flush(st.p, -1) != KN_ERR_OK)
        kc_warn(o, "flush ended with records still pending");
    kn_producer_destroy(st.p); /* serves what is left */
    st.p = NULL;
    kc_progress_end(&st.progress);
    if (kc_stop)
        kc_warn(o, "interrupted");
    uint64_t total = st.next_index;
    kc_info(o, 1, "%llu of %llu records acknowledged, %llu failed", (unsigned long long)st.ok,
            (unsigned long long)total, (unsigned long long)st.failed);
    if (st.skipped)
        kc_info(o, 0, "%llu empty line%s skipped, not sent (-Z sends empty lines as empty records)",
                (unsigned long long)st.skipped, st.skipped == 1 ? "" : "s");
    if (st.failed == 0 && st.ok == total && !kc_stop)
        rc = KC_EXIT_OK;
    else {
        if (st.failed)
            kc_err("%llu of %llu records were not acknowledged", (unsigned long long)st.failed,
                   (unsigned long long)total);
        rc = KC_EXIT_FAIL;
    }
out:
    kn_producer_destroy(st.p);
    kn_conf_destroy(conf);
    kn_error_destroy(err);
    return rc;
}
