/* Internal: standard base64 (RFC 4648, with padding). */
#ifndef KN_BASE64_H
#define KN_BASE64_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

static inline size_t kn__base64_encoded_len(size_t n) { return (n + 2) / 3 * 4; }
/* Appends the encoding of data to out. 0 or -1 (ENOMEM). */
int kn__base64_encode(kn_buf_t *out, const void *data, size_t len);
/* Writes exactly kn__base64_encoded_len(len) chars to dst (no NUL). */
void kn__base64_encode_to(char *dst, const void *data, size_t len);
/*
 * Appends the decoding of s to out. Rejects bad characters, bad padding and
 * bad lengths: returns -1 (and out is unchanged), or -2 on ENOMEM.
 */
int kn__base64_decode(kn_buf_t *out, const char *s, size_t len);
/*
 * Decodes the len characters at s into s itself (the decoding is shorter).
 * Returns the decoded length, or -1 for bad input (s is then partly
 * overwritten).
 */
long kn__base64_decode_inplace(char *s, size_t len);

/*
 * Tests and benchmarks: true makes every call use the portable table code;
 * false returns to the AVX-512 VBMI code where the CPU has it. Returns 1 if
 * this CPU has it, else 0. Not for use while other threads encode.
 */
int kn__base64_force_scalar(bool scalar);

#endif
