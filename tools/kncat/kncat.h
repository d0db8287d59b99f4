/*
 * kncat: the kcat of Kinesis. Shared declarations of its parts:
 *   main.c      options, configuration, mode dispatch, diagnostics
 *   produce.c   -P through the producer
 *   consume.c   -C through the stream reader
 *   group.c     -G and -L -G through the consumer
 *   admin.c     -L, -A and -Q through the admin API
 *   format.c    -f format strings
 *   envelope.c  -J envelopes (JSON out and in), base64, UTF-8 checks
 * kncat links libkinesis like any user and uses only its public API.
 */
#ifndef KNCAT_H
#define KNCAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <kinesis/admin.h>
#include <kinesis/common.h>

/* Exit codes (documented in --help and kncat.1). */
enum {
    KC_EXIT_OK = 0,
    KC_EXIT_FAIL = 1,      /* something asked was not done: records failed, a service error */
    KC_EXIT_USAGE = 2,     /* bad option, argument, -o, -f token, -X property; unsupported mode */
    KC_EXIT_NOTFOUND = 3,  /* the stream or shard does not exist */
    KC_EXIT_CREDS = 4,     /* no usable credentials, or the service refused them */
    KC_EXIT_NETWORK = 5,   /* the endpoint could not be reached (connection, TLS, timeout) */
};

typedef enum kc_mode_e {
    KC_MODE_NONE = 0,
    KC_MODE_PRODUCE,
    KC_MODE_CONSUME,
    KC_MODE_GROUP,
    KC_MODE_LIST,
    KC_MODE_ADMIN,
    KC_MODE_QUERY,
} kc_mode_t;

typedef enum kc_start_e {
    KC_START_BEGINNING = 0,
    KC_START_END,
    KC_START_TIMESTAMP,
    KC_START_SEQUENCE,
} kc_start_t;

typedef struct kc_opts_s {
    kc_mode_t mode;
    const char *stream;
    const char *group;
    int verbosity; /* 0 normal, <0 quiet, >0 verbose */
    bool stats;    /* --stats: metrics as JSON lines on stderr */
    bool unbuffered;
    bool json;

    /* produce */
    const char *key;        /* -k */
    const char *key_delim;  /* -K, unescaped */
    size_t key_delim_len;
    char *delim;            /* -D, unescaped (default "\n") */
    size_t delim_len;
    bool delim_given;
    const char *hash_key;   /* --hash-key */
    const char *compression; /* -z */
    bool report;
    bool empty_lines;       /* -Z: empty lines are records too */
    char **files;           /* positional arguments in -P */
    int nfiles;

    /* consume */
    const char *shards;     /* -p a,b,c */
    kc_start_t start;
    int64_t start_ts_ms;
    const char *start_seq;
    int64_t stop_ts_ms;     /* e@: -1 none */
    bool exit_at_end;       /* -e */
    int64_t count;          /* -c: -1 no limit */
    const char *format;     /* -f */
    bool raw;

    /* admin / query */
    const char *admin_cmd;
    char **args;            /* positional arguments after the mode */
    int nargs;
    int create_shards;      /* --shards, 0 with --on-demand */
    bool on_demand;
    bool no_wait;
    long wait_timeout_ms;

    kn_conf_t *conf;        /* every library property (-X, -F, -b, -r, --profile, -d) */
} kc_opts_t;

/* ---------------------------------------------------------------- main.c */

