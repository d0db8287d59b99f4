/* gzip (zlib) and zstd (libzstd) codecs with reused contexts and bounded decompression. */
#define ZLIB_CONST
#include "compress.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#define GZIP_LEVEL_DEFAULT 6
/* gzip wrapper only (RFC 1952): 15-bit window + 16. Never zlib or raw deflate. */
#define GZIP_WBITS (15 + 16)
/* The largest input compress accepts: zlib counts in uInt, and no record comes near it. */
#define COMPRESS_MAX_IN ((size_t)INT32_MAX)
/*
 * A zstd frame may ask for a window of up to 2^27 bytes by default, which the
 * decoder then allocates before writing a single byte. Allow 8 MiB (what the
 * zstd CLI uses up to level 19), or the output bound if larger, capped at
 * zstd's default limit.
 */
#define ZSTD_WLOG_MIN 23
#define ZSTD_WLOG_CAP 27

struct kn__zctx_s {
    z_stream def;
    bool def_init;
    int def_level;
    z_stream inf;
    bool inf_init;
    ZSTD_CCtx *zc;
    ZSTD_DCtx *zd;
};

const char *kn__codec_name(kn__codec_t codec)
{
    switch (codec) {
    case KN__CODEC_NONE: return "none";
    case KN__CODEC_GZIP: return "gzip";
    case KN__CODEC_ZSTD: return "zstd";
    }
    return "?";
}

bool kn__codec_from_name(const char *name, size_t len, kn__codec_t *out)
{
    static const kn__codec_t all[] = {KN__CODEC_NONE, KN__CODEC_GZIP, KN__CODEC_ZSTD};
    if (!name)
        return false;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        const char *n = kn__codec_name(all[i]);
        if (strlen(n) == len && strncasecmp(n, name, len) == 0) {
            *out = all[i];
            return true;
        }
    }
    return false;
}

void kn__codec_level_range(kn__codec_t codec, int *min, int *max)
{
    switch (codec) {
    case KN__CODEC_GZIP:
        *min = 1;
        *max = 9;
        return;
    case KN__CODEC_ZSTD:
        *min = ZSTD_minCLevel();
        *max = ZSTD_maxCLevel();
        return;
    case KN__CODEC_NONE: break;
    }
    *min = 0;
    *max = 0;
}

bool kn__codec_sniff(kn__codec_t codec, const void *data, size_t len)
{
    const unsigned char *p = data;
    switch (codec) {
    case KN__CODEC_GZIP: return len >= 3 && p[0] == 0x1f && p[1] == 0x8b && p[2] == 0x08;
    case KN__CODEC_ZSTD:
        return len >= 4 && p[0] == 0x28 && p[1] == 0xb5 && p[2] == 0x2f && p[3] == 0xfd;
    case KN__CODEC_NONE: break;
    }
    return false;
}

kn__zctx_t *kn__zctx_new(void) { return calloc(1, sizeof(kn__zctx_t)); }

void kn__zctx_destroy(kn__zctx_t *z)
{
    if (!z)
        return;
    if (z->def_init)
        deflateEnd(&z->def);
    if (z->inf_init)
        inflateEnd(&z->inf);
    ZSTD_freeCCtx(z->zc);
    ZSTD_freeDCtx(z->zd);
    free(z);
}

/* ------------------------------------------------------------ compress */

static kn_err_t gzip_compress(kn__zctx_t *z, int level, const void *in, size_t len, kn_buf_t *out,
                              kn_error_t *err)
{
    int lvl = level == KN__CODEC_LEVEL_DEFAULT ? GZIP_LEVEL_DEFAULT : level;
    z_stream *s = &z->def;
    if (!z->def_init) {
        memset(s, 0, sizeof(*s));
        int r = deflateInit2(s, lvl, Z_DEFLATED, GZIP_WBITS, 8, Z_DEFAULT_STRATEGY);
        if (r != Z_OK)
            return kn__error_set(err, r == Z_MEM_ERROR ? KN_ERR_NOMEM : KN_ERR_INVALID_ARG,
                                 "gzip: deflateInit2 failed (%d)", r);
        z->def_init = true;
        z->def_level = lvl;
    } else {
        /* After a reset nothing is pending, so changing the level flushes nothing. */
        deflateReset(s);
        if (z->def_level != lvl) {
            int r = deflateParams(s, lvl, Z_DEFAULT_STRATEGY);
            if (r != Z_OK)
                return kn__error_set(err, KN_ERR_INVALID_ARG, "gzip: cannot set level %d (%d)", lvl, r);
            z->def_level = lvl;
        }
    }
    uLong bound = deflateBound(s, (uLong)len);
    if (kn__buf_reserve(out, bound) != 0)
        return kn__error_set(err, KN_ERR_NOMEM, "gzip: no memory for %lu bytes of output", bound);
    s->next_in = in;
    s->avail_in = (uInt)len;
    s->next_out = (unsigned char *)out->data + out->len;
    s->avail_out = (uInt)bound;
    int r = deflate(s, Z_FINISH);
    if (r != Z_STREAM_END)
        return kn__error_set(err, KN_ERR_NOMEM, "gzip: deflate did not finish (%d)", r);
    out->len += bound - s->avail_out;
    out->data[out->len] = '\0';
    return KN_ERR_OK;
}

