/*
 * Internal: JSON field readers and writers shared by the Kinesis and
 * DynamoDB operations (kinesis_ops.c, dynamodb.c): typed member access that
 * reports a missing or mistyped field by its path, a JSON string writer for
 * hand-built bodies, and UTF-8 code point counting.
 */
#ifndef KN_JSON_FIELDS_H
#define KN_JSON_FIELDS_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"

/*
 * Field readers shared by the Kinesis and DynamoDB parsers. A NULL or
 * absent member counts as missing; a required missing member or a member of
 * the wrong type fails with KN_ERR_BAD_RESPONSE and a message
 * "<op> response: field \"<arr>[<idx>].<key>\" is missing|is not a <type>".
 * arr may be NULL (top level).
 */
typedef struct kn__jp_s {
    const char *op;  /* "ListShards" */
    const char *arr; /* enclosing array path, or NULL */
    long idx;        /* index in arr */
    kn_error_t *err;
} kn__jp_t;

kn_err_t kn__jp_fail(const kn__jp_t *p, const char *key, const char *what);
/* *out is NULL (and *len 0) when the optional member is missing. */
kn_err_t kn__jp_str(const kn__jp_t *p, json_object *o, const char *key, bool required,
                    const char **out, size_t *len);
kn_err_t kn__jp_int(const kn__jp_t *p, json_object *o, const char *key, bool required,
                    int64_t *out);
kn_err_t kn__jp_bool(const kn__jp_t *p, json_object *o, const char *key, bool required,
                     bool *out);
/* A JSON number of seconds (integer or fraction) converted to milliseconds. */
kn_err_t kn__jp_time_ms(const kn__jp_t *p, json_object *o, const char *key, bool required,
                        int64_t *out);
kn_err_t kn__jp_obj(const kn__jp_t *p, json_object *o, const char *key, bool required,
                    json_object **out);
kn_err_t kn__jp_arr(const kn__jp_t *p, json_object *o, const char *key, bool required,
                    json_object **out);

/* Appends s as a JSON string literal (quotes included, control characters escaped). */
int kn__json_put_str(kn_buf_t *b, const char *s, size_t len);
/* Serialises o compactly (no slash escaping) and appends it to b. */
kn_err_t kn__json_append(kn_buf_t *b, json_object *o, kn_error_t *err);

/* Counts the code points of UTF-8 text; -1 when it is not valid UTF-8. */
long kn__utf8_count(const char *s, size_t len);

#endif
