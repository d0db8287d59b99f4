/*
 * DynamoDB attribute values, items, their JSON form, and the table and item
 * operations the lease table needs. Not a hot path: bodies go through json-c.
 */
#include "dynamodb.h"
#include "clock.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aws.h"
#include "base64.h"
#include "client_int.h"
#include "json_fields.h"

static const char *const type_names[] = {"S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS", "L", "M"};

const char *kn__ddb_type_name(kn__ddb_type_t t)
{
    if ((unsigned)t >= sizeof(type_names) / sizeof(type_names[0]))
        return "?";
    return type_names[t];
}

static kn_err_t nomem(kn_error_t *err) { return kn__error_set(err, KN_ERR_NOMEM, "DynamoDB: out of memory"); }

static char *memdup0(const void *p, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        if (n)
            memcpy(d, p, n);
        d[n] = '\0';
    }
    return d;
}

/* ================================================================== values */

void kn__ddb_value_clear(kn__ddb_value_t *v)
{
    if (!v)
        return;
    free(v->str);
    for (size_t i = 0; i < v->count; i++)
        kn__ddb_value_clear(&v->elems[i]);
    free(v->elems);
    if (v->map) {
        kn__ddb_item_clear(v->map);
        free(v->map);
    }
    memset(v, 0, sizeof(*v));
}

kn_err_t kn__ddb_value_copy(kn__ddb_value_t *dst, const kn__ddb_value_t *src, kn_error_t *err)
{
    memset(dst, 0, sizeof(*dst));
    dst->type = src->type;
    dst->boolean = src->boolean;
    if (src->str) {
        if (!(dst->str = memdup0(src->str, src->len)))
            goto fail;
        dst->len = src->len;
    }
    if (src->count) {
        if (!(dst->elems = calloc(src->count, sizeof(*dst->elems))))
            goto fail;
        for (size_t i = 0; i < src->count; i++) {
            if (kn__ddb_value_copy(&dst->elems[i], &src->elems[i], err))
                goto fail;
            dst->count = i + 1;
        }
    }
    if (src->map) {
        if (!(dst->map = calloc(1, sizeof(*dst->map))) || kn__ddb_item_copy(dst->map, src->map, err))
            goto fail;
    }
    return KN_ERR_OK;
fail:
    kn__ddb_value_clear(dst);
    return nomem(err);
}

bool kn__ddb_number_valid(const char *s, size_t len)
{
    size_t i = 0, digits = 0;
    if (i < len && (s[i] == '-' || s[i] == '+'))
        i++;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++, digits++;
    if (i < len && s[i] == '.') {
        i++;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++, digits++;
    }
    if (digits == 0)
        return false;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        size_t ed = 0;
        i++;
        if (i < len && (s[i] == '-' || s[i] == '+'))
            i++;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++, ed++;
        if (ed == 0)
            return false;
    }
    return i == len;
}

/* =================================================================== items */

void kn__ddb_item_init(kn__ddb_item_t *it) { memset(it, 0, sizeof(*it)); }

void kn__ddb_item_clear(kn__ddb_item_t *it)
{
    if (!it)
        return;
    for (size_t i = 0; i < it->count; i++) {
        free(it->attrs[i].name);
        kn__ddb_value_clear(&it->attrs[i].value);
    }
    free(it->attrs);
    memset(it, 0, sizeof(*it));
}

static kn__ddb_attr_t *find(const kn__ddb_item_t *it, const char *name)
{
    for (size_t i = 0; i < it->count; i++)
        if (!strcmp(it->attrs[i].name, name))
            return &it->attrs[i];
    return NULL;
}

kn_err_t kn__ddb_item_set_value(kn__ddb_item_t *it, const char *name, kn__ddb_value_t *v,
                                kn_error_t *err)
{
    kn__ddb_attr_t *a = find(it, name);
    if (a) {
        kn__ddb_value_clear(&a->value);
        a->value = *v;
        memset(v, 0, sizeof(*v));
        return KN_ERR_OK;
    }
    if (it->count == it->cap) {
        size_t cap = it->cap ? it->cap * 2 : 8;
        kn__ddb_attr_t *na = realloc(it->attrs, cap * sizeof(*na));
        if (!na)
            goto fail;
        it->attrs = na;
        it->cap = cap;
    }
    char *nm = strdup(name);
    if (!nm)
        goto fail;
    it->attrs[it->count].name = nm;
    it->attrs[it->count].value = *v;
    it->count++;
    memset(v, 0, sizeof(*v));
    return KN_ERR_OK;
fail:
    kn__ddb_value_clear(v);
    return nomem(err);
}

