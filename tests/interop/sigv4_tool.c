/*
 * sigv4_tool: signs requests read as JSON lines on stdin with our signer and
 * prints one JSON line per request on stdout, for sigv4_botocore.py.
 *
 * Input line: {"method", "path", "query", "headers": [[name, value], ...],
 *   "body_b64", "region", "service", "time" (UTC seconds), "access_key",
 *   "secret", "token" (optional), "normalize" (default true), "sign_body",
 *   "omit_session_token" (default false)}
 * Output line: {"authorization", "canonical"} or {"error"}.
 * One signature cache serves all lines, as one client's would.
 */
#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sigv4.h"

#define MAX_HEADERS 256

static const char *get_str(json_object *o, const char *key)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
        return NULL;
    return json_object_get_string(v);
}

static int get_bool(json_object *o, const char *key, int dflt)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
        return dflt;
    return json_object_get_boolean(v);
}

/* Decodes base64 into a malloc'd buffer; -1 on bad input. */
static int b64_decode(const char *s, unsigned char **out, size_t *out_len)
{
    size_t n = strlen(s);
    *out = malloc(n / 4 * 3 + 1);
    *out_len = 0;
    if (!*out || n % 4)
        return -1;
    if (n == 0)
        return 0;
    int len = EVP_DecodeBlock(*out, (const unsigned char *)s, (int)n);
    if (len < 0)
        return -1;
    size_t pad = (s[n - 1] == '=') + (s[n - 2] == '=');
    *out_len = (size_t)len - pad;
    return 0;
}

static void print_result(json_object *res)
{
    fputs(json_object_to_json_string_ext(res, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE), stdout);
    fputc('\n', stdout);
}

static void sign_line(kn__sigv4_cache_t *cache, const char *line, kn_buf_t *creq)
{
    json_object *res = json_object_new_object();
    json_object *in = json_tokener_parse(line);
    unsigned char *body = NULL;
    size_t body_len = 0;
    kn__hdr_t hdrs[MAX_HEADERS];
    size_t n = 0;
    if (!in) {
        json_object_object_add(res, "error", json_object_new_string("input line is not JSON"));
        goto out;
    }
    json_object *jh;
    if (json_object_object_get_ex(in, "headers", &jh) && json_object_is_type(jh, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(jh) && n < MAX_HEADERS; i++) {
            json_object *pair = json_object_array_get_idx(jh, i);
            hdrs[n].name = json_object_get_string(json_object_array_get_idx(pair, 0));
            hdrs[n].value = json_object_get_string(json_object_array_get_idx(pair, 1));
            n++;
        }
    }
    const char *b64 = get_str(in, "body_b64");
    if (b64 && b64_decode(b64, &body, &body_len) != 0) {
        json_object_object_add(res, "error", json_object_new_string("body_b64 is not base64"));
        goto out;
    }
    json_object *jt;
    time_t now = json_object_object_get_ex(in, "time", &jt) ? (time_t)json_object_get_int64(jt) : 0;
    kn__sigv4_creds_t creds = {
        .access_key_id = get_str(in, "access_key"),
        .secret_access_key = get_str(in, "secret"),
        .session_token = get_str(in, "token"),
    };
    kn__sigv4_req_t req = {
        .method = get_str(in, "method"),
        .path = get_str(in, "path"),
        .query = get_str(in, "query"),
        .headers = hdrs,
        .n_headers = n,
        .body = body,
        .body_len = body_len,
        .region = get_str(in, "region"),
        .service = get_str(in, "service"),
        .now = now,
        .normalize_path = get_bool(in, "normalize", 1),
        .sign_body = get_bool(in, "sign_body", 0),
        .omit_session_token = get_bool(in, "omit_session_token", 0),
    };
    kn__sigv4_out_t out;
    kn_error_t err;
    memset(&err, 0, sizeof(err));
    if (kn__sigv4_sign(cache, &creds, &req, &out, creq, NULL, &err) != KN_ERR_OK) {
        json_object_object_add(res, "error", json_object_new_string(err.message));
        goto out;
    }
    json_object_object_add(res, "authorization", json_object_new_string(out.authorization));
    json_object_object_add(res, "canonical", json_object_new_string_len(creq->data, (int)creq->len));
out:
    print_result(res);
    json_object_put(res);
    json_object_put(in);
    free(body);
}

int main(void)
{
    kn__sigv4_cache_t *cache = kn__sigv4_cache_new();
    kn_buf_t creq = KN_BUF_INIT;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    if (!cache)
        return 1;
    while ((len = getline(&line, &cap, stdin)) > 0) {
        if (line[len - 1] == '\n')
            line[len - 1] = '\0';
        sign_line(cache, line, &creq);
    }
    free(line);
    kn__buf_free(&creq);
    kn__sigv4_cache_destroy(cache);
    return fflush(stdout) == 0 ? 0 : 1;
}
