/*
 * Internal: the two compression scopes on top of the KPL aggregation format
 * (README "Compression format").
 *
 * record scope (compatible): each user record's data is a standard gzip or
 *   zstd frame inside a normal KPL aggregate, and the record carries the tag
 *   content-encoding: gzip|zstd. Every KPL deaggregator still reads the
 *   aggregate; any gzip/zstd library decompresses the data. A tag only exists
 *   inside an aggregate, so with record scope the producer always aggregates,
 *   even a lone record (kn__agg_builder_finish(force_aggregate = true)): a
 *   one-record aggregate is read by the KCL and aws-kinesis-agg like any
 *   other, whereas a raw record would lose the tag and reach consumers as
 *   undecodable bytes.
 *
 * aggregate scope (best ratio): the whole aggregate, or the raw record when
 *   aggregation is off, is compressed into one self-describing frame:
 *
 *     0   4  magic F4 4B 4E 5A ("\xF4" "KNZ"; not valid UTF-8, not the KPL,
 *            gzip or zstd magic)
 *     4   1  version, 1
 *     5   1  codec: 1 gzip, 2 zstd
 *     6   2  reserved, 00 00
 *     8   4  uncompressed length, big-endian
 *     12  n  payload: one standard gzip or zstd frame of those bytes
 *     12+n 4 CRC-32 (zlib's crc32, ISO-HDLC) of bytes [0, 12+n), big-endian
 *
 *   A decoder unwraps a record only when every check passes (length >= 17,
 *   magic, version, codec, reserved bytes, CRC); anything else is a plain
 *   record and passes through unchanged.
 *
 * Decoding (consumer): Kinesis record -> unwrap a frame if certain -> KPL
 * deaggregation -> decompress tagged user records. Bounded at every step;
 * a failure is reported on the record it concerns, which is then delivered
 * with the bytes as received (never dropped).
 *
 * Threads: a decoder, a kn__zctx_t and a decoded result belong to one thread
 * at a time. Pure computation (no I/O, no logging).
 */
#ifndef KN_RECORD_CODEC_H
#define KN_RECORD_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agg.h"
#include "buf.h"
#include "compress.h"
#include "err.h"

#define KN__RC_TAG_KEY "content-encoding"

#define KN__RC_FRAME_MAGIC "\xF4KNZ"
#define KN__RC_FRAME_MAGIC_LEN 4
#define KN__RC_FRAME_VERSION 1
#define KN__RC_FRAME_HEADER_LEN 12
#define KN__RC_FRAME_TRAILER_LEN 4
/* Bytes a frame adds around its payload. */
#define KN__RC_FRAME_OVERHEAD (KN__RC_FRAME_HEADER_LEN + KN__RC_FRAME_TRAILER_LEN)

typedef enum kn__rc_scope_e {
    KN__RC_SCOPE_AGGREGATE = 0, /* the default when compression is on */
    KN__RC_SCOPE_RECORD = 1,
} kn__rc_scope_t;

/* "aggregate" or "record". */
const char *kn__rc_scope_name(kn__rc_scope_t scope);
/* ASCII case-insensitive; false if unknown. */
bool kn__rc_scope_from_name(const char *name, size_t len, kn__rc_scope_t *out);

/* ------------------------------------------------------------ encoding */

/*
 * Record scope: compresses one user record's data, appending the frame to
 * out, and fills *tag (static strings, valid forever) to pass to
 * kn__agg_builder_add(). With only_if_smaller, when the frame plus the tag
 * would not be smaller than the data as it is (short or incompressible
 * records), nothing is appended and *compressed is false: the caller adds
 * the record as it is, untagged (decoders pass untagged records unchanged).
 * Errors as kn__compress (out keeps its length).
 */
kn_err_t kn__rc_compress_record(kn__zctx_t *z, kn__codec_t codec, int level, const void *data,
                                size_t len, bool only_if_smaller, kn_buf_t *out, kn__agg_tag_t *tag,
                                bool *compressed, kn_error_t *err);

/* The content-encoding tag of a record compressed with codec (static strings). */
void kn__rc_record_tag(kn__codec_t codec, kn__agg_tag_t *tag);

/* Bytes a content-encoding tag for codec adds to the serialised Record. */
size_t kn__rc_tag_cost(kn__codec_t codec);

/*
 * Aggregate scope: wraps data (a finished aggregate, or a raw record) into a
 * frame appended to out. With only_if_smaller, when the frame would not be
 * smaller than data, nothing is appended and *wrapped is false: the caller
 * sends data as it is. Data that itself passes frame detection is always
 * wrapped, so that a decoder never mistakes it for a frame of ours.
 * KN_ERR_TOO_LARGE for data over 4 GiB - 1; others as kn__compress.
 */
