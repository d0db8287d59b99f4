/*
 * Internal: the KPL aggregated record format (README "Aggregation").
 *
 *   MAGIC F3 89 9A C2 | protobuf AggregatedRecord | MD5(protobuf)
 *
 * The builder adds user records one at a time with exact size accounting, so
 * a caller knows before adding whether a record still fits; key tables are
 * de-duplicated. The decoder detects aggregates exactly as the KCL does and
 * passes anything that fails detection through unchanged, saying why.
 *
 * Threads: a builder or a decoded result belongs to one thread at a time.
 * Everything here is pure computation (no I/O, no logging).
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
/* The outer partition key the KPL gives every aggregate. */
#define KN__AGG_DEFAULT_OUTER_PARTITION_KEY "a"

/* A Record tag (field 4): key required, value optional (value == NULL: absent). */
typedef struct kn__agg_tag_s {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
} kn__agg_tag_t;

/* A user record as input to the builder: views, copied by kn__agg_builder_add. */
typedef struct kn__agg_in_s {
    const char *partition_key; /* non-empty; bytes as given (UTF-8 expected, not checked) */
    size_t partition_key_len;
    /*
     * Decimal 0..2^128-1, or NULL (or length 0) for none. Stored canonically
     * (leading zeros removed: the service rejects them in ExplicitHashKey).
     */
    const char *explicit_hash_key;
    size_t explicit_hash_key_len;
    const void *data;
    size_t data_len;
    const kn__agg_tag_t *tags;
    size_t n_tags;
} kn__agg_in_t;

typedef struct kn__agg_builder_s kn__agg_builder_t;

/* NULL on allocation failure. */
kn__agg_builder_t *kn__agg_builder_new(void);
/* NULL is a no-op. */
void kn__agg_builder_destroy(kn__agg_builder_t *b);
/* Empties the builder in O(1), keeping its memory. */
void kn__agg_builder_reset(kn__agg_builder_t *b);
size_t kn__agg_builder_count(const kn__agg_builder_t *b);

/*
 * Exact size in bytes of the aggregate (magic + protobuf + MD5) the builder
 * holds now, and the size it would have with r added (key tables
 * de-duplicated). With one record or none the aggregate is still counted as
 * an aggregate (an empty builder: KN__AGG_OVERHEAD): callers compare against
 * their limit either way. size_with() returns SIZE_MAX if r is invalid (empty
 * partition key, bad explicit hash key) or absurdly large.
 * Invariant: size_with(r) before add(r) == size() after add(r) ==
 * finish(force_aggregate)'s data length.
 */
size_t kn__agg_builder_size(const kn__agg_builder_t *b);
size_t kn__agg_builder_size_with(const kn__agg_builder_t *b, const kn__agg_in_t *r);

/*
 * Adds r (copied). KN_ERR_INVALID_ARG for an empty partition key, an invalid
 * explicit hash key or a tag without a key; KN_ERR_NOMEM. On error the
 * builder is unchanged.
 */
kn_err_t kn__agg_builder_add(kn__agg_builder_t *b, const kn__agg_in_t *r, kn_error_t *err);

/*
 * Adds r only if afterwards size() <= max_bytes and count() <= max_count
 * (0: no count limit). Returns KN_ERR_TOO_LARGE without touching the builder
 * or err when it does not fit (the caller then finishes this aggregate and
 * starts another); other errors as kn__agg_builder_add. Cheaper than
 * size_with() + add(), which look the keys up twice.
 */
kn_err_t kn__agg_builder_try_add(kn__agg_builder_t *b, const kn__agg_in_t *r, size_t max_bytes,
                                 size_t max_count, kn_error_t *err);

