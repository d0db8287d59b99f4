/* Internal: the rich error object's layout and helpers to fill it. */
#ifndef KN_ERR_H
#define KN_ERR_H

#include "kinesis/common.h"

/* How the request layer reacts to an error (the classes kn__aws_classify assigns). */
typedef enum kn__errclass_e {
    KN__EC_NONE = 0,
    KN__EC_RETRY,         /* throttling, 5xx, network: back off and retry */
    KN__EC_REFRESH_RETRY, /* expired token: refresh credentials, retry once */
    KN__EC_SKEW_CHECK,    /* signature/time errors: retry once if the clock is off */
    KN__EC_FAIL,          /* validation, auth, not found: fail fast */
} kn__errclass_t;

struct kn_error_s {
    kn_err_t code;
    int http_status;     /* 0 when no HTTP response arrived */
    bool retriable;
    kn__errclass_t cls;
    char aws_type[128];  /* exact AWS error name, prefix/suffix stripped */
    char request_id[128];
    char message[768];
};

/* All helpers accept e == NULL and then do nothing. */
void kn__error_clear(kn_error_t *e);
/* Sets code and a formatted message; keeps http_status/aws_type/request_id. */
kn_err_t kn__error_set(kn_error_t *e, kn_err_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes the current message with "prefix: " (to add context on the way up). */
void kn__error_prefix(kn_error_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kn__error_copy(kn_error_t *dst, const kn_error_t *src);
/* Writes "message" into errstr (for the errstr/size constructors). */
void kn__error_to_errstr(const kn_error_t *e, char *errstr, size_t size);
/* snprintf into errstr, tolerant of errstr == NULL or size == 0. */
void kn__errstr(char *errstr, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
