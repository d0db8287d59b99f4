/*
 * Internal: DynamoDB attribute values, items and the operations the lease
 * table needs, over the AWS JSON request layer (aws.h).
 *
 * Values are typed as on the wire: S, N (a decimal string, with int64
 * helpers), B (raw bytes; base64 on the wire), BOOL, NULL, SS, NS, BS, L, M.
 * An item is an ordered list of (name, value); setting a name that exists
 * replaces its value. Getters report a missing attribute as KN_ERR_NOT_FOUND
 * and a type mismatch as KN_ERR_BAD_RESPONSE ("attribute \"x\" is S, expected
 * N"), since items come from the service.
 *
 * Write operations take an optional condition (ConditionExpression with
 * ExpressionAttributeNames/Values); a failed condition returns
 * KN_ERR_CONDITION_FAILED with aws_type "ConditionalCheckFailedException".
 * All calls block: use them from application or worker threads, never from
 * the client's loop thread.
 */
#ifndef KN_DYNAMODB_H
#define KN_DYNAMODB_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"

typedef enum kn__ddb_type_e {
    KN__DDB_S,
    KN__DDB_N,
    KN__DDB_B,
    KN__DDB_BOOL,
    KN__DDB_NULL,
    KN__DDB_SS,
    KN__DDB_NS,
    KN__DDB_BS,
    KN__DDB_L,
    KN__DDB_M,
} kn__ddb_type_t;

/* The wire name of a type ("S", "NS", ...). */
const char *kn__ddb_type_name(kn__ddb_type_t t);

typedef struct kn__ddb_item_s kn__ddb_item_t;
typedef struct kn__ddb_value_s kn__ddb_value_t;

struct kn__ddb_value_s {
    kn__ddb_type_t type;
    char *str;              /* S, N (decimal text), B (raw bytes); NUL-terminated */
    size_t len;
    bool boolean;           /* BOOL */
    kn__ddb_value_t *elems; /* SS/NS/BS (elements of type S/N/B) and L */
    size_t count;
    kn__ddb_item_t *map;    /* M */
};

typedef struct kn__ddb_attr_s {
    char *name;
    kn__ddb_value_t value;
} kn__ddb_attr_t;

struct kn__ddb_item_s {
    kn__ddb_attr_t *attrs;
    size_t count, cap;
};

#define KN__DDB_ITEM_INIT {NULL, 0, 0}

void kn__ddb_value_clear(kn__ddb_value_t *v);
kn_err_t kn__ddb_value_copy(kn__ddb_value_t *dst, const kn__ddb_value_t *src, kn_error_t *err);
/* Whether s is a DynamoDB number: [+-]digits[.digits][e[+-]digits]. */
bool kn__ddb_number_valid(const char *s, size_t len);

void kn__ddb_item_init(kn__ddb_item_t *it);
void kn__ddb_item_clear(kn__ddb_item_t *it);
kn_err_t kn__ddb_item_copy(kn__ddb_item_t *dst, const kn__ddb_item_t *src, kn_error_t *err);

/* Setters copy their arguments; KN_ERR_NOMEM or KN_ERR_INVALID_ARG (bad number). */
kn_err_t kn__ddb_item_set_s(kn__ddb_item_t *it, const char *name, const char *s, kn_error_t *err);
kn_err_t kn__ddb_item_set_n(kn__ddb_item_t *it, const char *name, const char *decimal,
                            kn_error_t *err);
kn_err_t kn__ddb_item_set_int64(kn__ddb_item_t *it, const char *name, int64_t v, kn_error_t *err);
kn_err_t kn__ddb_item_set_b(kn__ddb_item_t *it, const char *name, const void *data, size_t len,
                            kn_error_t *err);
kn_err_t kn__ddb_item_set_bool(kn__ddb_item_t *it, const char *name, bool v, kn_error_t *err);
kn_err_t kn__ddb_item_set_null(kn__ddb_item_t *it, const char *name, kn_error_t *err);
/* String set / number set of n elements (n >= 1: DynamoDB has no empty sets). */
kn_err_t kn__ddb_item_set_ss(kn__ddb_item_t *it, const char *name, const char *const *v, size_t n,
                             kn_error_t *err);
