/*
 * kn-quickstart: the main job of the common core, end to end, against
 * whatever endpoints the environment names (the local servers in
 * tools/quickstart.sh, or AWS):
 *   1. create a stream and wait until it is ACTIVE,
 *   2. put records with PutRecords (random partition keys, so they spread
 *      over the shards),
 *   3. list the shards and read every shard back from TRIM_HORIZON with
 *      GetShardIterator + GetRecords, checking each record byte for byte,
 *   4. write and read back a checkpoint-like item in a DynamoDB table,
 *   5. delete what it created (unless --keep).
 * It exits non-zero with the library's error message when any step fails.
 *
 * This links the internal core directly. tools/quickstart.sh runs the stream
 * steps with kncat (tools/quickstart/demo.sh) and then this program, for the
 * core's own round trip and the DynamoDB lease item that kncat cannot show
 * until consumer groups (-G) exist.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client_int.h"
#include "dynamodb.h"
#include "kinesis_ops.h"

static int die(const char *step, const kn_error_t *err)
{
    fprintf(stderr, "kn-quickstart: %s failed: %s (%s)\n", step, err->message, kn_err2name(err->code));
    return 1;
}

static void log_to_stderr(void *opaque, kn_log_level_t level, const char *ctx, const char *msg)
{
    (void)opaque;
    fprintf(stderr, "[%d %s] %s\n", (int)level, ctx, msg);
}

static void usage(void)
{
    fprintf(stderr, "usage: kn-quickstart [--stream NAME] [--shards N] [--records N] [--table NAME] [--keep]\n"
                    "                     [-X property=value]...\n"
                    "Endpoints, region and credentials come from the environment (AWS_ENDPOINT_URL_KINESIS,\n"
                    "AWS_ENDPOINT_URL_DYNAMODB, AWS_REGION, the credential chain) or -X properties.\n");
}

int main(int argc, char **argv)
{
    char stream[128], table[128], errstr[512];
    int shards = 2, nrec = 200, keep = 0, rc = 1;
    snprintf(stream, sizeof(stream), "kn-quickstart-%d", (int)getpid());
    snprintf(table, sizeof(table), "kn-quickstart-leases-%d", (int)getpid());
    kn_conf_t *conf = kn_conf_new();
    static const struct option opts[] = {{"stream", 1, 0, 's'}, {"shards", 1, 0, 'n'}, {"records", 1, 0, 'r'},
                                         {"table", 1, 0, 't'},  {"keep", 0, 0, 'k'},   {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "X:h", opts, NULL)) != -1) {
        switch (ch) {
        case 's': snprintf(stream, sizeof(stream), "%s", optarg); break;
        case 't': snprintf(table, sizeof(table), "%s", optarg); break;
        case 'n': shards = atoi(optarg); break;
        case 'r': nrec = atoi(optarg); break;
        case 'k': keep = 1; break;
        case 'X': {
            char *eq = strchr(optarg, '=');
            if (!eq) {
                fprintf(stderr, "kn-quickstart: -X needs property=value\n");
                return 2;
            }
            *eq = '\0';
            if (kn_conf_set(conf, optarg, eq + 1, errstr, sizeof(errstr)) != KN_ERR_OK) {
                fprintf(stderr, "kn-quickstart: %s\n", errstr);
                return 2;
            }
            break;
        }
        default: usage(); return ch == 'h' ? 0 : 2;
        }
    }
    if (shards < 1 || nrec < 1 || nrec > 100000) {
        usage();
        return 2;
    }
    kn_conf_set_log_cb(conf, log_to_stderr, NULL);
    kn_error_t cerr = {0};
    kn_client_t *c = kn_client_new(conf, &cerr);
    kn_conf_destroy(conf);
    if (!c) {
        fprintf(stderr, "kn-quickstart: %s\n", cerr.message);
        return 1;
    }
    printf("kinesis  %s\ndynamodb %s\nregion   %s\n", c->endpoint[KN__SVC_KINESIS], c->endpoint[KN__SVC_DYNAMODB],
           c->region);

    kn_error_t err;
    kn__error_clear(&err);
    kn__stream_ref_t ref = {.name = stream};
    kn__shard_list_t list = {0};
    kn__ddb_item_t key, item, got;
    kn__ddb_item_init(&key);
    kn__ddb_item_init(&item);
    kn__ddb_item_init(&got);
    int created = 0, table_created = 0;

    /* 1. stream */
    if (kn__kinesis_create_stream(c, stream, shards, &err) != KN_ERR_OK) {
        rc = die("CreateStream", &err);
        goto out;
    }
    created = 1;
    if (kn__kinesis_wait_active(c, &ref, 60000, 200, &err) != KN_ERR_OK) {
        rc = die("waiting for the stream", &err);
        goto out;
    }
    printf("stream   %s created with %d shards\n", stream, shards);

    /* 2. put, in batches of up to 500 */
    srand((unsigned)time(NULL));
    char (*keys)[24] = calloc((size_t)nrec, sizeof(*keys));
    char (*data)[64] = calloc((size_t)nrec, sizeof(*data));
    kn__put_entry_t *entries = calloc((size_t)nrec, sizeof(*entries));
    if (!keys || !data || !entries) {
        fprintf(stderr, "kn-quickstart: out of memory\n");
        free(keys), free(data), free(entries);
        goto out;
    }
    for (int i = 0; i < nrec; i++) {
        snprintf(keys[i], sizeof(keys[i]), "key-%d", rand());
        snprintf(data[i], sizeof(data[i]), "record %d of kn-quickstart", i);
        entries[i] = (kn__put_entry_t){data[i], strlen(data[i]), keys[i], strlen(keys[i]), NULL, 0};
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int put_ok = 0;
    for (int off = 0; off < nrec; off += 500) {
        size_t n = (size_t)(nrec - off < 500 ? nrec - off : 500);
        kn__put_result_t res = {0};
        if (kn__kinesis_put_records(c, &ref, entries + off, n, &res, &err) != KN_ERR_OK) {
            rc = die("PutRecords", &err);
            free(keys), free(data), free(entries);
            goto out;
        }
        for (size_t i = 0; i < res.count; i++)
            put_ok += res.entries[i].sequence_number != NULL;
        kn__put_result_free(&res);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("put      %d of %d records in %.1f ms\n", put_ok, nrec,
           (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);

    /* 3. read every shard back */
    if (kn__kinesis_list_shards(c, &ref, NULL, &list, &err) != KN_ERR_OK) {
        rc = die("ListShards", &err);
        free(keys), free(data), free(entries);
        goto out;
    }
    int *seen = calloc((size_t)nrec, sizeof(int));
    int read = 0, mismatched = 0;
    for (size_t s = 0; seen && s < list.count; s++) {
        char *it = NULL;
        kn__iterator_pos_t pos = {.type = KN__IT_TRIM_HORIZON};
        if (kn__kinesis_get_shard_iterator(c, &ref, list.shards[s].shard_id, &pos, &it, &err) != KN_ERR_OK) {
            rc = die("GetShardIterator", &err);
            break;
        }
        int shard_count = 0;
        for (int empty = 0; it && empty < 2;) {
            kn__get_records_result_t gr = {0};
            if (kn__kinesis_get_records(c, NULL, it, 10000, &gr, &err) != KN_ERR_OK) {
                rc = die("GetRecords", &err);
                free(it);
                it = NULL;
                break;
            }
            empty = gr.count == 0 ? empty + 1 : 0;
            for (size_t r = 0; r < gr.count; r++) {
                int idx = -1;
                if (sscanf((const char *)gr.records[r].data, "record %d of", &idx) == 1 && idx >= 0 && idx < nrec &&
                    gr.records[r].data_len == strlen(data[idx]) &&
                    memcmp(gr.records[r].data, data[idx], gr.records[r].data_len) == 0 &&
                    gr.records[r].partition_key_len == strlen(keys[idx]) &&
                    memcmp(gr.records[r].partition_key, keys[idx], gr.records[r].partition_key_len) == 0)
                    seen[idx]++;
                else
                    mismatched++;
            }
            shard_count += (int)gr.count;
            free(it);
            it = gr.next_iterator;
            gr.next_iterator = NULL;
            kn__get_records_result_free(&gr);
        }
        free(it);
        read += shard_count;
        printf("read     %-24s %d records\n", list.shards[s].shard_id, shard_count);
    }
    int exact = 0;
    for (int i = 0; seen && i < nrec; i++)
        exact += seen[i] == 1;
    free(seen);
    free(keys), free(data), free(entries);
    printf("verified %d of %d records read back byte for byte (%d read, %d unexpected)\n", exact, nrec, read,
           mismatched);
    if (exact != nrec || mismatched) {
        fprintf(stderr, "kn-quickstart: records missing or altered\n");
        goto out;
    }

    /* 4. a checkpoint-like item in DynamoDB */
    if (kn__ddb_create_table(c, table, "leaseKey", &err) != KN_ERR_OK ||
        kn__ddb_wait_table_active(c, table, 60000, 200, &err) != KN_ERR_OK) {
        rc = die("CreateTable", &err);
        goto out;
    }
    table_created = 1;
    const char *last_seq = "0";
    if (kn__ddb_item_set_s(&key, "leaseKey", list.shards[0].shard_id, &err) != KN_ERR_OK ||
        kn__ddb_item_copy(&item, &key, &err) != KN_ERR_OK ||
        kn__ddb_item_set_s(&item, "checkpoint", last_seq, &err) != KN_ERR_OK ||
        kn__ddb_item_set_int64(&item, "leaseCounter", 1, &err) != KN_ERR_OK) {
        rc = die("building the lease item", &err);
        goto out;
    }
    kn__ddb_cond_t cond = {.expression = "attribute_not_exists(leaseKey)"};
    bool found = false;
    int64_t counter = 0;
    if (kn__ddb_put_item(c, table, &item, &cond, &err) != KN_ERR_OK ||
        kn__ddb_get_item(c, table, &key, true, &got, &found, &err) != KN_ERR_OK ||
        kn__ddb_item_get_int64(&got, "leaseCounter", &counter, &err) != KN_ERR_OK) {
        rc = die("lease item round trip", &err);
        goto out;
    }
    /* The same conditional put again must be refused. */
    kn_err_t again = kn__ddb_put_item(c, table, &item, &cond, &err);
    printf("lease    table %s: item %s written and read back (leaseCounter %lld); second conditional put: %s\n",
           table, list.shards[0].shard_id, (long long)counter, kn_err2name(again));
    if (!found || counter != 1 || again != KN_ERR_CONDITION_FAILED) {
        fprintf(stderr, "kn-quickstart: the lease item round trip did not behave as expected\n");
        goto out;
    }
    rc = 0;

out:
    kn__error_clear(&err);
    if (!keep && table_created && kn__ddb_delete_table(c, table, &err) != KN_ERR_OK)
        fprintf(stderr, "kn-quickstart: DeleteTable: %s\n", err.message);
    if (!keep && created && kn__kinesis_delete_stream(c, &ref, false, &err) != KN_ERR_OK)
        fprintf(stderr, "kn-quickstart: DeleteStream: %s\n", err.message);
    kn__ddb_item_clear(&key);
    kn__ddb_item_clear(&item);
    kn__ddb_item_clear(&got);
    kn__shard_list_free(&list);
    kn_client_destroy(c);
    printf("%s\n", rc == 0 ? "quickstart OK" : "quickstart FAILED");
    return rc;
}
