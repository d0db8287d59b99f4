/*
 * kncat -L (streams, shards), -A (create, delete, scale, split, merge, wait)
 * and -Q (which shard a key maps to), all through <kinesis/admin.h>.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kncat.h"

static void json_str_or_null(const char *s)
{
    if (s)
        kc_json_string(stdout, s, strlen(s));
    else
        fputs("null", stdout);
}

static int need_stream(const kc_opts_t *o, const char *mode)
{
    if (o->stream && *o->stream)
        return 0;
    kc_err("%s needs a stream (-t <stream>)", mode);
    return -1;
}

static int fail(const char *what, const char *stream, kn_err_t rc, const kn_error_t *err)
{
    char buf[400];
    if (stream)
        snprintf(buf, sizeof(buf), "%s %s", what, stream);
    else
        snprintf(buf, sizeof(buf), "%s", what);
    return kc_report_error(buf, rc, err);
}

/* ----------------------------------------------------------------------- -L */

static int list_streams(kc_opts_t *o, kn_client_t *c, kn_error_t *err)
{
    kn_stream_list_t *l = NULL;
    kn_err_t rc = kn_admin_list_streams(c, &l, err);
    if (rc)
        return fail("list streams", NULL, rc, err);
    size_t n = kn_stream_list_count(l);
    if (o->json) {
        fputs("{\"streams\":[", stdout);
        for (size_t i = 0; i < n; i++) {
            if (i)
                fputc(',', stdout);
            json_str_or_null(kn_stream_list_name(l, i));
        }
        fputs("]}\n", stdout);
    } else {
        for (size_t i = 0; i < n; i++)
            printf("%s\n", kn_stream_list_name(l, i));
        kc_info(o, 1, "%zu streams", n);
    }
    kn_stream_list_destroy(l);
    return KC_EXIT_OK;
}

static int list_shards(kc_opts_t *o, kn_client_t *c, kn_error_t *err)
{
    kn_stream_info_t *info = NULL;
    kn_shard_list_t *l = NULL;
    int ec = KC_EXIT_OK;
    kn_err_t rc = kn_admin_describe_stream(c, o->stream, &info, err);
    if (!rc)
        rc = kn_admin_list_shards(c, o->stream, &l, err);
    if (rc) {
        ec = fail("stream", o->stream, rc, err);
        goto out;
    }
    size_t n = kn_shard_list_count(l);
    if (o->json) {
        fputs("{\"stream\":", stdout);
        json_str_or_null(kn_stream_info_name(info));
        fputs(",\"arn\":", stdout);
        json_str_or_null(kn_stream_info_arn(info));
        fputs(",\"status\":", stdout);
        json_str_or_null(kn_stream_info_status(info));
        printf(",\"open_shards\":%lld,\"on_demand\":%s,\"retention_hours\":%lld,\"shards\":[",
               (long long)kn_stream_info_open_shard_count(info),
               kn_stream_info_on_demand(info) ? "true" : "false",
               (long long)kn_stream_info_retention_hours(info));
        for (size_t i = 0; i < n; i++) {
            fputs(i ? ",{\"id\":" : "{\"id\":", stdout);
            json_str_or_null(kn_shard_list_id(l, i));
            fputs(",\"parent\":", stdout);
            json_str_or_null(kn_shard_list_parent(l, i));
            fputs(",\"adjacent_parent\":", stdout);
            json_str_or_null(kn_shard_list_adjacent_parent(l, i));
            fputs(",\"hash_start\":", stdout);
            json_str_or_null(kn_shard_list_hash_start(l, i));
            fputs(",\"hash_end\":", stdout);
            json_str_or_null(kn_shard_list_hash_end(l, i));
            fputs(",\"start_seq\":", stdout);
            json_str_or_null(kn_shard_list_start_seq(l, i));
            fputs(",\"end_seq\":", stdout);
            json_str_or_null(kn_shard_list_end_seq(l, i));
            printf(",\"open\":%s}", kn_shard_list_is_open(l, i) ? "true" : "false");
        }
        fputs("]}\n", stdout);
    } else {
        printf("stream %s: %s, %lld open shards, %s, retention %lld h\n",
               kn_stream_info_name(info), kn_stream_info_status(info),
               (long long)kn_stream_info_open_shard_count(info),
               kn_stream_info_on_demand(info) ? "on-demand" : "provisioned",
               (long long)kn_stream_info_retention_hours(info));
        for (size_t i = 0; i < n; i++) {
            const char *p = kn_shard_list_parent(l, i), *a = kn_shard_list_adjacent_parent(l, i);
            printf("  %s  %-6s  hash %s..%s", kn_shard_list_id(l, i),
                   kn_shard_list_is_open(l, i) ? "open" : "closed", kn_shard_list_hash_start(l, i),
                   kn_shard_list_hash_end(l, i));
            if (p)
                printf("  parent %s", p);
            if (a)
                printf("  adjacent-parent %s", a);
            printf("\n");
        }
    }
out:
    kn_shard_list_destroy(l);
    kn_stream_info_destroy(info);
    return ec;
}

