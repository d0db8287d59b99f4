/*
 * kncat main: options, configuration, mode dispatch and diagnostics.
 * Data goes to stdout; every diagnostic goes to stderr prefixed with "% ".
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kncat.h"

volatile int kc_stop;

static int g_verbosity;
static kn_client_t *g_client;

static const char usage_text[] =
    "Usage: kncat <mode> [options] [file ...]\n"
    "kncat is to Amazon Kinesis what kcat is to Kafka.\n"
    "\n"
    "Modes:\n"
    "  -P                 produce: one record per input line (-D), or one per file argument\n"
    "  -C                 consume: print the records of every shard (or -p shard,...)\n"
    "  -L                 list streams; with -t the stream's shards\n"
    "  -A <cmd> [args]    admin: create [--shards N|--on-demand] | delete | scale N |\n"
    "                     split <shard> [hash] | merge <shard> <adjacent> | wait\n"
    "  -Q                 query: which shard a partition key (-k) or hash key maps to\n"
    "  -G <group>         consume as a member of a balanced consumer group (leases in DynamoDB)\n"
    "  (no mode: produce when stdin is not a terminal, else consume)\n"
    "\n"
    "Common options:\n"
    "  -t <stream>        stream name or ARN\n"
    "  -b <url>           Kinesis endpoint (else AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL)\n"
    "  -r <region>        AWS region (else AWS_REGION, AWS_DEFAULT_REGION, the profile)\n"
    "  --profile <name>   shared-config profile\n"
    "  -X <prop>=<value>  set a library property (the producer./consumer. prefix may be left\n"
    "                     out: -X aggregation.enabled=false); -X list prints them all\n"
    "  -F <file>          read properties from a .properties file\n"
    "  -d <contexts>      debug contexts: generic,conf,http,sigv4,creds,aws,kinesis,...,all\n"
    "  -J                 JSON: envelopes in -C and -P, JSON output in -L, -Q, --report\n"
    "  -u                 unbuffered output (flush after every record)\n"
    "  -q                 quiet: only errors on stderr\n"
    "  -v                 more diagnostics (repeatable); on a terminal a progress line\n"
    "  --stats[=<ms>]     in -P, -C and -G, the metrics (the KPL's and KCL's names) as a JSON\n"
    "                     line on stderr every <ms> milliseconds (default 10000) and at the end\n"
    "  -V                 print the version and exit\n"
    "  -h, --help         this help\n"
    "\n"
    "Produce (-P):\n"
    "  -k <key>           partition key of every record (default: a random key per record)\n"
    "  -K <delim>         each line is key<delim>data\n"
    "  -D <delim>         record delimiter (default \\n; escapes \\n \\t \\r \\0 \\\\ \\xNN)\n"
    "  --hash-key <n>     explicit hash key (decimal) of every record\n"
    "  -J                 input lines are JSON envelopes (as -C -J prints)\n"
    "  -z none|gzip|zstd  compression (libkinesis format; -X producer.compression.scope=record\n"
    "                     for frames any KPL reader understands)\n"
    "  --report           a delivery report per record on stdout (key, shard, sequence number\n"
    "                     or the error; a JSON object per record with -J)\n"
    "  -Z                 send empty lines as empty records (default: skip them, and say how\n"
    "                     many were skipped)\n"
    "  Aggregation is on; -X aggregation.enabled=false turns it off.\n"
    "  Every JSON envelope (-J), every file argument and every key<delim> line (-K) is a\n"
    "  record, empty data or not; only empty lines are skipped without -Z (and blank lines\n"
    "  between envelopes, which are not records).\n"
    "\n"
    "Consume (-C):\n"
    "  -p <shard,...>     only these shards\n"
    "  -o <pos>           beginning (default) | end | s@<ts> | e@<ts> | <sequence number>\n"
    "                     <ts>: epoch ms, ISO-8601 (2024-05-01T12:00:00Z) or relative (-15m,\n"
    "                     -2h, -30s, -1d); e@ stops each shard at that time (with s@ or alone)\n"
    "  -e                 exit when every shard is caught up, or closed and read to its end\n"
    "  -c <n>             exit after n records\n"
    "  -D, -K <delim>     without -f: print data followed by -D (key and -K before it), as kcat\n"
    "  -f <format>        output format (default %s\\n): %s data, %S data length, %k key,\n"
    "                     %K key length, %t stream, %p shard, %o sequence number, %u sub-sequence,\n"
    "                     %T arrival (epoch ms), %F arrival (ISO-8601), %b data base64, %x hex,\n"
    "                     %% a percent sign; escapes \\n \\t \\r \\0 \\\\ \\xNN\n"
    "  -J                 one JSON object per record: stream, shard, seq, subseq, ts, key,\n"
    "                     payload, payload_encoding (utf8, or base64 for binary data)\n"
    "  --raw              records as stored (no deaggregation or decompression)\n"
    "\n"
    "Group (-G <group> -t <stream>): -C's output options (-f, -J, -K, -D, -u, -c); the\n"
    "  group's shards are shared with its other members (other kncat -G or KCL-style\n"
    "  consumers of the same group), each shard checkpointed after each printed batch\n"
    "  (at least once: after a crash the records since the last checkpoint print again)\n"
    "  -o <pos>           where shards without a checkpoint begin: end (default), beginning,\n"
    "                     s@<ts>\n"
    "  -e                 exit once every shard this member holds is caught up\n"
    "  SIGINT/SIGTERM     checkpoint, release the leases (other members take over at once), exit\n"
    "  -L -G <group>      the group's leases: owner, checkpoint, counter; with -t their lag\n"
    "  -X consumer.worker.id=, consumer.failover.ms=, consumer.max.leases= (or the KCL names\n"
    "  workerId, failoverTimeMillis, maxLeasesForWorker); the lease table is the group's name\n"
    "  (-X consumer.table.name=), in the region's DynamoDB (-X dynamodb.endpoint=, or\n"
    "  AWS_ENDPOINT_URL_DYNAMODB)\n"
    "\n"
    "Admin (-A):\n"
    "  --shards <n>       create: shard count (default 1)\n"
    "  --on-demand        create: an on-demand stream\n"
    "  --no-wait          create/scale/split/merge: return without waiting for ACTIVE\n"
    "  --wait-timeout <s> seconds to wait for ACTIVE (default 120)\n"
    "\n"
    "Query (-Q): -t <stream> with -k <key> or --hash-key <n>: prints shard<TAB>hash key\n"
    "\n"
    "Exit status:\n"
    "  0  everything asked was done (every record acknowledged)\n"
    "  1  something failed: a record not acknowledged, a service error\n"
    "  2  usage error: bad option or argument, bad -o, -f token or -X property; unsupported mode\n"
    "  3  the stream or shard does not exist\n"
    "  4  no usable credentials, or the service refused them\n"
    "  5  the endpoint could not be reached (connection, TLS, timeout)\n"
    "\n"
    "kncat sets aws.retry.max.attempts=4 (the library's default is 10) so that an unreachable\n"
    "endpoint is reported quickly; -X aws.retry.max.attempts=N overrides it.\n";

static void vmsg(const char *prefix, const char *fmt, va_list ap)
{
    fputs("% ", stderr);
    if (prefix)
        fputs(prefix, stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void kc_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg("ERROR: ", fmt, ap);
    va_end(ap);
}

void kc_warn(const kc_opts_t *o, const char *fmt, ...)
{
    if (o->verbosity < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vmsg("WARNING: ", fmt, ap);
    va_end(ap);
}

void kc_info(const kc_opts_t *o, int level, const char *fmt, ...)
{
    if (o->verbosity < level)
        return;
    va_list ap;
    va_start(ap, fmt);
    vmsg(NULL, fmt, ap);
    va_end(ap);
}

int kc_exit_code(kn_err_t rc)
{
    switch (rc) {
    case KN_ERR_OK: return KC_EXIT_OK;
    case KN_ERR_INVALID_ARG:
    case KN_ERR_CONF_UNKNOWN:
    case KN_ERR_CONF_INVALID:
    case KN_ERR_NOT_SUPPORTED: return KC_EXIT_USAGE;
    case KN_ERR_NOT_FOUND: return KC_EXIT_NOTFOUND;
    case KN_ERR_CREDENTIALS:
    case KN_ERR_AUTH:
    case KN_ERR_EXPIRED_TOKEN: return KC_EXIT_CREDS;
    case KN_ERR_TRANSPORT:
    case KN_ERR_TLS:
    case KN_ERR_TIMEOUT: return KC_EXIT_NETWORK;
    default: return KC_EXIT_FAIL;
    }
}

int kc_report_error(const char *what, kn_err_t rc, const kn_error_t *err)
{
    const char *msg = err ? kn_error_message(err) : "";
    const char *type = err ? kn_error_aws_type(err) : "";
    if (!*msg)
        msg = kn_err2str(rc);
    if (*type)
        kc_err("%s: %s (%s, %s)", what, msg, type, kn_err2name(rc));
    else
        kc_err("%s: %s (%s)", what, msg, kn_err2name(rc));
    return kc_exit_code(rc);
}

int64_t kc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Library log messages: stderr, "% " prefixed; any thread (one fprintf per line). */
static void on_log(void *opaque, kn_log_level_t level, const char *ctx, const char *message)
{
    (void)opaque;
    const char *lv = level <= KN_LOG_ERROR ? "ERROR"
                     : level <= KN_LOG_WARN ? "WARN"
                     : level <= KN_LOG_INFO ? "INFO"
                     : level <= KN_LOG_DEBUG ? "DEBUG"
                                             : "TRACE";
    fprintf(stderr, "%% %s [%s] %s\n", lv, ctx ? ctx : "", message);
}

