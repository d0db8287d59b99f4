/*
 * The lease table: leases to and from DynamoDB items in the KCL's schema
 * (lease.h), the table's creation, and the conditional operations the
 * lease coordinator, shard sync and checkpointer use, asynchronously on the
 * client's loop (the request layer's DynamoDB calls, JSON 1.0).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "aws.h"
#include "json_fields.h"
#include "lease.h"

struct kn__lease_table_s {
    kn_client_t *c;
    char *name;
    _Atomic int64_t *requests;
    long timeout_ms; /* per attempt of the asynchronous operations; 0: http.request.timeout.ms */
};

#define A_KEY "leaseKey"
#define A_OWNER "leaseOwner"
#define A_COUNTER "leaseCounter"
#define A_SWITCHES "ownerSwitchesSinceCheckpoint"
#define A_CHECKPOINT "checkpoint"
#define A_SUB "checkpointSubSequenceNumber"
#define A_PARENTS "parentShardId"
#define A_CHILDREN "childShardIds"
#define A_START_HASH "startingHashKey"
#define A_END_HASH "endingHashKey"
#define A_CK_OWNER "checkpointOwner"
#define A_ENTITY "entityType"

/* ------------------------------------------------------------ leases */

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

void kn__lease_free(kn__lease_t *l)
{
    if (!l)
        return;
    free(l->key);
    free(l->owner);
    free(l->checkpoint);
    strv_free(l->parents, l->n_parents);
    strv_free(l->children, l->n_children);
    free(l->start_hash);
    free(l->end_hash);
    free(l->checkpoint_owner);
    memset(l, 0, sizeof(*l));
}

void kn__leases_free(kn__lease_t *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        kn__lease_free(&v[i]);
    free(v);
}

static int dup_opt(char **dst, const char *src)
{
    *dst = NULL;
    return src && !(*dst = strdup(src)) ? -1 : 0;
}

static int strv_dup(char ***dst, size_t *dn, char *const *src, size_t n)
{
    *dst = NULL;
    *dn = 0;
    if (!n)
        return 0;
    if (!(*dst = calloc(n, sizeof(char *))))
        return -1;
    for (size_t i = 0; i < n; i++, (*dn)++)
        if (!((*dst)[i] = strdup(src[i])))
            return -1;
    return 0;
}

kn_err_t kn__lease_copy(kn__lease_t *dst, const kn__lease_t *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->counter = src->counter;
    dst->owner_switches = src->owner_switches;
    dst->checkpoint_sub = src->checkpoint_sub;
    if (dup_opt(&dst->key, src->key) || dup_opt(&dst->owner, src->owner) ||
        dup_opt(&dst->checkpoint, src->checkpoint) || dup_opt(&dst->start_hash, src->start_hash) ||
        dup_opt(&dst->end_hash, src->end_hash) ||
        dup_opt(&dst->checkpoint_owner, src->checkpoint_owner) ||
        strv_dup(&dst->parents, &dst->n_parents, src->parents, src->n_parents) ||
        strv_dup(&dst->children, &dst->n_children, src->children, src->n_children)) {
        kn__lease_free(dst);
        return KN_ERR_NOMEM;
    }
    return KN_ERR_OK;
}

/* An optional S attribute into *out (NULL when absent); a wrong type is an error. */
static kn_err_t opt_s(const kn__ddb_item_t *it, const char *name, char **out, kn_error_t *err)
{
    *out = NULL;
    const kn__ddb_value_t *v = kn__ddb_item_get(it, name);
    if (!v)
        return KN_ERR_OK;
    if (v->type != KN__DDB_S)
        return kn__error_set(err, KN_ERR_BAD_RESPONSE, "lease attribute \"%s\" is %s, expected S",
                             name, kn__ddb_type_name(v->type));
    return (*out = strdup(v->str)) ? KN_ERR_OK : kn__error_set(err, KN_ERR_NOMEM, "out of memory");
}

/* An optional N attribute that must be a non-negative integer; def when absent. */
static kn_err_t opt_n(const kn__ddb_item_t *it, const char *name, int64_t def, int64_t *out,
                      kn_error_t *err)
{
    *out = def;
    if (!kn__ddb_item_get(it, name))
        return KN_ERR_OK;
    kn_err_t rc = kn__ddb_item_get_int64(it, name, out, err);
    if (rc == KN_ERR_OK && *out < 0)
        rc = kn__error_set(err, KN_ERR_BAD_RESPONSE, "lease attribute \"%s\" is negative (%" PRId64 ")",
                           name, *out);
    return rc;
}