kn_err_t kn__ddb_item_set_ns(kn__ddb_item_t *it, const char *name, const char *const *v, size_t n,
                             kn_error_t *err);
/* Moves *v into the item (any type, including L and M); *v is zeroed. */
kn_err_t kn__ddb_item_set_value(kn__ddb_item_t *it, const char *name, kn__ddb_value_t *v,
                                kn_error_t *err);
/* Removes name if present; returns whether it was. */
bool kn__ddb_item_remove(kn__ddb_item_t *it, const char *name);

/* NULL when absent. */
const kn__ddb_value_t *kn__ddb_item_get(const kn__ddb_item_t *it, const char *name);
/* The attribute with the given type, else KN_ERR_NOT_FOUND / KN_ERR_BAD_RESPONSE. */
kn_err_t kn__ddb_item_get_typed(const kn__ddb_item_t *it, const char *name, kn__ddb_type_t type,
                                const kn__ddb_value_t **out, kn_error_t *err);
/* *s stays owned by the item. */
kn_err_t kn__ddb_item_get_s(const kn__ddb_item_t *it, const char *name, const char **s,
                            kn_error_t *err);
kn_err_t kn__ddb_item_get_n(const kn__ddb_item_t *it, const char *name, const char **decimal,
                            kn_error_t *err);
/* N that is an integer within int64; otherwise KN_ERR_BAD_RESPONSE. */
kn_err_t kn__ddb_item_get_int64(const kn__ddb_item_t *it, const char *name, int64_t *out,
                                kn_error_t *err);
kn_err_t kn__ddb_item_get_b(const kn__ddb_item_t *it, const char *name, const void **data,
                            size_t *len, kn_error_t *err);
kn_err_t kn__ddb_item_get_bool(const kn__ddb_item_t *it, const char *name, bool *out,
                               kn_error_t *err);

/* ------------------------------------------------------------- JSON mapping */

/* New json-c objects (caller puts them); NULL on ENOMEM. */
json_object *kn__ddb_value_to_json(const kn__ddb_value_t *v);
json_object *kn__ddb_item_to_json(const kn__ddb_item_t *it);
/*
 * From the wire form. Errors are KN_ERR_BAD_RESPONSE naming "<op> response"
 * and the attribute path ("Item.leaseOwner", "Items[2].x.L[0]").
 */
kn_err_t kn__ddb_value_from_json(json_object *o, kn__ddb_value_t *out, const char *op,
                                 const char *path, kn_error_t *err);
kn_err_t kn__ddb_item_from_json(json_object *o, kn__ddb_item_t *out, const char *op,
                                const char *path, kn_error_t *err);

/* --------------------------------------------------------------- operations */

/* An optional condition for a write. */
typedef struct kn__ddb_cond_s {
    const char *expression;     /* ConditionExpression, or NULL */
    const char *const *names;   /* "#k", "attr", "#l", "attr2", NULL (pairs), or NULL */
    const kn__ddb_item_t *values; /* ":v" -> value, or NULL */
} kn__ddb_cond_t;

typedef enum kn__ddb_table_status_e {
    KN__TABLE_UNKNOWN = 0,
    KN__TABLE_CREATING,
    KN__TABLE_UPDATING,
    KN__TABLE_DELETING,
    KN__TABLE_ACTIVE,
} kn__ddb_table_status_t;

typedef struct kn__ddb_table_desc_s {
    kn__ddb_table_status_t status;
    char status_str[40];
    char hash_key[256]; /* the HASH key's attribute name, "" when not reported */
    int64_t item_count; /* -1 when absent */
} kn__ddb_table_desc_t;

typedef struct kn__ddb_scan_page_s {
    kn__ddb_item_t *items;
    size_t count;
    kn__ddb_item_t last_key; /* LastEvaluatedKey; count 0 when this was the last page */
} kn__ddb_scan_page_t;