kn_client_t *kc_client(kc_opts_t *o)
{
    if (g_client)
        return g_client;
    kn_error_t *err = kn_error_new();
    g_client = kn_client_new(o->conf, err);
    if (!g_client)
        kc_err("cannot create the client: %s", err ? kn_error_message(err) : "out of memory");
    kn_error_destroy(err);
    return g_client;
}

/* ------------------------------------------------------------------- stats */

/*
 * --stats: one JSON line per window on stderr, {"type":"metrics","start":ms,
 * "end":ms,"metrics":[...]} with each metric as kn_metric_json writes it
 * (namespace included). Called on the library's metrics thread: the line
 * is built whole and written under stderr's lock, and on a terminal with
 * the progress line it first clears that line (redrawn a second later).
 */
static void on_metrics(const char *ns, const kn_metric_t *m, size_t n, void *opaque)
{
    const kc_opts_t *o = opaque;
    size_t cap = 256 + n * 320, len = 0;
    char *line = malloc(cap);
    if (!line)
        return;
    int w = snprintf(line, cap, "{\"type\":\"metrics\",\"start\":%lld,\"end\":%lld,\"metrics\":[",
                     n ? (long long)m[0].start_ms : 0LL, n ? (long long)m[0].end_ms : 0LL);
    len = w > 0 ? (size_t)w : 0;
    for (size_t i = 0; i < n; i++) {
        size_t need = kn_metric_json(ns, &m[i], NULL, 0) + 4;
        if (len + need + 4 > cap) {
            size_t ncap = (len + need + 4) * 2;
            char *nl = realloc(line, ncap);
            if (!nl) {
                free(line);
                return;
            }
            line = nl;
            cap = ncap;
        }
        if (i)
            line[len++] = ',';
        len += kn_metric_json(ns, &m[i], line + len, cap - len);
    }
    memcpy(line + len, "]}\n", 4);
    len += 3;
    flockfile(stderr);
    if (o->verbosity > 0 && isatty(STDERR_FILENO))
        fputs("\r\033[K", stderr);
    fwrite(line, 1, len, stderr);
    fflush(stderr);
    funlockfile(stderr);
    free(line);
}

