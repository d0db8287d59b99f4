/*
 * SigV4 signer: all 38 official header-signing vectors (aws-c-auth's copy of
 * the AWS suite, kept in tests/unit/testdata/sigv4: see the README there), the
 * derived-key cache, bad input, large inputs and concurrent use.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "sigv4.h"

#define VECTORS(X)                                                                                 \
    X("get-header-key-duplicate")                                                                  \
    X("get-header-value-multiline")                                                                \
    X("get-header-value-order")                                                                    \
    X("get-header-value-trim")                                                                     \
    X("get-relative-normalized")                                                                   \
    X("get-relative-relative-normalized")                                                          \
    X("get-relative-relative-unnormalized")                                                        \
    X("get-relative-unnormalized")                                                                 \
    X("get-slash-dot-slash-normalized")                                                            \
    X("get-slash-dot-slash-unnormalized")                                                          \
    X("get-slash-normalized")                                                                      \
    X("get-slash-pointless-dot-normalized")                                                        \
    X("get-slash-pointless-dot-unnormalized")                                                      \
    X("get-slash-unnormalized")                                                                    \
    X("get-slashes-normalized")                                                                    \
    X("get-slashes-unnormalized")                                                                  \
    X("get-space-normalized")                                                                      \
    X("get-space-unnormalized")                                                                    \
    X("get-unreserved")                                                                            \
    X("get-utf8")                                                                                  \
    X("get-vanilla")                                                                               \
    X("get-vanilla-empty-query-key")                                                               \
    X("get-vanilla-query")                                                                         \
    X("get-vanilla-query-order-encoded")                                                           \
    X("get-vanilla-query-order-key-case")                                                          \
    X("get-vanilla-query-unreserved")                                                              \
    X("get-vanilla-utf8-query")                                                                    \
    X("get-vanilla-with-session-token")                                                            \
    X("post-header-key-case")                                                                      \
    X("post-header-key-sort")                                                                      \
    X("post-header-value-case")                                                                    \
    X("post-sts-header-after")                                                                     \
    X("post-sts-header-before")                                                                    \
    X("post-vanilla")                                                                              \
    X("post-vanilla-empty-query-value")                                                            \
    X("post-vanilla-query")                                                                        \
    X("post-x-www-form-urlencoded")                                                                \
    X("post-x-www-form-urlencoded-parameters")

#define EXAMPLE_AKID "AKIDEXAMPLE"
#define EXAMPLE_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

/* ---- test data location ---- */

static char g_dir[4096];
static char g_tried[4096];

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/*
 * Finds the vector folder: KN_SIGV4_TESTDATA when set (meson test sets it to
 * the copy in this repository), else tests/unit/testdata/sigv4 under
 * KN_SOURCE_ROOT; or fails the test naming the path tried.
 */
static const char *testdata_dir(void)
{
    if (g_dir[0])
        return g_dir;
    const char *env = getenv("KN_SIGV4_TESTDATA");
    const char *root = getenv("KN_SOURCE_ROOT");
    if (env && *env)
        snprintf(g_dir, sizeof(g_dir), "%s", env);
    else if (root && *root)
        snprintf(g_dir, sizeof(g_dir), "%s/tests/unit/testdata/sigv4", root);
    else
        fail_msg("SigV4 test vectors not found: KN_SIGV4_TESTDATA and KN_SOURCE_ROOT are both unset "
                 "(run through meson test, or point KN_SIGV4_TESTDATA at tests/unit/testdata/sigv4)");
    if (!is_dir(g_dir)) {
        snprintf(g_tried, sizeof(g_tried), "%s", g_dir);
        g_dir[0] = '\0';
        fail_msg("SigV4 test vectors not found in %s (the 38 case folders of tests/unit/testdata/sigv4)",
                 g_tried);
    }
    return g_dir;
}

/* Whole file as raw bytes (NUL added, not counted). Fails the test if unreadable. */
static char *slurp(const char *dir, const char *name, const char *file, size_t *len_out)
{
    char path[8192];
    snprintf(path, sizeof(path), "%s/%s/%s", dir, name, file);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 8192;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
    }
    fclose(f);
    buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
}

/* ---- request.txt parsing ---- */

