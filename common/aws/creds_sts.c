/*
 * STS for credentials: AssumeRoleWithWebIdentity (unsigned) and AssumeRole
 * (SigV4, service "sts"), query protocol over POST, XML responses.
 *
 * The XML reader here is deliberately small: it looks up elements by name
 * inside a bounded view, never reads past it, limits value sizes and decodes
 * the five predefined entities, numeric character references and CDATA.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "creds_int.h"
#include "http_sync.h"
#include "sigv4.h"

#define KN__STS_MAX_RESPONSE (256u * 1024u)
#define KN__STS_MAX_VALUE (16u * 1024u)
#define KN__WEB_IDENTITY_TOKEN_MAX (64u * 1024u)

/* ------------------------------------------------------------------ XML */

/*
 * Finds the content of the first element named tag in [p, p + n): between
 * "<tag>" (or "<tag attr...>") and the matching "</tag>". 0 when found.
 */
static int xml_element(const char *p, size_t n, const char *tag, const char **content,
                       size_t *content_len)
{
    size_t tl = strlen(tag);
    const char *end = p + n;
    const char *cur = p;
    while (cur < end) {
        const char *lt = memchr(cur, '<', (size_t)(end - cur));
        if (!lt || (size_t)(end - lt) < tl + 2)
            return -1;
        if (memcmp(lt + 1, tag, tl) == 0) {
            const char *after = lt + 1 + tl;
            if (*after == '>' || *after == ' ' || *after == '\t' || *after == '\n' ||
                *after == '\r' || *after == '/') {
                const char *gt = memchr(after, '>', (size_t)(end - after));
                if (!gt)
                    return -1;
                if (gt[-1] == '/') { /* <tag/> */
                    *content = gt;
                    *content_len = 0;
                    return 0;
                }
                const char *body = gt + 1;
                const char *scan = body;
                while (scan < end) {
                    const char *close = memchr(scan, '<', (size_t)(end - scan));
                    if (!close || (size_t)(end - close) < tl + 3)
                        return -1;
                    if (close[1] == '/' && memcmp(close + 2, tag, tl) == 0 &&
                        close[2 + tl] == '>') {
                        *content = body;
                        *content_len = (size_t)(close - body);
                        return 0;
                    }
                    scan = close + 1;
                }
                return -1;
            }
        }
        cur = lt + 1;
    }
    return -1;
}

static void put_utf8(kn_buf_t *b, unsigned long cp, int *bad)
{
    char u[4];
    size_t n;
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        *bad = 1;
        return;
    }
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    if (kn__buf_append(b, u, n) != 0)
        *bad = 1;
}

/* Decodes element text into out (trimmed). 0, or -1 on a malformed or oversized value. */
static int xml_text(const char *p, size_t n, kn_buf_t *out)
{
    int bad = 0;
    kn__buf_reset(out);
    while (n && isspace((unsigned char)*p)) {
        p++;
        n--;
    }
    while (n && isspace((unsigned char)p[n - 1]))
        n--;
    if (n > KN__STS_MAX_VALUE)
        return -1;
    if (n >= 12 && memcmp(p, "<![CDATA[", 9) == 0 && memcmp(p + n - 3, "]]>", 3) == 0)
        return kn__buf_append(out, p + 9, n - 12) == 0 ? 0 : -1;
    for (size_t i = 0; i < n && !bad; i++) {
        if (p[i] == '<') {
            bad = 1; /* nested markup where text was expected */
        } else if (p[i] != '&') {
            if (kn__buf_putc(out, p[i]) != 0)
                bad = 1;
        } else {
            const char *semi = memchr(p + i, ';', n - i < 12 ? n - i : 12);
            if (!semi) {
                bad = 1;
                break;
            }
            const char *ent = p + i + 1;
            size_t el = (size_t)(semi - ent);
            static const struct {
                const char *name;
                char c;
            } named[] = {{"lt", '<'}, {"gt", '>'}, {"amp", '&'}, {"quot", '"'}, {"apos", '\''}};
            int done = 0;
            for (size_t k = 0; k < sizeof(named) / sizeof(named[0]); k++) {
                if (strlen(named[k].name) == el && memcmp(ent, named[k].name, el) == 0) {
                    if (kn__buf_putc(out, named[k].c) != 0)
                        bad = 1;
                    done = 1;
                    break;
                }
            }
            if (!done) {
                if (el < 2 || ent[0] != '#') {
                    bad = 1;
                    break;
                }
                int hex = ent[1] == 'x' || ent[1] == 'X';
                unsigned long cp = 0;
                size_t k = hex ? 2 : 1;
                if (k >= el)
                    bad = 1;
                for (; k < el && !bad; k++) {
                    int c = (unsigned char)ent[k];
                    int d = isdigit(c)           ? c - '0'
                            : hex && isxdigit(c) ? (tolower(c) - 'a' + 10)
                                                 : -1;
                    if (d < 0 || cp > 0x10FFFF)
                        bad = 1;
                    else
                        cp = cp * (hex ? 16 : 10) + (unsigned long)d;
                }
                if (!bad)
                    put_utf8(out, cp, &bad);
            }
            i = (size_t)(semi - p);
        }
    }
    if (!bad && kn__buf_reserve(out, 0) != 0)
        bad = 1;
    return bad ? -1 : 0;
}

