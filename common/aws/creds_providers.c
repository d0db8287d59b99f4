/*
 * Credential providers that do not talk to STS: environment variables,
 * credential_process, SSO (cached token + portal GetRoleCredentials), the
 * container endpoint and EC2 instance metadata (IMDSv2).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "creds_int.h"
#include "http_sync.h"

extern char **environ;

#define KN__PROCESS_MAX_STDOUT (64u * 1024u)
#define KN__PROCESS_MAX_STDERR (4u * 1024u)
#define KN__PROCESS_DEFAULT_TIMEOUT_MS 60000
#define KN__ENDPOINT_MAX_BODY (64u * 1024u)
#define KN__IMDS_TIMEOUT_MS 1000
#define KN__SSO_TOKEN_MAX (256u * 1024u)


static void wipe_buf(kn_buf_t *b)
{
    if (b->data)
        memset(b->data, 0, b->cap);
    kn__buf_free(b);
}

/* ------------------------------------------------------------ JSON keys */

typedef struct json_creds_keys_s {
    const char *akid, *secret, *token, *expiration;
    bool token_required;
    bool expiration_ms; /* a number of milliseconds since the epoch (SSO) */
} json_creds_keys_t;

/* A string member without NUL characters (a \u0000 would cut a key short where it is used). */
static const char *json_str(json_object *o, const char *key)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    const char *s = json_object_get_string(v);
    if (strlen(s) != (size_t)json_object_get_string_len(v))
        return NULL;
    return s;
}

/* Credentials from a JSON object. what names the source in messages. */
static kn_err_t creds_from_json_obj(json_object *o, const json_creds_keys_t *k, const char *what,
                                    const char *source, kn__creds_t *out, kn_error_t *err)
{
    const char *akid = json_str(o, k->akid);
    const char *secret = json_str(o, k->secret);
    const char *token = json_str(o, k->token);
    time_t expiration = 0;
    if (!akid || !*akid || !secret || !*secret)
        return kn__error_set(err, KN_ERR_BAD_RESPONSE, "%s: response has no %s and %s strings",
                             what, k->akid, k->secret);
    if (k->token_required && (!token || !*token))
        return kn__error_set(err, KN_ERR_BAD_RESPONSE, "%s: response has no %s string", what,
                             k->token);
    json_object *ev;
    if (k->expiration && json_object_object_get_ex(o, k->expiration, &ev) &&
        !json_object_is_type(ev, json_type_null)) {
        if (k->expiration_ms) {
            if (!json_object_is_type(ev, json_type_int))
                return kn__error_set(err, KN_ERR_BAD_RESPONSE, "%s: %s is not a number", what,
                                     k->expiration);
            expiration = (time_t)(json_object_get_int64(ev) / 1000);
        } else {
            const char *es =
                json_object_is_type(ev, json_type_string) ? json_object_get_string(ev) : NULL;
            if (!es || kn__creds_parse_time(es, strlen(es), &expiration) != 0)
                return kn__error_set(err, KN_ERR_BAD_RESPONSE, "%s: %s is not an ISO 8601 time",
                                     what, k->expiration);
        }
    }
    if (kn__creds_fill(out, akid, strlen(akid), secret, strlen(secret), token,
                       token ? strlen(token) : 0, expiration, source) != 0)
        return kn__error_set(err, KN_ERR_NOMEM, "out of memory");
    return KN_ERR_OK;
}