kn_err_t kn__ddb_item_copy(kn__ddb_item_t *dst, const kn__ddb_item_t *src, kn_error_t *err)
{
    kn__ddb_item_init(dst);
    for (size_t i = 0; i < src->count; i++) {
        kn__ddb_value_t v;
        kn_err_t rc;
        if ((rc = kn__ddb_value_copy(&v, &src->attrs[i].value, err)) ||
            (rc = kn__ddb_item_set_value(dst, src->attrs[i].name, &v, err))) {
            kn__ddb_item_clear(dst);
            return rc;
        }
    }
    return KN_ERR_OK;
}

static kn_err_t set_bytes(kn__ddb_item_t *it, const char *name, kn__ddb_type_t t, const void *p,
                          size_t len, kn_error_t *err)
{
    kn__ddb_value_t v;
    memset(&v, 0, sizeof(v));
    v.type = t;
    if (!(v.str = memdup0(p, len)))
        return nomem(err);
    v.len = len;
    return kn__ddb_item_set_value(it, name, &v, err);
}

kn_err_t kn__ddb_item_set_s(kn__ddb_item_t *it, const char *name, const char *s, kn_error_t *err)
{
    return set_bytes(it, name, KN__DDB_S, s, strlen(s), err);
}

kn_err_t kn__ddb_item_set_n(kn__ddb_item_t *it, const char *name, const char *decimal,
                            kn_error_t *err)
{
    if (!decimal || !kn__ddb_number_valid(decimal, strlen(decimal)))
        return kn__error_set(err, KN_ERR_INVALID_ARG, "attribute \"%s\": \"%s\" is not a number",
                             name, decimal ? decimal : "(null)");
    return set_bytes(it, name, KN__DDB_N, decimal, strlen(decimal), err);
}

kn_err_t kn__ddb_item_set_int64(kn__ddb_item_t *it, const char *name, int64_t v, kn_error_t *err)
{
    char txt[24];
    int n = snprintf(txt, sizeof(txt), "%" PRId64, v);
    return set_bytes(it, name, KN__DDB_N, txt, (size_t)n, err);
}

kn_err_t kn__ddb_item_set_b(kn__ddb_item_t *it, const char *name, const void *data, size_t len,
                            kn_error_t *err)
{
    return set_bytes(it, name, KN__DDB_B, data, len, err);
}

kn_err_t kn__ddb_item_set_bool(kn__ddb_item_t *it, const char *name, bool b, kn_error_t *err)
{
    kn__ddb_value_t v;
    memset(&v, 0, sizeof(v));
    v.type = KN__DDB_BOOL;
    v.boolean = b;
    return kn__ddb_item_set_value(it, name, &v, err);
}

kn_err_t kn__ddb_item_set_null(kn__ddb_item_t *it, const char *name, kn_error_t *err)
{
    kn__ddb_value_t v;
    memset(&v, 0, sizeof(v));
    v.type = KN__DDB_NULL;
    v.boolean = true;
    return kn__ddb_item_set_value(it, name, &v, err);
}

static kn_err_t set_strset(kn__ddb_item_t *it, const char *name, kn__ddb_type_t t,
                           const char *const *s, size_t n, kn_error_t *err)
{
    kn__ddb_value_t v;
    memset(&v, 0, sizeof(v));
    if (n == 0)
        return kn__error_set(err, KN_ERR_INVALID_ARG, "attribute \"%s\": an empty %s set", name,
                             kn__ddb_type_name(t));
    for (size_t i = 0; i < n; i++)
        if (t == KN__DDB_NS && !kn__ddb_number_valid(s[i], strlen(s[i])))
            return kn__error_set(err, KN_ERR_INVALID_ARG,
                                 "attribute \"%s\": element %zu \"%s\" is not a number", name, i,
                                 s[i]);
    v.type = t;
    if (!(v.elems = calloc(n, sizeof(*v.elems))))
        return nomem(err);
    for (size_t i = 0; i < n; i++) {
        v.elems[i].type = t == KN__DDB_SS ? KN__DDB_S : KN__DDB_N;
        v.elems[i].len = strlen(s[i]);
        if (!(v.elems[i].str = memdup0(s[i], v.elems[i].len))) {
            kn__ddb_value_clear(&v);
            return nomem(err);
        }
        v.count = i + 1;
    }
    return kn__ddb_item_set_value(it, name, &v, err);
}

kn_err_t kn__ddb_item_set_ss(kn__ddb_item_t *it, const char *name, const char *const *v, size_t n,
                             kn_error_t *err)
{
    return set_strset(it, name, KN__DDB_SS, v, n, err);
}

kn_err_t kn__ddb_item_set_ns(kn__ddb_item_t *it, const char *name, const char *const *v, size_t n,
                             kn_error_t *err)
{
    return set_strset(it, name, KN__DDB_NS, v, n, err);
}

bool kn__ddb_item_remove(kn__ddb_item_t *it, const char *name)
{
    kn__ddb_attr_t *a = find(it, name);
    if (!a)
        return false;
    free(a->name);
    kn__ddb_value_clear(&a->value);
    size_t i = (size_t)(a - it->attrs);
    memmove(a, a + 1, (it->count - i - 1) * sizeof(*a));
    it->count--;
    return true;
}