/* Text of the element path a/b/... ("" segments not allowed), decoded into out. 0 or -1. */
static int xml_path_text(const char *p, size_t n, const char *const *path, kn_buf_t *out)
{
    const char *cp = p;
    size_t cn = n;
    for (; *path; path++) {
        const char *c;
        size_t l;
        if (xml_element(cp, cn, *path, &c, &l) != 0)
            return -1;
        cp = c;
        cn = l;
    }
    return xml_text(cp, cn, out);
}

/* ------------------------------------------------------------ requests */

/*
 * Explicit option, AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, the selected
 * profile's endpoint_url, else the regional endpoint (the order of
 * common/aws/endpoint.c, as for the other services).
 */
static char *sts_url(kn__creds_ctx_t *ctx, kn_error_t *err)
{
    const char *v = ctx->opts && ctx->opts->sts_endpoint && *ctx->opts->sts_endpoint
                        ? ctx->opts->sts_endpoint
                        : NULL;
    if (!v)
        v = kn__creds_env("AWS_ENDPOINT_URL_STS");
    if (!v)
        v = kn__creds_env("AWS_ENDPOINT_URL");
    if (!v)
        v = kn__creds_profile_endpoint_url(ctx);
    kn_buf_t b = KN_BUF_INIT;
    if (v) {
        if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) {
            kn__error_set(err, KN_ERR_CONF_INVALID, "STS endpoint '%s' is not an http(s) URL", v);
            return NULL;
        }
        if (kn__buf_puts(&b, v) != 0)
            goto nomem;
    } else {
        const char *region = kn__creds_region(ctx);
        if (!region)
            goto nomem;
        if (kn__buf_printf(&b, "https://sts.%s.amazonaws.com%s", region,
                           strncmp(region, "cn-", 3) == 0 ? ".cn" : "") != 0)
            goto nomem;
    }
    return kn__buf_steal(&b);
nomem:
    kn__buf_free(&b);
    kn__error_set(err, KN_ERR_NOMEM, "out of memory");
    return NULL;
}

/* Splits "scheme://host[:port]/path?query" into host[:port] and path (malloc'd). */
static int split_url(const char *url, char **host, char **path)
{
    const char *h = strstr(url, "://");
    *host = *path = NULL;
    if (!h)
        return -1;
    h += 3;
    size_t hl = strcspn(h, "/?#");
    if (hl == 0)
        return -1;
    const char *rest = h + hl;
    size_t pl = *rest == '/' ? strcspn(rest, "?#") : 0;
    *host = strndup(h, hl);
    *path = pl ? strndup(rest, pl) : strdup("/");
    if (!*host || !*path) {
        free(*host);
        free(*path);
        *host = *path = NULL;
        return -1;
    }
    return 0;
}

