/*
 * HTTP dates (the Date header used for clock-skew correction) and ISO 8601
 * times from credential responses. A date that parses must format back to a
 * date that parses to the same instant.
 */
#include "fuzz.h"

#include <time.h>

#include "aws.h"
#include "creds_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstr(data, size);

    time_t t = kn__http_date_parse(s);
    struct tm tm;
    if (t != (time_t)-1 && gmtime_r(&t, &tm) && tm.tm_year >= 0 && tm.tm_year < 8000) {
        char again[64];
        size_t n = strftime(again, sizeof(again), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        FUZZ_CHECK(n > 0);
        FUZZ_CHECK(kn__http_date_parse(again) == t);
    }

    time_t t2 = 0;
    /* The view form: the length may cut the text anywhere, NULs included. */
    if (kn__creds_parse_time((const char *)data, size, &t2) == 0 && gmtime_r(&t2, &tm) &&
        tm.tm_year >= 0 && tm.tm_year < 8000) {
        char again[64];
        size_t n = strftime(again, sizeof(again), "%Y-%m-%dT%H:%M:%SZ", &tm);
        FUZZ_CHECK(n > 0);
        time_t t3 = 0;
        FUZZ_CHECK(kn__creds_parse_time(again, n, &t3) == 0);
        FUZZ_CHECK(t3 == t2);
    }
    free(s);
    return 0;
}