/* An optional SS attribute (a KCL 1.x/2.x parent may also be a plain S). */
static kn_err_t opt_ss(const kn__ddb_item_t *it, const char *name, char ***out, size_t *n,
                       kn_error_t *err)
{
    *out = NULL;
    *n = 0;
    const kn__ddb_value_t *v = kn__ddb_item_get(it, name);
    if (!v)
        return KN_ERR_OK;
    if (v->type == KN__DDB_S) {
        if (!(*out = calloc(1, sizeof(char *))) || !((*out)[0] = strdup(v->str)))
            return kn__error_set(err, KN_ERR_NOMEM, "out of memory");
        *n = 1;
        return KN_ERR_OK;
    }
    if (v->type != KN__DDB_SS)
        return kn__error_set(err, KN_ERR_BAD_RESPONSE, "lease attribute \"%s\" is %s, expected SS",
                             name, kn__ddb_type_name(v->type));
    if (v->count && !(*out = calloc(v->count, sizeof(char *))))
        return kn__error_set(err, KN_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < v->count; i++, (*n)++)
        if (!((*out)[i] = strdup(v->elems[i].str)))
            return kn__error_set(err, KN_ERR_NOMEM, "out of memory");
    return KN_ERR_OK;
}

kn_err_t kn__lease_from_item(const kn__ddb_item_t *it, kn__lease_t *out, bool *is_lease,
                             kn_error_t *err)
{
    memset(out, 0, sizeof(*out));
    *is_lease = false;
    const kn__ddb_value_t *et = kn__ddb_item_get(it, A_ENTITY);
    if (et && !(et->type == KN__DDB_S && strcmp(et->str, "LEASE") == 0))
        return KN_ERR_OK; /* KCL 3.x worker metrics, leader and the like: not ours to read */
    int64_t sub = 0;
    kn_err_t rc;
    const char *key = NULL;
    if ((rc = kn__ddb_item_get_s(it, A_KEY, &key, err)) != KN_ERR_OK) {
        kn__error_prefix(err, "lease table item");
        return rc;
    }
    if (!(out->key = strdup(key)))
        return kn__error_set(err, KN_ERR_NOMEM, "out of memory");
    if ((rc = opt_s(it, A_OWNER, &out->owner, err)) || (rc = opt_n(it, A_COUNTER, 0, &out->counter, err)) ||
        (rc = opt_n(it, A_SWITCHES, 0, &out->owner_switches, err)) ||
        (rc = opt_s(it, A_CHECKPOINT, &out->checkpoint, err)) || (rc = opt_n(it, A_SUB, 0, &sub, err)) ||
        (rc = opt_ss(it, A_PARENTS, &out->parents, &out->n_parents, err)) ||
        (rc = opt_ss(it, A_CHILDREN, &out->children, &out->n_children, err)) ||
        (rc = opt_s(it, A_START_HASH, &out->start_hash, err)) ||
        (rc = opt_s(it, A_END_HASH, &out->end_hash, err)) ||
        (rc = opt_s(it, A_CK_OWNER, &out->checkpoint_owner, err))) {
        kn__error_prefix(err, "lease %s", out->key);
        kn__lease_free(out);
        return rc;
    }
    out->checkpoint_sub = (uint64_t)sub;
    if (!out->checkpoint && !(out->checkpoint = strdup(KN__CK_TRIM_HORIZON))) {
        kn__lease_free(out);
        return kn__error_set(err, KN_ERR_NOMEM, "out of memory");
    }
    if (out->owner && !*out->owner) { /* an empty owner is no owner */
        free(out->owner);
        out->owner = NULL;
    }
    *is_lease = true;
    return KN_ERR_OK;
}

