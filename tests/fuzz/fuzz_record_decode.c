/*
 * The consumer's record decode pipeline (record_codec.h): aggregate-scope
 * frame unwrap -> KPL deaggregation -> record-scope decompression of tagged
 * user records, under small and default limits. Input: a selector byte, then
 * bytes, used according to selector bits 0-1:
 *   0: the bytes are a Kinesis record as received;
 *   1: the bytes are a frame payload: the first 4 give the declared length,
 *      and the frame header and CRC are built here (codec from bit 2);
 *   2: the bytes are an aggregate's protobuf, wrapped with magic and MD5;
 *   3: as 2, then compressed into a real frame by kn__rc_wrap (codec bit 2).
 * Bits 4-5 pick the limits. Invariants: decode never fails but for memory;
 * problems are reported on the record, which keeps the bytes as received;
 * limits hold; and in modes 2-3 the framed aggregate decodes to the same
 * records as the bare one.
 */
#include "fuzz.h"

#include <strings.h>
#include <zlib.h>

#include "agg.h"
#include "buf.h"
#include "compress.h"
#include "err.h"
#include "hashkey.h"
#include "md5.h"
#include "record_codec.h"

static kn__zctx_t *z;
static kn__rc_decoder_t *dec[3];
static const kn__rc_limits_t limits[3] = {
    {0, 0},      /* defaults */
    {64, 256},   /* small: most compressed records exceed them */
    {4096, 4096},
};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    z = kn__zctx_new();
    FUZZ_CHECK(z);
    for (int i = 0; i < 3; i++)
        FUZZ_CHECK((dec[i] = kn__rc_decoder_new(&limits[i])) != NULL);
    return 0;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static bool has_encoding_tag(const kn__rc_rec_t *r)
{
    for (size_t t = 0; t < r->n_tags; t++)
        if (r->tags[t].key_len == strlen(KN__RC_TAG_KEY) &&
            strncasecmp(r->tags[t].key, KN__RC_TAG_KEY, r->tags[t].key_len) == 0)
            return true;
    return false;
}