int kc_list(kc_opts_t *o)
{
    if (o->group)
        return kc_group_list(o);
    kn_client_t *c = kc_client(o);
    kn_error_t *err = kn_error_new();
    if (!c || !err) {
        kn_error_destroy(err);
        return KC_EXIT_FAIL;
    }
    int ec = o->stream ? list_shards(o, c, err) : list_streams(o, c, err);
    kn_error_destroy(err);
    return ec;
}

/* ----------------------------------------------------------------------- -A */

static int wait_active(kc_opts_t *o, kn_client_t *c, kn_error_t *err)
{
    if (o->no_wait)
        return KC_EXIT_OK;
    kn_err_t rc = kn_admin_wait_active(c, o->stream, o->wait_timeout_ms, err);
    if (rc)
        return fail("waiting for stream", o->stream, rc, err);
    kc_info(o, 0, "stream %s is ACTIVE", o->stream);
    return KC_EXIT_OK;
}

static int parse_count(const char *what, const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > 100000) {
        kc_err("%s: \"%s\" is not a shard count (1 to 100000)", what, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int nargs_ok(const kc_opts_t *o, int min, int max, const char *syntax)
{
    if (o->nargs >= min && o->nargs <= max)
        return 0;
    kc_err("usage: kncat -A %s", syntax);
    return -1;
}

int kc_admin(kc_opts_t *o)
{
    const char *cmd = o->admin_cmd;
    if (need_stream(o, "-A"))
        return KC_EXIT_USAGE;
    if (strcmp(cmd, "create") && strcmp(cmd, "delete") && strcmp(cmd, "scale") &&
        strcmp(cmd, "split") && strcmp(cmd, "merge") && strcmp(cmd, "wait")) {
        kc_err("unknown admin command \"%s\" (create, delete, scale, split, merge, wait)", cmd);
        return KC_EXIT_USAGE;
    }
    if ((o->create_shards || o->on_demand) && strcmp(cmd, "create")) {
        kc_err("--shards and --on-demand are for -A create");
        return KC_EXIT_USAGE;
    }
    kn_error_t *err = kn_error_new();
    kn_client_t *c = NULL;
    kn_err_t rc = KN_ERR_OK;
    int ec = KC_EXIT_OK;
    if (!err) {
        ec = KC_EXIT_FAIL;
        goto out;
    }
    if (strcmp(cmd, "create") == 0) {
        if (nargs_ok(o, 0, 0, "create -t <stream> [--shards N | --on-demand]")) {
            ec = KC_EXIT_USAGE;
            goto out;
        }
        if (o->create_shards && o->on_demand) {
            kc_err("--shards and --on-demand exclude each other");
            ec = KC_EXIT_USAGE;
            goto out;
        }
        int shards = o->on_demand ? 0 : o->create_shards ? o->create_shards : 1;
        if (!(c = kc_client(o))) {
            ec = KC_EXIT_FAIL;
            goto out;
        }
        if ((rc = kn_admin_create_stream(c, o->stream, shards, err))) {
            ec = fail("create stream", o->stream, rc, err);
            goto out;
        }
        if (shards)
            kc_info(o, 0, "created stream %s with %d shard%s", o->stream, shards,
                    shards == 1 ? "" : "s");
        else
            kc_info(o, 0, "created on-demand stream %s", o->stream);
        ec = wait_active(o, c, err);
    } else if (strcmp(cmd, "delete") == 0) {
        if (nargs_ok(o, 0, 0, "delete -t <stream>")) {
            ec = KC_EXIT_USAGE;
            goto out;
        }
        if (!(c = kc_client(o))) {
            ec = KC_EXIT_FAIL;
            goto out;
        }
        if ((rc = kn_admin_delete_stream(c, o->stream, err))) {
            ec = fail("delete stream", o->stream, rc, err);
            goto out;
        }
        kc_info(o, 0, "deleting stream %s", o->stream);
    } else if (strcmp(cmd, "scale") == 0) {
        int n;
        if (nargs_ok(o, 1, 1, "scale -t <stream> <shard count>") ||
            parse_count("scale", o->args[0], &n)) {
            ec = KC_EXIT_USAGE;
            goto out;
        }
        if (!(c = kc_client(o))) {
            ec = KC_EXIT_FAIL;
            goto out;
        }
        if ((rc = kn_admin_scale_stream(c, o->stream, n, err))) {
            ec = fail("scale stream", o->stream, rc, err);
            goto out;
        }
        kc_info(o, 0, "scaling stream %s to %d shards", o->stream, n);
        ec = wait_active(o, c, err);
    } else if (strcmp(cmd, "split") == 0) {
        if (nargs_ok(o, 1, 2, "split -t <stream> <shard> [new starting hash key]")) {
            ec = KC_EXIT_USAGE;
            goto out;
        }
        if (!(c = kc_client(o))) {
            ec = KC_EXIT_FAIL;
            goto out;
        }
        const char *at = o->nargs > 1 ? o->args[1] : NULL;
        if ((rc = kn_admin_split_shard(c, o->stream, o->args[0], at, err))) {
            ec = fail("split shard of stream", o->stream, rc, err);
            goto out;
        }
        kc_info(o, 0, "splitting %s of stream %s%s%s", o->args[0], o->stream, at ? " at " : "",
                at ? at : "");
        ec = wait_active(o, c, err);
    } else if (strcmp(cmd, "merge") == 0) {
        if (nargs_ok(o, 2, 2, "merge -t <stream> <shard> <adjacent shard>")) {
            ec = KC_EXIT_USAGE;
            goto out;
        }
        if (!(c = kc_client(o))) {
            ec = KC_EXIT_FAIL;
            goto out;
        }
        if ((rc = kn_admin_merge_shards(c, o->stream, o->args[0], o->args[1], err))) {
            ec = fail("merge shards of stream", o->stream, rc, err);
            goto out;
        }
        kc_info(o, 0, "merging %s and %s of stream %s", o->args[0], o->args[1], o->stream);
        ec = wait_active(o, c, err);
    } else { /* wait */
        if (nargs_ok(o, 0, 0, "wait -t <stream> [--wait-timeout seconds]")) {
            ec = KC_EXIT_USAGE;
            goto out;
        }
        if (!(c = kc_client(o))) {
            ec = KC_EXIT_FAIL;
            goto out;
        }
        o->no_wait = false;
        ec = wait_active(o, c, err);
    }
out:
    kn_error_destroy(err);
    return ec;
}

/* ----------------------------------------------------------------------- -Q */

int kc_query(kc_opts_t *o)
{
    if (need_stream(o, "-Q"))
        return KC_EXIT_USAGE;
    if (!o->key && !o->hash_key) {
        kc_err("-Q needs a partition key (-k <key>) or a hash key (--hash-key <n>)");
        return KC_EXIT_USAGE;
    }
    if (o->key && !*o->key) {
        kc_err("-k: the partition key is empty");
        return KC_EXIT_USAGE;
    }
    kn_client_t *c = kc_client(o);
    kn_error_t *err = kn_error_new();
    int ec = KC_EXIT_OK;
    if (!c || !err) {
        ec = KC_EXIT_FAIL;
        goto out;
    }
    char hash[KN_HASH_KEY_STRLEN] = "", shard[256] = "";
    kn_err_t rc = kn_admin_shard_for_key(c, o->stream, o->key, o->hash_key, hash, shard,
                                         sizeof(shard), err);
    if (rc) {
        ec = fail("query stream", o->stream, rc, err);
        goto out;
    }
    if (o->json) {
        fputs("{\"stream\":", stdout);
        json_str_or_null(o->stream);
        fputs(",\"key\":", stdout);
        json_str_or_null(o->key);
        fputs(",\"hash_key\":", stdout);
        json_str_or_null(hash);
        fputs(",\"shard\":", stdout);
        json_str_or_null(shard);
        fputs("}\n", stdout);
    } else {
        printf("%s\t%s\n", shard, hash);
    }
out:
    kn_error_destroy(err);
    return ec;
}
