/*
 * Internal: typed Kinesis operations over the AWS JSON request layer (aws.h).
 *
 * Each operation has a pure request builder (appends a JSON body to a
 * kn_buf_t), a pure response parser (json-c object in, owned result struct
 * out) and a blocking form over kn__aws_call_sync() for application threads.
 * PutRecords and GetRecords also have an asynchronous form over
 * kn__aws_call() whose callback parses the result on the client's loop
 * thread; the producer and consumer may instead call the builders and parsers
 * themselves.
 *
 * Results are plain structs owned by the caller, each with a free function
 * that accepts a zeroed struct. Parsers fill err with KN_ERR_BAD_RESPONSE and
 * a message that names the operation and the offending field.
 *
 * Sequence numbers and iterators are opaque strings of any length (moto
 * answers "1"); they are never converted to numbers.
 */
#ifndef KN_KINESIS_OPS_H
#define KN_KINESIS_OPS_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "conf.h"
#include "err.h"
#include "hashkey.h"
#include "json_fields.h"

/*
 * A stream reference: a name, an ARN, or both. The body carries StreamName
 * and/or StreamARN for whichever is set (non-empty); at least one must be.
 * kinesalite does not understand StreamARN: use the name there.
 */
typedef struct kn__stream_ref_s {
    const char *name;
    const char *arn;
} kn__stream_ref_t;

/* Request limits (from kinesis.putrecords.max.records/.max.bytes, kinesis.record.max.bytes). */
typedef struct kn__kinesis_limits_s {
    int64_t put_max_records;
    int64_t put_max_bytes;    /* data plus partition keys of one request */
    int64_t record_max_bytes; /* data plus partition key of one record */
} kn__kinesis_limits_t;

void kn__kinesis_limits_from_conf(const kn_conf_t *conf, kn__kinesis_limits_t *out);

/* ------------------------------------------------------------------ ListStreams */

typedef struct kn__stream_names_s {
    char **names;
    size_t count;
} kn__stream_names_t;

void kn__stream_names_free(kn__stream_names_t *l);

/* One page. next_token wins over exclusive_start (both may be NULL); limit 0: server default. */
kn_err_t kn__list_streams_build(kn_buf_t *body, const char *exclusive_start,
                                const char *next_token, int limit, kn_error_t *err);
/*
 * Appends the page's names to out; *has_more from HasMoreStreams;
 * *next_token (malloc'd, NULL if absent) from NextToken.
 */
kn_err_t kn__list_streams_parse(json_object *resp, kn__stream_names_t *out, bool *has_more,
                                char **next_token, kn_error_t *err);
/*
 * All pages (page_limit names per request; 0: server default), following
 * NextToken when the server sends one, else ExclusiveStartStreamName.
 */
kn_err_t kn__kinesis_list_streams(kn_client_t *c, int page_limit, kn__stream_names_t *out,
                                  kn_error_t *err);

/* ------------------------------------------------------- DescribeStreamSummary */

typedef enum kn__stream_status_e {
    KN__STREAM_UNKNOWN = 0,
    KN__STREAM_CREATING,
    KN__STREAM_DELETING,
    KN__STREAM_ACTIVE,
    KN__STREAM_UPDATING,
} kn__stream_status_t;

typedef struct kn__stream_summary_s {
    char *name;
    char *arn;
    kn__stream_status_t status;
    char *status_str;       /* as sent, for messages */
    bool on_demand;         /* StreamModeDetails.StreamMode == ON_DEMAND */
    int64_t open_shard_count;
    int64_t retention_hours;
    char *encryption_type;  /* "NONE", "KMS", or NULL when absent */
    char *key_id;           /* NULL when absent */
    int64_t max_record_size_kib; /* 0 when absent */
    int64_t consumer_count;      /* -1 when absent */
    int64_t creation_ms;         /* -1 when absent */
} kn__stream_summary_t;