/*
 * The Kinesis record to send. With 2+ records (or 1 and force_aggregate):
 * data = the aggregate, partition_key = outer_partition_key (NULL: the KPL's
 * "a"), explicit_hash_key = the first record's hash key (its explicit one,
 * else MD5 of its partition key) as a canonical decimal. With 1 record and
 * !force_aggregate: the record itself, raw, with its own partition key and
 * its own explicit hash key if it had one (tags are lost: a tagged single
 * record must be sent with force_aggregate). KN_ERR_STATE with no records;
 * KN_ERR_INVALID_ARG for an empty outer key; KN_ERR_NOMEM (the out buffers
 * may then hold part of a result). Appends to the out buffers (start from
 * KN__AGG_OUT_INIT); the builder is unchanged.
 */
typedef struct kn__agg_out_s {
    kn_buf_t data;
    kn_buf_t partition_key;
    kn_buf_t explicit_hash_key; /* len 0: none */
    bool aggregated;
    bool digest_pending; /* the last 16 bytes of data are zeros until kn__agg_out_digest */
} kn__agg_out_t;

#define KN__AGG_OUT_INIT {KN_BUF_INIT, KN_BUF_INIT, KN_BUF_INIT, false, false}

kn_err_t kn__agg_builder_finish(const kn__agg_builder_t *b, const char *outer_partition_key,
                                bool force_aggregate, kn__agg_out_t *out, kn_error_t *err);

/*
 * Deferred digests. After kn__agg_builder_defer_digest(b, true) (it
 * survives reset), finish leaves an aggregate's trailing MD5 as zeros and
 * sets out->digest_pending; kn__agg_out_digest then fills in the digests of
 * many aggregates at once, side by side in SIMD lanes (kn__md5_many), which
 * on AVX-512 costs about a ninth of one MD5 after another. A producer
 * finishes aggregates one by one on its I/O thread and digests a whole
 * request's worth on the thread that builds the request. Until its digest is
 * filled in, an aggregate must not be sent or decoded.
 */
void kn__agg_builder_defer_digest(kn__agg_builder_t *b, bool defer);
/* Fills in every pending digest among outs[0..n) (NULL entries and others are skipped). */
void kn__agg_out_digest(kn__agg_out_t *const *outs, size_t n);
void kn__agg_out_free(kn__agg_out_t *out);

/* ------------------------------------------------------------- decoding */

/*
 * Why a record was (or was not) decoded as an aggregate. Everything from
 * KN__AGG_R_BAD_MD5 on means the input started with the magic but was passed
 * through: a consumer counts and logs those.
 */
#define KN__AGG_REASONS(X)                                                                         \
    X(OK, "aggregate decoded")                                                                     \
    X(PLAIN, "no aggregate magic, or too short: a plain record")                                  \
    X(BAD_MD5, "MD5 digest mismatch")                                                              \
    X(BAD_VARINT, "varint longer than 10 bytes or over 64 bits")                                   \
    X(TRUNCATED, "a field runs past the end of its message")                                       \
    X(BAD_TAG, "field number 0, wire type 6 or 7, or an unmatched end-group")                     \
    X(TOO_DEEP, "groups nested too deeply")                                                        \
    X(MISSING_FIELD, "a required field is missing")                                                \
    X(INDEX_OUT_OF_TABLE, "a key index lies outside its table")

#define KN__AGG_REASON_ENUM(name, desc) KN__AGG_R_##name,
typedef enum kn__agg_reason_e { KN__AGG_REASONS(KN__AGG_REASON_ENUM) KN__AGG_R__COUNT } kn__agg_reason_t;
#undef KN__AGG_REASON_ENUM

/* A static description ("MD5 digest mismatch"); "unknown" for a bad value. */
const char *kn__agg_reason_str(kn__agg_reason_t r);
/* A static name without prefix ("BAD_MD5"). */
const char *kn__agg_reason_name(kn__agg_reason_t r);

/* A user record decoded from a Kinesis record: views into the input and the result's storage. */
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
    bool out_of_range;     /* set by kn__agg_check_range() */
} kn__agg_rec_t;

/*
 * Zero-initialise (KN__AGG_DECODED_INIT) before the first decode; reuse it
 * across decodes (its storage is kept) and kn__agg_decoded_free() at the end.
 */
