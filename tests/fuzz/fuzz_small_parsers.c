/*
 * The small text parsers: endpoint URL to Host header, debug context lists,
 * log level names, UTF-8 counting (partition key length), DynamoDB number
 * syntax. The first byte picks the parser; the rest is its input.
 */
#include "fuzz.h"

#include "dynamodb.h"
#include "endpoint.h"
#include "err.h"
#include "json_fields.h"
#include "log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* The endpoint resolver falls back to the environment and the shared files: keep both empty. */
    setenv("AWS_CONFIG_FILE", "/nonexistent/kn-fuzz/config", 1);
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/kn-fuzz/credentials", 1);
    unsetenv("AWS_ENDPOINT_URL");
    unsetenv("AWS_ENDPOINT_URL_KINESIS");
    unsetenv("AWS_PROFILE");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t sel = data[0];
    data++;
    size--;
    char *s = fuzz_cstr(data, size);
    char *view = malloc(size ? size : 1); /* unterminated, for the (ptr, len) parsers */
    FUZZ_CHECK(view);
    if (size)
        memcpy(view, data, size);

    switch (sel % 5) {
    case 0: {
        /*
         * A URL the resolver accepts yields a Host header without a path, or
         * none (the client then refuses the endpoint as having no host).
         */
        kn_error_t err;
        kn__error_clear(&err);
        char *url = kn__endpoint_resolve(KN__SVC_KINESIS, s, "us-east-1", NULL, &err);
        if (url) {
            char *host = kn__endpoint_host_header(url);
            FUZZ_CHECK(!host || (host[0] != '\0' && strpbrk(host, "/?#") == NULL));
            free(host);
            free(url);
        } else {
            FUZZ_CHECK(err.message[0] != '\0');
        }
        char *host = kn__endpoint_host_header(s);
        free(host);
        break;
    }
    case 1: {
        uint32_t mask = 0;
        char errstr[256];
        errstr[0] = '\0';
        if (kn__log_parse_debug(s, &mask, errstr, sizeof(errstr)) != 0)
            FUZZ_CHECK(errstr[0] != '\0');
        FUZZ_CHECK(memchr(errstr, '\0', sizeof(errstr)) != NULL);
        break;
    }
    case 2: {
        kn_log_level_t level;
        if (kn__log_parse_level(s, &level) == 0)
            FUZZ_CHECK(level == KN_LOG_ERROR || level == KN_LOG_WARN || level == KN_LOG_INFO ||
                       level == KN_LOG_DEBUG || level == KN_LOG_TRACE);
        break;
    }
    case 3: {
        long n = kn__utf8_count(view, size);
        FUZZ_CHECK(n >= -1 && (n == -1 || (size_t)n <= size));
        if (n >= 0) {
            /* Every code point takes 1 to 4 bytes. */
            FUZZ_CHECK((size_t)n * 4 >= size);
        }
        break;
    }
    case 4:
        if (kn__ddb_number_valid(view, size)) {
            FUZZ_CHECK(size > 0);
            /* What DynamoDB accepts as a number is a number to strtod too. */
            char *end = NULL;
            (void)strtod(s, &end);
            FUZZ_CHECK(end == s + size);
        }
        break;
    }
    free(view);
    free(s);
    return 0;
}