kn_err_t kn__lease_to_item(const kn__lease_t *l, kn__ddb_item_t *out, kn_error_t *err)
{
    kn__ddb_item_init(out);
    kn_err_t rc;
    if ((rc = kn__ddb_item_set_s(out, A_KEY, l->key, err)) ||
        (rc = kn__ddb_item_set_int64(out, A_COUNTER, l->counter, err)) ||
        (rc = kn__ddb_item_set_int64(out, A_SWITCHES, l->owner_switches, err)) ||
        (rc = kn__ddb_item_set_s(out, A_CHECKPOINT, l->checkpoint ? l->checkpoint : KN__CK_TRIM_HORIZON,
                                 err)) ||
        (rc = kn__ddb_item_set_int64(out, A_SUB, (int64_t)l->checkpoint_sub, err)) ||
        (l->owner && (rc = kn__ddb_item_set_s(out, A_OWNER, l->owner, err))) ||
        (l->n_parents && (rc = kn__ddb_item_set_ss(out, A_PARENTS, (const char *const *)l->parents,
                                                   l->n_parents, err))) ||
        (l->n_children && (rc = kn__ddb_item_set_ss(out, A_CHILDREN, (const char *const *)l->children,
                                                    l->n_children, err))) ||
        (l->start_hash && (rc = kn__ddb_item_set_s(out, A_START_HASH, l->start_hash, err))) ||
        (l->end_hash && (rc = kn__ddb_item_set_s(out, A_END_HASH, l->end_hash, err)))) {
        kn__ddb_item_clear(out);
        return rc;
    }
    return KN_ERR_OK;
}

bool kn__checkpoint_is_sentinel(const char *ck)
{
    return ck && (!strcmp(ck, KN__CK_TRIM_HORIZON) || !strcmp(ck, KN__CK_LATEST) ||
                  !strcmp(ck, KN__CK_AT_TIMESTAMP) || !strcmp(ck, KN__CK_SHARD_END));
}

/* Rank of a checkpoint: 0 before any record, 1 a sequence number, 2 the end. */
static int rank(const char *ck)
{
    if (!ck || !strcmp(ck, KN__CK_TRIM_HORIZON) || !strcmp(ck, KN__CK_LATEST) ||
        !strcmp(ck, KN__CK_AT_TIMESTAMP))
        return 0;
    return strcmp(ck, KN__CK_SHARD_END) == 0 ? 2 : 1;
}

int kn__checkpoint_cmp(const char *a, uint64_t a_sub, const char *b, uint64_t b_sub)
{
    int ra = rank(a), rb = rank(b);
    if (ra != rb)
        return ra < rb ? -1 : 1;
    if (ra != 1)
        return 0;
    /* Decimal strings: a longer one (leading zeros aside) is larger. */
    while (*a == '0' && a[1])
        a++;
    while (*b == '0' && b[1])
        b++;
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb)
        return la < lb ? -1 : 1;
    int c = strcmp(a, b);
    if (c)
        return c < 0 ? -1 : 1;
    return a_sub < b_sub ? -1 : a_sub > b_sub;
}

bool kn__lease_started(const kn__lease_t *l) { return rank(l->checkpoint) > 0; }
bool kn__lease_finished(const kn__lease_t *l) { return rank(l->checkpoint) == 2; }

/* ------------------------------------------------------------ the table */

kn__lease_table_t *kn__lease_table_new(kn_client_t *c, const char *name, _Atomic int64_t *requests)
{
    kn__lease_table_t *t = calloc(1, sizeof(*t));
    if (!t || !(t->name = strdup(name))) {
        free(t);
        return NULL;
    }
    t->c = c;
    t->requests = requests;
    return t;
}

void kn__lease_table_destroy(kn__lease_table_t *t)
{
    if (!t)
        return;
    free(t->name);
    free(t);
}

const char *kn__lease_table_name(const kn__lease_table_t *t) { return t->name; }

void kn__lease_table_set_timeout(kn__lease_table_t *t, long timeout_ms) { t->timeout_ms = timeout_ms; }

static void count_request(kn__lease_table_t *t)
{
    if (t->requests)
        atomic_fetch_add_explicit(t->requests, 1, memory_order_relaxed);
}