const kn__ddb_value_t *kn__ddb_item_get(const kn__ddb_item_t *it, const char *name)
{
    kn__ddb_attr_t *a = find(it, name);
    return a ? &a->value : NULL;
}

kn_err_t kn__ddb_item_get_typed(const kn__ddb_item_t *it, const char *name, kn__ddb_type_t type,
                                const kn__ddb_value_t **out, kn_error_t *err)
{
    const kn__ddb_value_t *v = kn__ddb_item_get(it, name);
    *out = NULL;
    if (!v)
        return kn__error_set(err, KN_ERR_NOT_FOUND, "attribute \"%s\" is missing", name);
    if (v->type != type)
        return kn__error_set(err, KN_ERR_BAD_RESPONSE, "attribute \"%s\" is %s, expected %s", name,
                             kn__ddb_type_name(v->type), kn__ddb_type_name(type));
    *out = v;
    return KN_ERR_OK;
}

kn_err_t kn__ddb_item_get_s(const kn__ddb_item_t *it, const char *name, const char **s,
                            kn_error_t *err)
{
    const kn__ddb_value_t *v;
    kn_err_t rc = kn__ddb_item_get_typed(it, name, KN__DDB_S, &v, err);
    *s = rc ? NULL : v->str;
    return rc;
}

kn_err_t kn__ddb_item_get_n(const kn__ddb_item_t *it, const char *name, const char **decimal,
                            kn_error_t *err)
{
    const kn__ddb_value_t *v;
    kn_err_t rc = kn__ddb_item_get_typed(it, name, KN__DDB_N, &v, err);
    *decimal = rc ? NULL : v->str;
    return rc;
}

kn_err_t kn__ddb_item_get_int64(const kn__ddb_item_t *it, const char *name, int64_t *out,
                                kn_error_t *err)
{
    const kn__ddb_value_t *v;
    kn_err_t rc = kn__ddb_item_get_typed(it, name, KN__DDB_N, &v, err);
    if (rc)
        return rc;
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v->str, &end, 10);
    if (errno == ERANGE || end == v->str || *end != '\0')
        return kn__error_set(err, KN_ERR_BAD_RESPONSE,
                             "attribute \"%s\" (N \"%s\") is not an integer within int64", name,
                             v->str);
    *out = (int64_t)x;
    return KN_ERR_OK;
}

kn_err_t kn__ddb_item_get_b(const kn__ddb_item_t *it, const char *name, const void **data,
                            size_t *len, kn_error_t *err)
{
    const kn__ddb_value_t *v;
    kn_err_t rc = kn__ddb_item_get_typed(it, name, KN__DDB_B, &v, err);
    *data = rc ? NULL : v->str;
    *len = rc ? 0 : v->len;
    return rc;
}

kn_err_t kn__ddb_item_get_bool(const kn__ddb_item_t *it, const char *name, bool *out,
                               kn_error_t *err)
{
    const kn__ddb_value_t *v;
    kn_err_t rc = kn__ddb_item_get_typed(it, name, KN__DDB_BOOL, &v, err);
    if (!rc)
        *out = v->boolean;
    return rc;
}

/* ============================================================ JSON mapping */

static json_object *bytes_json(const kn__ddb_value_t *v)
{
    if (v->type != KN__DDB_B)
        return json_object_new_string_len(v->str ? v->str : "", (int)v->len);
    kn_buf_t b = KN_BUF_INIT;
    json_object *o = NULL;
    if (kn__base64_encode(&b, v->str, v->len) == 0)
        o = json_object_new_string_len(b.data ? b.data : "", (int)b.len);
    kn__buf_free(&b);
    return o;
}

json_object *kn__ddb_value_to_json(const kn__ddb_value_t *v)
{
    json_object *o = json_object_new_object(), *inner = NULL;
    if (!o)
        return NULL;
    switch (v->type) {
    case KN__DDB_S:
    case KN__DDB_N:
    case KN__DDB_B:
        inner = bytes_json(v);
        break;
    case KN__DDB_BOOL:
        inner = json_object_new_boolean(v->boolean);
        break;
    case KN__DDB_NULL:
        inner = json_object_new_boolean(1);
        break;
    case KN__DDB_SS:
    case KN__DDB_NS:
    case KN__DDB_BS:
    case KN__DDB_L:
        inner = json_object_new_array();
        for (size_t i = 0; inner && i < v->count; i++) {
            json_object *e = v->type == KN__DDB_L ? kn__ddb_value_to_json(&v->elems[i])
                                                  : bytes_json(&v->elems[i]);
            if (!e || json_object_array_add(inner, e) != 0) {
                json_object_put(e);
                json_object_put(inner);
                inner = NULL;
            }
        }
        break;
    case KN__DDB_M:
        if (v->map)
            inner = kn__ddb_item_to_json(v->map);
        else
            inner = json_object_new_object();
        break;
    }
    if (!inner || json_object_object_add(o, kn__ddb_type_name(v->type), inner) != 0) {
        json_object_put(inner);
        json_object_put(o);
        return NULL;
    }
    return o;
}

