/*
 * Real signature checking against a private moto_server.
 *
 * moto skips authentication for the first INITIAL_NO_AUTH_ACTION_COUNT
 * service actions it handles (moto/core/authorization.py: a class-wide
 * request counter compared against the setting before each action) and
 * checks every later request's SigV4 signature and IAM permissions. So the
 * test starts its own moto_server (command from KN_TEST_MOTO_SERVER, else
 * "moto_server") on a free loopback port with the count set to 3, spends
 * exactly those three unauthenticated actions on IAM CreateUser,
 * CreateAccessKey and PutUserPolicy (query protocol; the dummy Authorization
 * header only tells moto which service is meant, it is never verified), and
 * then calls Kinesis through our client signed with the new key: that must
 * pass, and the same key with a wrong secret must fail with KN_ERR_AUTH and
 * the error name moto really sends (SignatureDoesNotMatch). The server is
 * killed by pid in the group teardown, also when a test fails.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <cmocka.h>

#include "http_sync.h"
#include "kinesis/consumer.h"
#include "kinesis_ops.h"
#include "test_new.h"
#include "testutil.h"

static pid_t moto_pid = -1;
static char moto_url[64];
static char key_id[128], secret[128];

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        perror("free_port");
        exit(1);
    }
    close(fd);
    return ntohs(a.sin_port);
}

static int post_iam(const char *body, kn__http_sync_resp_t *resp)
{
    const char *headers[] = {
        "Content-Type: application/x-www-form-urlencoded",
        "Authorization: AWS4-HMAC-SHA256 Credential=AKIDUNSIGNED/20260101/us-east-1/iam/aws4_request, "
        "SignedHeaders=host, Signature=0",
        NULL};
    kn__http_sync_req_t req = {"POST", moto_url, headers, body, strlen(body), 10000, NULL, false, 0};
    kn_error_t e = {0};
    memset(resp, 0, sizeof(*resp));
    if (kn__http_sync(&req, resp, &e) != KN_ERR_OK) {
        fprintf(stderr, "IAM request failed: %s\n", e.message);
        return -1;
    }
    if (resp->status != 200) {
        fprintf(stderr, "IAM request: HTTP %ld: %s\n", resp->status, resp->body.data ? resp->body.data : "");
        return -1;
    }
    return 0;
}

/* Copies the text of <tag>...</tag> from xml into out. */
static int xml_text(const char *xml, const char *tag, char *out, size_t size)
{
    char open[64], close_[64];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close_, sizeof(close_), "</%s>", tag);
    const char *a = xml ? strstr(xml, open) : NULL;
    const char *b = a ? strstr(a, close_) : NULL;
    if (!a || !b)
        return -1;
    a += strlen(open);
    snprintf(out, size, "%.*s", (int)(b - a), a);
    return 0;
}