kn_err_t kn__lease_table_ensure(kn__lease_table_t *t, long timeout_ms, bool *created, kn_error_t *err)
{
    kn__ddb_table_desc_t d;
    *created = false;
    count_request(t);
    kn_err_t rc = kn__ddb_describe_table(t->c, t->name, &d, err);
    if (rc == KN_ERR_NOT_FOUND) {
        kn__error_clear(err);
        count_request(t);
        rc = kn__ddb_create_table(t->c, t->name, A_KEY, err);
        if (rc == KN_ERR_IN_USE) /* another worker is creating it right now */
            rc = KN_ERR_OK, kn__error_clear(err);
        else if (rc == KN_ERR_OK)
            *created = true;
        if (rc != KN_ERR_OK) {
            kn__error_prefix(err, "creating the lease table \"%s\"", t->name);
            return rc;
        }
        rc = kn__ddb_wait_table_active(t->c, t->name, timeout_ms, 200, err);
        if (rc != KN_ERR_OK) {
            kn__error_prefix(err, "lease table \"%s\"", t->name);
            return rc;
        }
        count_request(t);
        rc = kn__ddb_describe_table(t->c, t->name, &d, err);
    }
    if (rc != KN_ERR_OK) {
        kn__error_prefix(err, "lease table \"%s\"", t->name);
        return rc;
    }
    if (d.status != KN__TABLE_ACTIVE) {
        rc = kn__ddb_wait_table_active(t->c, t->name, timeout_ms, 200, err);
        if (rc != KN_ERR_OK) {
            kn__error_prefix(err, "lease table \"%s\"", t->name);
            return rc;
        }
    }
    if (d.hash_key[0] && strcmp(d.hash_key, A_KEY) != 0)
        return kn__error_set(err, KN_ERR_VALIDATION,
                             "table \"%s\" exists but its hash key is \"%s\", not \"" A_KEY
                             "\": it is not a KCL lease table (choose another "
                             "consumer.application.name or consumer.table.name)",
                             t->name, d.hash_key);
    return KN_ERR_OK;
}

/* ------------------------------------------------------------ asynchronous operations */

typedef struct op_s {
    kn__lease_table_t *t;
    kn__lt_cb_t *cb;
    void *opaque;
    const char *what;    /* for messages: "renew", "take", ... */
    char key[256];       /* the lease it concerns ("" for a scan) */
    bool want_item;      /* ReturnValues ALL_NEW / GetItem */
    bool scan;
    kn__lease_t *acc;    /* scan: leases so far */
    size_t n, cap;
} op_t;

static kn_err_t send_op(op_t *op, const char *operation, kn_buf_t *body);

static void finish(op_t *op, kn__lt_result_t *res)
{
    if (res->err.code != KN_ERR_OK && op->key[0])
        kn__error_prefix(&res->err, "lease %s (%s)", op->key, op->what);
    op->cb(res, op->opaque);
    kn__lease_free(&res->lease);
    kn__leases_free(op->acc, op->n);
    free(op);
}

static void scan_page(op_t *op, json_object *json, kn__lt_result_t *res)
{
    kn__ddb_scan_page_t page = {0};
    if (kn__ddb_scan_parse(json, &page, &res->err) != KN_ERR_OK)
        goto done;
    for (size_t i = 0; i < page.count; i++) {
        kn__lease_t l;
        bool is_lease = false;
        if (kn__lease_from_item(&page.items[i], &l, &is_lease, &res->err) != KN_ERR_OK)
            goto done;
        if (!is_lease)
            continue;
        if (op->n == op->cap) {
            size_t cap = op->cap ? op->cap * 2 : 64;
            kn__lease_t *v = realloc(op->acc, cap * sizeof(*v));
            if (!v) {
                kn__lease_free(&l);
                kn__error_set(&res->err, KN_ERR_NOMEM, "out of memory");
                goto done;
            }
            op->acc = v;
            op->cap = cap;
        }
        op->acc[op->n++] = l;
    }
    if (page.last_key.count > 0) {
        /* The next page; this op carries on. */
        kn_buf_t body = KN_BUF_INIT;
        if (kn__ddb_scan_build(&body, op->t->name, &page.last_key, 0, false, &res->err) == KN_ERR_OK &&
            send_op(op, "Scan", &body) == KN_ERR_OK) {
            kn__ddb_scan_page_free(&page);
            return;
        }
        if (res->err.code == KN_ERR_OK)
            kn__error_set(&res->err, KN_ERR_DESTROYED, "the client is shutting down");
    }
done:
    kn__ddb_scan_page_free(&page);
    if (res->err.code == KN_ERR_OK) {
        res->leases = op->acc;
        res->count = op->n;
        op->acc = NULL;
        op->n = 0;
    }
    op->cb(res, op->opaque);
    kn__leases_free(res->leases, res->count);
    kn__lease_free(&res->lease);
    kn__leases_free(op->acc, op->n);
    free(op);
}