json_object *kn__ddb_item_to_json(const kn__ddb_item_t *it)
{
    json_object *o = json_object_new_object();
    for (size_t i = 0; o && i < it->count; i++) {
        json_object *v = kn__ddb_value_to_json(&it->attrs[i].value);
        if (!v || json_object_object_add(o, it->attrs[i].name, v) != 0) {
            json_object_put(v);
            json_object_put(o);
            return NULL;
        }
    }
    return o;
}

static kn_err_t bad(kn_error_t *err, const char *op, const char *path, const char *what)
{
    return kn__error_set(err, KN_ERR_BAD_RESPONSE, "%s response: attribute value \"%s\" %s", op,
                         path, what);
}

/* A scalar S/N/B from a JSON string into v. */
static kn_err_t scalar_from(json_object *s, kn__ddb_type_t t, kn__ddb_value_t *v, const char *op,
                            const char *path, kn_error_t *err)
{
    if (!json_object_is_type(s, json_type_string))
        return bad(err, op, path, t == KN__DDB_S ? "is not a string" : "is not a JSON string");
    const char *txt = json_object_get_string(s);
    size_t len = (size_t)json_object_get_string_len(s);
    v->type = t;
    if (t == KN__DDB_B) {
        kn_buf_t b = KN_BUF_INIT;
        int r = kn__base64_decode(&b, txt, len);
        if (r != 0) {
            kn__buf_free(&b); /* a failed decode may have reserved memory */
            return r == -2 ? nomem(err) : bad(err, op, path, "is not valid base64");
        }
        v->len = b.len;
        if (!(v->str = kn__buf_steal(&b)))
            return nomem(err);
        return KN_ERR_OK;
    }
    if (t == KN__DDB_N && !kn__ddb_number_valid(txt, len))
        return bad(err, op, path, "is not a number");
    if (!(v->str = memdup0(txt, len)))
        return nomem(err);
    v->len = len;
    return KN_ERR_OK;
}

static int type_from_name(const char *k, kn__ddb_type_t *t)
{
    for (size_t i = 0; i < sizeof(type_names) / sizeof(type_names[0]); i++)
        if (!strcmp(k, type_names[i])) {
            *t = (kn__ddb_type_t)i;
            return 0;
        }
    return -1;
}

kn_err_t kn__ddb_value_from_json(json_object *o, kn__ddb_value_t *out, const char *op,
                                 const char *path, kn_error_t *err)
{
    kn_err_t rc = KN_ERR_OK;
    kn__ddb_type_t t = KN__DDB_NULL;
    json_object *inner = NULL;
    char sub[512];
    memset(out, 0, sizeof(*out));
    if (!o || !json_object_is_type(o, json_type_object) || json_object_object_length(o) != 1)
        return bad(err, op, path, "is not an object with exactly one type key");
    json_object_object_foreach(o, k, v)
    {
        if (type_from_name(k, &t) != 0) {
            char what[96];
            snprintf(what, sizeof(what), "has unknown type \"%.40s\"", k);
            return bad(err, op, path, what);
        }
        inner = v;
    }
    out->type = t;
    switch (t) {
    case KN__DDB_S:
    case KN__DDB_N:
    case KN__DDB_B:
        if (!inner)
            return bad(err, op, path, "is null");
        rc = scalar_from(inner, t, out, op, path, err);
        break;
    case KN__DDB_BOOL:
    case KN__DDB_NULL:
        if (!inner || !json_object_is_type(inner, json_type_boolean))
            return bad(err, op, path, t == KN__DDB_BOOL ? "(BOOL) is not a boolean"
                                                          : "(NULL) is not a boolean");
        out->boolean = json_object_get_boolean(inner) != 0;
        break;
    case KN__DDB_SS:
    case KN__DDB_NS:
    case KN__DDB_BS:
    case KN__DDB_L: {
        if (!inner || !json_object_is_type(inner, json_type_array))
            return bad(err, op, path, "is not an array");
        size_t n = json_object_array_length(inner);
        if (n && !(out->elems = calloc(n, sizeof(*out->elems))))
            return nomem(err);
        for (size_t i = 0; i < n && !rc; i++) {
            json_object *e = json_object_array_get_idx(inner, i);
            snprintf(sub, sizeof(sub), "%s.%s[%zu]", path, kn__ddb_type_name(t), i);
            if (t == KN__DDB_L)
                rc = kn__ddb_value_from_json(e, &out->elems[i], op, sub, err);
            else if (!e)
                rc = bad(err, op, sub, "is null");
            else
                rc = scalar_from(e,
                                 t == KN__DDB_SS ? KN__DDB_S : t == KN__DDB_NS ? KN__DDB_N : KN__DDB_B,
                                 &out->elems[i], op, sub, err);
            out->count = i + 1;
        }
        break;
    }
    case KN__DDB_M:
        if (!(out->map = calloc(1, sizeof(*out->map))))
            return nomem(err);
        snprintf(sub, sizeof(sub), "%s.M", path);
        rc = kn__ddb_item_from_json(inner, out->map, op, sub, err);
        break;
    }
    if (rc)
        kn__ddb_value_clear(out);
    return rc;
}

