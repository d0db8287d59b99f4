/*
 * Helpers shared by the libFuzzer targets (header-only).
 *
 * Every target defines LLVMFuzzerTestOneInput and checks properties that must
 * hold for any input (no crash, no leak, no sanitizer report, plus a few
 * round-trip invariants). A violated invariant calls FUZZ_CHECK, which
 * aborts so that libFuzzer keeps the input as a crash.
 */
#ifndef KN_FUZZ_H
#define KN_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);          \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

/* A NUL-terminated copy of the input (the parsers that take C strings see no NUL inside). */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* Reads input as a sequence of fields: takes one byte (0 when exhausted). */
typedef struct fuzz_in_s {
    const uint8_t *p;
    size_t n;
} fuzz_in_t;

static inline uint8_t fuzz_byte(fuzz_in_t *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

/*
 * Takes bytes up to (not including) the next 0xFF separator, or the rest.
 * Returns a malloc'd NUL-terminated copy and its length in *len.
 */
static inline char *fuzz_field(fuzz_in_t *in, size_t *len)
{
    const uint8_t *sep = in->n ? memchr(in->p, 0xFF, in->n) : NULL;
    size_t n = sep ? (size_t)(sep - in->p) : in->n;
    char *s = fuzz_cstr(in->p, n);
    in->p += n;
    in->n -= n;
    if (sep) {
        in->p++;
        in->n--;
    }
    if (len)
        *len = n;
    return s;
}

#endif