static void on_done(kn__aws_result_t *ar, void *opaque)
{
    op_t *op = opaque;
    kn__lt_result_t res;
    memset(&res, 0, sizeof(res));
    kn__error_clear(&res.err);
    if (ar->err.code != KN_ERR_OK) {
        kn__error_copy(&res.err, &ar->err);
        if (op->scan) {
            op->cb(&res, op->opaque);
            kn__leases_free(op->acc, op->n);
            free(op);
            return;
        }
        finish(op, &res);
        return;
    }
    if (op->scan) {
        scan_page(op, ar->json, &res);
        return;
    }
    if (op->want_item) {
        /* UpdateItem ALL_NEW: "Attributes"; GetItem: "Item" (absent: no such item). */
        json_object *obj = NULL;
        bool is_lease = false;
        if ((json_object_object_get_ex(ar->json, "Attributes", &obj) ||
             json_object_object_get_ex(ar->json, "Item", &obj)) && obj) {
            kn__ddb_item_t it;
            if (kn__ddb_item_from_json(obj, &it, op->what, "Item", &res.err) == KN_ERR_OK) {
                if (kn__lease_from_item(&it, &res.lease, &is_lease, &res.err) == KN_ERR_OK)
                    res.found = is_lease;
                kn__ddb_item_clear(&it);
            }
        }
    }
    finish(op, &res);
}

static kn_err_t send_op(op_t *op, const char *operation, kn_buf_t *body)
{
    kn__aws_req_t req = {0};
    kn_error_t e;
    kn__error_clear(&e);
    req.service = KN__SVC_DYNAMODB;
    req.operation = operation;
    req.body = *body;
    memset(body, 0, sizeof(*body));
    req.cb = on_done;
    req.opaque = op;
    /* Lease writes have deadlines of their own: few attempts, the caller decides what next. */
    req.max_attempts = 3;
    req.timeout_ms = op->t->timeout_ms;
    count_request(op->t);
    return kn__aws_call(op->t->c, &req, &e);
}

static op_t *op_new(kn__lease_table_t *t, const char *what, const char *key, kn__lt_cb_t *cb,
                    void *opaque)
{
    op_t *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    op->t = t;
    op->cb = cb;
    op->opaque = opaque;
    op->what = what;
    if (key)
        snprintf(op->key, sizeof(op->key), "%s", key);
    return op;
}

/* Sends body for op, or frees both: the result of every start. */
static kn_err_t start(op_t *op, const char *operation, kn_buf_t *body, kn_err_t build_rc)
{
    if (!op) {
        kn__buf_free(body);
        return KN_ERR_NOMEM;
    }
    kn_err_t rc = build_rc == KN_ERR_OK ? send_op(op, operation, body) : build_rc;
    if (rc != KN_ERR_OK) {
        kn__buf_free(body);
        free(op);
    }
    return rc;
}

kn_err_t kn__lt_scan(kn__lease_table_t *t, kn__lt_cb_t *cb, void *opaque)
{
    op_t *op = op_new(t, "scan", NULL, cb, opaque);
    kn_buf_t body = KN_BUF_INIT;
    kn_error_t e;
    kn__error_clear(&e);
    if (op)
        op->scan = true;
    return start(op, "Scan", &body, op ? kn__ddb_scan_build(&body, t->name, NULL, 0, false, &e) : KN_ERR_NOMEM);
}

/* The key item of lease key. */
static kn_err_t key_item(kn__ddb_item_t *k, const char *key, kn_error_t *e)
{
    kn__ddb_item_init(k);
    return kn__ddb_item_set_s(k, A_KEY, key, e);
}