typedef struct kn__agg_decoded_s {
    kn__agg_rec_t *records;
    size_t count;
    bool aggregated;          /* false: the input passed through as one plain record */
    kn__agg_reason_t reason;  /* KN__AGG_R_OK when aggregated */
    size_t reason_offset;     /* byte offset in the input where decoding failed (0 if n/a) */
    /* Storage, private to agg.c. */
    kn__agg_tag_t *tag_store;
    size_t tag_cap, rec_cap;
    void *keys;
    size_t key_cap;
} kn__agg_decoded_t;

#define KN__AGG_DECODED_INIT {NULL, 0, false, KN__AGG_R_OK, 0, NULL, 0, 0, NULL, 0}

/* The KCL's detection: magic, more than 16 bytes after it, MD5 matches. The protobuf is not parsed. */
bool kn__agg_is_aggregate(const void *data, size_t len);

/*
 * Decodes a Kinesis record (data, its partition key, its explicit hash key or
 * NULL). An aggregate that passes detection and parses yields its user
 * records (sub_sequence 0..n-1; an aggregate with no records yields count 0,
 * as in the KCL); any input that fails detection or parsing yields one plain
 * record equal to the input with out->reason saying why. The protobuf is
 * parsed as proto2 (unknown fields and groups skipped, a known field with an
 * unexpected wire type treated as unknown, the last of repeated scalar
 * occurrences wins, required fields checked; verified against the
 * reference protobuf in tests/unit/test_agg.c) and more strictly in that no
 * varint is ever truncated (a value over 64 bits, or a tag over 32 bits,
 * fails) and a key index outside its table passes the record through (the
 * KCL throws). A parse error takes precedence over an index error.
 * Views point into data (and partition_key for a plain record); out is
 * reused across calls. Never reads outside [data, data+len); memory is
 * bounded by a small multiple of len. Returns KN_ERR_NOMEM only (out->count
 * is then 0).
 */
kn_err_t kn__agg_decode(const void *data, size_t len, const char *partition_key,
                        size_t partition_key_len, const char *explicit_hash_key,
                        size_t explicit_hash_key_len, kn__agg_decoded_t *out, kn_error_t *err);

/*
 * Digest checks of many Kinesis records at once, side by side in SIMD lanes
 * (kn__md5_many): ok[i] is true when data[i] starts with the magic, is
 * longer than KN__AGG_OVERHEAD and ends with the MD5 of its protobuf. A
 * consumer checks a GetRecords answer's records together this way and
 * hands each answer to kn__agg_decode_checked, which then does not compute
 * the MD5 again. false only means "not known good": decode checks again.
 */
void kn__agg_verify_many(size_t n, const void *const *data, const size_t *len, bool *ok);
/* kn__agg_decode, told whether kn__agg_verify_many found data's digest good. */
kn_err_t kn__agg_decode_checked(const void *data, size_t len, const char *partition_key,
                                size_t partition_key_len, const char *explicit_hash_key,
                                size_t explicit_hash_key_len, bool digest_ok, kn__agg_decoded_t *out,
                                kn_error_t *err);
void kn__agg_decoded_free(kn__agg_decoded_t *out);

/* The effective hash key of a user record: its explicit key, else MD5 of its partition key. -1 if the explicit key is invalid. */
int kn__agg_rec_hashkey(const kn__agg_rec_t *r, kn__hashkey_t *out);

/*
 * The KCL's silent-drop trap, reported instead: marks each record of an
 * aggregate whose effective hash key lies outside the shard's [start, end]
 * (or whose explicit hash key is invalid) with out_of_range = true and
 * returns how many were. Plain (pass-through) records are never marked:
 * GetRecords does not return the explicit hash key that placed them. The
 * partition keys' MD5s are computed many at a time (kn__md5_many), once
 * per run of records that share a key.
 */
size_t kn__agg_check_range(kn__agg_decoded_t *d, kn__hashkey_t start, kn__hashkey_t end);

#endif
