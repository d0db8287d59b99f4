/*
 * AWS error responses: kn__aws_parse_error over any body (JSON, XML, HTML,
 * text, binary), any x-amzn-ErrorType header and any status; also the error
 * name normaliser on its own. Input: status byte, header field, 0xFF, body.
 */
#include "fuzz.h"

#include "aws.h"
#include "err.h"

static const long statuses[] = {400, 403, 404, 408, 413, 429, 500, 502, 503, 504, 200, 0, 301, 599};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in_t in = {data, size};
    uint8_t sel = fuzz_byte(&in);
    long status = statuses[sel % (sizeof(statuses) / sizeof(statuses[0]))];
    size_t hlen;
    char *header = (sel & 0x80) ? fuzz_field(&in, &hlen) : NULL;
    /* The body is a view with its length: it may hold NULs and is not terminated. */
    uint8_t *body = malloc(in.n ? in.n : 1);
    if (!body)
        abort();
    if (in.n)
        memcpy(body, in.p, in.n);

    kn_error_t err;
    kn__error_clear(&err);
    kn__aws_parse_error(status, header, (const char *)body, in.n, (sel & 0x40) ? "req-1" : NULL,
                        &err);
    FUZZ_CHECK(err.code != KN_ERR_OK);
    FUZZ_CHECK(memchr(err.message, '\0', sizeof(err.message)) != NULL);
    FUZZ_CHECK(err.message[0] != '\0');
    FUZZ_CHECK(memchr(err.aws_type, '\0', sizeof(err.aws_type)) != NULL);
    FUZZ_CHECK(memchr(err.request_id, '\0', sizeof(err.request_id)) != NULL);

    char name[64];
    kn__aws_error_name((const char *)body, in.n, name, sizeof(name));
    FUZZ_CHECK(memchr(name, '\0', sizeof(name)) != NULL);
    kn_err_t code;
    (void)kn__aws_classify(name, status, &code);

    free(body);
    free(header);
    return 0;
}
