/*
 * Helpers for the fault tests (header-only): start tests/faults/fault_proxy.py
 * in front of a server (or of its own kinesalite with --kinesalite-path), talk
 * to its control endpoints, and create/read back streams directly on the
 * upstream with the internal Kinesis operations.
 */
#ifndef KN_FAULT_UTIL_H
#define KN_FAULT_UTIL_H

#include <arpa/inet.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

typedef struct kn_fproxy_s {
    pid_t pid;
    int port;
    char url[64];      /* the proxy's URL: what the code under test talks to */
    char upstream[64]; /* the server behind it */
    char dir[256];     /* kinesalite --path directory when the proxy runs its own ("" otherwise) */
} kn_fproxy_t;

/*
 * One HTTP/1.0 request to 127.0.0.1:port; returns the body (malloc'd) of a
 * 200 answer or NULL. Blocking, for control requests only.
 */
static inline char *kn_fproxy_http(int port, const char *method, const char *path, const char *body)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char *out = NULL;
    size_t len = 0, cap = 0;
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        goto out;
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, path, body ? strlen(body) : 0, body ? body : "");
    if (n <= 0 || (size_t)n >= sizeof(req) || write(fd, req, (size_t)n) != n)
        goto out;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(out, cap);
            if (!nb)
                goto fail;
            out = nb;
        }
        ssize_t r = read(fd, out + len, cap - len - 1);
        if (r < 0)
            goto fail;
        if (r == 0)
            break;
        len += (size_t)r;
    }
    if (!out)
        goto out;
    out[len] = 0;
    int status = 0;
    char *sep = strstr(out, "\r\n\r\n");
    if (sscanf(out, "HTTP/%*s %d", &status) != 1 || status != 200 || !sep)
        goto fail;
    memmove(out, sep + 4, strlen(sep + 4) + 1);
    goto out;
fail:
    free(out);
    out = NULL;
out:
    if (fd >= 0)
        close(fd);
    return out;
}

/*
 * Starts the proxy. upstream: a server URL, or NULL to let the proxy run its
 * own kinesalite on a fresh --path directory. extra: more proxy options
 * (NULL-terminated, may be NULL).
 */
static inline void kn_fproxy_start(kn_fproxy_t *p, const char *upstream, const char *const *extra)
{
    memset(p, 0, sizeof(*p));
    char script[4096];
    snprintf(script, sizeof(script), "%s", kn_test_source_path("tests/faults/fault_proxy.py"));
    const char *argv[64] = {"python3", script};
    int n = 2;
    if (upstream) {
        argv[n++] = upstream;
    } else {
        snprintf(p->dir, sizeof(p->dir), "%s/kn-faults-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!mkdtemp(p->dir)) {
            perror("mkdtemp");
            exit(1);
        }
        argv[n++] = "--kinesalite-path";
        argv[n++] = p->dir;
    }
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    p->pid = kn_test_spawn_port((char *const *)argv, &p->port);
    snprintf(p->url, sizeof(p->url), "http://127.0.0.1:%d", p->port);
    char *stats = kn_fproxy_http(p->port, "GET", "/__proxy/stats", NULL);
    json_object *j = stats ? json_tokener_parse(stats) : NULL;
    json_object *u = NULL;
    if (!j || !json_object_object_get_ex(j, "upstream", &u)) {
        fprintf(stderr, "fault_proxy.py gave no stats (got %s)\n", stats ? stats : "nothing");
        kn_test_stop(p->pid);
        exit(1);
    }
    snprintf(p->upstream, sizeof(p->upstream), "%s", json_object_get_string(u));
    json_object_put(j);
    free(stats);
}

/* Stops the proxy (and its own kinesalite) and removes the --path directory. */
static inline void kn_fproxy_stop(kn_fproxy_t *p)
{
    kn_test_stop(p->pid);
    p->pid = 0;
    if (p->dir[0]) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", p->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", p->dir);
        p->dir[0] = 0;
    }
}

/* A counter from the proxy's stats: a top-level key, or "kinds.<kind>". -1 when unreadable. */
static inline long kn_fproxy_stat(const kn_fproxy_t *p, const char *name)
{
    char *stats = kn_fproxy_http(p->port, "GET", "/__proxy/stats", NULL);
    json_object *j = stats ? json_tokener_parse(stats) : NULL, *v = NULL;
    long out = -1;
    if (j) {
        if (!strncmp(name, "kinds.", 6)) {
            json_object *k = NULL;
            if (json_object_object_get_ex(j, "kinds", &k) && json_object_object_get_ex(k, name + 6, &v))
                out = (long)json_object_get_int64(v);
        } else if (json_object_object_get_ex(j, name, &v)) {
            out = (long)json_object_get_int64(v);
        }
        json_object_put(j);
    }
    free(stats);
    return out;
}

/* Changes proxy options at run time (a JSON object, e.g. {"throttle_fraction": 0}). */
static inline int kn_fproxy_config(const kn_fproxy_t *p, const char *json)
{
    char *r = kn_fproxy_http(p->port, "POST", "/__proxy/config", json);
    free(r);
    return r ? 0 : -1;
}

/* Kills (crash) or restarts the proxy's own kinesalite; returns 0 on success. */
static inline int kn_fproxy_upstream(const kn_fproxy_t *p, const char *action)
{
    char path[64];
    snprintf(path, sizeof(path), "/__proxy/upstream/%s", action);
    char *r = kn_fproxy_http(p->port, "POST", path, "");
    free(r);
    return r ? 0 : -1;
}

/* A stream name unique across processes and runs. */
static inline void kn_fault_stream_name(char *out, size_t size, const char *tag)
{
    static unsigned seq;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(out, size, "knfault-%d-%06lx-%u-%s", (int)getpid(),
             (unsigned long)(ts.tv_nsec ^ (long)ts.tv_sec * 2654435761u) & 0xffffffUL, ++seq, tag);
}

#endif