kn_err_t kn__lt_get(kn__lease_table_t *t, const char *key, kn__lt_cb_t *cb, void *opaque)
{
    op_t *op = op_new(t, "read", key, cb, opaque);
    kn_buf_t body = KN_BUF_INIT;
    kn__ddb_item_t k;
    kn_error_t e;
    kn__error_clear(&e);
    kn_err_t rc = key_item(&k, key, &e);
    if (rc == KN_ERR_OK)
        rc = kn__ddb_get_item_build(&body, t->name, &k, true, &e);
    kn__ddb_item_clear(&k);
    if (op)
        op->want_item = true;
    return start(op, "GetItem", &body, rc);
}

kn_err_t kn__lt_create(kn__lease_table_t *t, const kn__lease_t *l, kn__lt_cb_t *cb, void *opaque)
{
    op_t *op = op_new(t, "create", l->key, cb, opaque);
    kn_buf_t body = KN_BUF_INIT;
    kn__ddb_item_t it;
    kn_error_t e;
    kn__error_clear(&e);
    static const char *const names[] = {"#k", A_KEY, NULL};
    kn__ddb_cond_t cond = {"attribute_not_exists(#k)", names, NULL};
    kn_err_t rc = kn__lease_to_item(l, &it, &e);
    if (rc == KN_ERR_OK) {
        rc = kn__ddb_put_item_build(&body, t->name, &it, &cond, &e);
        kn__ddb_item_clear(&it);
    }
    return start(op, "PutItem", &body, rc);
}

/* Values for the conditional updates: ":o" owner, ":c" counter seen, ":c1" counter + 1, ... */
typedef struct vals_s {
    kn__ddb_item_t v;
    kn_error_t e;
    kn_err_t rc;
} vals_t;

static void v_init(vals_t *x)
{
    kn__ddb_item_init(&x->v);
    kn__error_clear(&x->e);
    x->rc = KN_ERR_OK;
}
static void v_s(vals_t *x, const char *name, const char *s)
{
    if (x->rc == KN_ERR_OK)
        x->rc = kn__ddb_item_set_s(&x->v, name, s, &x->e);
}
static void v_n(vals_t *x, const char *name, int64_t n)
{
    if (x->rc == KN_ERR_OK)
        x->rc = kn__ddb_item_set_int64(&x->v, name, n, &x->e);
}

/* Every attribute name the updates use, as #placeholders. */
static const char *const all_names[] = {"#k",  A_KEY,      "#o",  A_OWNER,  "#c",   A_COUNTER,
                                        "#sw", A_SWITCHES, "#ck", A_CHECKPOINT, "#sub", A_SUB,
                                        "#ch", A_CHILDREN, "#co", A_CK_OWNER, NULL};

/* Whether placeholder ph ("#c") occurs in s as a whole token. */
static bool uses(const char *s, const char *ph)
{
    size_t n = strlen(ph);
    for (const char *p = s; (p = strstr(p, ph)) != NULL; p += n) {
        char next = p[n];
        if (!(next == '_' || (next >= 'a' && next <= 'z') || (next >= 'A' && next <= 'Z') ||
              (next >= '0' && next <= '9')))
            return true;
    }
    return false;
}

/*
 * The names of all_names that expr or cond use (DynamoDB refuses names the
 * expressions do not use), into out (room for the whole list).
 */
static void used_names(const char *expr, const char *cond, const char **out)
{
    size_t k = 0;
    for (size_t i = 0; all_names[i]; i += 2) {
        if (uses(expr, all_names[i]) || uses(cond, all_names[i])) {
            out[k++] = all_names[i];
            out[k++] = all_names[i + 1];
        }
    }
    out[k] = NULL;
}

/* An UpdateItem of key with expr under cond, values x (cleared), ALL_NEW returned. */
static kn_err_t update(kn__lease_table_t *t, const char *what, const char *key, const char *expr,
                       const char *cond_expr, vals_t *x, kn__lt_cb_t *cb, void *opaque)
{
    op_t *op = op_new(t, what, key, cb, opaque);
    kn_buf_t body = KN_BUF_INIT;
    kn__ddb_item_t k;
    kn_err_t rc = x->rc;
    if (rc == KN_ERR_OK)
        rc = key_item(&k, key, &x->e);
    if (rc == KN_ERR_OK) {
        const char *names[sizeof(all_names) / sizeof(all_names[0])];
        used_names(expr, cond_expr, names);
        kn__ddb_cond_t cond = {cond_expr, names, &x->v};
        rc = kn__ddb_update_item_build(&body, t->name, &k, expr, &cond, true, &x->e);
        kn__ddb_item_clear(&k);
    }
    kn__ddb_item_clear(&x->v);
    if (op)
        op->want_item = true;
    return start(op, "UpdateItem", &body, rc);
}