kn_err_t kn__ddb_item_from_json(json_object *o, kn__ddb_item_t *out, const char *op,
                                const char *path, kn_error_t *err)
{
    char sub[512];
    kn__ddb_item_init(out);
    if (!o || !json_object_is_type(o, json_type_object))
        return bad(err, op, path, "is not an object");
    json_object_object_foreach(o, k, v)
    {
        kn__ddb_value_t val;
        kn_err_t rc;
        /* A path too deep for messages is cut and marked, never overrun. */
        int n = snprintf(sub, sizeof(sub), "%s.%s", path, k);
        if (n < 0 || (size_t)n >= sizeof(sub))
            memcpy(sub + sizeof(sub) - 4, "...", 4);
        if ((rc = kn__ddb_value_from_json(v, &val, op, sub, err)) ||
            (rc = kn__ddb_item_set_value(out, k, &val, err))) {
            kn__ddb_item_clear(out);
            return rc;
        }
    }
    return KN_ERR_OK;
}

/* ============================================================== operations */

static int jadd(json_object *o, const char *key, json_object *v)
{
    if (!v)
        return -1;
    if (json_object_object_add(o, key, v) != 0) {
        json_object_put(v);
        return -1;
    }
    return 0;
}

static int jadd_str(json_object *o, const char *key, const char *s)
{
    return jadd(o, key, json_object_new_string(s));
}

static kn_err_t check_table(const char *op, const char *table, kn_error_t *err)
{
    if (!table || !*table)
        return kn__error_set(err, KN_ERR_INVALID_ARG, "%s: a table name is required", op);
    return KN_ERR_OK;
}

static kn_err_t finish(kn_buf_t *body, json_object *o, int failed, kn_error_t *err)
{
    kn_err_t rc;
    if (!o || failed)
        rc = nomem(err);
    else
        rc = kn__json_append(body, o, err);
    json_object_put(o);
    return rc;
}

static int add_cond(json_object *o, const kn__ddb_cond_t *cond)
{
    int failed = 0;
    if (!cond)
        return 0;
    if (cond->expression && *cond->expression)
        failed |= jadd_str(o, "ConditionExpression", cond->expression);
    if (cond->names && cond->names[0]) {
        json_object *n = json_object_new_object();
        failed |= jadd(o, "ExpressionAttributeNames", n);
        for (size_t i = 0; n && cond->names[i] && cond->names[i + 1]; i += 2)
            failed |= jadd_str(n, cond->names[i], cond->names[i + 1]);
    }
    if (cond->values && cond->values->count)
        failed |= jadd(o, "ExpressionAttributeValues", kn__ddb_item_to_json(cond->values));
    return failed;
}

kn_err_t kn__ddb_create_table_build(kn_buf_t *body, const char *table, const char *hash_key,
                                    kn_error_t *err)
{
    kn_err_t rc = check_table("CreateTable", table, err);
    if (rc)
        return rc;
    if (!hash_key || !*hash_key)
        return kn__error_set(err, KN_ERR_INVALID_ARG, "CreateTable: a hash key name is required");
    json_object *o = json_object_new_object(), *ad = json_object_new_array(),
                *ks = json_object_new_array(), *a = json_object_new_object(),
                *k = json_object_new_object();
    int failed = !o || !ad || !ks || !a || !k;
    if (failed) {
        json_object_put(o);
        json_object_put(ad);
        json_object_put(ks);
        json_object_put(a);
        json_object_put(k);
        return nomem(err);
    }
    failed |= jadd_str(o, "TableName", table);
    failed |= jadd_str(a, "AttributeName", hash_key);
    failed |= jadd_str(a, "AttributeType", "S");
    failed |= json_object_array_add(ad, a);
    failed |= jadd_str(k, "AttributeName", hash_key);
    failed |= jadd_str(k, "KeyType", "HASH");
    failed |= json_object_array_add(ks, k);
    failed |= jadd(o, "AttributeDefinitions", ad);
    failed |= jadd(o, "KeySchema", ks);
    failed |= jadd_str(o, "BillingMode", "PAY_PER_REQUEST");
    return finish(body, o, failed, err);
}

kn_err_t kn__ddb_table_build(kn_buf_t *body, const char *table, kn_error_t *err)
{
    kn_err_t rc = check_table("DynamoDB", table, err);
    if (rc)
        return rc;
    json_object *o = json_object_new_object();
    return finish(body, o, o ? jadd_str(o, "TableName", table) : 0, err);
}

