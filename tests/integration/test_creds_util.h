/*
 * Helpers for the credential tests (header-only): a scrubbed environment
 * with a temporary HOME, files under it, a closed loopback port, and the
 * local credential endpoint server (tests/servers/cred_endpoints.py).
 */
#ifndef KN_TEST_CREDS_UTIL_H
#define KN_TEST_CREDS_UTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static char kn_t_home[256];

/* Unsets every AWS_* variable, points HOME at a fresh temporary directory and turns IMDS off. */
static inline void kn_t_scrub_env(void)
{
    for (;;) {
        char name[256] = "";
        for (char **e = environ; *e; e++) {
            if (strncmp(*e, "AWS_", 4) == 0) {
                size_t n = strcspn(*e, "=");
                if (n < sizeof(name)) {
                    memcpy(name, *e, n);
                    name[n] = '\0';
                    break;
                }
            }
        }
        if (!name[0])
            break;
        unsetenv(name);
    }
    snprintf(kn_t_home, sizeof(kn_t_home), "/tmp/kn-creds-test-%d-XXXXXX", (int)getpid());
    if (!mkdtemp(kn_t_home)) {
        perror("mkdtemp");
        exit(1);
    }
    setenv("HOME", kn_t_home, 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
}

static int kn_t_rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void kn_t_cleanup_home(void)
{
    if (kn_t_home[0])
        nftw(kn_t_home, kn_t_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    kn_t_home[0] = '\0';
}

/* Writes HOME/rel (creating directories); returns the full path in a static buffer. */
static inline const char *kn_t_write(const char *rel, const char *content, int mode)
{
    static char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", kn_t_home, rel);
    for (char *s = path + strlen(kn_t_home) + 1; *s; s++) {
        if (*s == '/') {
            *s = '\0';
            mkdir(path, 0700);
            *s = '/';
        }
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(content, f);
    fclose(f);
    if (mode)
        chmod(path, (mode_t)mode);
    return path;
}

/* A loopback port that refuses connections: bound, never listening. Keep fd open while used. */
static inline int kn_t_closed_port(int *fd_out)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        perror("closed port");
        exit(1);
    }
    *fd_out = fd;
    return ntohs(a.sin_port);
}

typedef struct kn_t_server_s {
    pid_t pid;
    int port;
    char url[64];
} kn_t_server_t;

/* Starts cred_endpoints.py with extra arguments (NULL-terminated); exits on failure. */
static inline void kn_t_server_start(kn_t_server_t *s, const char *const *args)
{
    const char *root = getenv("KN_SOURCE_ROOT");
    char script[PATH_MAX];
    snprintf(script, sizeof(script), "%s/tests/servers/cred_endpoints.py", root ? root : ".");
    int p[2];
    if (pipe(p) != 0) {
        perror("pipe");
        exit(1);
    }
    const char *argv[32];
    int n = 0;
    argv[n++] = "python3";
    argv[n++] = script;
    for (; args && *args && n < 30; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execvp("python3", (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    char line[32] = "";
    size_t got = 0;
    while (got < sizeof(line) - 1) {
        ssize_t r = read(p[0], line + got, 1);
        if (r <= 0 || line[got] == '\n')
            break;
        got++;
    }
    line[got] = '\0';
    close(p[0]);
    s->pid = pid;
    s->port = atoi(line);
    if (s->port <= 0) {
        fprintf(stderr, "cred_endpoints.py did not start (read '%s')\n", line);
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        exit(1);
    }
    snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d", s->port);
}

static inline void kn_t_server_stop(kn_t_server_t *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = 0;
}

/* GET url into buf with curl's easy API (a plain client, independent of the code under test). */
#include <curl/curl.h>
static size_t kn_t_sink(char *p, size_t sz, size_t n, void *ud)
{
    char *buf = ud;
    size_t have = strlen(buf), add = sz * n;
    if (have + add >= 65536)
        add = 65535 - have;
    memcpy(buf + have, p, add);
    buf[have + add] = '\0';
    return sz * n;
}
static inline long kn_t_http_get(const char *url, char *buf /* 65536 bytes */)
{
    buf[0] = '\0';
    CURL *h = curl_easy_init();
    long status = 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, kn_t_sink);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, buf);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    return status;
}

#include "creds.h"

/* Runs the credential chain once for a profile (NULL: the default), TLS verified, 10 s per call. */
static inline kn_err_t kn_t_resolve(const char *profile, kn__creds_t *c, kn_error_t *e)
{
    kn__creds_opts_t o;
    memset(&o, 0, sizeof(o));
    o.tls_verify = true;
    o.timeout_ms = 10000;
    o.profile = profile;
    kn__error_clear(e);
    return kn__creds_resolve(&o, c, e);
}

#endif