/* ---------------------------------------------------------------- progress */

void kc_progress_init(kc_progress_t *p, const kc_opts_t *o)
{
    memset(p, 0, sizeof(*p));
    p->on = o->verbosity > 0 && isatty(STDERR_FILENO);
    p->start_ms = p->last_ms = kc_now_ms();
}

static void progress_print(kc_progress_t *p, int64_t now)
{
    double secs = (double)(now - p->start_ms) / 1000.0;
    double rate = secs > 0 ? (double)p->records / secs : 0;
    fprintf(stderr, "\r%% %llu records, %.1f MB, %.0f records/s, %.1f MB/s   ",
            (unsigned long long)p->records, (double)p->bytes / 1e6, rate,
            secs > 0 ? (double)p->bytes / 1e6 / secs : 0.0);
    fflush(stderr);
}

void kc_progress_add(kc_progress_t *p, uint64_t records, uint64_t bytes)
{
    p->records += records;
    p->bytes += bytes;
    if (!p->on)
        return;
    int64_t now = kc_now_ms();
    if (now - p->last_ms >= 1000) {
        p->last_ms = now;
        progress_print(p, now);
    }
}

void kc_progress_end(kc_progress_t *p)
{
    if (!p->on || p->last_ms == p->start_ms)
        return;
    progress_print(p, kc_now_ms());
    fputc('\n', stderr);
}