kn_err_t kn__ddb_describe_table_parse(json_object *resp, kn__ddb_table_desc_t *out,
                                      kn_error_t *err)
{
    kn__jp_t p = {"DescribeTable", NULL, 0, err};
    json_object *t, *ks = NULL;
    const char *st;
    kn_err_t rc;
    memset(out, 0, sizeof(*out));
    out->item_count = -1;
    if (!resp || !json_object_is_type(resp, json_type_object))
        return kn__error_set(err, KN_ERR_BAD_RESPONSE, "DescribeTable response: not a JSON object");
    if ((rc = kn__jp_obj(&p, resp, "Table", true, &t)))
        return rc;
    p.op = "DescribeTable Table";
    if ((rc = kn__jp_str(&p, t, "TableStatus", true, &st, NULL)) ||
        (rc = kn__jp_int(&p, t, "ItemCount", false, &out->item_count)) ||
        (rc = kn__jp_arr(&p, t, "KeySchema", false, &ks)))
        return rc;
    snprintf(out->status_str, sizeof(out->status_str), "%s", st);
    if (!strcmp(st, "ACTIVE"))
        out->status = KN__TABLE_ACTIVE;
    else if (!strcmp(st, "CREATING"))
        out->status = KN__TABLE_CREATING;
    else if (!strcmp(st, "UPDATING"))
        out->status = KN__TABLE_UPDATING;
    else if (!strcmp(st, "DELETING"))
        out->status = KN__TABLE_DELETING;
    for (size_t i = 0; ks && i < json_object_array_length(ks); i++) {
        json_object *e = json_object_array_get_idx(ks, i);
        kn__jp_t q = {"DescribeTable Table", "KeySchema", (long)i, err};
        const char *name, *type;
        if ((rc = kn__jp_str(&q, e, "AttributeName", true, &name, NULL)) ||
            (rc = kn__jp_str(&q, e, "KeyType", true, &type, NULL)))
            return rc;
        if (!strcmp(type, "HASH"))
            snprintf(out->hash_key, sizeof(out->hash_key), "%s", name);
    }
    return KN_ERR_OK;
}

static kn_err_t key_build(const char *op, json_object **o, const char *table,
                          const kn__ddb_item_t *key, const char *key_field, kn_error_t *err)
{
    kn_err_t rc = check_table(op, table, err);
    if (rc)
        return rc;
    if (!key || key->count == 0)
        return kn__error_set(err, KN_ERR_INVALID_ARG, "%s: an empty %s", op, key_field);
    *o = json_object_new_object();
    if (!*o || jadd_str(*o, "TableName", table) || jadd(*o, key_field, kn__ddb_item_to_json(key))) {
        json_object_put(*o);
        *o = NULL;
        return nomem(err);
    }
    return KN_ERR_OK;
}

kn_err_t kn__ddb_get_item_build(kn_buf_t *body, const char *table, const kn__ddb_item_t *key,
                                bool consistent, kn_error_t *err)
{
    json_object *o;
    kn_err_t rc = key_build("GetItem", &o, table, key, "Key", err);
    if (rc)
        return rc;
    return finish(body, o, consistent ? jadd(o, "ConsistentRead", json_object_new_boolean(1)) : 0,
                  err);
}

kn_err_t kn__ddb_get_item_parse(json_object *resp, kn__ddb_item_t *out, bool *found,
                                kn_error_t *err)
{
    kn__jp_t p = {"GetItem", NULL, 0, err};
    json_object *item;
    kn_err_t rc;
    kn__ddb_item_init(out);
    *found = false;
    if (!resp || !json_object_is_type(resp, json_type_object))
        return kn__error_set(err, KN_ERR_BAD_RESPONSE, "GetItem response: not a JSON object");
    if ((rc = kn__jp_obj(&p, resp, "Item", false, &item)))
        return rc;
    if (!item)
        return KN_ERR_OK;
    if ((rc = kn__ddb_item_from_json(item, out, "GetItem", "Item", err)))
        return rc;
    *found = true;
    return KN_ERR_OK;
}

kn_err_t kn__ddb_put_item_build(kn_buf_t *body, const char *table, const kn__ddb_item_t *item,
                                const kn__ddb_cond_t *cond, kn_error_t *err)
{
    json_object *o;
    kn_err_t rc = key_build("PutItem", &o, table, item, "Item", err);
    if (rc)
        return rc;
    return finish(body, o, add_cond(o, cond), err);
}

kn_err_t kn__ddb_update_item_build(kn_buf_t *body, const char *table, const kn__ddb_item_t *key,
                                   const char *update_expression, const kn__ddb_cond_t *cond,
                                   bool return_new, kn_error_t *err)
{
    json_object *o;
    if (!update_expression || !*update_expression)
        return kn__error_set(err, KN_ERR_INVALID_ARG, "UpdateItem: an update expression is required");
    kn_err_t rc = key_build("UpdateItem", &o, table, key, "Key", err);
    if (rc)
        return rc;
    int failed = jadd_str(o, "UpdateExpression", update_expression);
    failed |= add_cond(o, cond);
    if (return_new)
        failed |= jadd_str(o, "ReturnValues", "ALL_NEW");
    return finish(body, o, failed, err);
}