/* The first bytes of a body for a message: printable ASCII, white space folded. */
static void body_start(const char *p, size_t n, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < size; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch < 0x20 || ch >= 0x7f)
            ch = ch == '\n' || ch == '\r' || ch == '\t' ? ' ' : '?';
        if (ch == ' ' && (o == 0 || out[o - 1] == ' '))
            continue;
        out[o++] = (char)ch;
    }
    while (o && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
}

/* Maps an STS error code to our error codes. */
static kn_err_t sts_error_code(const char *code, long status)
{
    if (strcmp(code, "ExpiredTokenException") == 0 || strcmp(code, "ExpiredToken") == 0)
        return KN_ERR_EXPIRED_TOKEN;
    if (strcmp(code, "Throttling") == 0 || strcmp(code, "ThrottlingException") == 0)
        return KN_ERR_THROTTLED;
    if (strcmp(code, "RegionDisabledException") == 0 || strcmp(code, "ValidationError") == 0 ||
        strcmp(code, "MalformedPolicyDocument") == 0)
        return KN_ERR_VALIDATION;
    if (status == 401 || status == 403 || strcmp(code, "AccessDenied") == 0 ||
        strcmp(code, "InvalidIdentityToken") == 0 || strcmp(code, "InvalidClientTokenId") == 0 ||
        strcmp(code, "SignatureDoesNotMatch") == 0 || strcmp(code, "IDPRejectedClaim") == 0)
        return KN_ERR_AUTH;
    return KN_ERR_SERVICE;
}

kn_err_t kn__sts_parse_response(long status, const char *x, size_t xn, const char *what,
                                const char *role_arn, const char *source, kn__creds_t *out,
                                kn_error_t *err)
{
    kn_err_t rc = KN_ERR_OK;
    kn_buf_t ak = KN_BUF_INIT, sk = KN_BUF_INIT, tok = KN_BUF_INIT, exp = KN_BUF_INIT;
    kn_buf_t code = KN_BUF_INIT, msg = KN_BUF_INIT, rid = KN_BUF_INIT;
    char result_tag[64];
    if (!x)
        x = "";
    if (status != 200) {
        const char *const p_code[] = {"Error", "Code", NULL};
        const char *const p_msg[] = {"Error", "Message", NULL};
        const char *const p_rid[] = {"RequestId", NULL};
        if (xml_path_text(x, xn, p_code, &code) != 0 || code.len == 0 || code.len > 100) {
            /* Not STS's XML (a proxy's page, say): show how the body starts, so the cause shows. */
            char start[121];
            body_start(x, xn, start, sizeof(start));
            rc = kn__error_set(err, status >= 500 ? KN_ERR_SERVICE : KN_ERR_BAD_RESPONSE,
                               "STS %s for %s: HTTP %ld with no STS error in the body (%zu bytes%s%s%s)",
                               what, role_arn, status, xn, start[0] ? ": \"" : "", start,
                               start[0] ? "\"" : "");
        } else {
            if (xml_path_text(x, xn, p_msg, &msg) != 0)
                kn__buf_reset(&msg);
            rc = kn__error_set(err, sts_error_code(code.data, status),
                               "STS %s for %s: %s: %.300s (HTTP %ld)", what, role_arn, code.data,
                               msg.data ? msg.data : "", status);
            if (err)
                snprintf(err->aws_type, sizeof(err->aws_type), "%s", code.data);
        }
        if (err) {
            err->http_status = (int)status;
            err->retriable = status >= 500 || rc == KN_ERR_THROTTLED;
            if (xml_path_text(x, xn, p_rid, &rid) == 0 && rid.len &&
                rid.len < sizeof(err->request_id))
                snprintf(err->request_id, sizeof(err->request_id), "%s", rid.data);
        }
        goto out;
    }
    snprintf(result_tag, sizeof(result_tag), "%sResult", what);
    const char *const p_ak[] = {result_tag, "Credentials", "AccessKeyId", NULL};
    const char *const p_sk[] = {result_tag, "Credentials", "SecretAccessKey", NULL};
    const char *const p_tok[] = {result_tag, "Credentials", "SessionToken", NULL};
    const char *const p_exp[] = {result_tag, "Credentials", "Expiration", NULL};
    time_t expiration = 0;
    if (xml_path_text(x, xn, p_ak, &ak) != 0 || ak.len == 0 ||
        xml_path_text(x, xn, p_sk, &sk) != 0 || sk.len == 0 ||
        xml_path_text(x, xn, p_tok, &tok) != 0 || tok.len == 0) {
        rc = kn__error_set(err, KN_ERR_BAD_RESPONSE,
                           "STS %s for %s: response has no complete %s/Credentials element", what,
                           role_arn, result_tag);
        goto out;
    }
    /* A NUL (a character reference &#0; or a raw byte) would cut the key short where it is used. */
    if (memchr(ak.data, 0, ak.len) || memchr(sk.data, 0, sk.len) || memchr(tok.data, 0, tok.len)) {
        rc = kn__error_set(err, KN_ERR_BAD_RESPONSE,
                           "STS %s for %s: a credential in the response contains a NUL character",
                           what, role_arn);
        goto out;
    }
    if (xml_path_text(x, xn, p_exp, &exp) != 0 ||
        kn__creds_parse_time(exp.data, exp.len, &expiration) != 0) {
        rc = kn__error_set(err, KN_ERR_BAD_RESPONSE,
                           "STS %s for %s: missing or malformed Credentials/Expiration", what,
                           role_arn);
        goto out;
    }
    if (kn__creds_fill(out, ak.data, ak.len, sk.data, sk.len, tok.data, tok.len, expiration,
                       source) != 0) {
        rc = kn__error_set(err, KN_ERR_NOMEM, "out of memory");
        goto out;
    }
out:
    if (sk.data)
        explicit_bzero(sk.data, sk.cap);
    if (tok.data)
        explicit_bzero(tok.data, tok.cap);
    kn__buf_free(&ak);
    kn__buf_free(&sk);
    kn__buf_free(&tok);
    kn__buf_free(&exp);
    kn__buf_free(&code);
    kn__buf_free(&msg);
    kn__buf_free(&rid);
    return rc;
}

