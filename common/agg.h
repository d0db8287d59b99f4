/*
 * Internal: the KPL aggregated record format (reference/aggregation.md).
 *
 *   MAGIC F3 89 9A C2 | protobuf AggregatedRecord | MD5(protobuf)
 *
 * The builder adds user records one at a time with exact size accounting, so
 * a caller knows before adding whether a record still fits; key tables are
 * de-duplicated. The decoder detects aggregates exactly as the KCL does and
 * passes anything that fails detection through unchanged.
 *
 * Threads: a builder or a decoded result belongs to one thread at a time.
 */
#ifndef KN_AGG_H
#define KN_AGG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "hashkey.h"

#define KN__AGG_MAGIC "\xF3\x89\x9A\xC2"
#define KN__AGG_MAGIC_LEN 4
#define KN__AGG_DIGEST_LEN 16
/* Bytes an aggregate adds around its protobuf: magic + MD5. */
#define KN__AGG_OVERHEAD (KN__AGG_MAGIC_LEN + KN__AGG_DIGEST_LEN)
/* The KPL's default AggregationMaxSize. */
#define KN__AGG_DEFAULT_MAX_BYTES 51200

/* A Record tag (field 4): key required, value optional (value == NULL: absent). */
typedef struct kn__agg_tag_s {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
} kn__agg_tag_t;

/* A user record as input to the builder: views, copied by kn__agg_add. */
typedef struct kn__agg_in_s {
    const char *partition_key;
    size_t partition_key_len;
    const char *explicit_hash_key; /* decimal, or NULL */
    size_t explicit_hash_key_len;
    const void *data;
    size_t data_len;
    const kn__agg_tag_t *tags;
    size_t n_tags;
} kn__agg_in_t;

typedef struct kn__agg_builder_s kn__agg_builder_t;

kn__agg_builder_t *kn__agg_builder_new(void);
void kn__agg_builder_destroy(kn__agg_builder_t *b);
/* Empties the builder, keeping its memory. */
void kn__agg_builder_reset(kn__agg_builder_t *b);
size_t kn__agg_builder_count(const kn__agg_builder_t *b);

/*
 * Exact size in bytes of the aggregate (magic + protobuf + MD5) the builder
 * holds now, and the size it would have with r added (key tables
 * de-duplicated). With one record or none the aggregate is still counted as
 * an aggregate: callers compare against their limit either way.
 */
size_t kn__agg_builder_size(const kn__agg_builder_t *b);
size_t kn__agg_builder_size_with(const kn__agg_builder_t *b, const kn__agg_in_t *r);

/* Adds r (copied). KN_ERR_INVALID_ARG for an empty partition key. */
kn_err_t kn__agg_builder_add(kn__agg_builder_t *b, const kn__agg_in_t *r, kn_error_t *err);

/*
 * The Kinesis record to send. With 2+ records: data = the aggregate,
 * partition_key = outer_partition_key, explicit_hash_key = the first
 * record's hash key (its explicit one, else MD5 of its partition key, as a
 * decimal). With 1 record: the record itself, raw, with its own keys (tags
 * are lost: a single tagged record must be sent as an aggregate; pass
 * force_aggregate). Appends to the out buffers; the builder is unchanged.
 */
typedef struct kn__agg_out_s {
    kn_buf_t data;
    kn_buf_t partition_key;
    kn_buf_t explicit_hash_key; /* len 0: none */
    bool aggregated;
} kn__agg_out_t;

kn_err_t kn__agg_builder_finish(const kn__agg_builder_t *b, const char *outer_partition_key,
                                bool force_aggregate, kn__agg_out_t *out, kn_error_t *err);
void kn__agg_out_free(kn__agg_out_t *out);

/* ------------------------------------------------------------- decoding */

/* A user record decoded from a Kinesis record: views into the input and the result's arena. */
typedef struct kn__agg_rec_s {
    const char *partition_key;
    size_t partition_key_len;
    const char *explicit_hash_key; /* NULL when the record had none */
    size_t explicit_hash_key_len;
    const unsigned char *data;
    size_t data_len;
    const kn__agg_tag_t *tags;
    size_t n_tags;
    uint64_t sub_sequence; /* index in the aggregate (0 for a plain record) */
} kn__agg_rec_t;

typedef struct kn__agg_decoded_s {
    kn__agg_rec_t *records;
    size_t count;
    bool aggregated; /* false: the input passed through as one plain record */
    kn__agg_tag_t *tag_store;
    size_t tag_cap, rec_cap;
} kn__agg_decoded_t;

/* The KCL's detection: magic, more than 16 bytes after it, MD5 matches. The protobuf is not parsed. */
bool kn__agg_is_aggregate(const void *data, size_t len);

/*
 * Decodes a Kinesis record (data, partition key, explicit hash key or NULL).
 * An aggregate that passes detection and parses yields its user records; any
 * input that fails detection or parsing yields one plain record equal to the
 * input (as the KCL does). Views point into data; out is reused across calls
 * (kn__agg_decoded_free at the end). Returns KN_ERR_NOMEM only.
 */
kn_err_t kn__agg_decode(const void *data, size_t len, const char *partition_key,
                        size_t partition_key_len, const char *explicit_hash_key,
                        size_t explicit_hash_key_len, kn__agg_decoded_t *out, kn_error_t *err);
void kn__agg_decoded_free(kn__agg_decoded_t *out);

/* The effective hash key of a user record: its explicit key, else MD5 of its partition key. -1 if the explicit key is invalid. */
int kn__agg_rec_hashkey(const kn__agg_rec_t *r, kn__hashkey_t *out);

#endif