void kn__ddb_scan_page_free(kn__ddb_scan_page_t *p);

/* Pure builders (append JSON to body) and parsers, exposed for tests. */
kn_err_t kn__ddb_create_table_build(kn_buf_t *body, const char *table, const char *hash_key,
                                    kn_error_t *err);
kn_err_t kn__ddb_table_build(kn_buf_t *body, const char *table, kn_error_t *err);
kn_err_t kn__ddb_describe_table_parse(json_object *resp, kn__ddb_table_desc_t *out,
                                      kn_error_t *err);
kn_err_t kn__ddb_get_item_build(kn_buf_t *body, const char *table, const kn__ddb_item_t *key,
                                bool consistent, kn_error_t *err);
/* *found is false (and out empty) when the response has no Item. */
kn_err_t kn__ddb_get_item_parse(json_object *resp, kn__ddb_item_t *out, bool *found,
                                kn_error_t *err);
kn_err_t kn__ddb_put_item_build(kn_buf_t *body, const char *table, const kn__ddb_item_t *item,
                                const kn__ddb_cond_t *cond, kn_error_t *err);
/* return_new: ReturnValues ALL_NEW. */
kn_err_t kn__ddb_update_item_build(kn_buf_t *body, const char *table, const kn__ddb_item_t *key,
                                   const char *update_expression, const kn__ddb_cond_t *cond,
                                   bool return_new, kn_error_t *err);
kn_err_t kn__ddb_delete_item_build(kn_buf_t *body, const char *table, const kn__ddb_item_t *key,
                                   const kn__ddb_cond_t *cond, kn_error_t *err);
/* start_key may be NULL or empty; limit 0: no Limit. */
kn_err_t kn__ddb_scan_build(kn_buf_t *body, const char *table, const kn__ddb_item_t *start_key,
                            int limit, bool consistent, kn_error_t *err);
kn_err_t kn__ddb_scan_parse(json_object *resp, kn__ddb_scan_page_t *out, kn_error_t *err);

/* PAY_PER_REQUEST with one HASH key of type S. */
kn_err_t kn__ddb_create_table(kn_client_t *c, const char *table, const char *hash_key,
                              kn_error_t *err);
kn_err_t kn__ddb_describe_table(kn_client_t *c, const char *table, kn__ddb_table_desc_t *out,
                                kn_error_t *err);
/* Polls DescribeTable until ACTIVE or timeout_ms (KN_ERR_TIMEOUT names the last status). */
kn_err_t kn__ddb_wait_table_active(kn_client_t *c, const char *table, long timeout_ms,
                                   long interval_ms, kn_error_t *err);
kn_err_t kn__ddb_delete_table(kn_client_t *c, const char *table, kn_error_t *err);
/* out is cleared first; *found says whether the item exists. */
kn_err_t kn__ddb_get_item(kn_client_t *c, const char *table, const kn__ddb_item_t *key,
                          bool consistent, kn__ddb_item_t *out, bool *found, kn_error_t *err);
kn_err_t kn__ddb_put_item(kn_client_t *c, const char *table, const kn__ddb_item_t *item,
                          const kn__ddb_cond_t *cond, kn_error_t *err);
/* The condition's names/values also serve the update expression. new_item may be NULL. */
kn_err_t kn__ddb_update_item(kn_client_t *c, const char *table, const kn__ddb_item_t *key,
                             const char *update_expression, const kn__ddb_cond_t *cond,
                             kn__ddb_item_t *new_item, kn_error_t *err);
kn_err_t kn__ddb_delete_item(kn_client_t *c, const char *table, const kn__ddb_item_t *key,
                             const kn__ddb_cond_t *cond, kn_error_t *err);
/* One page; pass the previous page's last_key as start_key to continue. */
kn_err_t kn__ddb_scan(kn_client_t *c, const char *table, const kn__ddb_item_t *start_key,
                      int limit, bool consistent, kn__ddb_scan_page_t *out, kn_error_t *err);

#endif
