/*
 * Base64 (GetRecords Data, DynamoDB B values). The decoder is strict, so
 * every accepted text is the one canonical encoding of what it decodes to:
 * encode(decode(s)) == s. Also decode(encode(d)) == d for any bytes, and a
 * rejected text leaves the output buffer as it was. The vector code (where
 * the CPU has AVX-512 VBMI) and the table code accept the same texts and
 * give the same bytes and characters.
 */
#include "fuzz.h"

#include "base64.h"
#include "buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An unterminated heap copy, so a read past the view is caught. */
    char *s = malloc(size ? size : 1);
    FUZZ_CHECK(s);
    if (size)
        memcpy(s, data, size);

    /* Into an empty buffer: on success the buffer holds a NUL-terminated string (buf.h). */
    kn_buf_t fresh = KN_BUF_INIT;
    if (kn__base64_decode(&fresh, s, size) == 0)
        FUZZ_CHECK(fresh.data != NULL && fresh.data[fresh.len] == '\0');
    kn__buf_free(&fresh);

    kn_buf_t out = KN_BUF_INIT;
    FUZZ_CHECK(kn__buf_append(&out, "pre", 3) == 0);
    int rc = kn__base64_decode(&out, s, size);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc == 0) {
        FUZZ_CHECK(memcmp(out.data, "pre", 3) == 0);
        kn_buf_t enc = KN_BUF_INIT;
        FUZZ_CHECK(kn__base64_encode(&enc, out.data + 3, out.len - 3) == 0);
        FUZZ_CHECK(enc.len == size);
        FUZZ_CHECK(size == 0 || memcmp(enc.data, s, size) == 0);
        kn__buf_free(&enc);
    } else {
        FUZZ_CHECK(out.len == 3 && memcmp(out.data, "pre", 3) == 0 && out.data[3] == '\0');
    }

    /* The other direction: any bytes encode, and decode back. */
    size_t elen = kn__base64_encoded_len(size);
    char *e = malloc(elen ? elen : 1);
    FUZZ_CHECK(e);
    kn__base64_encode_to(e, data, size);
    kn_buf_t back = KN_BUF_INIT;
    FUZZ_CHECK(kn__base64_decode(&back, e, elen) == 0);
    FUZZ_CHECK(back.len == size);
    FUZZ_CHECK(size == 0 || memcmp(back.data, data, size) == 0);

    /* The table code agrees with whatever ran above. */
    kn__base64_force_scalar(true);
    kn_buf_t t = KN_BUF_INIT;
    FUZZ_CHECK(kn__base64_decode(&t, s, size) == rc);
    FUZZ_CHECK(rc != 0 || (t.len == out.len - 3 && (t.len == 0 || memcmp(t.data, out.data + 3, t.len) == 0)));
    char *e2 = malloc(elen ? elen : 1);
    FUZZ_CHECK(e2);
    kn__base64_encode_to(e2, data, size);
    FUZZ_CHECK(elen == 0 || memcmp(e, e2, elen) == 0);
    kn__base64_force_scalar(false);
    free(e2);
    kn__buf_free(&t);

    kn__buf_free(&back);
    free(e);
    kn__buf_free(&out);
    free(s);
    return 0;
}
