/*
 * Internal: the gzip and zstd codecs, with bounded decompression.
 *
 * Both codecs produce and read standard frames: gzip is RFC 1952 (readable by
 * `gzip -d`, Python's gzip module, Node's zlib.gunzipSync), zstd is RFC 8878
 * with the content size and the content checksum in the frame header.
 *
 * Decompression never produces nor allocates more than max_out bytes of
 * output: a frame that would decompress to more is refused with
 * KN_ERR_TOO_LARGE as soon as the bound is passed (a "bomb" costs at most
 * max_out bytes of memory and the time to decompress max_out bytes). Corrupt
 * input (bad magic, bad checksum, truncated frame, trailing garbage) gives
 * KN_ERR_BAD_RESPONSE with a message naming the codec and the problem: the
 * data came from the service and is not what it claims to be, which is what
 * that code means to a consumer ("malformed data received").
 *
 * Contexts: a kn__zctx_t keeps the zlib streams and the zstd contexts so that
 * compressing many small records reuses their memory (creating a ZSTD_CCtx or
 * a deflate stream per record costs more than compressing a 200-byte record).
 * A context belongs to one thread at a time; give each producer worker or
 * consumer decoding thread its own.
 */
#ifndef KN_COMPRESS_H
#define KN_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "err.h"

typedef enum kn__codec_e {
    KN__CODEC_NONE = 0,
    KN__CODEC_GZIP = 1,
    KN__CODEC_ZSTD = 2,
} kn__codec_t;

/* Level 0 means the codec's default (gzip 6, zstd 3). */
#define KN__CODEC_LEVEL_DEFAULT 0

/* "none", "gzip", "zstd"; "?" for anything else. Static storage. */
const char *kn__codec_name(kn__codec_t codec);
/* Parses "none", "gzip" or "zstd" (ASCII case-insensitive). Returns false if unknown. */
bool kn__codec_from_name(const char *name, size_t len, kn__codec_t *out);
/*
 * The valid levels of a codec, for configuration checks: gzip 1..9, zstd
 * ZSTD_minCLevel()..ZSTD_maxCLevel() (negative levels are zstd's fast
 * modes). 0 (the default) is always accepted too.
 */
void kn__codec_level_range(kn__codec_t codec, int *min, int *max);

typedef struct kn__zctx_s kn__zctx_t;

/* NULL on allocation failure. The codec contexts are created on first use. */
kn__zctx_t *kn__zctx_new(void);
void kn__zctx_destroy(kn__zctx_t *z);

/*
 * Compresses in[0, len) into one standard frame appended to out.
 * KN_ERR_INVALID_ARG for an unknown codec or a level out of range,
 * KN_ERR_TOO_LARGE for input over 2 GiB, KN_ERR_NOMEM. On error out keeps
 * its length.
 */
kn_err_t kn__compress(kn__zctx_t *z, kn__codec_t codec, int level, const void *in, size_t len,
                      kn_buf_t *out, kn_error_t *err);

/*
 * Decompresses in[0, len) (one frame, or several concatenated frames of the
 * same codec, as `gzip -d` and `zstd -d` accept) and appends the result to
 * out, producing at most max_out bytes. Errors: KN_ERR_TOO_LARGE (the data
 * decompresses to more than max_out), KN_ERR_BAD_RESPONSE (corrupt, truncated
 * or not this codec), KN_ERR_INVALID_ARG (unknown codec), KN_ERR_NOMEM. On
 * error out keeps its length (its capacity may have grown, by max_out at
 * most).
 */
kn_err_t kn__decompress(kn__zctx_t *z, kn__codec_t codec, const void *in, size_t len,
                        size_t max_out, kn_buf_t *out, kn_error_t *err);

/* True if data starts like a frame of the codec (gzip 1F 8B 08, zstd 28 B5 2F FD). */
bool kn__codec_sniff(kn__codec_t codec, const void *data, size_t len);

#endif