void kn__stream_summary_free(kn__stream_summary_t *s);
kn_err_t kn__describe_stream_summary_build(kn_buf_t *body, const kn__stream_ref_t *ref,
                                           kn_error_t *err);
kn_err_t kn__describe_stream_summary_parse(json_object *resp, kn__stream_summary_t *out,
                                           kn_error_t *err);
kn_err_t kn__kinesis_describe_stream_summary(kn_client_t *c, const kn__stream_ref_t *ref,
                                             kn__stream_summary_t *out, kn_error_t *err);

/* ------------------------------------------------------------------ ListShards */

typedef enum kn__shard_filter_type_e {
    KN__SF_NONE = 0,
    KN__SF_AFTER_SHARD_ID,
    KN__SF_AT_TRIM_HORIZON,
    KN__SF_FROM_TRIM_HORIZON,
    KN__SF_AT_LATEST,
    KN__SF_AT_TIMESTAMP,
    KN__SF_FROM_TIMESTAMP,
} kn__shard_filter_type_t;

typedef struct kn__list_shards_opts_s {
    kn__shard_filter_type_t filter;
    const char *filter_shard_id; /* AFTER_SHARD_ID */
    int64_t filter_timestamp_ms; /* AT_TIMESTAMP, FROM_TIMESTAMP */
    const char *exclusive_start_shard_id;
    int max_results;             /* 0: server default */
} kn__list_shards_opts_t;

typedef struct kn__shard_s {
    char *shard_id;
    char *parent_shard_id;          /* NULL when absent */
    char *adjacent_parent_shard_id; /* NULL when absent */
    kn__hashkey_t start_hash, end_hash;
    char *start_seq;
    char *end_seq; /* NULL while the shard is open */
} kn__shard_t;

static inline bool kn__shard_is_open(const kn__shard_t *s) { return s->end_seq == NULL; }

typedef struct kn__shard_list_s {
    kn__shard_t *shards;
    size_t count;
} kn__shard_list_t;

void kn__shard_list_free(kn__shard_list_t *l);
/*
 * One page. With next_token only NextToken (and MaxResults) are sent: the
 * service rejects StreamName alongside it. opts may be NULL.
 */
kn_err_t kn__list_shards_build(kn_buf_t *body, const kn__stream_ref_t *ref,
                               const kn__list_shards_opts_t *opts, const char *next_token,
                               kn_error_t *err);
/* Appends the page's shards to out; *next_token malloc'd or NULL. */
kn_err_t kn__list_shards_parse(json_object *resp, kn__shard_list_t *out, char **next_token,
                               kn_error_t *err);
/* All pages. */
kn_err_t kn__kinesis_list_shards(kn_client_t *c, const kn__stream_ref_t *ref,
                                 const kn__list_shards_opts_t *opts, kn__shard_list_t *out,
                                 kn_error_t *err);

/* --------------------------------------------------------- stream management */

/* shard_count 0 creates an on-demand stream (StreamModeDetails ON_DEMAND). */
kn_err_t kn__create_stream_build(kn_buf_t *body, const char *name, int shard_count,
                                 kn_error_t *err);
kn_err_t kn__kinesis_create_stream(kn_client_t *c, const char *name, int shard_count,
                                   kn_error_t *err);
kn_err_t kn__delete_stream_build(kn_buf_t *body, const kn__stream_ref_t *ref,
                                 bool enforce_consumer_deletion, kn_error_t *err);
kn_err_t kn__kinesis_delete_stream(kn_client_t *c, const kn__stream_ref_t *ref,
                                   bool enforce_consumer_deletion, kn_error_t *err);
/* UNIFORM_SCALING. */
kn_err_t kn__update_shard_count_build(kn_buf_t *body, const kn__stream_ref_t *ref,
                                      int target_shard_count, kn_error_t *err);
kn_err_t kn__kinesis_update_shard_count(kn_client_t *c, const kn__stream_ref_t *ref,
                                        int target_shard_count, kn_error_t *err);