#define MAX_HDRS 32

typedef struct {
    char *request_line;
    char *method;
    char *path;
    char *query; /* NULL when no '?' */
    char *names[MAX_HDRS];
    char *values[MAX_HDRS]; /* continuation lines joined with "\n" as they were */
    size_t n;
    const char *body;
    size_t body_len;
} http_req_t;

static char *dupn(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* Next line [p, eol) without its LF or CRLF; returns the start of the following line. */
static const char *next_line(const char *p, const char *end, size_t *line_len)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *eol = nl ? nl : end;
    *line_len = (size_t)(eol - p);
    if (*line_len && p[*line_len - 1] == '\r')
        (*line_len)--;
    return nl ? nl + 1 : end;
}

static void parse_http(const char *buf, size_t len, http_req_t *r)
{
    memset(r, 0, sizeof(*r));
    const char *p = buf, *end = buf + len;
    size_t ll;
    const char *line = p;
    p = next_line(p, end, &ll);
    r->request_line = dupn(line, ll);
    /* "METHOD SP target SP HTTP/1.1"; the target may hold spaces (get-space-*). */
    char *sp1 = strchr(r->request_line, ' ');
    char *sp2 = strrchr(r->request_line, ' ');
    assert_true(sp1 && sp2 && sp2 > sp1);
    r->method = dupn(r->request_line, (size_t)(sp1 - r->request_line));
    char *target = dupn(sp1 + 1, (size_t)(sp2 - sp1 - 1));
    char *q = strchr(target, '?');
    if (q) {
        r->query = strdup(q + 1);
        *q = '\0';
    }
    r->path = target;

    while (p < end) {
        line = p;
        p = next_line(p, end, &ll);
        if (ll == 0)
            break; /* blank line: the body follows */
        if (line[0] == ' ' || line[0] == '\t') {
            assert_true(r->n > 0);
            char *prev = r->values[r->n - 1];
            size_t pl = strlen(prev);
            char *v = malloc(pl + 1 + ll + 1);
            assert_non_null(v);
            memcpy(v, prev, pl);
            v[pl] = '\n';
            memcpy(v + pl + 1, line, ll);
            v[pl + 1 + ll] = '\0';
            free(prev);
            r->values[r->n - 1] = v;
            continue;
        }
        const char *colon = memchr(line, ':', ll);
        assert_non_null(colon);
        assert_true(r->n < MAX_HDRS);
        r->names[r->n] = dupn(line, (size_t)(colon - line));
        r->values[r->n] = dupn(colon + 1, ll - (size_t)(colon - line) - 1);
        r->n++;
    }
    r->body = p;
    r->body_len = (size_t)(end - p);
}

static void free_http(http_req_t *r)
{
    free(r->request_line);
    free(r->method);
    free(r->path);
    free(r->query);
    for (size_t i = 0; i < r->n; i++) {
        free(r->names[i]);
        free(r->values[i]);
    }
}

/* Header multiset: sorted "lowercase-name\0value" strings. */
typedef struct {
    char *items[MAX_HDRS + 8];
    size_t n;
} hset_t;

static void hset_add(hset_t *s, const char *name, const char *value)
{
    assert_true(s->n < sizeof(s->items) / sizeof(s->items[0]));
    size_t nl = strlen(name), vl = strlen(value);
    char *it = malloc(nl + 1 + vl + 1);
    assert_non_null(it);
    for (size_t i = 0; i < nl; i++)
        it[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
    it[nl] = '=';
    memcpy(it + nl + 1, value, vl + 1);
    s->items[s->n++] = it;
}

static int strp_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void hset_free(hset_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->items[i]);
}

/* ---- the vector test ---- */

static time_t parse_iso8601(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    assert_int_equal(sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                            &tm.tm_hour, &tm.tm_min, &tm.tm_sec),
                     6);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return timegm(&tm);
}

