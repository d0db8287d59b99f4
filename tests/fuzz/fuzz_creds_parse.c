/*
 * The credential answers a process or a server hands us: STS's XML (a 200
 * with credentials, or an error body of any status) and the four JSON
 * shapes (credential_process, container, IMDS, SSO). The first byte picks
 * the parser (and, for STS, the HTTP status); the rest is the body, given as
 * a view with no NUL after it. On success the credentials are complete; on
 * failure the error has a code and a message.
 */
#include "fuzz.h"

#include "creds.h"
#include "creds_int.h"
#include "err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned sel = data[0];
    size_t n = size - 1;
    /* An exact-size copy, so that reading one byte past the view is an ASan report. */
    char *body = malloc(n ? n : 1);
    if (!body)
        abort();
    if (n)
        memcpy(body, data + 1, n);
    kn__creds_t c;
    kn_error_t e;
    memset(&c, 0, sizeof(c));
    kn__error_clear(&e);
    kn_err_t rc;
    if (sel % 8 < 4) {
        static const long statuses[] = {200, 400, 403, 503};
        rc = kn__sts_parse_response(statuses[sel % 4], body, n, (sel & 8) ? "AssumeRoleWithWebIdentity" : "AssumeRole",
                                    "arn:aws:iam::123456789012:role/fuzz", "fuzz", &c, &e);
        if (statuses[sel % 4] != 200)
            FUZZ_CHECK(rc != KN_ERR_OK);
    } else {
        rc = kn__creds_parse_json((kn__creds_json_t)(sel % 4), body, n, "fuzz", &c, &e);
    }
    if (rc == KN_ERR_OK) {
        FUZZ_CHECK(c.access_key_id && *c.access_key_id);
        FUZZ_CHECK(c.secret_access_key && *c.secret_access_key);
    } else {
        FUZZ_CHECK(e.code == rc);
        FUZZ_CHECK(e.message[0] != '\0');
    }
    kn__creds_free(&c);
    free(body);
    return 0;
}
