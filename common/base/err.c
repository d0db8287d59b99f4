/* Error codes, their names and descriptions, and the rich error object. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KN__ERR_STR(name, desc) desc,
static const char *const err_desc[] = {KN_ERRORS(KN__ERR_STR)};
#undef KN__ERR_STR
#define KN__ERR_NAME(name, desc) "KN_ERR_" #name,
static const char *const err_name[] = {KN_ERRORS(KN__ERR_NAME)};
#undef KN__ERR_NAME

KN_API const char *kn_version_str(void) { return KN_VERSION_STR; }

KN_API const char *kn_err2str(kn_err_t err)
{
    if ((unsigned)err >= KN_ERR__COUNT)
        return "unknown error code";
    return err_desc[err];
}

KN_API const char *kn_err2name(kn_err_t err)
{
    if ((unsigned)err >= KN_ERR__COUNT)
        return "KN_ERR_UNKNOWN";
    return err_name[err];
}

KN_API kn_error_t *kn_error_new(void) { return calloc(1, sizeof(kn_error_t)); }
KN_API void kn_error_destroy(kn_error_t *e) { free(e); }
KN_API kn_err_t kn_error_code(const kn_error_t *e) { return e ? e->code : KN_ERR_INVALID_ARG; }
KN_API const char *kn_error_message(const kn_error_t *e) { return e ? e->message : ""; }
KN_API const char *kn_error_aws_type(const kn_error_t *e) { return e ? e->aws_type : ""; }
KN_API int kn_error_http_status(const kn_error_t *e) { return e ? e->http_status : 0; }
KN_API const char *kn_error_request_id(const kn_error_t *e) { return e ? e->request_id : ""; }
KN_API bool kn_error_is_retriable(const kn_error_t *e) { return e && e->retriable; }

void kn__error_clear(kn_error_t *e)
{
    if (e)
        memset(e, 0, sizeof(*e));
}

kn_err_t kn__error_set(kn_error_t *e, kn_err_t code, const char *fmt, ...)
{
    if (!e)
        return code;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return code;
}

void kn__error_prefix(kn_error_t *e, const char *fmt, ...)
{
    if (!e)
        return;
    char prefix[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    /* Shift the message right and put "prefix: " in front, truncating the tail. */
    size_t plen = strlen(prefix), cap = sizeof(e->message);
    if (plen + 2 >= cap)
        plen = cap - 3;
    size_t mlen = strlen(e->message);
    if (plen + 2 + mlen >= cap)
        mlen = cap - plen - 3;
    memmove(e->message + plen + 2, e->message, mlen);
    e->message[plen + 2 + mlen] = '\0';
    memcpy(e->message, prefix, plen);
    e->message[plen] = ':';
    e->message[plen + 1] = ' ';
}

void kn__error_copy(kn_error_t *dst, const kn_error_t *src)
{
    if (dst && src && dst != src)
        memcpy(dst, src, sizeof(*dst));
}

void kn__errstr(char *errstr, size_t size, const char *fmt, ...)
{
    if (!errstr || size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, size, fmt, ap);
    va_end(ap);
}

void kn__error_to_errstr(const kn_error_t *e, char *errstr, size_t size)
{
    if (!e)
        return;
    kn__errstr(errstr, size, "%s", e->message[0] ? e->message : kn_err2str(e->code));
}