/* Parses a bounded JSON text into an object (NULL with err set when it is not one). */
static json_object *parse_json_object(const char *text, size_t len, const char *what,
                                      kn_error_t *err)
{
    json_tokener *tk = json_tokener_new();
    json_object *o = NULL;
    if (!tk) {
        kn__error_set(err, KN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (len <= (size_t)0x7fffffff)
        o = json_tokener_parse_ex(tk, text, (int)len);
    if (!o || json_tokener_get_error(tk) != json_tokener_success ||
        !json_object_is_type(o, json_type_object)) {
        kn__error_set(err, KN_ERR_BAD_RESPONSE, "%s: not a JSON object", what);
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tk);
    return o;
}

kn_err_t kn__creds_parse_json(kn__creds_json_t shape, const char *text, size_t len, const char *what,
                              kn__creds_t *out, kn_error_t *err)
{
    static const json_creds_keys_t process = {"AccessKeyId", "SecretAccessKey", "SessionToken",
                                              "Expiration", false, false};
    static const json_creds_keys_t metadata = {"AccessKeyId", "SecretAccessKey", "Token",
                                               "Expiration", false, false};
    static const json_creds_keys_t sso = {"accessKeyId", "secretAccessKey", "sessionToken",
                                          "expiration", true, true};
    static const char *const sources[] = {"process", "container", "imds", "sso"};
    const json_creds_keys_t *keys = shape == KN__CJ_PROCESS ? &process
                                    : shape == KN__CJ_SSO   ? &sso
                                                            : &metadata;
    kn_err_t rc;
    json_object *o = parse_json_object(text ? text : "", text ? len : 0, what, err);
    if (!o)
        return err ? err->code : KN_ERR_BAD_RESPONSE;
    json_object *c = o, *v;
    if (shape == KN__CJ_PROCESS &&
        (!json_object_object_get_ex(o, "Version", &v) || !json_object_is_type(v, json_type_int) ||
         json_object_get_int64(v) != 1)) {
        rc = kn__error_set(err, KN_ERR_BAD_RESPONSE, "%s: output must have \"Version\": 1", what);
        goto out;
    }
    const char *code = shape == KN__CJ_IMDS ? json_str(o, "Code") : NULL;
    if (code && strcmp(code, "Success") != 0) {
        rc = kn__error_set(err, KN_ERR_CREDENTIALS, "%s: Code is %.64s", what, code);
        goto out;
    }
    if (shape == KN__CJ_SSO &&
        (!json_object_object_get_ex(o, "roleCredentials", &c) || !json_object_is_type(c, json_type_object))) {
        rc = kn__error_set(err, KN_ERR_BAD_RESPONSE, "%s: no roleCredentials object", what);
        goto out;
    }
    rc = creds_from_json_obj(c, keys, what, sources[shape], out, err);
out:
    json_object_put(o);
    return rc;
}

/* ---------------------------------------------------------- environment */

kn__cp_t kn__cp_env(kn__creds_ctx_t *ctx, kn__creds_t *out, kn_error_t *err)
{
    const char *akid = kn__creds_env("AWS_ACCESS_KEY_ID");
    const char *secret = kn__creds_env("AWS_SECRET_ACCESS_KEY");
    const char *token = kn__creds_env("AWS_SESSION_TOKEN");
    const char *exp = kn__creds_env("AWS_CREDENTIAL_EXPIRATION");
    time_t expiration = 0;
    if (!token)
        token = kn__creds_env("AWS_SECURITY_TOKEN");
    if (!akid) {
        kn__creds_why(ctx, "AWS_ACCESS_KEY_ID not set");
        return KN__CP_NONE;
    }
    if (!secret) {
        kn__error_set(err, KN_ERR_CREDENTIALS,
                      "environment: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
        return KN__CP_FAIL;
    }
    if (exp && kn__creds_parse_time(exp, strlen(exp), &expiration) != 0) {
        kn__error_set(err, KN_ERR_CREDENTIALS,
                      "environment: AWS_CREDENTIAL_EXPIRATION '%.64s' is not an ISO 8601 time",
                      exp);
        return KN__CP_FAIL;
    }
    if (kn__creds_fill(out, akid, strlen(akid), secret, strlen(secret), token,
                       token ? strlen(token) : 0, expiration, "env") != 0) {
        kn__error_set(err, KN_ERR_NOMEM, "out of memory");
        return KN__CP_FAIL;
    }
    return KN__CP_FOUND;
}

/* ---------------------------------------------------- credential_process */

typedef struct proc_result_s {
    kn_buf_t out;
    kn_buf_t errtxt;
    int status; /* waitpid status */
} proc_result_t;

static long elapsed_ms(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)(t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Longest wait between looks at the cancel flag while a command runs. */
#define KN__PROCESS_CANCEL_CHECK_MS 100

static bool cancelled(const atomic_int *cancel) { return cancel && atomic_load(cancel); }

/* Runs /bin/sh -c command with a deadline, collecting bounded stdout and stderr. */
static kn_err_t run_command(const char *command, long timeout_ms, const atomic_int *cancel,
                            proc_result_t *r, kn_error_t *err)
{
    kn_err_t rc = KN_ERR_OK;
    int outp[2] = {-1, -1}, errp[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int fa_ok = 0, attr_ok = 0;
    pid_t pid = -1;
    int killed = 0;

    if (pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0) {
        rc = kn__error_set(err, KN_ERR_IO, "cannot create pipes: %s", strerror(errno));
        goto out;
    }
    if (posix_spawn_file_actions_init(&fa) != 0) {
        rc = kn__error_set(err, KN_ERR_NOMEM, "out of memory");
        goto out;
    }
    fa_ok = 1;
    if (posix_spawnattr_init(&attr) != 0) {
        rc = kn__error_set(err, KN_ERR_NOMEM, "out of memory");
        goto out;
    }
    attr_ok = 1;
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
    posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
    /* Its own process group, so that a timeout can stop everything it started. */
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    char *const argv[] = {"/bin/sh", "-c", (char *)command, NULL};
    int se = posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, environ);
    if (se != 0) {
        pid = -1;
        rc = kn__error_set(err, KN_ERR_IO, "cannot start /bin/sh: %s", strerror(se));
        goto out;
    }
    close(outp[1]);
    close(errp[1]);
    outp[1] = errp[1] = -1;

    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int open_out = 1, open_err = 1;
    while (open_out || open_err) {
        long elapsed = elapsed_ms(&t0);
        if (elapsed >= timeout_ms) {
            rc = kn__error_set(err, KN_ERR_TIMEOUT, "command did not finish within %ld ms",
                               timeout_ms);
            goto kill_it;
        }
        if (cancelled(cancel)) {
            rc = kn__error_set(err, KN_ERR_DESTROYED, "command stopped: shutting down");
            goto kill_it;
        }
        long wait_ms = timeout_ms - elapsed;
        if (cancel && wait_ms > KN__PROCESS_CANCEL_CHECK_MS)
            wait_ms = KN__PROCESS_CANCEL_CHECK_MS;
        struct pollfd pf[2];
        int np = 0;
        if (open_out)
            pf[np++] = (struct pollfd){.fd = outp[0], .events = POLLIN};
        if (open_err)
            pf[np++] = (struct pollfd){.fd = errp[0], .events = POLLIN};
        int pr = poll(pf, (nfds_t)np, (int)wait_ms);
        if (pr < 0 && errno != EINTR) {
            rc = kn__error_set(err, KN_ERR_IO, "poll: %s", strerror(errno));
            goto kill_it;
        }
        for (int i = 0; i < np && pr > 0; i++) {
            if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char chunk[4096];
            ssize_t got = read(pf[i].fd, chunk, sizeof(chunk));
            if (got < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            int is_out = pf[i].fd == outp[0];
            if (got <= 0) {
                if (is_out)
                    open_out = 0;
                else
                    open_err = 0;
                continue;
            }
            if (is_out) {
                if (r->out.len + (size_t)got > KN__PROCESS_MAX_STDOUT) {
                    rc = kn__error_set(err, KN_ERR_TOO_LARGE,
                                       "command wrote more than %u bytes to stdout",
                                       KN__PROCESS_MAX_STDOUT);
                    goto kill_it;
                }
                if (kn__buf_append(&r->out, chunk, (size_t)got) != 0) {
                    rc = kn__error_set(err, KN_ERR_NOMEM, "out of memory");
                    goto kill_it;
                }
            } else if (r->errtxt.len < KN__PROCESS_MAX_STDERR) {
                size_t keep = KN__PROCESS_MAX_STDERR - r->errtxt.len;
                if (kn__buf_append(&r->errtxt, chunk, (size_t)got < keep ? (size_t)got : keep) !=
                    0) {
                    rc = kn__error_set(err, KN_ERR_NOMEM, "out of memory");
                    goto kill_it;
                }
            }
        }
    }
    /* Output closed: wait for the exit, still within the deadline. */
    for (;;) {
        pid_t w = waitpid(pid, &r->status, WNOHANG);
        if (w == pid) {
            pid = -1;
            break;
        }
        if (w < 0 && errno != EINTR) {
            r->status = 0; /* SIGCHLD ignored by the application: no status to read */
            pid = -1;
            break;
        }
        if (elapsed_ms(&t0) >= timeout_ms) {
            rc = kn__error_set(err, KN_ERR_TIMEOUT, "command did not exit within %ld ms",
                               timeout_ms);
            goto kill_it;
        }
        if (cancelled(cancel)) {
            rc = kn__error_set(err, KN_ERR_DESTROYED, "command stopped: shutting down");
            goto kill_it;
        }
        struct timespec nap = {0, 10 * 1000000};
        nanosleep(&nap, NULL);
    }
    goto out;
kill_it:
    killed = 1;
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
out:
    if (pid > 0 && killed) {
        while (waitpid(pid, &r->status, 0) < 0 && errno == EINTR)
            ;
    }
    for (int i = 0; i < 2; i++) {
        if (outp[i] >= 0)
            close(outp[i]);
        if (errp[i] >= 0)
            close(errp[i]);
    }
    if (fa_ok)
        posix_spawn_file_actions_destroy(&fa);
    if (attr_ok)
        posix_spawnattr_destroy(&attr);
    return rc;
}

kn__cp_t kn__cp_process(kn__creds_ctx_t *ctx, const char *profile, const char *command,
                        kn__creds_t *out, kn_error_t *err)
{
    kn__cp_t res = KN__CP_FAIL;
    proc_result_t r = {KN_BUF_INIT, KN_BUF_INIT, 0};
    long timeout_ms = ctx->opts && ctx->opts->process_timeout_ms > 0
                          ? ctx->opts->process_timeout_ms
                          : KN__PROCESS_DEFAULT_TIMEOUT_MS;

    if (run_command(command, timeout_ms, ctx->opts ? ctx->opts->cancel : NULL, &r, err) !=
        KN_ERR_OK) {
        kn__error_prefix(err, "credential_process of profile %s", profile);
        goto out;
    }
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0) {
        char line[256] = "";
        if (r.errtxt.len) {
            const char *s = r.errtxt.data;
            while (*s && isspace((unsigned char)*s))
                s++;
            size_t n = strcspn(s, "\r\n");
            snprintf(line, sizeof(line), "%.*s", (int)(n < sizeof(line) - 1 ? n : sizeof(line) - 1),
                     s);
        }
        char how[64];
        if (WIFSIGNALED(r.status))
            snprintf(how, sizeof(how), "was killed by signal %d", WTERMSIG(r.status));
        else
            snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(r.status));
        kn__error_set(err, KN_ERR_CREDENTIALS, "credential_process of profile %s: command %s%s%s",
                      profile, how, line[0] ? ": " : " (nothing on stderr)", line);
        goto out;
    }
    char what[160];
    snprintf(what, sizeof(what), "credential_process of profile %s", profile);
    if (kn__creds_parse_json(KN__CJ_PROCESS, r.out.data, r.out.len, what, out, err) != KN_ERR_OK)
        goto out;
    res = KN__CP_FOUND;
out:
    wipe_buf(&r.out);
    kn__buf_free(&r.errtxt);
    return res;
}

/* ------------------------------------------------------------ endpoints */

/* GET url with headers; the body of a 200 into out. Other statuses are errors. */
static kn_err_t http_get(kn__creds_ctx_t *ctx, const char *method, const char *url,
                         const char *const *headers, long timeout_ms, long *status, kn_buf_t *out,
                         kn_error_t *err)
{
    kn__http_sync_resp_t resp = {0, KN_BUF_INIT};
    kn__http_sync_req_t req = {
        .method = method,
        .url = url,
        .headers = headers,
        .timeout_ms = timeout_ms,
        .ca_bundle = kn__creds_ca_bundle(ctx),
        .tls_verify = ctx->opts ? ctx->opts->tls_verify : true,
        .max_body = KN__ENDPOINT_MAX_BODY,
    };
    kn_err_t rc = kn__http_sync_cancellable(&req, ctx->opts ? ctx->opts->cancel : NULL, &resp, err);
    *status = resp.status;
    if (rc == KN_ERR_OK) {
        kn__buf_free(out);
        *out = resp.body; /* ownership moves */
        resp.body = (kn_buf_t)KN_BUF_INIT;
    }
    kn__http_sync_resp_free(&resp);
    return rc;
}

/*
 * As botocore: https anywhere; plain http only to a loopback address or the
 * ECS/EKS agent addresses (an http URL elsewhere would send the token in
 * clear).
 */
static int host_allowed_for_container(const char *url)
{
    if (strncmp(url, "https://", 8) == 0)
        return 1;
    if (strncmp(url, "http://", 7) != 0)
        return 0;
    /* The host is what follows any user info ("user:pw@"), as curl reads it. */
    const char *h = url + 7;
    size_t alen = strcspn(h, "/?#");
    for (size_t i = alen; i > 0; i--) {
        if (h[i - 1] == '@') {
            h += i;
            break;
        }
    }
    size_t hl = h[0] == '[' ? strcspn(h, "]") + 1 : strcspn(h, ":/?#");
    if (hl > 64)
        return 0;
    char host[65];
    memcpy(host, h, hl);
    host[hl] = '\0';
    static const char *const ok[] = {"localhost", "[::1]", "169.254.170.2", "169.254.170.23",
                                     "[fd00:ec2::23]"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strcasecmp(host, ok[i]) == 0)
            return 1;
    if (strncmp(host, "127.", 4) != 0)
        return 0;
    /* 127.0.0.0/8, written as a dotted IPv4 address (not a name such as 127.0.0.1.example) */
    int dots = 0;
    for (const char *p = host; *p; p++) {
        if (*p == '.')
            dots++;
        else if (!isdigit((unsigned char)*p))
            return 0;
    }
    return dots == 3;
}

kn__cp_t kn__cp_container(kn__creds_ctx_t *ctx, kn__creds_t *out, kn_error_t *err)
{
    kn__cp_t res = KN__CP_FAIL;
    const char *rel = kn__creds_env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = kn__creds_env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    const char *token_file = kn__creds_env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    const char *token_env = kn__creds_env("AWS_CONTAINER_AUTHORIZATION_TOKEN");
    kn_buf_t url = KN_BUF_INIT, token = KN_BUF_INIT, auth = KN_BUF_INIT, body = KN_BUF_INIT;
    FILE *f = NULL;

    if (!rel && !full) {
        kn__creds_why(ctx, "not configured");
        return KN__CP_NONE;
    }
    if (rel ? kn__buf_printf(&url, "http://169.254.170.2%s%s", rel[0] == '/' ? "" : "/", rel)
            : kn__buf_puts(&url, full)) {
        kn__error_set(err, KN_ERR_NOMEM, "out of memory");
        goto out;
    }
    char where[512];
    kn__url_for_message(url.data, where, sizeof(where));
    if (!rel && !host_allowed_for_container(full)) {
        kn__error_set(err, KN_ERR_CREDENTIALS,
                      "container: AWS_CONTAINER_CREDENTIALS_FULL_URI %s must be https or a "
                      "loopback / ECS / EKS address",
                      where);
        goto out;
    }
    if (token_file) {
        f = fopen(token_file, "rb");
        if (!f) {
            kn__error_set(err, KN_ERR_CREDENTIALS,
                          "container: cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE %s: %s",
                          token_file, strerror(errno));
            goto out;
        }
        char chunk[4096];
        size_t got;
        while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
            if (token.len + got > 16384 || kn__buf_append(&token, chunk, got) != 0) {
                kn__error_set(err, KN_ERR_CREDENTIALS,
                              "container: authorization token file %s is too large", token_file);
                goto out;
            }
        }
        /* A trailing newline from an editor or `echo` is not part of the token. */
        while (token.len &&
               (token.data[token.len - 1] == '\n' || token.data[token.len - 1] == '\r'))
            token.data[--token.len] = '\0';
    } else if (token_env && kn__buf_puts(&token, token_env) != 0) {
        kn__error_set(err, KN_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (token.len && (strchr(token.data, '\r') || strchr(token.data, '\n'))) {
        kn__error_set(err, KN_ERR_CREDENTIALS,
                      "container: the authorization token contains a line break");
        goto out;
    }
    if (token.len && kn__buf_printf(&auth, "Authorization: %s", token.data) != 0) {
        kn__error_set(err, KN_ERR_NOMEM, "out of memory");
        goto out;
    }
    const char *headers[] = {"Accept: application/json", auth.len ? auth.data : NULL, NULL};
    long status = 0;
    if (http_get(ctx, "GET", url.data, headers, kn__creds_timeout_ms(ctx), &status, &body, err) !=
        KN_ERR_OK) {
        kn__error_prefix(err, "container");
        goto out;
    }
    if (status != 200) {
        kn__error_set(err, status == 401 || status == 403 ? KN_ERR_AUTH : KN_ERR_CREDENTIALS,
                      "container: GET %s returned HTTP %ld", where, status);
        if (err)
            err->http_status = (int)status;
        goto out;
    }
    if (kn__creds_parse_json(KN__CJ_CONTAINER, body.data, body.len, "container", out, err) != KN_ERR_OK)
        goto out;
    res = KN__CP_FOUND;
out:
    if (f)
        fclose(f);
    kn__buf_free(&url);
    wipe_buf(&token);
    wipe_buf(&auth);
    wipe_buf(&body);
    return res;
}

/* ----------------------------------------------------------------- IMDS */

kn__cp_t kn__cp_imds(kn__creds_ctx_t *ctx, kn__creds_t *out, kn_error_t *err)
{
    kn__cp_t res = KN__CP_NONE;
    const char *disabled = kn__creds_env("AWS_EC2_METADATA_DISABLED");
    const char *base_env = kn__creds_env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    kn_buf_t base = KN_BUF_INIT, url = KN_BUF_INIT, token = KN_BUF_INIT, th = KN_BUF_INIT;
    kn_buf_t body = KN_BUF_INIT;
    kn_error_t e;
    long status = 0;

    kn__error_clear(&e);
    if (disabled && strcasecmp(disabled, "true") == 0) {
        kn__creds_why(ctx, "disabled by AWS_EC2_METADATA_DISABLED");
        return KN__CP_NONE;
    }
    if (kn__buf_puts(&base, base_env ? base_env : "http://169.254.169.254") != 0)
        goto nomem;
    while (base.len && base.data[base.len - 1] == '/')
        base.data[--base.len] = '\0';

    /* IMDSv2 session token. */
    if (kn__buf_printf(&url, "%s/latest/api/token", base.data) != 0)
        goto nomem;
    const char *put_headers[] = {"X-aws-ec2-metadata-token-ttl-seconds: 21600", NULL};
    if (http_get(ctx, "PUT", url.data, put_headers, KN__IMDS_TIMEOUT_MS, &status, &token, &e) !=
        KN_ERR_OK) {
        const char *detail = strstr(e.message, ": ");
        kn__creds_why(ctx, "no response from %s/ (%.160s)", base.data, detail ? detail + 2 : e.message);
        goto out;
    }
    if (status != 200 || token.len == 0 || token.len > 4096) {
        kn__creds_why(ctx, "%s/latest/api/token answered HTTP %ld", base.data, status);
        goto out;
    }
    if (memchr(token.data, '\n', token.len) || memchr(token.data, '\r', token.len)) {
        kn__creds_why(ctx, "%s/latest/api/token returned a malformed token", base.data);
        goto out;
    }
    if (kn__buf_printf(&th, "X-aws-ec2-metadata-token: %s", token.data) != 0)
        goto nomem;
    const char *get_headers[] = {th.data, NULL};

    /* Role name. */
    kn__buf_reset(&url);
    if (kn__buf_printf(&url, "%s/latest/meta-data/iam/security-credentials/", base.data) != 0)
        goto nomem;
    if (http_get(ctx, "GET", url.data, get_headers, KN__IMDS_TIMEOUT_MS, &status, &body, &e) !=
        KN_ERR_OK) {
        kn__creds_why(ctx, "%.300s", e.message);
        goto out;
    }
    if (status == 404) {
        kn__creds_why(ctx, "no IAM role attached to the instance (%s)", base.data);
        goto out;
    }
    if (status != 200) {
        kn__creds_why(ctx, "GET %s answered HTTP %ld", url.data, status);
        goto out;
    }
    size_t rl = strcspn(body.data, "\r\n");
    while (rl && isspace((unsigned char)body.data[rl - 1]))
        rl--;
    if (rl == 0 || rl > 128) {
        kn__creds_why(ctx, "%s returned no role name", url.data);
        goto out;
    }
    for (size_t i = 0; i < rl; i++) {
        unsigned char c = (unsigned char)body.data[i];
        if (!isalnum(c) && !strchr("+=,.@_-", c)) {
            kn__creds_why(ctx, "%s returned a malformed role name", url.data);
            goto out;
        }
    }
    char role[129];
    memcpy(role, body.data, rl);
    role[rl] = '\0';

    /* The role's credentials. */
    kn__buf_reset(&url);
    if (kn__buf_printf(&url, "%s/latest/meta-data/iam/security-credentials/%s", base.data, role) !=
        0)
        goto nomem;
    if (http_get(ctx, "GET", url.data, get_headers, KN__IMDS_TIMEOUT_MS, &status, &body, &e) !=
        KN_ERR_OK) {
        kn__creds_why(ctx, "%.300s", e.message);
        goto out;
    }
    if (status != 200) {
        kn__creds_why(ctx, "GET %s answered HTTP %ld", url.data, status);
        goto out;
    }
    if (kn__creds_parse_json(KN__CJ_IMDS, body.data, body.len, url.data, out, &e) != KN_ERR_OK) {
        kn__creds_why(ctx, "%.300s", e.message);
        goto out;
    }
    res = KN__CP_FOUND;
    goto out;
nomem:
    kn__error_set(err, KN_ERR_NOMEM, "out of memory");
    res = KN__CP_FAIL;
out:
    kn__buf_free(&base);
    kn__buf_free(&url);
    wipe_buf(&token);
    wipe_buf(&th);
    wipe_buf(&body);
    return res;
}

/* ------------------------------------------------------------------ SSO */

static void sha1_hex(const char *s, char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(s, strlen(s), md, &n, EVP_sha1(), NULL);
    for (unsigned int i = 0; i < n && i < 20; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    out[40] = '\0';
}

static char *sso_portal_url(const kn__creds_ctx_t *ctx, const char *sso_region)
{
    const char *v = kn__creds_env("AWS_ENDPOINT_URL_SSO");
    if (!v)
        v = kn__creds_env("AWS_ENDPOINT_URL");
    if (!v)
        v = kn__creds_profile_endpoint_url(ctx);
    kn_buf_t b = KN_BUF_INIT;
    if (v ? kn__buf_puts(&b, v)
          : kn__buf_printf(&b, "https://portal.sso.%s.amazonaws.com%s", sso_region,
                           strncmp(sso_region, "cn-", 3) == 0 ? ".cn" : "")) {
        kn__buf_free(&b);
        return NULL;
    }
    while (b.len && b.data[b.len - 1] == '/')
        b.data[--b.len] = '\0';
    return kn__buf_steal(&b);
}

kn__cp_t kn__cp_sso(kn__creds_ctx_t *ctx, const char *profile, kn__creds_t *out, kn_error_t *err)
{
    kn__cp_t res = KN__CP_FAIL;
    const kn__profiles_t *p = ctx->profiles;
    const char *account = kn__profile_get(p, profile, "sso_account_id");
    const char *role = kn__profile_get(p, profile, "sso_role_name");
    const char *session = kn__profile_get(p, profile, "sso_session");
    const char *start_url = kn__profile_get(p, profile, "sso_start_url");
    const char *sso_region = kn__profile_get(p, profile, "sso_region");
    char *cache_path = NULL, *portal = NULL;
    kn_buf_t cache = KN_BUF_INIT, text = KN_BUF_INIT, url = KN_BUF_INIT, hdr = KN_BUF_INIT;
    kn_buf_t body = KN_BUF_INIT;
    json_object *tok = NULL;
    FILE *f = NULL;

    if (!account && !role) {
        kn__creds_why(ctx, "no SSO configuration");
        return KN__CP_NONE;
    }
    if (session) {
        if (!kn__profile_sso_session_get(p, session, "sso_start_url") &&
            !kn__profile_sso_session_get(p, session, "sso_region")) {
            kn__error_set(err, KN_ERR_CREDENTIALS,
                          "profile %s: sso_session '%s' has no [sso-session %s] section with "
                          "sso_start_url and sso_region in %s",
                          profile, session, session, kn__profiles_path(p, KN__PROFILE_CONFIG_FILE));
            goto out;
        }
        const char *s_url = kn__profile_sso_session_get(p, session, "sso_start_url");
        const char *s_region = kn__profile_sso_session_get(p, session, "sso_region");
        if ((start_url && s_url && strcmp(start_url, s_url) != 0) ||
            (sso_region && s_region && strcmp(sso_region, s_region) != 0)) {
            kn__error_set(err, KN_ERR_CREDENTIALS,
                          "profile %s: sso_start_url/sso_region differ between the profile and "
                          "[sso-session %s]",
                          profile, session);
            goto out;
        }
        if (s_url)
            start_url = s_url;
        if (s_region)
            sso_region = s_region;
    }
    const char *missing = !account      ? "sso_account_id"
                          : !role       ? "sso_role_name"
                          : !start_url  ? "sso_start_url"
                          : !sso_region ? "sso_region"
                                        : NULL;
    if (missing) {
        kn__error_set(err, KN_ERR_CREDENTIALS, "profile %s is configured for SSO but has no %s",
                      profile, missing);
        goto out;
    }

    /* The token that `aws sso login` cached. */
    char hex[41];
    sha1_hex(session ? session : start_url, hex);
    if (kn__buf_printf(&cache, "~/.aws/sso/cache/%s.json", hex) != 0 ||
        !(cache_path = kn__path_expand_home(cache.data)))
        goto nomem;
    f = fopen(cache_path, "rb");
    if (!f) {
        kn__error_set(err, KN_ERR_CREDENTIALS,
                      "profile %s: no cached SSO token for %s %s (%s: %s); run `aws sso login%s%s`",
                      profile, session ? "sso-session" : "start URL", session ? session : start_url,
                      cache_path, strerror(errno), strcmp(profile, "default") ? " --profile " : "",
                      strcmp(profile, "default") ? profile : "");
        goto out;
    }
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (text.len + got > KN__SSO_TOKEN_MAX) {
            kn__error_set(err, KN_ERR_CREDENTIALS, "SSO token cache %s is too large", cache_path);
            goto out;
        }
        if (kn__buf_append(&text, chunk, got) != 0)
            goto nomem;
    }
    tok = parse_json_object(text.data ? text.data : "", text.len, cache_path, err);
    if (!tok)
        goto out;
    const char *access_token = json_str(tok, "accessToken");
    const char *expires_at = json_str(tok, "expiresAt");
    time_t texp = 0;
    if (!access_token || !*access_token || !expires_at ||
        kn__creds_parse_time(expires_at, strlen(expires_at), &texp) != 0) {
        kn__error_set(err, KN_ERR_CREDENTIALS,
                      "SSO token cache %s has no valid accessToken and expiresAt", cache_path);
        goto out;
    }
    if (texp <= time(NULL)) {
        kn__error_set(err, KN_ERR_EXPIRED_TOKEN,
                      "profile %s: the cached SSO token expired at %s; run `aws sso login%s%s`",
                      profile, expires_at, strcmp(profile, "default") ? " --profile " : "",
                      strcmp(profile, "default") ? profile : "");
        goto out;
    }
    if (strchr(access_token, '\r') || strchr(access_token, '\n')) {
        kn__error_set(err, KN_ERR_CREDENTIALS, "SSO token cache %s: malformed accessToken",
                      cache_path);
        goto out;
    }
    if (kn__buf_printf(&hdr, "x-amz-sso_bearer_token: %s", access_token) != 0)
        goto nomem;
    if (ctx->opts && ctx->opts->log)
        kn__logger_add_secret(ctx->opts->log, access_token);

    /* GetRoleCredentials. */
    portal = sso_portal_url(ctx, sso_region);
    if (!portal || kn__buf_printf(&url, "%s/federation/credentials?account_id=", portal) != 0 ||
        kn__buf_put_pct(&url, account) != 0 || kn__buf_puts(&url, "&role_name=") != 0 ||
        kn__buf_put_pct(&url, role) != 0)
        goto nomem;
    const char *headers[] = {hdr.data, "Accept: application/json", NULL};
    long status = 0;
    if (http_get(ctx, "GET", url.data, headers, kn__creds_timeout_ms(ctx), &status, &body, err) !=
        KN_ERR_OK) {
        kn__error_prefix(err, "SSO GetRoleCredentials for profile %s", profile);
        goto out;
    }
    if (status != 200) {
        kn__error_set(err, status == 401 || status == 403 ? KN_ERR_AUTH : KN_ERR_SERVICE,
                      "SSO GetRoleCredentials for profile %s (account %s, role %s): HTTP %ld%s",
                      profile, account, role, status,
                      status == 401 || status == 403
                          ? ": the SSO token was rejected; run `aws sso login`"
                          : "");
        if (err) {
            err->http_status = (int)status;
            err->retriable = status >= 500 || status == 429;
        }
        goto out;
    }
    if (kn__creds_parse_json(KN__CJ_SSO, body.data, body.len, "SSO GetRoleCredentials", out, err) !=
        KN_ERR_OK)
        goto out;
    res = KN__CP_FOUND;
    goto out;
nomem:
    kn__error_set(err, KN_ERR_NOMEM, "out of memory");
out:
    if (f)
        fclose(f);
    json_object_put(tok);
    free(cache_path);
    free(portal);
    kn__buf_free(&cache);
    wipe_buf(&text);
    kn__buf_free(&url);
    wipe_buf(&hdr);
    wipe_buf(&body);
    return res;
}
