/*
 * SigV4 canonicalisation of hostile requests: any path (normalised or not),
 * query string, header names and values (folding, trimming, duplicates),
 * region and service. Signing either fails with a message or produces a
 * well-formed result, and signs the same way with and without the key cache.
 * Input: flags byte, then 0xFF-separated fields: method, path, query, region,
 * service, and header name/value pairs.
 */
#include "fuzz.h"

#include <ctype.h>

#include "buf.h"
#include "err.h"
#include "sigv4.h"

#define MAX_FIELDS 16

static kn__sigv4_cache_t *cache;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cache = kn__sigv4_cache_new();
    FUZZ_CHECK(cache);
    return 0;
}

static bool is_hex64(const char *s)
{
    for (int i = 0; i < 64; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return s[64] == '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in_t in = {data, size};
    uint8_t flags = fuzz_byte(&in);
    char *f[MAX_FIELDS] = {0};
    size_t nf = 0;
    while (nf < MAX_FIELDS && (in.n || nf < 5))
        f[nf++] = fuzz_field(&in, NULL);

    kn__hdr_t hdrs[(MAX_FIELDS - 5) / 2 + 1];
    size_t nh = 0;
    hdrs[nh++] = (kn__hdr_t){"Host", "kinesis.us-east-1.amazonaws.com"};
    for (size_t i = 5; i + 1 < nf; i += 2)
        hdrs[nh++] = (kn__hdr_t){f[i], f[i + 1]};
    if (flags & 0x08)
        hdrs[0].name = "X-Fuzz"; /* no Host unless the input names one */

    kn__sigv4_creds_t creds = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                               (flags & 0x10) ? "token" : NULL};
    kn__sigv4_req_t req = {
        .method = f[0],
        .path = f[1],
        .query = f[2],
        .headers = hdrs,
        .n_headers = nh,
        .body = "{}",
        .body_len = 2,
        .region = f[3],
        .service = f[4],
        .now = 1440938160 + (time_t)(flags & 0x7) * 86400,
        .normalize_path = flags & 0x01,
        .sign_body = flags & 0x02,
        .omit_session_token = flags & 0x04,
    };
    kn__sigv4_out_t a, b;
    kn_error_t err;
    kn__error_clear(&err);
    kn_buf_t canon = KN_BUF_INIT, sts = KN_BUF_INIT;
    kn_err_t rc = kn__sigv4_sign(cache, &creds, &req, &a, &canon, &sts, &err);
    if (rc != KN_ERR_OK) {
        FUZZ_CHECK(err.message[0] != '\0');
        FUZZ_CHECK(strstr(err.message, creds.secret_access_key) == NULL);
    } else {
        FUZZ_CHECK(is_hex64(a.signature));
        FUZZ_CHECK(memchr(a.authorization, '\0', sizeof(a.authorization)) != NULL);
        FUZZ_CHECK(strstr(a.authorization, a.signature) != NULL);
        FUZZ_CHECK(strlen(canon.data) == canon.len && strlen(sts.data) == sts.len);
        /* Headers are emitted one per line: the canonical request has no stray line breaks. */
        FUZZ_CHECK(strchr(a.authorization, '\n') == NULL && strchr(a.authorization, '\r') == NULL);
        kn__error_clear(&err);
        FUZZ_CHECK(kn__sigv4_sign(NULL, &creds, &req, &b, NULL, NULL, &err) == KN_ERR_OK);
        FUZZ_CHECK(strcmp(a.signature, b.signature) == 0);
        FUZZ_CHECK(strcmp(a.authorization, b.authorization) == 0);
    }
    kn__buf_free(&canon);
    kn__buf_free(&sts);
    for (size_t i = 0; i < nf; i++)
        free(f[i]);
    return 0;
}