/*
 * Sends one STS request and turns the response into credentials. what is
 * the operation name ("AssumeRole"), used for the XML result element and
 * messages.
 */
static kn_err_t sts_call(kn__creds_ctx_t *ctx, const char *what, const char *role_arn,
                         const char *url, const char *const *headers, const kn_buf_t *body,
                         const char *source, kn__creds_t *out, kn_error_t *err)
{
    kn_err_t rc = KN_ERR_OK;
    kn__http_sync_resp_t resp = {0, KN_BUF_INIT};
    kn__http_sync_req_t req = {
        .method = "POST",
        .url = url,
        .headers = headers,
        .body = body->data,
        .body_len = body->len,
        .timeout_ms = kn__creds_timeout_ms(ctx),
        .ca_bundle = kn__creds_ca_bundle(ctx),
        .tls_verify = ctx->opts ? ctx->opts->tls_verify : true,
        .max_body = KN__STS_MAX_RESPONSE,
    };
    rc = kn__http_sync_cancellable(&req, ctx->opts ? ctx->opts->cancel : NULL, &resp, err);
    if (rc != KN_ERR_OK) {
        kn__error_prefix(err, "STS %s for %s", what, role_arn);
        goto out;
    }
    rc = kn__sts_parse_response(resp.status, resp.body.data, resp.body.len, what, role_arn, source,
                                out, err);
out:
    if (resp.body.data)
        explicit_bzero(resp.body.data, resp.body.cap);
    kn__http_sync_resp_free(&resp);
    return rc;
}

static void default_session_name(char *buf, size_t size)
{
    snprintf(buf, size, "libkinesis-%lld", (long long)time(NULL));
}