static kn_err_t zstd_compress(kn__zctx_t *z, int level, const void *in, size_t len, kn_buf_t *out,
                              kn_error_t *err)
{
    if (!z->zc && !(z->zc = ZSTD_createCCtx()))
        return kn__error_set(err, KN_ERR_NOMEM, "zstd: cannot create a compression context");
    ZSTD_CCtx *c = z->zc;
    ZSTD_CCtx_reset(c, ZSTD_reset_session_only);
    size_t r = ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel,
                                      level == KN__CODEC_LEVEL_DEFAULT ? ZSTD_CLEVEL_DEFAULT : level);
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1);
    if (ZSTD_isError(r))
        return kn__error_set(err, KN_ERR_INVALID_ARG, "zstd: %s", ZSTD_getErrorName(r));
    size_t bound = ZSTD_compressBound(len);
    if (kn__buf_reserve(out, bound) != 0)
        return kn__error_set(err, KN_ERR_NOMEM, "zstd: no memory for %zu bytes of output", bound);
    /* compress2 knows the whole input, so the frame header carries the content size. */
    r = ZSTD_compress2(c, out->data + out->len, bound, in, len);
    if (ZSTD_isError(r))
        return kn__error_set(err,
                             ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation ? KN_ERR_NOMEM
                                                                                   : KN_ERR_INVALID_ARG,
                             "zstd: compression failed: %s", ZSTD_getErrorName(r));
    out->len += r;
    out->data[out->len] = '\0';
    return KN_ERR_OK;
}

kn_err_t kn__compress(kn__zctx_t *z, kn__codec_t codec, int level, const void *in, size_t len,
                      kn_buf_t *out, kn_error_t *err)
{
    int min, max;
    if (codec != KN__CODEC_GZIP && codec != KN__CODEC_ZSTD)
        return kn__error_set(err, KN_ERR_INVALID_ARG, "compress: unknown codec %d", (int)codec);
    kn__codec_level_range(codec, &min, &max);
    if (level != KN__CODEC_LEVEL_DEFAULT && (level < min || level > max))
        return kn__error_set(err, KN_ERR_INVALID_ARG, "%s: level %d is out of range [%d, %d]",
                             kn__codec_name(codec), level, min, max);
    if (len > COMPRESS_MAX_IN)
        return kn__error_set(err, KN_ERR_TOO_LARGE, "%s: input of %zu bytes is too large to compress",
                             kn__codec_name(codec), len);
    if (!in)
        in = "";
    return codec == KN__CODEC_GZIP ? gzip_compress(z, level, in, len, out, err)
                                   : zstd_compress(z, level, in, len, out, err);
}

/* ---------------------------------------------------------- decompress */

/*
 * Output space management shared by both decoders: the buffer grows to exact
 * sizes (never beyond base + max_out + the NUL), and once max_out bytes are
 * out, the decoder gets a 1-byte probe buffer: any byte written there proves
 * the data is larger than the bound.
 */
typedef struct outwin_s {
    kn_buf_t *b;
    size_t base, max_out, hint;
    unsigned char probe;
    bool probing;
} outwin_t;

/* Points *p and *n at where the decoder may write next; -1 on allocation failure. */
static int outwin_next(outwin_t *w, unsigned char **p, size_t *n)
{
    kn_buf_t *b = w->b;
    size_t produced = b->len - w->base;
    size_t space = b->cap ? b->cap - 1 - b->len : 0;
    /* The buffer may come with room to spare: never let the decoder use more than the bound. */
    if (space > w->max_out - produced)
        space = w->max_out - produced;
    w->probing = false;
    if (space == 0) {
        if (produced >= w->max_out) {
            w->probing = true;
            *p = &w->probe;
            *n = 1;
            return 0;
        }
        size_t grow = produced ? produced : w->hint;
        if (grow < 256)
            grow = 256;
        if (grow > w->max_out - produced)
            grow = w->max_out - produced;
        size_t cap = b->len + grow + 1;
        if (cap <= b->cap) /* never shrink: the caller's buffer may be larger than the bound */
            cap = b->cap;
        char *d = realloc(b->data, cap);
        if (!d)
            return -1;
        b->data = d;
        b->cap = cap;
        space = grow;
    }
    *p = (unsigned char *)b->data + b->len;
    *n = space;
    return 0;
}