kn_err_t kn__ddb_delete_item_build(kn_buf_t *body, const char *table, const kn__ddb_item_t *key,
                                   const kn__ddb_cond_t *cond, kn_error_t *err)
{
    json_object *o;
    kn_err_t rc = key_build("DeleteItem", &o, table, key, "Key", err);
    if (rc)
        return rc;
    return finish(body, o, add_cond(o, cond), err);
}

kn_err_t kn__ddb_scan_build(kn_buf_t *body, const char *table, const kn__ddb_item_t *start_key,
                            int limit, bool consistent, kn_error_t *err)
{
    kn_err_t rc = check_table("Scan", table, err);
    if (rc)
        return rc;
    if (limit < 0)
        return kn__error_set(err, KN_ERR_INVALID_ARG, "Scan: limit %d is negative", limit);
    json_object *o = json_object_new_object();
    int failed = 0;
    if (o) {
        failed |= jadd_str(o, "TableName", table);
        if (limit > 0)
            failed |= jadd(o, "Limit", json_object_new_int(limit));
        if (consistent)
            failed |= jadd(o, "ConsistentRead", json_object_new_boolean(1));
        if (start_key && start_key->count)
            failed |= jadd(o, "ExclusiveStartKey", kn__ddb_item_to_json(start_key));
    }
    return finish(body, o, failed, err);
}

void kn__ddb_scan_page_free(kn__ddb_scan_page_t *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->count; i++)
        kn__ddb_item_clear(&p->items[i]);
    free(p->items);
    kn__ddb_item_clear(&p->last_key);
    memset(p, 0, sizeof(*p));
}

kn_err_t kn__ddb_scan_parse(json_object *resp, kn__ddb_scan_page_t *out, kn_error_t *err)
{
    kn__jp_t p = {"Scan", NULL, 0, err};
    json_object *items, *last;
    kn_err_t rc;
    char path[32];
    memset(out, 0, sizeof(*out));
    if (!resp || !json_object_is_type(resp, json_type_object))
        return kn__error_set(err, KN_ERR_BAD_RESPONSE, "Scan response: not a JSON object");
    if ((rc = kn__jp_arr(&p, resp, "Items", true, &items)) ||
        (rc = kn__jp_obj(&p, resp, "LastEvaluatedKey", false, &last)))
        return rc;
    size_t n = json_object_array_length(items);
    if (n && !(out->items = calloc(n, sizeof(*out->items))))
        return nomem(err);
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "Items[%zu]", i);
        if ((rc = kn__ddb_item_from_json(json_object_array_get_idx(items, i), &out->items[i],
                                         "Scan", path, err)))
            goto fail;
        out->count = i + 1;
    }
    if (last && (rc = kn__ddb_item_from_json(last, &out->last_key, "Scan", "LastEvaluatedKey", err)))
        goto fail;
    return KN_ERR_OK;
fail:
    kn__ddb_scan_page_free(out);
    return rc;
}

/* Blocking call; maps the DynamoDB error names the lease code relies on. */
static kn_err_t call(kn_client_t *c, const char *op, kn_buf_t *body, json_object **out,
                     kn_error_t *err)
{
    json_object *resp = NULL;
    kn_err_t rc = kn__aws_call_sync(c, KN__SVC_DYNAMODB, op, body->data, body->len, &resp, err);
    kn__buf_free(body);
    if (rc != KN_ERR_OK) {
        json_object_put(resp);
        if (err && !strcmp(err->aws_type, "ConditionalCheckFailedException"))
            rc = err->code = KN_ERR_CONDITION_FAILED;
        return err ? err->code : rc;
    }
    if (out)
        *out = resp;
    else
        json_object_put(resp);
    return KN_ERR_OK;
}

kn_err_t kn__ddb_create_table(kn_client_t *c, const char *table, const char *hash_key,
                              kn_error_t *err)
{
    kn_buf_t body = KN_BUF_INIT;
    kn_err_t rc = kn__ddb_create_table_build(&body, table, hash_key, err);
    if (rc) {
        kn__buf_free(&body);
        return rc;
    }
    return call(c, "CreateTable", &body, NULL, err);
}