/* Reads a web identity token file (bounded; surrounding whitespace trimmed). */
static kn_err_t read_token_file(const char *path, kn_buf_t *out, kn_error_t *err)
{
    kn_err_t rc = KN_ERR_OK;
    char *full = kn__path_expand_home(path);
    FILE *f = NULL;
    if (!full)
        return kn__error_set(err, KN_ERR_NOMEM, "out of memory");
    f = fopen(full, "rb");
    if (!f) {
        rc = kn__error_set(err, KN_ERR_IO, "cannot read web identity token file %s: %s", full,
                           strerror(errno));
        goto out;
    }
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (out->len + got > KN__WEB_IDENTITY_TOKEN_MAX) {
            rc = kn__error_set(err, KN_ERR_TOO_LARGE,
                               "web identity token file %s is larger than %u bytes", full,
                               KN__WEB_IDENTITY_TOKEN_MAX);
            goto out;
        }
        if (kn__buf_append(out, chunk, got) != 0) {
            rc = kn__error_set(err, KN_ERR_NOMEM, "out of memory");
            goto out;
        }
    }
    while (out->len && isspace((unsigned char)out->data[out->len - 1]))
        out->data[--out->len] = '\0';
    size_t lead = 0;
    while (lead < out->len && isspace((unsigned char)out->data[lead]))
        lead++;
    if (lead) {
        memmove(out->data, out->data + lead, out->len - lead + 1);
        out->len -= lead;
    }
    if (out->len == 0)
        rc = kn__error_set(err, KN_ERR_CREDENTIALS, "web identity token file %s is empty", full);
out:
    if (f)
        fclose(f);
    free(full);
    return rc;
}

kn_err_t kn__sts_assume_role_with_web_identity(kn__creds_ctx_t *ctx, const char *role_arn,
                                               const char *session_name, const char *token_file,
                                               kn__creds_t *out, kn_error_t *err)
{
    kn_err_t rc = KN_ERR_OK;
    kn_buf_t token = KN_BUF_INIT, body = KN_BUF_INIT;
    char *url = NULL;
    char name[64];

    rc = read_token_file(token_file, &token, err);
    if (rc != KN_ERR_OK)
        goto out;
    url = sts_url(ctx, err);
    if (!url) {
        rc = err ? err->code : KN_ERR_NOMEM;
        goto out;
    }
    if (!session_name || !*session_name) {
        default_session_name(name, sizeof(name));
        session_name = name;
    }
    if (kn__buf_form_pair(&body, "Action", "AssumeRoleWithWebIdentity") != 0 ||
        kn__buf_form_pair(&body, "Version", "2011-06-15") != 0 ||
        kn__buf_form_pair(&body, "RoleArn", role_arn) != 0 ||
        kn__buf_form_pair(&body, "RoleSessionName", session_name) != 0 ||
        kn__buf_form_pair(&body, "WebIdentityToken", token.data) != 0) {
        rc = kn__error_set(err, KN_ERR_NOMEM, "out of memory");
        goto out;
    }
    const char *const headers[] = {"Content-Type: application/x-www-form-urlencoded; charset=utf-8",
                                   "Accept: text/xml", NULL};
    rc = sts_call(ctx, "AssumeRoleWithWebIdentity", role_arn, url, headers, &body, "web-identity",
                  out, err);
out:
    if (token.data)
        memset(token.data, 0, token.cap);
    if (body.data)
        memset(body.data, 0, body.cap);
    kn__buf_free(&token);
    kn__buf_free(&body);
    free(url);
    return rc;
}