kn_err_t kn__split_shard_build(kn_buf_t *body, const kn__stream_ref_t *ref,
                               const char *shard_id, kn__hashkey_t new_starting_hash_key,
                               kn_error_t *err);
kn_err_t kn__kinesis_split_shard(kn_client_t *c, const kn__stream_ref_t *ref,
                                 const char *shard_id, kn__hashkey_t new_starting_hash_key,
                                 kn_error_t *err);
kn_err_t kn__merge_shards_build(kn_buf_t *body, const kn__stream_ref_t *ref,
                                const char *shard_id, const char *adjacent_shard_id,
                                kn_error_t *err);
kn_err_t kn__kinesis_merge_shards(kn_client_t *c, const kn__stream_ref_t *ref,
                                  const char *shard_id, const char *adjacent_shard_id,
                                  kn_error_t *err);

/*
 * Polls DescribeStreamSummary until the stream is ACTIVE, at most timeout_ms
 * (interval_ms between polls). KN_ERR_TIMEOUT names the last status seen.
 */
kn_err_t kn__kinesis_wait_active(kn_client_t *c, const kn__stream_ref_t *ref, long timeout_ms,
                                 long interval_ms, kn_error_t *err);

/* ------------------------------------------------------------------ PutRecords */

typedef struct kn__put_entry_s {
    const void *data;
    size_t data_len;
    const char *partition_key; /* UTF-8, 1..256 characters */
    size_t partition_key_len;
    const char *explicit_hash_key; /* decimal 0..2^128-1, or NULL */
    size_t explicit_hash_key_len;
} kn__put_entry_t;

typedef struct kn__put_result_entry_s {
    const char *shard_id;        /* NULL when the entry failed */
    const char *sequence_number; /* NULL when the entry failed */
    const char *error_code;      /* NULL when the entry succeeded */
    const char *error_message;   /* NULL when absent */
} kn__put_result_entry_t;

typedef struct kn__put_result_s {
    kn__put_result_entry_t *entries; /* in request order */
    size_t count;
    int64_t failed_count;
    const char *encryption_type; /* NULL when absent */
    kn_buf_t strings;            /* owns every string above */
} kn__put_result_t;

void kn__put_result_free(kn__put_result_t *r);

/*
 * Validates the entries against the limits and appends the body. Errors:
 * KN_ERR_INVALID_ARG (no entries, bad partition key, bad explicit hash key,
 * bad stream reference), KN_ERR_TOO_LARGE (too many records, a record or the
 * request over its byte limit); the message names the record index and the
 * limit's property. On error body is left as it was.
 */
kn_err_t kn__put_records_build(kn_buf_t *body, const kn__stream_ref_t *ref,
                               const kn__put_entry_t *entries, size_t n,
                               const kn__kinesis_limits_t *limits, kn_error_t *err);
/* n: the number of entries sent; the response must have exactly that many. */
kn_err_t kn__put_records_parse(json_object *resp, size_t n, kn__put_result_t *out,
                               kn_error_t *err);
kn_err_t kn__kinesis_put_records(kn_client_t *c, const kn__stream_ref_t *ref,
                                 const kn__put_entry_t *entries, size_t n,
                                 kn__put_result_t *out, kn_error_t *err);

/*
 * Called once, on the loop thread. On success (err->code == KN_ERR_OK) res
 * holds the parsed result, which the callback owns (kn__put_result_free);
 * on failure res is zeroed. err is valid only inside the call.
 */
typedef void(kn__put_records_cb_t)(kn__put_result_t *res, const kn_error_t *err, void *opaque);

/*
 * Builds (the caller's thread) and sends asynchronously. On an immediate
 * error (validation, KN_ERR_DESTROYED) the callback is not called and err
 * says why.
 */
kn_err_t kn__kinesis_put_records_async(kn_client_t *c, const kn__stream_ref_t *ref,
                                       const kn__put_entry_t *entries, size_t n,
                                       kn__put_records_cb_t *cb, void *opaque, kn_error_t *err);

/* ------------------------------------------------------------ GetShardIterator */

