/*
 * libkinesis admin: stream and shard management and inspection.
 * Installed as <kinesis/admin.h>.
 *
 * Blocking calls for application threads (never call them from a library
 * callback: they wait for the client's I/O thread). Each takes a client
 * (kn_client_new) and a stream given by name or by ARN (a string starting
 * with "arn:"), and returns KN_ERR_OK or an error code, with the details
 * (message, AWS error type, HTTP status, request id) in err when err is not
 * NULL. Results are opaque objects with accessors; strings they return stay
 * valid until the object is destroyed. Destroy functions accept NULL.
 *
 * Threads: any application thread; one client may serve several threads at
 * once. A result object is not locked: read it from one thread at a time.
 */
#ifndef KINESIS_ADMIN_H
#define KINESIS_ADMIN_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Size of a buffer that holds any 128-bit hash key in decimal, NUL included. */
#define KN_HASH_KEY_STRLEN 40

/* ------------------------------------------------------------ stream list */

typedef struct kn_stream_list_s kn_stream_list_t;

/** Every stream name of the account and region (all pages). *out on success only. */
KN_API kn_err_t kn_admin_list_streams(kn_client_t *client, kn_stream_list_t **out, kn_error_t *err);
KN_API size_t kn_stream_list_count(const kn_stream_list_t *l);
/** Name i (0-based); NULL when i is out of range. */
KN_API const char *kn_stream_list_name(const kn_stream_list_t *l, size_t i);
KN_API void kn_stream_list_destroy(kn_stream_list_t *l);

/* --------------------------------------------------------- stream summary */

typedef struct kn_stream_info_s kn_stream_info_t;

/** DescribeStreamSummary. *out on success only. */
KN_API kn_err_t kn_admin_describe_stream(kn_client_t *client, const char *stream,
                                         kn_stream_info_t **out, kn_error_t *err);
KN_API const char *kn_stream_info_name(const kn_stream_info_t *s);
/** "" when the server did not send one. */
KN_API const char *kn_stream_info_arn(const kn_stream_info_t *s);
/** As sent: "CREATING", "DELETING", "ACTIVE" or "UPDATING". */
KN_API const char *kn_stream_info_status(const kn_stream_info_t *s);
KN_API bool kn_stream_info_active(const kn_stream_info_t *s);
KN_API int64_t kn_stream_info_open_shard_count(const kn_stream_info_t *s);
KN_API bool kn_stream_info_on_demand(const kn_stream_info_t *s);
KN_API int64_t kn_stream_info_retention_hours(const kn_stream_info_t *s);
KN_API void kn_stream_info_destroy(kn_stream_info_t *s);

/* ------------------------------------------------------------- shard list */

typedef struct kn_shard_list_s kn_shard_list_t;

/**
 * Every shard of the stream, open and closed (ListShards, all pages), in the
 * order the service returns them. *out on success only.
 */
KN_API kn_err_t kn_admin_list_shards(kn_client_t *client, const char *stream,
                                     kn_shard_list_t **out, kn_error_t *err);
KN_API size_t kn_shard_list_count(const kn_shard_list_t *l);
/*
 * Accessors for shard i (0-based). Strings are NULL when i is out of range;
 * parent ids and the ending sequence number are NULL when absent (an open
 * shard has no ending sequence number). Hash keys are decimal strings.
 */
KN_API const char *kn_shard_list_id(const kn_shard_list_t *l, size_t i);
KN_API const char *kn_shard_list_parent(const kn_shard_list_t *l, size_t i);
KN_API const char *kn_shard_list_adjacent_parent(const kn_shard_list_t *l, size_t i);
KN_API const char *kn_shard_list_hash_start(const kn_shard_list_t *l, size_t i);
KN_API const char *kn_shard_list_hash_end(const kn_shard_list_t *l, size_t i);
KN_API const char *kn_shard_list_start_seq(const kn_shard_list_t *l, size_t i);
KN_API const char *kn_shard_list_end_seq(const kn_shard_list_t *l, size_t i);
KN_API bool kn_shard_list_is_open(const kn_shard_list_t *l, size_t i);
KN_API void kn_shard_list_destroy(kn_shard_list_t *l);

/* ------------------------------------------------------------- management */

/**
 * Creates a stream with shard_count shards, or an on-demand stream when
 * shard_count is 0. Returns once the service accepted the request; the stream
 * is CREATING until kn_admin_wait_active() says otherwise.
 */
KN_API kn_err_t kn_admin_create_stream(kn_client_t *client, const char *name, int shard_count,
                                       kn_error_t *err);
/** Deletes a stream (and its registered consumers). */
KN_API kn_err_t kn_admin_delete_stream(kn_client_t *client, const char *stream, kn_error_t *err);
/** UpdateShardCount with uniform scaling to target_shard_count open shards. */
KN_API kn_err_t kn_admin_scale_stream(kn_client_t *client, const char *stream,
                                      int target_shard_count, kn_error_t *err);
/**
 * Splits an open shard at new_starting_hash_key (decimal; NULL or "": the
 * middle of the shard's range, looked up with ListShards).
 */
KN_API kn_err_t kn_admin_split_shard(kn_client_t *client, const char *stream,
                                     const char *shard_id, const char *new_starting_hash_key,
                                     kn_error_t *err);
/** Merges two adjacent open shards. */
KN_API kn_err_t kn_admin_merge_shards(kn_client_t *client, const char *stream,
                                      const char *shard_id, const char *adjacent_shard_id,
                                      kn_error_t *err);
/**
 * Polls the stream's status until it is ACTIVE, at most timeout_ms
 * (KN_ERR_TIMEOUT then, naming the last status seen).
 */
KN_API kn_err_t kn_admin_wait_active(kn_client_t *client, const char *stream, long timeout_ms,
                                     kn_error_t *err);

/* ------------------------------------------------------------ partitioning */

/**
 * The hash key of a partition key (MD5, as the service computes it) in
 * decimal, into out. No network. KN_ERR_INVALID_ARG for an empty key.
 */
KN_API kn_err_t kn_hash_key_of(const char *partition_key, size_t partition_key_len,
                               char out[KN_HASH_KEY_STRLEN]);

/**
 * Which open shard of the stream owns a record: its hash key is
 * explicit_hash_key when given (validated), else that of partition_key. Writes
 * the decimal hash key into hash_key_out and the shard id into shard_id_out
 * (truncated to shard_id_size; 128 bytes is plenty). KN_ERR_NOT_FOUND when
 * no open shard covers the key (a stream being resharded may show that).
 */
KN_API kn_err_t kn_admin_shard_for_key(kn_client_t *client, const char *stream,
                                       const char *partition_key, const char *explicit_hash_key,
                                       char hash_key_out[KN_HASH_KEY_STRLEN], char *shard_id_out,
                                       size_t shard_id_size, kn_error_t *err);

#ifdef __cplusplus
}
#endif
#endif