static void outwin_fail(outwin_t *w)
{
    w->b->len = w->base;
    if (w->b->data)
        w->b->data[w->base] = '\0';
}

static kn_err_t gzip_decompress(kn__zctx_t *z, const unsigned char *in, size_t len, size_t max_out,
                                kn_buf_t *out, kn_error_t *err)
{
    z_stream *s = &z->inf;
    kn_err_t rc = KN_ERR_OK;
    outwin_t w = {.b = out, .base = out->len, .max_out = max_out};
    if (!z->inf_init) {
        memset(s, 0, sizeof(*s));
        int r = inflateInit2(s, GZIP_WBITS);
        if (r != Z_OK)
            return kn__error_set(err, KN_ERR_NOMEM, "gzip: inflateInit2 failed (%d)", r);
        z->inf_init = true;
    } else {
        inflateReset(s);
    }
    if (len == 0)
        return kn__error_set(err, KN_ERR_BAD_RESPONSE, "gzip: empty input is not a gzip frame");
    /* The trailer's ISIZE (size mod 2^32) is a good first guess; it is only a hint. */
    w.hint = len >= 18 ? ((size_t)in[len - 4] | (size_t)in[len - 3] << 8 | (size_t)in[len - 2] << 16 |
                          (size_t)in[len - 1] << 24)
                       : 0;
    if (w.hint == 0)
        w.hint = len < SIZE_MAX / 4 ? len * 4 : len;

    size_t in_left = len;
    const unsigned char *ip = in;
    s->avail_in = 0;
    for (;;) {
        unsigned char *op;
        size_t on;
        if (outwin_next(&w, &op, &on) != 0) {
            rc = kn__error_set(err, KN_ERR_NOMEM, "gzip: no memory for the output");
            goto out;
        }
        if (s->avail_in == 0 && in_left) {
            size_t take = in_left > UINT_MAX ? UINT_MAX : in_left;
            s->next_in = ip;
            s->avail_in = (uInt)take;
            ip += take;
            in_left -= take;
        }
        uInt give = on > UINT_MAX ? UINT_MAX : (uInt)on;
        s->next_out = op;
        s->avail_out = give;
        int r = inflate(s, Z_NO_FLUSH);
        size_t got = give - s->avail_out;
        if (w.probing && got) {
            rc = kn__error_set(err, KN_ERR_TOO_LARGE,
                               "gzip: data decompresses to more than the limit of %zu bytes", max_out);
            goto out;
        }
        if (!w.probing) {
            out->len += got;
            out->data[out->len] = '\0';
        }
        size_t remaining = s->avail_in + in_left;
        if (r == Z_STREAM_END) {
            if (remaining == 0)
                break;
            /* Concatenated members are one gzip file (RFC 1952 2.2); anything else is garbage. */
            if (s->next_in[0] != 0x1f) {
                rc = kn__error_set(err, KN_ERR_BAD_RESPONSE,
                                   "gzip: %zu bytes of trailing data after the gzip frame", remaining);
                goto out;
            }
            inflateReset(s);
            continue;
        }
        if (r == Z_MEM_ERROR) {
            rc = kn__error_set(err, KN_ERR_NOMEM, "gzip: out of memory while decompressing");
            goto out;
        }
        if (r != Z_OK && r != Z_BUF_ERROR) {
            rc = kn__error_set(err, KN_ERR_BAD_RESPONSE, "gzip: corrupt data: %s",
                               s->msg ? s->msg : "inflate failed");
            goto out;
        }
        if (remaining == 0 && s->avail_out != 0) {
            rc = kn__error_set(err, KN_ERR_BAD_RESPONSE,
                               "gzip: truncated frame (the input ends before the end of the stream)");
            goto out;
        }
    }
out:
    if (rc != KN_ERR_OK)
        outwin_fail(&w);
    return rc;
}