kn_err_t kn__rc_wrap(kn__zctx_t *z, kn__codec_t codec, int level, const void *data, size_t len,
                     bool only_if_smaller, kn_buf_t *out, bool *wrapped, kn_error_t *err);

/* ------------------------------------------------------------ decoding */

/* Frame detection: every header check and the CRC; the payload is not decompressed. */
bool kn__rc_is_frame(const void *data, size_t len);

/*
 * Unwraps a frame into out (appended), producing at most max_out bytes.
 * Returns KN_ERR_NOT_FOUND (err untouched) if data is not a frame: the caller
 * uses it as it is. KN_ERR_TOO_LARGE if the frame declares more than max_out;
 * KN_ERR_BAD_RESPONSE if the payload does not decompress to exactly the
 * declared length; KN_ERR_NOMEM. *codec (may be NULL) receives the codec of a
 * detected frame.
 */
kn_err_t kn__rc_unwrap(kn__zctx_t *z, const void *data, size_t len, size_t max_out, kn_buf_t *out,
                       kn__codec_t *codec, kn_error_t *err);

/*
 * Bounds of one decode (one Kinesis record). max_record_bytes: a user
 * record's data after record-scope decompression. max_total_bytes:
 * everything decompressed from one Kinesis record together (the unwrapped
 * frame plus all record-scope data). 0 in either: the default.
 */
typedef struct kn__rc_limits_s {
    size_t max_record_bytes;
    size_t max_total_bytes;
} kn__rc_limits_t;

#define KN__RC_DEFAULT_MAX_RECORD_BYTES ((size_t)10 << 20)
#define KN__RC_DEFAULT_MAX_TOTAL_BYTES ((size_t)64 << 20)

/* A user record after decoding: views into the input or the decoder's storage. */
typedef struct kn__rc_rec_s {
    const char *partition_key;
    size_t partition_key_len;
    const char *explicit_hash_key; /* NULL when none */
    size_t explicit_hash_key_len;
    const unsigned char *data;
    size_t data_len;
    const kn__agg_tag_t *tags; /* as sent, including content-encoding */
    size_t n_tags;
    uint64_t sub_sequence;
    bool out_of_range;   /* set by kn__rc_check_range() */
    kn__codec_t codec;   /* record-scope codec undone on data; NONE if data is as sent */
    kn_err_t err;        /* KN_ERR_OK, or why data could not be decoded (data is then as received) */
    const char *err_msg; /* "" when err is KN_ERR_OK */
} kn__rc_rec_t;

typedef struct kn__rc_decoded_s {
    kn__rc_rec_t *records;
    size_t count;
    bool aggregated;             /* the (unwrapped) data was a KPL aggregate */
    kn__agg_reason_t agg_reason; /* why it was or was not (agg.h) */
    kn__codec_t frame_codec;     /* aggregate-scope frame detected with this codec; NONE if none */
    /*
     * KN_ERR_OK, or why a detected frame could not be unwrapped (too large,
     * corrupt payload): the Kinesis record is then delivered as one plain
     * record with the same err/err_msg.
     */
    kn_err_t frame_err;
    size_t decompressed_bytes;   /* counted against max_total_bytes */
} kn__rc_decoded_t;

typedef struct kn__rc_decoder_s kn__rc_decoder_t;

/* limits NULL: the defaults. NULL on allocation failure. */
kn__rc_decoder_t *kn__rc_decoder_new(const kn__rc_limits_t *limits);
void kn__rc_decoder_destroy(kn__rc_decoder_t *d);

/*
 * Decodes one Kinesis record (its data, partition key and explicit hash key
 * or NULL). *out points into the decoder and into data/partition_key, valid
 * until the next decode or destroy. Per-record problems are reported in the
 * records (err, err_msg) and in frame_err, never as the return value, which
 * is KN_ERR_OK or KN_ERR_NOMEM.
 */
kn_err_t kn__rc_decode(kn__rc_decoder_t *d, const void *data, size_t len, const char *partition_key,
                       size_t partition_key_len, const char *explicit_hash_key,
                       size_t explicit_hash_key_len, const kn__rc_decoded_t **out, kn_error_t *err);
/*
 * kn__rc_decode, told whether kn__agg_verify_many found data to be an
 * aggregate with a good digest (then not computed again). Consumers check a
 * whole answer's records that way first.
 */
kn_err_t kn__rc_decode_checked(kn__rc_decoder_t *d, const void *data, size_t len, const char *partition_key,
                               size_t partition_key_len, const char *explicit_hash_key,
                               size_t explicit_hash_key_len, bool digest_ok, const kn__rc_decoded_t **out,
                               kn_error_t *err);

/* kn__agg_check_range() on the last decoded result: marks and counts out-of-range user records. */
size_t kn__rc_check_range(kn__rc_decoder_t *d, kn__hashkey_t start, kn__hashkey_t end);

#endif