/*
 * Who may write a lease it holds: its owner while no handoff is in progress,
 * or, during a handoff (KCL 3.x), the previous owner named by checkpointOwner
 * (it keeps renewing and checkpoints until it lets go; the new owner waits).
 * With the counter seen, so that a write based on an old view fails.
 */
#define HOLDER_AND_COUNTER "#c = :c AND ((#o = :me AND attribute_not_exists(#co)) OR #co = :me)"

kn_err_t kn__lt_renew(kn__lease_table_t *t, const char *key, const char *me, int64_t counter,
                      kn__lt_cb_t *cb, void *opaque)
{
    vals_t x;
    v_init(&x);
    v_s(&x, ":me", me);
    v_n(&x, ":c", counter);
    v_n(&x, ":c1", counter + 1);
    return update(t, "renew", key, "SET #c = :c1", HOLDER_AND_COUNTER, &x, cb, opaque);
}

kn_err_t kn__lt_take(kn__lease_table_t *t, const char *key, const char *seen_owner, int64_t counter,
                     const char *me, kn__lt_cb_t *cb, void *opaque)
{
    vals_t x;
    v_init(&x);
    v_s(&x, ":me", me);
    v_n(&x, ":c", counter);
    v_n(&x, ":c1", counter + 1);
    v_n(&x, ":one", 1);
    if (seen_owner)
        v_s(&x, ":o", seen_owner);
    return update(t, "take", key, "SET #o = :me, #c = :c1 ADD #sw :one REMOVE #co",
                  seen_owner ? "#c = :c AND #o = :o" : "#c = :c AND attribute_not_exists(#o)", &x,
                  cb, opaque);
}

kn_err_t kn__lt_handoff_ask(kn__lease_table_t *t, const char *key, const char *owner, const char *me,
                            kn__lt_cb_t *cb, void *opaque)
{
    vals_t x;
    v_init(&x);
    v_s(&x, ":me", me);
    v_s(&x, ":o", owner);
    v_s(&x, ":end", KN__CK_SHARD_END);
    return update(t, "handoff request", key, "SET #o = :me, #co = :o",
                  "#o = :o AND attribute_not_exists(#co) AND #ck <> :end", &x, cb, opaque);
}

kn_err_t kn__lt_handoff_cancel(kn__lease_table_t *t, const char *key, const char *owner,
                               const char *me, kn__lt_cb_t *cb, void *opaque)
{
    vals_t x;
    v_init(&x);
    v_s(&x, ":me", me);
    v_s(&x, ":o", owner);
    return update(t, "handoff cancel", key, "SET #o = :o REMOVE #co", "#o = :me AND #co = :o", &x,
                  cb, opaque);
}

kn_err_t kn__lt_checkpoint(kn__lease_table_t *t, const char *key, const char *me, int64_t counter,
                           const char *seq, uint64_t sub, kn__lt_cb_t *cb, void *opaque)
{
    vals_t x;
    v_init(&x);
    v_s(&x, ":me", me);
    v_n(&x, ":c", counter);
    v_n(&x, ":c1", counter + 1);
    v_s(&x, ":ck", seq);
    v_n(&x, ":sub", (int64_t)sub);
    v_n(&x, ":zero", 0);
    return update(t, "checkpoint", key, "SET #ck = :ck, #sub = :sub, #sw = :zero, #c = :c1",
                  HOLDER_AND_COUNTER, &x, cb, opaque);
}

kn_err_t kn__lt_handoff_done(kn__lease_table_t *t, const char *key, const char *me, kn__lt_cb_t *cb,
                             void *opaque)
{
    vals_t x;
    v_init(&x);
    v_s(&x, ":me", me);
    v_n(&x, ":one", 1);
    return update(t, "handoff", key, "REMOVE #co ADD #c :one", "#co = :me", &x, cb, opaque);
}