/* ------------------------------------------------------------------ options */

enum {
    OPT_PROFILE = 256,
    OPT_HASH_KEY,
    OPT_REPORT,
    OPT_RAW,
    OPT_SHARDS,
    OPT_ON_DEMAND,
    OPT_NO_WAIT,
    OPT_WAIT_TIMEOUT,
    OPT_STATS,
};

static const struct option long_opts[] = {
    {"profile", required_argument, NULL, OPT_PROFILE},
    {"hash-key", required_argument, NULL, OPT_HASH_KEY},
    {"report", no_argument, NULL, OPT_REPORT},
    {"raw", no_argument, NULL, OPT_RAW},
    {"shards", required_argument, NULL, OPT_SHARDS},
    {"on-demand", no_argument, NULL, OPT_ON_DEMAND},
    {"no-wait", no_argument, NULL, OPT_NO_WAIT},
    {"wait-timeout", required_argument, NULL, OPT_WAIT_TIMEOUT},
    {"stats", optional_argument, NULL, OPT_STATS},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static int set_prop(kc_opts_t *o, const char *name, const char *value)
{
    char errstr[512] = "";
    kn_err_t rc = kn_conf_set(o->conf, name, value, errstr, sizeof(errstr));
    if (rc == KN_ERR_CONF_UNKNOWN) {
        /*
         * kcat habit: a property may be named without its component, as in
         * -X aggregation.enabled=false (producer.aggregation.enabled).
         */
        static const char *const prefixes[] = {"producer.", "consumer."};
        int set = 0;
        for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
            char full[256];
            if ((size_t)snprintf(full, sizeof(full), "%s%s", prefixes[i], name) >= sizeof(full))
                continue;
            char e2[512] = "";
            kn_err_t r2 = kn_conf_set(o->conf, full, value, e2, sizeof(e2));
            if (r2 == KN_ERR_OK) {
                set++;
            } else if (r2 != KN_ERR_CONF_UNKNOWN) {
                kc_err("%s (%s)", e2[0] ? e2 : kn_err2str(r2), kn_err2name(r2));
                return -1;
            }
        }
        if (set)
            return 0;
    }
    if (rc) {
        kc_err("%s (%s)%s", errstr[0] ? errstr : kn_err2str(rc), kn_err2name(rc),
               rc == KN_ERR_CONF_UNKNOWN ? "; kncat -X list shows every property" : "");
        return -1;
    }
    return 0;
}

static int set_mode(kc_opts_t *o, kc_mode_t m)
{
    /* -L -G <group> lists a group's leases: -G is then an option of -L. */
    if ((o->mode == KC_MODE_LIST && m == KC_MODE_GROUP) ||
        (o->mode == KC_MODE_GROUP && m == KC_MODE_LIST)) {
        o->mode = KC_MODE_LIST;
        return 0;
    }
    if (o->mode && o->mode != m) {
        kc_err("only one mode of -P -C -G -L -A -Q may be given");
        return -1;
    }
    o->mode = m;
    return 0;
}

