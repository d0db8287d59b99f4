/*
 * Bounded decompression, both codecs, on hostile frames. Input: a selector
 * byte (codec, output bound), then the bytes to decompress.
 *
 * Invariants: success appends at most max_out bytes; failure leaves the
 * output's length as it was and says why (too large, corrupt); sniffing
 * agrees with the frame magic. And the input itself, compressed by us with
 * the selected codec, decompresses back exactly within a bound equal to its
 * size, and is refused one byte below it.
 */
#include "fuzz.h"

#include "buf.h"
#include "compress.h"
#include "err.h"

static kn__zctx_t *z;
static const size_t bounds[] = {0, 1, 17, 256, 4096, 65536, 1 << 20, 8 << 20};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    z = kn__zctx_new();
    FUZZ_CHECK(z);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t sel = data[0];
    data++;
    size--;
    kn__codec_t codec = (sel & 1) ? KN__CODEC_ZSTD : KN__CODEC_GZIP;
    size_t max_out = bounds[(sel >> 1) % (sizeof(bounds) / sizeof(bounds[0]))];
    uint8_t *in = malloc(size ? size : 1); /* own block: ASan sees reads past it */
    FUZZ_CHECK(in);
    if (size)
        memcpy(in, data, size);

    kn_error_t err;
    kn__error_clear(&err);
    kn_buf_t out = KN_BUF_INIT;
    FUZZ_CHECK(kn__buf_append(&out, "prefix", 6) == 0);
    kn_err_t rc = kn__decompress(z, codec, in, size, max_out, &out, &err);
    if (rc == KN_ERR_OK) {
        FUZZ_CHECK(out.len - 6 <= max_out);
        FUZZ_CHECK(memcmp(out.data, "prefix", 6) == 0);
        /* Something that decompressed was a frame of this codec. */
        FUZZ_CHECK(kn__codec_sniff(codec, in, size) || size == 0);
        /* The bound is exact: one byte less is refused when there was output. */
        if (out.len > 6) {
            kn_buf_t tight = KN_BUF_INIT;
            kn__error_clear(&err);
            FUZZ_CHECK(kn__decompress(z, codec, in, size, out.len - 6 - 1, &tight, &err) ==
                       KN_ERR_TOO_LARGE);
            FUZZ_CHECK(tight.len == 0);
            kn__buf_free(&tight);
        }
    } else {
        FUZZ_CHECK(rc == KN_ERR_TOO_LARGE || rc == KN_ERR_BAD_RESPONSE || rc == KN_ERR_NOMEM);
        FUZZ_CHECK(err.code == rc && err.message[0] != '\0');
        FUZZ_CHECK(out.len == 6 && memcmp(out.data, "prefix", 6) == 0);
    }
    kn__buf_free(&out);

    /* Round trip of the input as data, at a level from the selector. */
    int lo, hi;
    kn__codec_level_range(codec, &lo, &hi);
    int level = (sel & 0x80) ? hi > 3 ? 3 : hi : KN__CODEC_LEVEL_DEFAULT;
    kn_buf_t c = KN_BUF_INIT, back = KN_BUF_INIT;
    kn__error_clear(&err);
    FUZZ_CHECK(kn__compress(z, codec, level, in, size, &c, &err) == KN_ERR_OK);
    FUZZ_CHECK(kn__codec_sniff(codec, c.data, c.len));
    FUZZ_CHECK(!kn__codec_sniff(codec == KN__CODEC_GZIP ? KN__CODEC_ZSTD : KN__CODEC_GZIP, c.data,
                                c.len));
    FUZZ_CHECK(kn__decompress(z, codec, c.data, c.len, size, &back, &err) == KN_ERR_OK);
    FUZZ_CHECK(back.len == size && (size == 0 || memcmp(back.data, in, size) == 0));
    if (size > 0) {
        kn__buf_reset(&back);
        kn__error_clear(&err);
        FUZZ_CHECK(kn__decompress(z, codec, c.data, c.len, size - 1, &back, &err) ==
                   KN_ERR_TOO_LARGE);
        FUZZ_CHECK(back.len == 0);
    }
    kn__buf_free(&back);
    kn__buf_free(&c);
    free(in);
    return 0;
}