/* Checks one decode result against the input it came from; appends a summary to snap. */
static void check(const kn__rc_decoded_t *res, const uint8_t *in, size_t len,
                  const kn__rc_limits_t *lim, kn_buf_t *snap)
{
    size_t max_total = lim->max_total_bytes ? lim->max_total_bytes : KN__RC_DEFAULT_MAX_TOTAL_BYTES;
    size_t max_rec = lim->max_record_bytes ? lim->max_record_bytes : KN__RC_DEFAULT_MAX_RECORD_BYTES;
    FUZZ_CHECK(res->decompressed_bytes <= max_total);
    if (res->frame_err != KN_ERR_OK) {
        FUZZ_CHECK(res->frame_codec != KN__CODEC_NONE);
        FUZZ_CHECK(res->count == 1 && !res->aggregated);
        const kn__rc_rec_t *r = &res->records[0];
        FUZZ_CHECK(r->data == in && r->data_len == len);
        FUZZ_CHECK(r->err == res->frame_err && r->err_msg && r->err_msg[0] != '\0');
    }
    if (!res->aggregated)
        FUZZ_CHECK(res->count == 1);
    for (size_t i = 0; i < res->count; i++) {
        const kn__rc_rec_t *r = &res->records[i];
        FUZZ_CHECK(r->err_msg != NULL);
        FUZZ_CHECK((r->err == KN_ERR_OK) == (r->err_msg[0] == '\0'));
        if (r->codec != KN__CODEC_NONE) {
            FUZZ_CHECK(r->err == KN_ERR_OK);
            FUZZ_CHECK(r->data_len <= max_rec);
            FUZZ_CHECK(has_encoding_tag(r));
        }
        if (res->aggregated)
            FUZZ_CHECK(r->sub_sequence == i);
        volatile unsigned char sum = 0;
        for (size_t j = 0; j < r->data_len; j++)
            sum += r->data[j];
        for (size_t j = 0; j < r->partition_key_len; j++)
            sum += (unsigned char)r->partition_key[j];
        (void)sum;
        if (snap) {
            uint64_t h[4] = {r->partition_key_len, r->data_len, (uint64_t)r->err, r->codec};
            FUZZ_CHECK(kn__buf_append(snap, h, sizeof(h)) == 0);
            FUZZ_CHECK(kn__buf_append(snap, r->partition_key, r->partition_key_len) == 0);
            FUZZ_CHECK(kn__buf_append(snap, r->data, r->data_len) == 0);
        }
    }
    if (snap) {
        uint64_t n = res->count;
        FUZZ_CHECK(kn__buf_append(snap, &n, sizeof(n)) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t sel = data[0];
    data++;
    size--;
    int mode = sel & 3;
    kn__codec_t codec = (sel & 4) ? KN__CODEC_ZSTD : KN__CODEC_GZIP;
    int li = ((sel >> 4) & 3) % 3;
    kn__rc_decoder_t *d = dec[li];
    static const char pk[] = "pk";

    kn_buf_t rec = KN_BUF_INIT;
    if (mode == 0) {
        FUZZ_CHECK(kn__buf_append(&rec, data, size) == 0);
    } else if (mode == 1) {
        uint8_t hdr[KN__RC_FRAME_HEADER_LEN] = {0};
        memcpy(hdr, KN__RC_FRAME_MAGIC, KN__RC_FRAME_MAGIC_LEN);
        hdr[4] = KN__RC_FRAME_VERSION;
        hdr[5] = (uint8_t)codec;
        uint32_t declared = 0;
        for (int i = 0; i < 4 && size; i++, data++, size--)
            declared = declared << 8 | *data;
        put_be32(hdr + 8, declared);
        FUZZ_CHECK(kn__buf_append(&rec, hdr, sizeof(hdr)) == 0);
        FUZZ_CHECK(kn__buf_append(&rec, data, size) == 0);
        uint8_t crc[4];
        put_be32(crc, (uint32_t)crc32(0L, (const Bytef *)rec.data, (uInt)rec.len));
        FUZZ_CHECK(kn__buf_append(&rec, crc, 4) == 0);
        /* A frame has at least one payload byte. */
        FUZZ_CHECK(kn__rc_is_frame(rec.data, rec.len) == (size > 0));
    } else {
        uint8_t md5[16];
        kn__md5(data, size, md5);
        FUZZ_CHECK(kn__buf_append(&rec, KN__AGG_MAGIC, KN__AGG_MAGIC_LEN) == 0);
        FUZZ_CHECK(kn__buf_append(&rec, data, size) == 0);
        FUZZ_CHECK(kn__buf_append(&rec, md5, sizeof(md5)) == 0);
    }
    /* An exact-size heap copy, so ASan sees a read past the record. */
    uint8_t *in = malloc(rec.len ? rec.len : 1);
    FUZZ_CHECK(in);
    if (rec.len)
        memcpy(in, rec.data, rec.len);
    size_t len = rec.len;
    kn__buf_free(&rec);

    kn_error_t err;
    kn__error_clear(&err);
    const kn__rc_decoded_t *res = NULL;
    kn_buf_t snap = KN_BUF_INIT;
    FUZZ_CHECK(kn__rc_decode(d, in, len, pk, sizeof(pk) - 1, NULL, 0, &res, &err) == KN_ERR_OK);
    FUZZ_CHECK(res);
    check(res, in, len, &limits[li], mode == 3 ? &snap : NULL);
    if (mode == 2 || mode == 3) {
        size_t marked = kn__rc_check_range(d, (kn__hashkey_t){0, 0},
                                           (kn__hashkey_t){UINT64_MAX >> 1, 0});
        FUZZ_CHECK(marked <= res->count);
    }

    if (mode == 3) {
        /* The same aggregate in a real frame decodes to the same records. */
        kn_buf_t framed = KN_BUF_INIT;
        bool wrapped = false;
        kn__error_clear(&err);
        FUZZ_CHECK(kn__rc_wrap(z, codec, KN__CODEC_LEVEL_DEFAULT, in, len, false, &framed, &wrapped,
                               &err) == KN_ERR_OK);
        FUZZ_CHECK(wrapped && kn__rc_is_frame(framed.data, framed.len));
        kn__codec_t got = KN__CODEC_NONE;
        kn_buf_t plain = KN_BUF_INIT;
        FUZZ_CHECK(kn__rc_unwrap(z, framed.data, framed.len, len, &plain, &got, &err) == KN_ERR_OK);
        FUZZ_CHECK(got == codec && plain.len == len && memcmp(plain.data, in, len) == 0);
        kn__buf_free(&plain);

        FUZZ_CHECK(kn__rc_decode(d, framed.data, framed.len, pk, sizeof(pk) - 1, NULL, 0, &res,
                                 &err) == KN_ERR_OK);
        FUZZ_CHECK(res->frame_codec == codec);
        if (res->frame_err == KN_ERR_OK && li == 0) {
            kn_buf_t snap2 = KN_BUF_INIT;
            check(res, (const uint8_t *)framed.data, framed.len, &limits[li], &snap2);
            FUZZ_CHECK(snap2.len == snap.len && memcmp(snap2.data, snap.data, snap.len) == 0);
            kn__buf_free(&snap2);
        } else {
            check(res, (const uint8_t *)framed.data, framed.len, &limits[li], NULL);
        }
        kn__buf_free(&framed);
    }
    kn__buf_free(&snap);
    free(in);
    return 0;
}