static int parse_long(const char *what, const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        kc_err("%s: \"%s\" is not a number from %ld to %ld", what, s, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

/* -o beginning|end|s@<ts>|e@<ts>|<seq> */
static int parse_offset(kc_opts_t *o, const char *s)
{
    if (strcmp(s, "beginning") == 0) {
        o->start = KC_START_BEGINNING;
    } else if (strcmp(s, "end") == 0) {
        o->start = KC_START_END;
    } else if (strncmp(s, "s@", 2) == 0) {
        if (kc_parse_time(s + 2, &o->start_ts_ms) || o->start_ts_ms < 0)
            goto bad_time;
        o->start = KC_START_TIMESTAMP;
    } else if (strncmp(s, "e@", 2) == 0) {
        if (kc_parse_time(s + 2, &o->stop_ts_ms) || o->stop_ts_ms <= 0)
            goto bad_time;
    } else if (*s && strspn(s, "0123456789") == strlen(s)) {
        o->start = KC_START_SEQUENCE;
        o->start_seq = s;
    } else {
        kc_err("bad -o \"%s\": use beginning, end, s@<time>, e@<time> or a sequence number "
               "(<time>: epoch ms, ISO-8601 or relative like -15m)",
               s);
        return -1;
    }
    return 0;
bad_time:
    kc_err("bad time in -o \"%s\": use epoch milliseconds, ISO-8601 (2024-05-01T12:00:00Z) or "
           "relative (-15m, -2h, -30s, -1d, -500ms)",
           s);
    return -1;
}

static int list_props(void)
{
    char *s = kn_conf_list();
    if (!s) {
        kc_err("out of memory");
        return KC_EXIT_FAIL;
    }
    fputs(s, stdout);
    kn_free(s);
    return fflush(stdout) == 0 ? KC_EXIT_OK : KC_EXIT_FAIL;
}

/* Returns -1 to continue, else an exit code. */
static int parse_args(kc_opts_t *o, int argc, char **argv)
{
    bool debug_set = false;
    const char *debug = NULL;
    int c;
    long v;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":PCG:LA:Qt:b:r:X:F:d:uqvVhJk:K:D:z:Zp:o:ec:f:", long_opts,
                            NULL)) != -1) {
        switch (c) {
        case 'P': if (set_mode(o, KC_MODE_PRODUCE)) return KC_EXIT_USAGE; break;
        case 'C': if (set_mode(o, KC_MODE_CONSUME)) return KC_EXIT_USAGE; break;
        case 'G':
            if (set_mode(o, KC_MODE_GROUP))
                return KC_EXIT_USAGE;
            o->group = optarg;
            break;
        case 'L': if (set_mode(o, KC_MODE_LIST)) return KC_EXIT_USAGE; break;
        case 'A':
            if (set_mode(o, KC_MODE_ADMIN))
                return KC_EXIT_USAGE;
            o->admin_cmd = optarg;
            break;
        case 'Q': if (set_mode(o, KC_MODE_QUERY)) return KC_EXIT_USAGE; break;
        case 't': o->stream = optarg; break;
        case 'b': if (set_prop(o, "kinesis.endpoint", optarg)) return KC_EXIT_USAGE; break;
        case 'r': if (set_prop(o, "aws.region", optarg)) return KC_EXIT_USAGE; break;
        case OPT_PROFILE: if (set_prop(o, "aws.profile", optarg)) return KC_EXIT_USAGE; break;
        case 'X': {
            if (strcmp(optarg, "list") == 0)
                return list_props();
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg) {
                kc_err("-X expects property=value (or -X list), not \"%s\"", optarg);
                return KC_EXIT_USAGE;
            }
            char name[256];
            snprintf(name, sizeof(name), "%.*s", (int)(eq - optarg), optarg);
            if (set_prop(o, name, eq + 1))
                return KC_EXIT_USAGE;
            if (strcmp(name, "debug") == 0)
                debug_set = true;
            break;
        }
        case 'F': {
            char errstr[512] = "";
            kn_err_t rc = kn_conf_load_properties(o->conf, optarg, errstr, sizeof(errstr));
            if (rc) {
                kc_err("%s (%s)", errstr[0] ? errstr : kn_err2str(rc), kn_err2name(rc));
                return KC_EXIT_USAGE;
            }
            break;
        }
        case 'd': debug = optarg; break;
        case 'u': o->unbuffered = true; break;
        case 'q': o->verbosity = -1; break;
        case 'v': o->verbosity = o->verbosity < 0 ? 1 : o->verbosity + 1; break;
        case 'V':
            printf("kncat %s (libkinesis %s)\n", KN_VERSION_STR, kn_version_str());
            return KC_EXIT_OK;
        case 'h': fputs(usage_text, stdout); return KC_EXIT_OK;
        case 'J': o->json = true; break;
        case 'k': o->key = optarg; break;
        case 'Z': o->empty_lines = true; break;
        case 'K':
        case 'D': {
            char errstr[256];
            size_t len = 0;
            char *d = kc_unescape(optarg, &len, errstr, sizeof(errstr));
            if (!d || len == 0) {
                kc_err("-%c: %s", c, d ? "the delimiter is empty" : errstr);
                free(d);
                return KC_EXIT_USAGE;
            }
            if (c == 'K') {
                free((char *)o->key_delim);
                o->key_delim = d;
                o->key_delim_len = len;
            } else {
                free(o->delim);
                o->delim = d;
                o->delim_len = len;
                o->delim_given = true;
            }
            break;
        }
        case 'z':
            if (strcmp(optarg, "none") && strcmp(optarg, "gzip") && strcmp(optarg, "zstd")) {
                kc_err("-z: unknown codec \"%s\" (none, gzip or zstd)", optarg);
                return KC_EXIT_USAGE;
            }
            o->compression = optarg;
            break;
        case 'p': o->shards = optarg; break;
        case 'o': if (parse_offset(o, optarg)) return KC_EXIT_USAGE; break;
        case 'e': o->exit_at_end = true; break;
        case 'c':
            if (parse_long("-c", optarg, 1, 2147483647L, &v))
                return KC_EXIT_USAGE;
            o->count = v;
            break;
        case 'f': o->format = optarg; break;
        case OPT_HASH_KEY: o->hash_key = optarg; break;
        case OPT_REPORT: o->report = true; break;
        case OPT_RAW: o->raw = true; break;
        case OPT_SHARDS:
            if (parse_long("--shards", optarg, 1, 100000, &v))
                return KC_EXIT_USAGE;
            o->create_shards = (int)v;
            break;
        case OPT_ON_DEMAND: o->on_demand = true; break;
        case OPT_NO_WAIT: o->no_wait = true; break;
        case OPT_STATS: {
            char ms[32] = "10000";
            if (optarg) {
                if (parse_long("--stats", optarg, 100, 86400000L, &v))
                    return KC_EXIT_USAGE;
                snprintf(ms, sizeof(ms), "%ld", v);
            }
            if (set_prop(o, "metrics.interval.ms", ms))
                return KC_EXIT_USAGE;
            o->stats = true;
            break;
        }
        case OPT_WAIT_TIMEOUT:
            if (parse_long("--wait-timeout", optarg, 0, 86400, &v))
                return KC_EXIT_USAGE;
            o->wait_timeout_ms = v * 1000;
            break;
        case ':':
            if (optopt)
                kc_err("option -%c needs an argument (see kncat -h)", optopt);
            else
                kc_err("option %s needs an argument (see kncat -h)", argv[optind - 1]);
            return KC_EXIT_USAGE;
        default:
            if (optopt)
                kc_err("unknown option -%c (see kncat -h)", optopt);
            else
                kc_err("unknown option %s (see kncat -h)", argv[optind - 1]);
            return KC_EXIT_USAGE;
        }
    }
    o->args = argv + optind;
    o->nargs = argc - optind;
    g_verbosity = o->verbosity;

    /*
     * Library logging: errors by default (a failure is also reported by
     * kncat itself, with the library's message), warnings and info with -v,
     * debug with -vv or -d.
     */
    const char *level = o->verbosity <= 0  ? "error"
                        : o->verbosity == 1 ? "info"
                                            : "debug";
    if (debug) {
        if (set_prop(o, "debug", debug))
            return KC_EXIT_USAGE;
        debug_set = true;
    }
    if (debug_set)
        level = "debug";
    if (set_prop(o, "log.level", level))
        return KC_EXIT_USAGE;
    kn_conf_set_log_cb(o->conf, on_log, NULL);
    if (o->stats) {
        if (o->mode != KC_MODE_PRODUCE && o->mode != KC_MODE_CONSUME && o->mode != KC_MODE_GROUP) {
            kc_err("--stats works with -P, -C and -G");
            return KC_EXIT_USAGE;
        }
        kn_conf_set_metrics_cb(o->conf, on_metrics, o);
    }
    return -1;
}