kn_err_t kn__sts_assume_role(kn__creds_ctx_t *ctx, const kn__creds_t *source, const char *role_arn,
                             const char *session_name, const char *external_id, long duration_s,
                             kn__creds_t *out, kn_error_t *err)
{
    kn_err_t rc = KN_ERR_OK;
    kn_buf_t body = KN_BUF_INIT;
    kn_buf_t h_auth = KN_BUF_INIT, h_date = KN_BUF_INIT, h_token = KN_BUF_INIT, h_sha = KN_BUF_INIT,
             h_host = KN_BUF_INIT;
    char *url = NULL, *host = NULL, *path = NULL;
    char name[64], dur[32];
    kn__sigv4_out_t sig;
    const char *region = NULL;

    url = sts_url(ctx, err);
    if (!url) {
        rc = err ? err->code : KN_ERR_NOMEM;
        goto out;
    }
    region = kn__creds_region(ctx);
    if (!region || split_url(url, &host, &path) != 0) {
        rc = kn__error_set(err, region ? KN_ERR_CONF_INVALID : KN_ERR_NOMEM,
                           "STS endpoint '%s' is not a valid URL", url);
        goto out;
    }
    if (!session_name || !*session_name) {
        default_session_name(name, sizeof(name));
        session_name = name;
    }
    if (kn__buf_form_pair(&body, "Action", "AssumeRole") != 0 ||
        kn__buf_form_pair(&body, "Version", "2011-06-15") != 0 ||
        kn__buf_form_pair(&body, "RoleArn", role_arn) != 0 ||
        kn__buf_form_pair(&body, "RoleSessionName", session_name) != 0)
        goto nomem;
    if (external_id && *external_id && kn__buf_form_pair(&body, "ExternalId", external_id) != 0)
        goto nomem;
    if (duration_s > 0) {
        snprintf(dur, sizeof(dur), "%ld", duration_s);
        if (kn__buf_form_pair(&body, "DurationSeconds", dur) != 0)
            goto nomem;
    }

    const char *content_type = "application/x-www-form-urlencoded; charset=utf-8";
    kn__hdr_t sh[] = {{"Host", host}, {"Content-Type", content_type}};
    kn__sigv4_req_t sreq = {
        .method = "POST",
        .path = path,
        .query = NULL,
        .headers = sh,
        .n_headers = sizeof(sh) / sizeof(sh[0]),
        .body = body.data,
        .body_len = body.len,
        .region = region,
        .service = "sts",
        .now = time(NULL) + (ctx->opts && ctx->opts->clock_skew_s
                                 ? (time_t)__atomic_load_n(ctx->opts->clock_skew_s, __ATOMIC_RELAXED)
                                 : 0),
    };
    kn__sigv4_creds_t screds = {source->access_key_id, source->secret_access_key,
                                source->session_token};
    memset(&sig, 0, sizeof(sig));
    rc = kn__sigv4_sign(NULL, &screds, &sreq, &sig, NULL, NULL, err);
    if (rc != KN_ERR_OK) {
        kn__error_prefix(err, "STS AssumeRole for %s: signing failed", role_arn);
        goto out;
    }
    const char *headers[8];
    size_t nh = 0;
    if (kn__buf_printf(&h_host, "Host: %s", host) != 0 ||
        kn__buf_printf(&h_auth, "Authorization: %s", sig.authorization) != 0)
        goto nomem;
    headers[nh++] = h_host.data;
    headers[nh++] = "Content-Type: application/x-www-form-urlencoded; charset=utf-8";
    headers[nh++] = h_auth.data;
    if (sig.add_date_header) {
        if (kn__buf_printf(&h_date, "X-Amz-Date: %s", sig.amz_date) != 0)
            goto nomem;
        headers[nh++] = h_date.data;
    }
    if (sig.add_token_header && source->session_token && *source->session_token) {
        if (kn__buf_printf(&h_token, "X-Amz-Security-Token: %s", source->session_token) != 0)
            goto nomem;
        headers[nh++] = h_token.data;
    }
    if (sig.add_content_sha_header) {
        if (kn__buf_printf(&h_sha, "x-amz-content-sha256: %s", sig.payload_hash) != 0)
            goto nomem;
        headers[nh++] = h_sha.data;
    }
    headers[nh++] = "Accept: text/xml";
    headers[nh] = NULL;
    KN_LOG(ctx->opts ? ctx->opts->log : NULL, KN_LOG_DEBUG, KN_DBG_CREDS,
           "STS AssumeRole %s at %s (region %s)", role_arn, url, region);
    rc = sts_call(ctx, "AssumeRole", role_arn, url, headers, &body, "assume-role", out, err);
    goto out;
nomem:
    rc = kn__error_set(err, KN_ERR_NOMEM, "out of memory");
out:
    if (h_token.data)
        memset(h_token.data, 0, h_token.cap);
    kn__buf_free(&body);
    kn__buf_free(&h_auth);
    kn__buf_free(&h_date);
    kn__buf_free(&h_token);
    kn__buf_free(&h_sha);
    kn__buf_free(&h_host);
    free(url);
    free(host);
    free(path);
    return rc;
}