kn_err_t kn__lt_release(kn__lease_table_t *t, const char *key, const char *me, int64_t counter,
                        kn__lt_cb_t *cb, void *opaque)
{
    vals_t x;
    v_init(&x);
    v_s(&x, ":me", me);
    v_n(&x, ":c", counter);
    v_n(&x, ":c1", counter + 1);
    return update(t, "release", key, "SET #c = :c1 REMOVE #o",
                  "#c = :c AND #o = :me AND attribute_not_exists(#co)", &x, cb, opaque);
}

kn_err_t kn__lt_shard_end(kn__lease_table_t *t, const char *key, const char *me, int64_t counter,
                          const char *const *children, size_t n, kn__lt_cb_t *cb, void *opaque)
{
    vals_t x;
    v_init(&x);
    v_s(&x, ":me", me);
    v_n(&x, ":c", counter);
    v_n(&x, ":c1", counter + 1);
    v_s(&x, ":ck", KN__CK_SHARD_END);
    v_n(&x, ":zero", 0);
    if (n && x.rc == KN_ERR_OK)
        x.rc = kn__ddb_item_set_ss(&x.v, ":ch", children, n, &x.e);
    return update(t, "shard end", key,
                  n ? "SET #ck = :ck, #sub = :zero, #sw = :zero, #c = :c1, #ch = :ch"
                    : "SET #ck = :ck, #sub = :zero, #sw = :zero, #c = :c1",
                  HOLDER_AND_COUNTER, &x, cb, opaque);
}

kn_err_t kn__lt_delete(kn__lease_table_t *t, const char *key, kn__lt_cb_t *cb, void *opaque)
{
    op_t *op = op_new(t, "delete", key, cb, opaque);
    kn_buf_t body = KN_BUF_INIT;
    kn__ddb_item_t k;
    vals_t x;
    v_init(&x);
    v_s(&x, ":end", KN__CK_SHARD_END);
    static const char *const names[] = {"#ck", A_CHECKPOINT, NULL};
    kn__ddb_cond_t cond = {"#ck = :end", names, &x.v};
    kn_err_t rc = x.rc;
    if (rc == KN_ERR_OK)
        rc = key_item(&k, key, &x.e);
    if (rc == KN_ERR_OK) {
        rc = kn__ddb_delete_item_build(&body, t->name, &k, &cond, &x.e);
        kn__ddb_item_clear(&k);
    }
    kn__ddb_item_clear(&x.v);
    return start(op, "DeleteItem", &body, rc);
}

/* ------------------------------------------------------------ blocking listing */

kn_err_t kn__lease_table_list(kn__lease_table_t *t, kn__lease_t **out, size_t *count, kn_error_t *err)
{
    *out = NULL;
    *count = 0;
    kn__ddb_item_t start = KN__DDB_ITEM_INIT;
    size_t cap = 0;
    kn_err_t rc = KN_ERR_OK;
    for (;;) {
        kn__ddb_scan_page_t page = {0};
        count_request(t);
        rc = kn__ddb_scan(t->c, t->name, start.count ? &start : NULL, 0, true, &page, err);
        kn__ddb_item_clear(&start);
        if (rc != KN_ERR_OK)
            break;
        for (size_t i = 0; i < page.count && rc == KN_ERR_OK; i++) {
            kn__lease_t l;
            bool is_lease;
            if ((rc = kn__lease_from_item(&page.items[i], &l, &is_lease, err)) != KN_ERR_OK || !is_lease)
                continue;
            if (*count == cap) {
                cap = cap ? cap * 2 : 64;
                kn__lease_t *v = realloc(*out, cap * sizeof(*v));
                if (!v) {
                    kn__lease_free(&l);
                    rc = kn__error_set(err, KN_ERR_NOMEM, "out of memory");
                    break;
                }
                *out = v;
            }
            (*out)[(*count)++] = l;
        }
        bool more = page.last_key.count > 0;
        if (more)
            start = page.last_key, page.last_key = (kn__ddb_item_t)KN__DDB_ITEM_INIT;
        kn__ddb_scan_page_free(&page);
        if (rc != KN_ERR_OK || !more)
            break;
    }
    kn__ddb_item_clear(&start);
    if (rc != KN_ERR_OK) {
        kn__leases_free(*out, *count);
        *out = NULL;
        *count = 0;
        kn__error_prefix(err, "lease table \"%s\"", t->name);
    }
    return rc;
}
