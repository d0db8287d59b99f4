/* Internal: an owning growable byte buffer ("views in, buffers out"). */
#ifndef KN_BUF_H
#define KN_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct kn_buf_s {
    char *data;  /* always NUL-terminated when non-NULL (not counted in len) */
    size_t len;
    size_t cap;
} kn_buf_t;

#define KN_BUF_INIT {NULL, 0, 0}

/* All return 0 on success, -1 on allocation failure (the buffer is unchanged). */
int kn__buf_reserve(kn_buf_t *b, size_t extra);
/* As kn__buf_reserve, but grows to exactly what is needed (no doubling): for a known final size. */
int kn__buf_reserve_exact(kn_buf_t *b, size_t extra);
int kn__buf_append(kn_buf_t *b, const void *p, size_t n);
int kn__buf_puts(kn_buf_t *b, const char *s);
int kn__buf_putc(kn_buf_t *b, char c);
int kn__buf_printf(kn_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int kn__buf_vprintf(kn_buf_t *b, const char *fmt, va_list ap);
/* Appends s percent-encoded (everything but A-Z a-z 0-9 - _ . ~). 0, or -1 on ENOMEM. */
int kn__buf_put_pct(kn_buf_t *b, const char *s);
/* Appends "name=value" to a form body ('&' first unless empty), value percent-encoded. 0, or -1. */
int kn__buf_form_pair(kn_buf_t *b, const char *name, const char *value);
void kn__buf_reset(kn_buf_t *b); /* len = 0, keeps memory */
void kn__buf_free(kn_buf_t *b);
/* Hands the memory to the caller (NUL-terminated, never NULL on success). */
char *kn__buf_steal(kn_buf_t *b);

#endif