static int start_and_provision(void)
{
    const char *cmd = getenv("KN_TEST_MOTO_SERVER");
    if (!cmd || !*cmd)
        cmd = "moto_server";
    int port = free_port();
    snprintf(moto_url, sizeof(moto_url), "http://127.0.0.1:%d", port);
    char shell[1024];
    snprintf(shell, sizeof(shell), "exec %s -H 127.0.0.1 -p %d", cmd, port);
    moto_pid = fork();
    if (moto_pid < 0)
        return -1;
    if (moto_pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        setenv("INITIAL_NO_AUTH_ACTION_COUNT", "3", 1);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execl("/bin/sh", "sh", "-c", shell, (char *)NULL);
        _exit(127);
    }

    /* Ready when /moto-api/ answers (not a service action: it does not count). */
    char ready_url[128];
    snprintf(ready_url, sizeof(ready_url), "%s/moto-api/", moto_url);
    int ready = 0;
    for (int i = 0; i < 600 && !ready; i++) {
        kn__http_sync_req_t req = {"GET", ready_url, NULL, NULL, 0, 2000, NULL, false, 0};
        kn__http_sync_resp_t resp = {0, KN_BUF_INIT};
        kn_error_t e = {0};
        if (kn__http_sync(&req, &resp, &e) == KN_ERR_OK && resp.status == 200)
            ready = 1;
        kn__http_sync_resp_free(&resp);
        if (!ready) {
            if (waitpid(moto_pid, NULL, WNOHANG) == moto_pid) {
                fprintf(stderr, "%s exited before it served (is moto[server] installed?)\n", cmd);
                moto_pid = -1;
                return -1;
            }
            usleep(100000);
        }
    }
    if (!ready) {
        fprintf(stderr, "%s did not answer on %s within 60 s\n", cmd, moto_url);
        return -1;
    }

    /* The three unauthenticated actions. */
    kn__http_sync_resp_t resp;
    if (post_iam("Action=CreateUser&UserName=kn-ops-auth&Version=2010-05-08", &resp) != 0)
        return -1;
    kn__http_sync_resp_free(&resp);
    if (post_iam("Action=CreateAccessKey&UserName=kn-ops-auth&Version=2010-05-08", &resp) != 0)
        return -1;
    int rc = xml_text(resp.body.data, "AccessKeyId", key_id, sizeof(key_id)) |
             xml_text(resp.body.data, "SecretAccessKey", secret, sizeof(secret));
    kn__http_sync_resp_free(&resp);
    if (rc != 0) {
        fprintf(stderr, "CreateAccessKey: no key in the response\n");
        return -1;
    }
    /* {"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kinesis:*","Resource":"*"}]} */
    if (post_iam("Action=PutUserPolicy&UserName=kn-ops-auth&PolicyName=kinesis-all&PolicyDocument="
                 "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow"
                 "%22%2C%22Action%22%3A%22kinesis%3A*%22%2C%22Resource%22%3A%22*%22%7D%5D%7D"
                 "&Version=2010-05-08",
                 &resp) != 0)
        return -1;
    kn__http_sync_resp_free(&resp);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (moto_pid > 0) {
        kill(-moto_pid, SIGTERM); /* its process group: sh exec'd into it, but be thorough */
        kn_test_stop(moto_pid);
        moto_pid = -1;
    }
    return 0;
}

/* A failed group setup gets no teardown from cmocka: stop the server here. */
static int group_setup(void **state)
{
    int rc = start_and_provision();
    if (rc != 0)
        group_teardown(state);
    return rc;
}

static kn_client_t *client_for(const char *id, const char *sec)
{
    kn_conf_t *conf = kn_conf_new();
    char err[512];
    assert_int_equal(kn_conf_set(conf, "kinesis.endpoint", moto_url, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "dynamodb.endpoint", moto_url, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.region", "us-east-1", err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.access.key.id", id, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.secret.access.key", sec, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.retry.max.attempts", "2", err, sizeof(err)), KN_ERR_OK);
    kn_client_t *c = kn_t_client_new(conf, err, sizeof(err));
    if (!c)
        fail_msg("kn_client_new: %s", err);
    kn_conf_destroy(conf);
    return c;
}

static void test_signed_with_iam_key_passes(void **state)
{
    (void)state;
    kn_client_t *c = client_for(key_id, secret);
    kn_error_t e = {0};
    char name[96];
    snprintf(name, sizeof(name), "knops-auth-%d-%ld", (int)getpid(), (long)time(NULL) % 100000);
    kn__stream_ref_t ref = {name, NULL};
    kn_err_t rc = kn__kinesis_create_stream(c, name, 1, &e);
    if (rc != KN_ERR_OK)
        fail_msg("CreateStream signed with the IAM key: %s: %s", kn_err2name(rc), e.message);
    rc = kn__kinesis_wait_active(c, &ref, 30000, 100, &e);
    if (rc != KN_ERR_OK)
        fail_msg("DescribeStreamSummary signed with the IAM key: %s: %s", kn_err2name(rc), e.message);
    kn__put_entry_t ent = {"signed", 6, "k", 1, NULL, 0};
    kn__put_result_t pr;
    assert_int_equal(kn__kinesis_put_records(c, &ref, &ent, 1, &pr, &e), KN_ERR_OK);
    assert_int_equal(pr.failed_count, 0);
    kn__put_result_free(&pr);
    assert_int_equal(kn__kinesis_delete_stream(c, &ref, false, &e), KN_ERR_OK);
    kn_client_destroy(c);
}