static const char *json_str(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

static bool ctx_bool(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

static void assert_bytes_equal(const char *what, const char *name, const char *want, size_t want_len,
                               const char *got, size_t got_len)
{
    if (want_len == got_len && memcmp(want, got, want_len) == 0)
        return;
    fail_msg("%s: %s differs\n--- expected (%zu bytes)\n%.*s\n--- got (%zu bytes)\n%.*s\n---", name, what,
             want_len, (int)want_len, want, got_len, (int)got_len, got);
}

static void test_vector(void **state)
{
    const char *name = *state;
    const char *dir = testdata_dir();

    size_t req_len, ctx_len, creq_len, sts_len, sig_len, sreq_len;
    char *req_txt = slurp(dir, name, "request.txt", &req_len);
    char *ctx_txt = slurp(dir, name, "context.json", &ctx_len);
    char *want_creq = slurp(dir, name, "header-canonical-request.txt", &creq_len);
    char *want_sts = slurp(dir, name, "header-string-to-sign.txt", &sts_len);
    char *want_sig = slurp(dir, name, "header-signature.txt", &sig_len);
    char *want_sreq = slurp(dir, name, "header-signed-request.txt", &sreq_len);

    json_object *ctx = json_tokener_parse(ctx_txt);
    assert_non_null(ctx);
    json_object *jcreds;
    assert_true(json_object_object_get_ex(ctx, "credentials", &jcreds));
    kn__sigv4_creds_t creds = {
        .access_key_id = json_str(jcreds, "access_key_id"),
        .secret_access_key = json_str(jcreds, "secret_access_key"),
        .session_token = json_str(jcreds, "token"),
    };

    http_req_t r;
    parse_http(req_txt, req_len, &r);
    kn__hdr_t hdrs[MAX_HDRS];
    for (size_t i = 0; i < r.n; i++)
        hdrs[i] = (kn__hdr_t){r.names[i], r.values[i]};
    kn__sigv4_req_t req = {
        .method = r.method,
        .path = r.path,
        .query = r.query,
        .headers = hdrs,
        .n_headers = r.n,
        .body = r.body,
        .body_len = r.body_len,
        .region = json_str(ctx, "region"),
        .service = json_str(ctx, "service"),
        .now = parse_iso8601(json_str(ctx, "timestamp")),
        .normalize_path = ctx_bool(ctx, "normalize"),
        .sign_body = ctx_bool(ctx, "sign_body"),
        .omit_session_token = ctx_bool(ctx, "omit_session_token"),
    };

    kn__sigv4_cache_t *cache = kn__sigv4_cache_new();
    assert_non_null(cache);
    kn_buf_t creq = KN_BUF_INIT, sts = KN_BUF_INIT;
    kn__sigv4_out_t out;
    kn_error_t err;
    memset(&err, 0, sizeof(err));
    kn_err_t rc = kn__sigv4_sign(cache, &creds, &req, &out, &creq, &sts, &err);
    if (rc != KN_ERR_OK)
        fail_msg("%s: sign failed: %s", name, err.message);

    assert_bytes_equal("canonical request", name, want_creq, creq_len, creq.data, creq.len);
    assert_bytes_equal("string to sign", name, want_sts, sts_len, sts.data, sts.len);
    assert_bytes_equal("signature", name, want_sig, sig_len, out.signature, strlen(out.signature));

    /* Signed request: same request line and body, headers equal as a multiset. */
    http_req_t s;
    parse_http(want_sreq, sreq_len, &s);
    assert_string_equal(s.request_line, r.request_line);
    assert_bytes_equal("signed request body", name, s.body, s.body_len, r.body, r.body_len);
    hset_t want = {0}, got = {0};
    for (size_t i = 0; i < s.n; i++)
        hset_add(&want, s.names[i], s.values[i]);
    for (size_t i = 0; i < r.n; i++)
        hset_add(&got, r.names[i], r.values[i]);
    if (out.add_date_header)
        hset_add(&got, "X-Amz-Date", out.amz_date);
    if (out.add_token_header)
        hset_add(&got, "X-Amz-Security-Token", creds.session_token);
    if (out.add_content_sha_header)
        hset_add(&got, "x-amz-content-sha256", out.payload_hash);
    hset_add(&got, "Authorization", out.authorization);
    qsort(want.items, want.n, sizeof(char *), strp_cmp);
    qsort(got.items, got.n, sizeof(char *), strp_cmp);
    for (size_t i = 0; i < want.n || i < got.n; i++) {
        const char *w = i < want.n ? want.items[i] : "(none)";
        const char *g = i < got.n ? got.items[i] : "(none)";
        if (strcmp(w, g) != 0)
            fail_msg("%s: signed request headers differ: expected '%s', got '%s'", name, w, g);
    }

    /* Second signing: from the cache, same result. */
    kn__sigv4_out_t again;
    assert_int_equal(kn__sigv4_sign(cache, &creds, &req, &again, NULL, NULL, &err), KN_ERR_OK);
    assert_string_equal(again.authorization, out.authorization);
    uint64_t hits, misses;
    kn__sigv4_cache_stats(cache, &hits, &misses);
    assert_int_equal(hits, 1);
    assert_int_equal(misses, 1);

    hset_free(&want);
    hset_free(&got);
    free_http(&s);
    free_http(&r);
    kn__buf_free(&creq);
    kn__buf_free(&sts);
    kn__sigv4_cache_destroy(cache);
    json_object_put(ctx);
    free(req_txt);
    free(ctx_txt);
    free(want_creq);
    free(want_sts);
    free(want_sig);
    free(want_sreq);
}

/* Every case folder holds its ten files: a partial copy of the suite fails here. */
static void test_vectors_complete(void **state)
{
    (void)state;
    static const char *const names[] = {
#define NAME(n) n,
        VECTORS(NAME)
#undef NAME
    };
    static const char *const files[] = {
        "context.json", "request.txt", "header-canonical-request.txt", "header-string-to-sign.txt",
        "header-signature.txt", "header-signed-request.txt",
    };
    assert_int_equal(sizeof(names) / sizeof(names[0]), 38);
    const char *dir = testdata_dir();
    for (size_t i = 0; i < 38; i++) {
        for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
            char p[8192];
            struct stat st;
            snprintf(p, sizeof(p), "%s/%s/%s", dir, names[i], files[f]);
            if (stat(p, &st) != 0)
                fail_msg("missing vector file %s", p);
        }
    }
}

/* ---- signer unit tests ---- */

static const kn__hdr_t k_hdrs[] = {
    {"Host", "kinesis.us-east-1.amazonaws.com"},
    {"Content-Type", "application/x-amz-json-1.1"},
    {"X-Amz-Target", "Kinesis_20131202.PutRecords"},
};

static kn__sigv4_req_t base_req(void)
{
    static const char body[] = "{\"StreamName\":\"s\",\"Records\":[]}";
    return (kn__sigv4_req_t){
        .method = "POST",
        .path = "/",
        .headers = k_hdrs,
        .n_headers = 3,
        .body = body,
        .body_len = sizeof(body) - 1,
        .region = "us-east-1",
        .service = "kinesis",
        .now = 1440938160, /* 2015-08-30T12:36:00Z */
        .normalize_path = true,
    };
}

static const kn__sigv4_creds_t k_creds = {EXAMPLE_AKID, EXAMPLE_SECRET, NULL};

static void test_cache_hit_gives_same_signature(void **state)
{
    (void)state;
    kn__sigv4_req_t req = base_req();
    kn__sigv4_out_t uncached, first, second;
    kn_error_t err;
    assert_int_equal(kn__sigv4_sign(NULL, &k_creds, &req, &uncached, NULL, NULL, &err), KN_ERR_OK);

    kn__sigv4_cache_t *c = kn__sigv4_cache_new();
    assert_non_null(c);
    assert_int_equal(kn__sigv4_sign(c, &k_creds, &req, &first, NULL, NULL, &err), KN_ERR_OK);
    assert_int_equal(kn__sigv4_sign(c, &k_creds, &req, &second, NULL, NULL, &err), KN_ERR_OK);
    uint64_t hits, misses;
    kn__sigv4_cache_stats(c, &hits, &misses);
    assert_int_equal(misses, 1);
    assert_int_equal(hits, 1);
    assert_string_equal(first.authorization, uncached.authorization);
    assert_string_equal(second.authorization, uncached.authorization);
    assert_int_equal(strlen(second.signature), 64);

    /* Same day, later time: the key is reused, the signature changes. */
    req.now += 3600;
    kn__sigv4_out_t later;
    assert_int_equal(kn__sigv4_sign(c, &k_creds, &req, &later, NULL, NULL, &err), KN_ERR_OK);
    kn__sigv4_cache_stats(c, &hits, &misses);
    assert_int_equal(hits, 2);
    assert_int_equal(misses, 1);
    assert_string_not_equal(later.signature, first.signature);
    kn__sigv4_cache_destroy(c);
}

/* AWS's published key-derivation example (secret of the docs, 20120215, us-east-1, iam). */
static void test_derive_key_known_answer(void **state)
{
    (void)state;
    unsigned char key[32];
    char hex[65];
    assert_int_equal(kn__sigv4_derive_key(EXAMPLE_SECRET, "20120215", "us-east-1", "iam", key, NULL), KN_ERR_OK);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    assert_string_equal(hex, "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
}

static void test_keys_differ_by_date_region_service_secret(void **state)
{
    (void)state;
    unsigned char k[5][32];
    assert_int_equal(kn__sigv4_derive_key(EXAMPLE_SECRET, "20150830", "us-east-1", "kinesis", k[0], NULL), 0);
    assert_int_equal(kn__sigv4_derive_key(EXAMPLE_SECRET, "20150831", "us-east-1", "kinesis", k[1], NULL), 0);
    assert_int_equal(kn__sigv4_derive_key(EXAMPLE_SECRET, "20150830", "eu-west-1", "kinesis", k[2], NULL), 0);
    assert_int_equal(kn__sigv4_derive_key(EXAMPLE_SECRET, "20150830", "us-east-1", "dynamodb", k[3], NULL), 0);
    assert_int_equal(kn__sigv4_derive_key("another-secret", "20150830", "us-east-1", "kinesis", k[4], NULL), 0);
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            assert_memory_not_equal(k[i], k[j], 32);

    /* Through the cache: each variation is a miss, and its signature matches an
     * uncached signing (a stale key would be a wrong signature). */
    kn__sigv4_cache_t *c = kn__sigv4_cache_new();
    assert_non_null(c);
    kn__sigv4_req_t base = base_req();
    kn__sigv4_creds_t other_secret = {EXAMPLE_AKID, "another-secret", NULL};
    kn__sigv4_creds_t other_akid = {"AKIDOTHER", EXAMPLE_SECRET, NULL};
    struct {
        const kn__sigv4_creds_t *creds;
        time_t now;
        const char *region, *service;
    } v[] = {
        {&k_creds, base.now, "us-east-1", "kinesis"},
        {&k_creds, base.now + 86400, "us-east-1", "kinesis"},
        {&k_creds, base.now, "eu-west-1", "kinesis"},
        {&k_creds, base.now, "us-east-1", "dynamodb"},
        {&other_secret, base.now, "us-east-1", "kinesis"},
        {&other_akid, base.now, "us-east-1", "kinesis"},
    };
    char auths[6][1024];
    for (size_t i = 0; i < 6; i++) {
        kn__sigv4_req_t req = base;
        req.now = v[i].now;
        req.region = v[i].region;
        req.service = v[i].service;
        kn__sigv4_out_t cached, plain;
        kn_error_t err;
        assert_int_equal(kn__sigv4_sign(c, v[i].creds, &req, &cached, NULL, NULL, &err), KN_ERR_OK);
        assert_int_equal(kn__sigv4_sign(NULL, v[i].creds, &req, &plain, NULL, NULL, &err), KN_ERR_OK);
        assert_string_equal(cached.authorization, plain.authorization);
        memcpy(auths[i], cached.authorization, sizeof(auths[i]));
        uint64_t hits, misses;
        kn__sigv4_cache_stats(c, &hits, &misses);
        assert_int_equal(misses, i + 1);
        assert_int_equal(hits, 0);
    }
    for (int i = 0; i < 6; i++)
        for (int j = i + 1; j < 6; j++)
            assert_string_not_equal(auths[i], auths[j]);
    kn__sigv4_cache_destroy(c);
}

static void expect_error(const kn__sigv4_creds_t *creds, const kn__sigv4_req_t *req, kn_err_t code,
                         const char *fragment)
{
    kn__sigv4_out_t out;
    kn_error_t err;
    memset(&err, 0, sizeof(err));
    kn_err_t rc = kn__sigv4_sign(NULL, creds, req, &out, NULL, NULL, &err);
    if (rc != code || !strstr(err.message, fragment))
        fail_msg("expected error %d containing '%s', got %d: '%s'", (int)code, fragment, (int)rc, err.message);
    assert_null(strstr(err.message, EXAMPLE_SECRET));
}

static void test_bad_input_gives_clear_error(void **state)
{
    (void)state;
    kn__sigv4_req_t req = base_req();
    req.method = NULL;
    expect_error(&k_creds, &req, KN_ERR_INVALID_ARG, "no HTTP method");
    req.method = "";
    expect_error(&k_creds, &req, KN_ERR_INVALID_ARG, "no HTTP method");
    req.method = "PO ST";
    expect_error(&k_creds, &req, KN_ERR_INVALID_ARG, "method is not a token");

    req = base_req();
    req.headers = k_hdrs + 1; /* Content-Type and X-Amz-Target only */
    req.n_headers = 2;
    expect_error(&k_creds, &req, KN_ERR_INVALID_ARG, "no Host header");

    const kn__hdr_t two_hosts[] = {{"Host", "a"}, {"host", "b"}};
    req = base_req();
    req.headers = two_hosts;
    req.n_headers = 2;
    expect_error(&k_creds, &req, KN_ERR_INVALID_ARG, "more than one Host");

    const kn__hdr_t bad_name[] = {{"Host", "a"}, {"X Bad", "b"}};
    req.headers = bad_name;
    expect_error(&k_creds, &req, KN_ERR_INVALID_ARG, "not allowed in a header name");

    const kn__hdr_t bare_lf[] = {{"Host", "a"}, {"X-Inject", "a\nX-Evil: 1"}};
    req.headers = bare_lf;
    expect_error(&k_creds, &req, KN_ERR_INVALID_ARG, "'X-Inject' holds a line break");

    const kn__hdr_t bad_date[] = {{"Host", "a"}, {"X-Amz-Date", "2015-08-30"}};
    req.headers = bad_date;
    expect_error(&k_creds, &req, KN_ERR_INVALID_ARG, "X-Amz-Date header is not of the form");

    const kn__hdr_t null_value[] = {{"Host", "a"}, {"X-A", NULL}};
    req.headers = null_value;
    expect_error(&k_creds, &req, KN_ERR_INVALID_ARG, "header #1 has no value");

    req = base_req();
    req.region = "";
    expect_error(&k_creds, &req, KN_ERR_INVALID_ARG, "region is missing");
    req = base_req();
    req.service = NULL;
    expect_error(&k_creds, &req, KN_ERR_INVALID_ARG, "service name is missing");
    req = base_req();
    req.body = NULL;
    expect_error(&k_creds, &req, KN_ERR_INVALID_ARG, "body is NULL");

    req = base_req();
    kn__sigv4_creds_t no_secret = {EXAMPLE_AKID, "", NULL};
    expect_error(&no_secret, &req, KN_ERR_INVALID_ARG, "secret access key is missing");
    kn__sigv4_creds_t bad_akid = {"AKID/X", EXAMPLE_SECRET, NULL};
    expect_error(&bad_akid, &req, KN_ERR_INVALID_ARG, "access key id");
    expect_error(NULL, &req, KN_ERR_INVALID_ARG, "required");
}

/* A caller's X-Amz-Date is the signing time; the token and body hash are added as asked. */
static void test_given_date_and_added_headers(void **state)
{
    (void)state;
    const kn__hdr_t hdrs[] = {{"Host", "example.amazonaws.com"}, {"x-amz-date", " 20150830T123600Z "}};
    kn__sigv4_req_t req = base_req();
    req.headers = hdrs;
    req.n_headers = 2;
    req.now = 0; /* ignored */
    req.sign_body = true;
    kn__sigv4_creds_t creds = {EXAMPLE_AKID, EXAMPLE_SECRET, "TOKEN"};
    kn__sigv4_out_t out;
    kn_buf_t creq = KN_BUF_INIT;
    kn_error_t err;
    assert_int_equal(kn__sigv4_sign(NULL, &creds, &req, &out, &creq, NULL, &err), KN_ERR_OK);
    assert_string_equal(out.amz_date, "20150830T123600Z");
    assert_false(out.add_date_header);
    assert_true(out.add_token_header);
    assert_true(out.add_content_sha_header);
    char body_hash[65];
    kn__sha256_hex(req.body, req.body_len, body_hash);
    assert_string_equal(out.payload_hash, body_hash);
    assert_non_null(strstr(out.authorization,
                           "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token, "));
    assert_non_null(strstr(creq.data, "\nx-amz-security-token:TOKEN\n"));

    /* Unsigned token: still to be added, but not signed. */
    req.omit_session_token = true;
    assert_int_equal(kn__sigv4_sign(NULL, &creds, &req, &out, &creq, NULL, &err), KN_ERR_OK);
    assert_true(out.add_token_header);
    assert_null(strstr(creq.data, "x-amz-security-token"));
    assert_non_null(strstr(out.authorization, "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "));

    /* Precomputed payload hash wins over the body; never-signed headers are left out. */
    const kn__hdr_t hdrs2[] = {{"Host", "h"}, {"User-Agent", "x"}, {"Expect", "100-continue"}};
    req = base_req();
    req.headers = hdrs2;
    req.n_headers = 3;
    req.payload_sha256_hex = "UNSIGNED-PAYLOAD";
    assert_int_equal(kn__sigv4_sign(NULL, &k_creds, &req, &out, &creq, NULL, &err), KN_ERR_OK);
    assert_string_equal(out.payload_hash, "UNSIGNED-PAYLOAD");
    assert_non_null(strstr(out.authorization, "SignedHeaders=host;x-amz-date, "));
    size_t plen = strlen("\nUNSIGNED-PAYLOAD");
    assert_true(creq.len > plen && strcmp(creq.data + creq.len - plen, "\nUNSIGNED-PAYLOAD") == 0);
    kn__buf_free(&creq);
}

/* Inputs past the signer's stack buffers: many headers, long query, deep path. */
static void test_large_inputs_use_heap_correctly(void **state)
{
    (void)state;
    enum { NH = 60 };
    kn__hdr_t hdrs[NH + 1];
    char names[NH][16], values[NH][16];
    hdrs[0] = (kn__hdr_t){"Host", "h"};
    for (int i = 0; i < NH; i++) {
        int k = NH - 1 - i; /* reverse order: the signer must sort */
        snprintf(names[i], sizeof(names[i]), "X-H%02d", k);
        snprintf(values[i], sizeof(values[i]), "  v%d  ", k);
        hdrs[i + 1] = (kn__hdr_t){names[i], values[i]};
    }
    kn_buf_t query = KN_BUF_INIT, want_query = KN_BUF_INIT, path = KN_BUF_INIT, want = KN_BUF_INIT;
    for (int i = 99; i >= 0; i--)
        assert_int_equal(kn__buf_printf(&query, "%sk%02d=%%e1%%88%%b4+%d", i == 99 ? "" : "&", i, i), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(kn__buf_printf(&want_query, "%sk%02d=%%E1%%88%%B4%%2B%d", i ? "&" : "", i, i), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(kn__buf_printf(&path, "/s%d/./x/..//", i), 0);

    assert_int_equal(kn__buf_puts(&want, "GET\n"), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(kn__buf_printf(&want, "/s%d", i), 0);
    assert_int_equal(kn__buf_printf(&want, "/\n%s\nhost:h\nx-amz-date:20150830T123600Z\n", want_query.data), 0);
    for (int i = 0; i < NH; i++)
        assert_int_equal(kn__buf_printf(&want, "x-h%02d:v%d\n", i, i), 0);
    assert_int_equal(kn__buf_puts(&want, "\nhost;x-amz-date"), 0);
    for (int i = 0; i < NH; i++)
        assert_int_equal(kn__buf_printf(&want, ";x-h%02d", i), 0);
    assert_int_equal(kn__buf_puts(&want, "\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), 0);

    kn__sigv4_req_t req = {
        .method = "GET", .path = path.data, .query = query.data, .headers = hdrs, .n_headers = NH + 1,
        .region = "us-east-1", .service = "service", .now = 1440938160, .normalize_path = true,
    };
    kn__sigv4_out_t out;
    kn_buf_t creq = KN_BUF_INIT;
    kn_error_t err;
    assert_int_equal(kn__sigv4_sign(NULL, &k_creds, &req, &out, &creq, NULL, &err), KN_ERR_OK);
    assert_bytes_equal("canonical request", "large", want.data, want.len, creq.data, creq.len);
    kn__buf_free(&creq);
    kn__buf_free(&want);
    kn__buf_free(&query);
    kn__buf_free(&want_query);
    kn__buf_free(&path);
}

static void test_authorization_too_long_is_an_error(void **state)
{
    (void)state;
    enum { NH = 40 };
    kn__hdr_t hdrs[NH + 1];
    char names[NH][40];
    hdrs[0] = (kn__hdr_t){"Host", "h"};
    for (int i = 0; i < NH; i++) {
        snprintf(names[i], sizeof(names[i]), "x-a-rather-long-header-name-%03d", i);
        hdrs[i + 1] = (kn__hdr_t){names[i], "v"};
    }
    kn__sigv4_req_t req = base_req();
    req.headers = hdrs;
    req.n_headers = NH + 1;
    expect_error(&k_creds, &req, KN_ERR_TOO_LARGE, "would exceed 1023 bytes");
}

typedef struct {
    kn__sigv4_cache_t *cache;
    const char *want;
    int failures;
} thr_arg_t;

static void *signer_thread(void *p)
{
    thr_arg_t *a = p;
    kn__sigv4_req_t req = base_req();
    for (int i = 0; i < 300; i++) {
        kn__sigv4_out_t out;
        kn_error_t err;
        if (kn__sigv4_sign(a->cache, &k_creds, &req, &out, NULL, NULL, &err) != KN_ERR_OK ||
            strcmp(out.authorization, a->want) != 0)
            a->failures++;
    }
    return NULL;
}

static void test_concurrent_signing_with_shared_cache(void **state)
{
    (void)state;
    kn__sigv4_req_t req = base_req();
    kn__sigv4_out_t ref;
    kn_error_t err;
    assert_int_equal(kn__sigv4_sign(NULL, &k_creds, &req, &ref, NULL, NULL, &err), KN_ERR_OK);
    kn__sigv4_cache_t *c = kn__sigv4_cache_new();
    assert_non_null(c);
    pthread_t t[4];
    thr_arg_t a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (thr_arg_t){c, ref.authorization, 0};
        assert_int_equal(pthread_create(&t[i], NULL, signer_thread, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(a[i].failures, 0);
    }
    uint64_t hits, misses;
    kn__sigv4_cache_stats(c, &hits, &misses);
    assert_int_equal(hits + misses, 1200);
    assert_true(misses >= 1 && misses <= 4);
    kn__sigv4_cache_destroy(c);
}

static void test_amz_date(void **state)
{
    (void)state;
    char d[17];
    kn__sigv4_amz_date(1440938160, d);
    assert_string_equal(d, "20150830T123600Z");
    kn__sigv4_amz_date(0, d);
    assert_string_equal(d, "19700101T000000Z");
    kn__sigv4_amz_date((time_t)253402300800LL, d); /* year 10000 */
    assert_string_equal(d, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_complete),
#define VEC(n) {"vector " n, test_vector, NULL, NULL, (void *)n},
        VECTORS(VEC)
#undef VEC
        cmocka_unit_test(test_cache_hit_gives_same_signature),
        cmocka_unit_test(test_derive_key_known_answer),
        cmocka_unit_test(test_keys_differ_by_date_region_service_secret),
        cmocka_unit_test(test_bad_input_gives_clear_error),
        cmocka_unit_test(test_given_date_and_added_headers),
        cmocka_unit_test(test_large_inputs_use_heap_correctly),
        cmocka_unit_test(test_authorization_too_long_is_an_error),
        cmocka_unit_test(test_concurrent_signing_with_shared_cache),
        cmocka_unit_test(test_amz_date),
    };
    return cmocka_run_group_tests_name("sigv4", tests, NULL, NULL);
}