typedef enum kn__iterator_type_e {
    KN__IT_AT_SEQUENCE_NUMBER,
    KN__IT_AFTER_SEQUENCE_NUMBER,
    KN__IT_TRIM_HORIZON,
    KN__IT_LATEST,
    KN__IT_AT_TIMESTAMP,
} kn__iterator_type_t;

typedef struct kn__iterator_pos_s {
    kn__iterator_type_t type;
    const char *sequence_number; /* AT_/AFTER_SEQUENCE_NUMBER */
    int64_t timestamp_ms;        /* AT_TIMESTAMP; sent as seconds with a fraction */
} kn__iterator_pos_t;

const char *kn__iterator_type_name(kn__iterator_type_t t);

kn_err_t kn__get_shard_iterator_build(kn_buf_t *body, const kn__stream_ref_t *ref,
                                      const char *shard_id, const kn__iterator_pos_t *pos,
                                      kn_error_t *err);
/* *iterator is malloc'd. */
kn_err_t kn__get_shard_iterator_parse(json_object *resp, char **iterator, kn_error_t *err);
kn_err_t kn__kinesis_get_shard_iterator(kn_client_t *c, const kn__stream_ref_t *ref,
                                        const char *shard_id, const kn__iterator_pos_t *pos,
                                        char **iterator, kn_error_t *err);

/* ------------------------------------------------------------------ GetRecords */

typedef struct kn__record_s {
    const unsigned char *data; /* decoded from base64 */
    size_t data_len;
    const char *partition_key;
    size_t partition_key_len;
    const char *sequence_number;
    int64_t arrival_ms;          /* ApproximateArrivalTimestamp; -1 when absent */
    const char *encryption_type; /* NULL when absent */
} kn__record_t;

typedef struct kn__child_shard_s {
    char *shard_id;
    char **parent_shards;
    size_t parent_count;
    kn__hashkey_t start_hash, end_hash;
} kn__child_shard_t;

typedef struct kn__get_records_result_s {
    kn__record_t *records;
    size_t count;
    int64_t millis_behind_latest; /* -1 when absent */
    char *next_iterator;          /* NULL: the shard is closed and fully read */
    kn__child_shard_t *child_shards;
    size_t child_count;
    kn_buf_t arena; /* owns the records' bytes and strings */
} kn__get_records_result_t;

void kn__get_records_result_free(kn__get_records_result_t *r);

/* limit 0: server default. ref may be NULL; only its ARN is sent (GetRecords has no StreamName). */
kn_err_t kn__get_records_build(kn_buf_t *body, const kn__stream_ref_t *ref, const char *iterator,
                               int limit, kn_error_t *err);
kn_err_t kn__get_records_parse(json_object *resp, kn__get_records_result_t *out, kn_error_t *err);
kn_err_t kn__kinesis_get_records(kn_client_t *c, const kn__stream_ref_t *ref,
                                 const char *iterator, int limit, kn__get_records_result_t *out,
                                 kn_error_t *err);

/*
 * The hot path (getrecords_parse.c): parses a raw GetRecords body in place.
 * On success the records point into the body, which moves into out->arena
 * (body is left empty). KN_ERR_NOT_SUPPORTED, with body unchanged and err
 * untouched, for anything it does not handle (ChildShards, escapes in kept
 * strings, malformed JSON, a missing field): use kn__get_records_parse then.
 * Any other error is final (the body has been changed).
 */
kn_err_t kn__get_records_parse_body(kn_buf_t *body, kn__get_records_result_t *out, kn_error_t *err);

/* Same contract as kn__put_records_cb_t. */
typedef void(kn__get_records_cb_t)(kn__get_records_result_t *res, const kn_error_t *err,
                                   void *opaque);
kn_err_t kn__kinesis_get_records_async(kn_client_t *c, const kn__stream_ref_t *ref,
                                       const char *iterator, int limit,
                                       kn__get_records_cb_t *cb, void *opaque, kn_error_t *err);

#endif