static void test_wrong_secret_fails_with_signature_error(void **state)
{
    (void)state;
    char wrong[160];
    snprintf(wrong, sizeof(wrong), "%sX", secret);
    kn_client_t *c = client_for(key_id, wrong);
    kn_error_t e = {0};
    kn__stream_names_t names = {0};
    kn_err_t rc = kn__kinesis_list_streams(c, 0, &names, &e);
    assert_int_equal(rc, KN_ERR_AUTH);
    assert_string_equal(kn_error_aws_type(&e), "SignatureDoesNotMatch");
    assert_int_equal(kn_error_http_status(&e), 403);
    assert_false(kn_error_is_retriable(&e));
    if (!strstr(e.message, "SignatureDoesNotMatch"))
        fail_msg("message does not name the error: %s", e.message);
    if (strstr(e.message, wrong) || strstr(e.message, secret))
        fail_msg("message carries the secret: %s", e.message);
    kn_client_destroy(c);
}

static void test_unknown_key_fails_with_invalid_token(void **state)
{
    (void)state;
    kn_client_t *c = client_for("AKIANOTAKEYOFMOTOXXX", secret);
    kn_error_t e = {0};
    kn__stream_names_t names = {0};
    assert_int_equal(kn__kinesis_list_streams(c, 0, &names, &e), KN_ERR_AUTH);
    assert_string_equal(kn_error_aws_type(&e), "InvalidClientTokenId");
    assert_int_equal(kn_error_http_status(&e), 403);
    if (!strstr(e.message, "InvalidClientTokenId"))
        fail_msg("message does not name the error: %s", e.message);
    kn_client_destroy(c);
}

static kn_err_t noop_process(void *app, void *state, const kn_batch_t *b, kn_checkpointer_t *cp)
{
    (void)app;
    (void)state;
    (void)b;
    (void)cp;
    return KN_ERR_OK;
}

/*
 * The key may use Kinesis but not DynamoDB: a consumer's start is refused
 * with KN_ERR_AUTH and a message naming the lease table and the error moto
 * sends, not a hang or a vague failure.
 */
static void test_consumer_without_table_permission_is_refused(void **state)
{
    (void)state;
    kn_client_t *c = client_for(key_id, secret);
    kn_error_t e = {0};
    char name[96];
    snprintf(name, sizeof(name), "knops-cons-%d-%ld", (int)getpid(), (long)time(NULL) % 100000);
    kn__stream_ref_t ref = {name, NULL};
    assert_int_equal(kn__kinesis_create_stream(c, name, 1, &e), KN_ERR_OK);
    assert_int_equal(kn__kinesis_wait_active(c, &ref, 30000, 100, &e), KN_ERR_OK);
    kn_conf_t *conf = kn_conf_new();
    char err[512];
    const char *kv[] = {"kinesis.endpoint", moto_url, "dynamodb.endpoint", moto_url, "aws.region", "us-east-1",
                        "aws.access.key.id", key_id, "aws.secret.access.key", secret,
                        "aws.retry.max.attempts", "2", "consumer.application.name", "kn-auth-app", NULL};
    for (int i = 0; kv[i]; i += 2)
        assert_int_equal(kn_conf_set(conf, kv[i], kv[i + 1], err, sizeof(err)), KN_ERR_OK);
    kn_processor_t p = KN_PROCESSOR_INIT;
    p.process_records = noop_process;
    kn_consumer_t *cons = kn_consumer_new_on(c, conf, name, &p, NULL, &e);
    kn_conf_destroy(conf);
    assert_non_null(cons);
    kn_err_t rc = kn_consumer_start(cons, &e);
    if (rc != KN_ERR_AUTH)
        fail_msg("start without DynamoDB permissions: %s: %s (expected KN_ERR_AUTH)", kn_err2name(rc),
                 e.message);
    if (!strstr(e.message, "kn-auth-app") || !strstr(e.message, "AccessDenied"))
        fail_msg("the message should name the table and the error: %s", e.message);
    if (strstr(e.message, secret))
        fail_msg("message carries the secret: %s", e.message);
    assert_int_equal(kn_consumer_destroy(cons), KN_ERR_OK);
    assert_int_equal(kn__kinesis_delete_stream(c, &ref, false, &e), KN_ERR_OK);
    kn_client_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signed_with_iam_key_passes),
        cmocka_unit_test(test_wrong_secret_fails_with_signature_error),
        cmocka_unit_test(test_unknown_key_fails_with_invalid_token),
        cmocka_unit_test(test_consumer_without_table_permission_is_refused),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
