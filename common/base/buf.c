/* A growable byte buffer, always NUL-terminated. */
#include "buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kn__buf_reserve(kn_buf_t *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1)
        return -1;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    b->data[b->len] = '\0'; /* a fresh buffer is a valid empty string */
    return 0;
}

int kn__buf_reserve_exact(kn_buf_t *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1)
        return -1;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    char *p = realloc(b->data, need);
    if (!p)
        return -1;
    b->data = p;
    b->cap = need;
    b->data[b->len] = '\0';
    return 0;
}

int kn__buf_append(kn_buf_t *b, const void *p, size_t n)
{
    if (kn__buf_reserve(b, n) != 0)
        return -1;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int kn__buf_puts(kn_buf_t *b, const char *s) { return kn__buf_append(b, s, strlen(s)); }
int kn__buf_putc(kn_buf_t *b, char c) { return kn__buf_append(b, &c, 1); }

int kn__buf_vprintf(kn_buf_t *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0 || kn__buf_reserve(b, (size_t)n) != 0)
        return -1;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int kn__buf_printf(kn_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = kn__buf_vprintf(b, fmt, ap);
    va_end(ap);
    return r;
}

void kn__buf_reset(kn_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void kn__buf_free(kn_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *kn__buf_steal(kn_buf_t *b)
{
    if (!b->data && kn__buf_reserve(b, 0) != 0)
        return NULL;
    b->data[b->len] = '\0';
    char *p = b->data;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

int kn__buf_put_pct(kn_buf_t *b, const char *s)
{
    static const char hexd[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        /* Explicit ranges: isalnum() depends on the application's locale. */
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            if (kn__buf_putc(b, (char)*p) != 0)
                return -1;
        } else {
            char e[3] = {'%', hexd[*p >> 4], hexd[*p & 15]};
            if (kn__buf_append(b, e, 3) != 0)
                return -1;
        }
    }
    return 0;
}

int kn__buf_form_pair(kn_buf_t *b, const char *name, const char *value)
{
    if (b->len && kn__buf_putc(b, '&') != 0)
        return -1;
    if (kn__buf_puts(b, name) != 0 || kn__buf_putc(b, '=') != 0)
        return -1;
    return kn__buf_put_pct(b, value);
}