/* "% " + message on stderr, unless quiet (errors always print). */
void kc_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kc_warn(const kc_opts_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kc_info(const kc_opts_t *o, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prints "% ERROR: <what>: <message> (<AWS type>, KN_ERR_X)" and returns the exit code for it. */
int kc_report_error(const char *what, kn_err_t rc, const kn_error_t *err);
/* The exit code that an error code maps to. */
int kc_exit_code(kn_err_t rc);
/* The client (created on first use from o->conf); NULL after printing why. */
kn_client_t *kc_client(kc_opts_t *o);
/* Milliseconds on a monotonic clock. */
int64_t kc_now_ms(void);
/* Set by SIGINT/SIGTERM. */
extern volatile int kc_stop;

/* One-line progress on stderr (only with -v on a terminal). */
typedef struct kc_progress_s {
    bool on;
    int64_t start_ms, last_ms;
    uint64_t records, bytes;
} kc_progress_t;
void kc_progress_init(kc_progress_t *p, const kc_opts_t *o);
void kc_progress_add(kc_progress_t *p, uint64_t records, uint64_t bytes);
void kc_progress_end(kc_progress_t *p);

/* ----------------------------------------------------------------- modes */

int kc_produce(kc_opts_t *o);
int kc_consume(kc_opts_t *o);
int kc_list(kc_opts_t *o);
int kc_admin(kc_opts_t *o);
int kc_query(kc_opts_t *o);
int kc_group(kc_opts_t *o);
/* -L -G: the group's leases. */
int kc_group_list(kc_opts_t *o);

/* ---------------------------------------------------------------- format.c */

/* A record as printed. Strings are not NUL-terminated unless said so. */
typedef struct kc_rec_s {
    const char *stream;    /* NUL-terminated */
    const char *shard;     /* NUL-terminated */
    const char *seq;       /* NUL-terminated */
    uint64_t subseq;
    int64_t ts_ms;         /* -1 unknown */
    const char *key;
    size_t key_len;
    const unsigned char *data;
    size_t data_len;
} kc_rec_t;

typedef struct kc_format_s kc_format_t;

/* Compiles a -f string; NULL with a message naming the bad token or escape in errstr. */
kc_format_t *kc_format_new(const char *fmt, char *errstr, size_t errstr_size);
void kc_format_write(const kc_format_t *f, const kc_rec_t *r, FILE *out);
void kc_format_destroy(kc_format_t *f);

/*
 * Unescapes \n \t \r \\ \0 \xNN in s into a malloc'd buffer (*len bytes, NUL
 * appended). NULL with a message in errstr on a bad escape.
 */
char *kc_unescape(const char *s, size_t *len, char *errstr, size_t errstr_size);

/* ISO-8601 UTC with milliseconds into out (at least 32 bytes). */
void kc_iso8601(int64_t ms, char *out, size_t size);
/*
 * Parses a time: epoch ms (digits), ISO-8601 (2024-01-02T03:04:05[.mmm][Z|+hh:mm])
 * or relative (-15m, -2h, -30s, -1d, -500ms) from now. Returns 0 or -1.
 */
int kc_parse_time(const char *s, int64_t *ms);

/* -------------------------------------------------------------- envelope.c */

bool kc_utf8_valid(const unsigned char *s, size_t len);
/* Appends s as a JSON string (quotes included) to out. Invalid UTF-8 is written as \uFFFD. */
void kc_json_string(FILE *out, const char *s, size_t len);
/* Prints the -C -J envelope of one record and a newline. */
void kc_envelope_write(const kc_rec_t *r, FILE *out);
/* Writes the decimal digits of v (no fprintf on the per-record path). */
void kc_write_u64(FILE *out, uint64_t v);
/* Writes in as base64 (standard alphabet, padded) without allocating. */
void kc_base64_write(FILE *out, const unsigned char *in, size_t len);

/* base64 decoding (standard alphabet, padding optional): a malloc'd buffer; NULL on bad input. */
unsigned char *kc_base64_decode(const char *in, size_t len, size_t *out_len);

/* A parsed -P -J input line. Owned buffers; free with kc_envelope_in_free. */
typedef struct kc_envelope_in_s {
    char *key;            /* NULL when absent or null */
    unsigned char *data;
    size_t data_len;
    char *hash_key;       /* "hash_key" when present (an extension), else NULL */
} kc_envelope_in_t;

/* Parses one JSON envelope; -1 with a message in errstr. */
int kc_envelope_parse(const char *line, size_t len, kc_envelope_in_t *out, char *errstr,
                      size_t errstr_size);
void kc_envelope_in_free(kc_envelope_in_t *e);

#endif