static void on_signal(int sig)
{
    (void)sig;
    kc_stop = 1;
}

int main(int argc, char **argv)
{
    /*
     * GetRecords answers and PutRecords bodies are buffers of up to 10 MiB,
     * one after another. Kept in the heap (not mapped and unmapped each
     * time) their pages are faulted in once, not once per request: on a
     * virtual machine a page fault costs microseconds. An application's
     * choice, so kncat makes it, not the library.
     */
    mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 128 * 1024 * 1024);
    kc_opts_t o;
    memset(&o, 0, sizeof(o));
    o.count = -1;
    o.stop_ts_ms = -1;
    o.create_shards = 0;
    o.wait_timeout_ms = 120000;
    o.conf = kn_conf_new();
    int rc;
    if (!o.conf) {
        kc_err("out of memory");
        return KC_EXIT_FAIL;
    }
    /*
     * kncat's own default, before -F and -X may change it: a person at a
     * shell wants an unreachable endpoint reported in about a second, not
     * after the library's ten attempts.
     */
    if (kn_conf_set(o.conf, "aws.retry.max.attempts", "4", NULL, 0) != KN_ERR_OK) {
        kc_err("cannot set aws.retry.max.attempts");
        rc = KC_EXIT_FAIL;
        goto out;
    }
    if ((rc = parse_args(&o, argc, argv)) >= 0)
        goto out;
    if (!o.delim) {
        o.delim = strdup("\n");
        o.delim_len = 1;
    }
    if (o.mode == KC_MODE_NONE)
        o.mode = isatty(STDIN_FILENO) ? KC_MODE_CONSUME : KC_MODE_PRODUCE;
    if (o.mode != KC_MODE_PRODUCE && o.nargs > 0 && o.mode != KC_MODE_ADMIN) {
        kc_err("unexpected argument \"%s\" (file arguments are for -P)", o.args[0]);
        rc = KC_EXIT_USAGE;
        goto out;
    }
    if (o.mode == KC_MODE_PRODUCE) {
        o.files = o.args;
        o.nfiles = o.nargs;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    switch (o.mode) {
    case KC_MODE_PRODUCE: rc = kc_produce(&o); break;
    case KC_MODE_CONSUME: rc = kc_consume(&o); break;
    case KC_MODE_LIST: rc = kc_list(&o); break;
    case KC_MODE_ADMIN: rc = kc_admin(&o); break;
    case KC_MODE_QUERY: rc = kc_query(&o); break;
    case KC_MODE_GROUP: rc = kc_group(&o); break;
    default: rc = KC_EXIT_USAGE; break;
    }
out:
    if (fflush(stdout) != 0 && rc == KC_EXIT_OK) {
        kc_err("writing to stdout: %s", strerror(errno));
        rc = KC_EXIT_FAIL;
    }
    kn_client_destroy(g_client);
    kn_conf_destroy(o.conf);
    free(o.delim);
    free((char *)o.key_delim);
    return rc;
}