kn_err_t kn__ddb_describe_table(kn_client_t *c, const char *table, kn__ddb_table_desc_t *out,
                                kn_error_t *err)
{
    kn_buf_t body = KN_BUF_INIT;
    json_object *resp = NULL;
    kn_err_t rc = kn__ddb_table_build(&body, table, err);
    memset(out, 0, sizeof(*out));
    if (rc) {
        kn__buf_free(&body);
        return rc;
    }
    if ((rc = call(c, "DescribeTable", &body, &resp, err)))
        return rc;
    rc = kn__ddb_describe_table_parse(resp, out, err);
    json_object_put(resp);
    return rc;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

kn_err_t kn__ddb_wait_table_active(kn_client_t *c, const char *table, long timeout_ms,
                                   long interval_ms, kn_error_t *err)
{
    int64_t start = kn__mono_ms();
    for (;;) {
        kn__ddb_table_desc_t d;
        kn_err_t rc = kn__ddb_describe_table(c, table, &d, err);
        if (rc)
            return rc;
        if (d.status == KN__TABLE_ACTIVE)
            return KN_ERR_OK;
        int64_t now = kn__mono_ms();
        if (now - start + interval_ms > timeout_ms)
            return kn__error_set(err, KN_ERR_TIMEOUT,
                                 "table %s did not become ACTIVE within %ld ms (status %s)", table,
                                 timeout_ms, d.status_str);
        sleep_ms(interval_ms);
    }
}

kn_err_t kn__ddb_delete_table(kn_client_t *c, const char *table, kn_error_t *err)
{
    kn_buf_t body = KN_BUF_INIT;
    kn_err_t rc = kn__ddb_table_build(&body, table, err);
    if (rc) {
        kn__buf_free(&body);
        return rc;
    }
    return call(c, "DeleteTable", &body, NULL, err);
}

kn_err_t kn__ddb_get_item(kn_client_t *c, const char *table, const kn__ddb_item_t *key,
                          bool consistent, kn__ddb_item_t *out, bool *found, kn_error_t *err)
{
    kn_buf_t body = KN_BUF_INIT;
    json_object *resp = NULL;
    kn__ddb_item_init(out);
    *found = false;
    kn_err_t rc = kn__ddb_get_item_build(&body, table, key, consistent, err);
    if (rc) {
        kn__buf_free(&body);
        return rc;
    }
    if ((rc = call(c, "GetItem", &body, &resp, err)))
        return rc;
    rc = kn__ddb_get_item_parse(resp, out, found, err);
    json_object_put(resp);
    return rc;
}

kn_err_t kn__ddb_put_item(kn_client_t *c, const char *table, const kn__ddb_item_t *item,
                          const kn__ddb_cond_t *cond, kn_error_t *err)
{
    kn_buf_t body = KN_BUF_INIT;
    kn_err_t rc = kn__ddb_put_item_build(&body, table, item, cond, err);
    if (rc) {
        kn__buf_free(&body);
        return rc;
    }
    return call(c, "PutItem", &body, NULL, err);
}

kn_err_t kn__ddb_update_item(kn_client_t *c, const char *table, const kn__ddb_item_t *key,
                             const char *update_expression, const kn__ddb_cond_t *cond,
                             kn__ddb_item_t *new_item, kn_error_t *err)
{
    kn_buf_t body = KN_BUF_INIT;
    json_object *resp = NULL, *attrs = NULL;
    if (new_item)
        kn__ddb_item_init(new_item);
    kn_err_t rc = kn__ddb_update_item_build(&body, table, key, update_expression, cond,
                                            new_item != NULL, err);
    if (rc) {
        kn__buf_free(&body);
        return rc;
    }
    if ((rc = call(c, "UpdateItem", &body, new_item ? &resp : NULL, err)))
        return rc;
    if (new_item) {
        kn__jp_t p = {"UpdateItem", NULL, 0, err};
        if (!(rc = kn__jp_obj(&p, resp, "Attributes", true, &attrs)))
            rc = kn__ddb_item_from_json(attrs, new_item, "UpdateItem", "Attributes", err);
    }
    json_object_put(resp);
    return rc;
}

kn_err_t kn__ddb_delete_item(kn_client_t *c, const char *table, const kn__ddb_item_t *key,
                             const kn__ddb_cond_t *cond, kn_error_t *err)
{
    kn_buf_t body = KN_BUF_INIT;
    kn_err_t rc = kn__ddb_delete_item_build(&body, table, key, cond, err);
    if (rc) {
        kn__buf_free(&body);
        return rc;
    }
    return call(c, "DeleteItem", &body, NULL, err);
}

kn_err_t kn__ddb_scan(kn_client_t *c, const char *table, const kn__ddb_item_t *start_key,
                      int limit, bool consistent, kn__ddb_scan_page_t *out, kn_error_t *err)
{
    kn_buf_t body = KN_BUF_INIT;
    json_object *resp = NULL;
    memset(out, 0, sizeof(*out));
    kn_err_t rc = kn__ddb_scan_build(&body, table, start_key, limit, consistent, err);
    if (rc) {
        kn__buf_free(&body);
        return rc;
    }
    if ((rc = call(c, "Scan", &body, &resp, err)))
        return rc;
    rc = kn__ddb_scan_parse(resp, out, err);
    json_object_put(resp);
    return rc;
}