static kn_err_t zstd_error(size_t r, size_t max_out, kn_error_t *err)
{
    ZSTD_ErrorCode ec = ZSTD_getErrorCode(r);
    if (ec == ZSTD_error_memory_allocation)
        return kn__error_set(err, KN_ERR_NOMEM, "zstd: out of memory while decompressing");
    if (ec == ZSTD_error_frameParameter_windowTooLarge)
        return kn__error_set(err, KN_ERR_TOO_LARGE,
                             "zstd: the frame needs a window larger than allowed for a %zu-byte limit",
                             max_out);
    return kn__error_set(err, KN_ERR_BAD_RESPONSE, "zstd: corrupt data: %s", ZSTD_getErrorName(r));
}

static kn_err_t zstd_decompress(kn__zctx_t *z, const unsigned char *in, size_t len, size_t max_out,
                                kn_buf_t *out, kn_error_t *err)
{
    kn_err_t rc = KN_ERR_OK;
    outwin_t w = {.b = out, .base = out->len, .max_out = max_out};
    if (!z->zd && !(z->zd = ZSTD_createDCtx()))
        return kn__error_set(err, KN_ERR_NOMEM, "zstd: cannot create a decompression context");
    ZSTD_DCtx *d = z->zd;
    ZSTD_DCtx_reset(d, ZSTD_reset_session_only);
    int wlog = ZSTD_WLOG_MIN;
    while (wlog < ZSTD_WLOG_CAP && ((size_t)1 << wlog) < max_out)
        wlog++;
    ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, wlog);

    if (len == 0)
        return kn__error_set(err, KN_ERR_BAD_RESPONSE, "zstd: empty input is not a zstd frame");
    /* Only the standard frame format: libzstd would also take legacy (v0.x) frames. */
    if (!kn__codec_sniff(KN__CODEC_ZSTD, in, len))
        return kn__error_set(err, KN_ERR_BAD_RESPONSE, "zstd: not a zstd frame (bad magic number)");
    unsigned long long fcs = ZSTD_getFrameContentSize(in, len);
    if (fcs == ZSTD_CONTENTSIZE_ERROR)
        return kn__error_set(err, KN_ERR_BAD_RESPONSE,
                             "zstd: not a zstd frame (bad magic number or truncated header)");
    if (fcs != ZSTD_CONTENTSIZE_UNKNOWN && fcs > max_out)
        return kn__error_set(err, KN_ERR_TOO_LARGE,
                             "zstd: the frame declares %llu bytes, more than the limit of %zu", fcs,
                             max_out);
    w.hint = fcs != ZSTD_CONTENTSIZE_UNKNOWN ? (size_t)fcs : (len < SIZE_MAX / 4 ? len * 4 : len);

    ZSTD_inBuffer ib = {in, len, 0};
    for (;;) {
        unsigned char *op;
        size_t on;
        if (outwin_next(&w, &op, &on) != 0) {
            rc = kn__error_set(err, KN_ERR_NOMEM, "zstd: no memory for the output");
            goto out;
        }
        ZSTD_outBuffer ob = {op, on, 0};
        size_t r = ZSTD_decompressStream(d, &ob, &ib);
        if (ZSTD_isError(r)) {
            rc = zstd_error(r, max_out, err);
            goto out;
        }
        if (w.probing && ob.pos) {
            rc = kn__error_set(err, KN_ERR_TOO_LARGE,
                               "zstd: data decompresses to more than the limit of %zu bytes", max_out);
            goto out;
        }
        if (!w.probing) {
            out->len += ob.pos;
            out->data[out->len] = '\0';
        }
        /* r == 0: a frame ended and is fully flushed; more input means another frame. */
        if (r == 0 && ib.pos == ib.size)
            break;
        if (ib.pos == ib.size && ob.pos < ob.size) {
            rc = kn__error_set(err, KN_ERR_BAD_RESPONSE,
                               "zstd: truncated frame (the input ends before the end of the frame)");
            goto out;
        }
    }
out:
    if (rc != KN_ERR_OK)
        outwin_fail(&w);
    return rc;
}

kn_err_t kn__decompress(kn__zctx_t *z, kn__codec_t codec, const void *in, size_t len,
                        size_t max_out, kn_buf_t *out, kn_error_t *err)
{
    if (!in)
        in = "";
    switch (codec) {
    case KN__CODEC_GZIP: return gzip_decompress(z, in, len, max_out, out, err);
    case KN__CODEC_ZSTD: return zstd_decompress(z, in, len, max_out, out, err);
    case KN__CODEC_NONE: break;
    }
    return kn__error_set(err, KN_ERR_INVALID_ARG, "decompress: unknown codec %d", (int)codec);
}
