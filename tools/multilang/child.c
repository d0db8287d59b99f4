/*
 * One record processor's child process: started with pipes on its stdin,
 * stdout and stderr, in a process group of its own (a Ctrl-C at the
 * terminal reaches the daemon, which shuts the children down in order) and
 * killed with the daemon if the daemon dies (PR_SET_PDEATHSIG). Its stdout
 * is read line by line with a deadline; its stderr is copied to our log by a
 * thread, each line prefixed with the shard id.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "multilang.h"

static void errf(char *err, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, size, fmt, ap);
    va_end(ap);
}

/* The child's stderr, line by line, to our log. */
static void *stderr_main(void *arg)
{
    ml_child_t *ch = arg;
    char buf[4096];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(ch->err_fd, buf + n, sizeof(buf) - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        char *start = buf, *nl;
        while ((nl = memchr(start, '\n', (size_t)(buf + n - start)))) {
            *nl = '\0';
            ml_log("%s: %s", ch->shard, start);
            start = nl + 1;
        }
        n = (size_t)(buf + n - start);
        memmove(buf, start, n);
        if (n == sizeof(buf) - 1) { /* a very long line: in pieces */
            buf[n] = '\0';
            ml_log("%s: %s", ch->shard, buf);
            n = 0;
        }
    }
    if (n) {
        buf[n] = '\0';
        ml_log("%s: %s", ch->shard, buf);
    }
    return NULL;
}

bool ml_child_running(const ml_child_t *ch) { return ch->pid > 0; }

int ml_child_start(ml_child_t *ch, char *const argv[], const char *shard, char *err, size_t size)
{
    memset(ch, 0, sizeof(*ch));
    ch->in_fd = ch->out_fd = ch->err_fd = -1;
    snprintf(ch->shard, sizeof(ch->shard), "%s", shard);
    int in[2] = {-1, -1}, out[2] = {-1, -1}, er[2] = {-1, -1}, ex[2] = {-1, -1};
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(er, O_CLOEXEC) || pipe2(ex, O_CLOEXEC)) {
        errf(err, size, "pipe: %s", strerror(errno));
        goto fail;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        errf(err, size, "fork: %s", strerror(errno));
        goto fail;
    }
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        signal(SIGPIPE, SIG_DFL);
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(er[1], 2);
        execvp(argv[0], argv);
        int e = errno;
        ssize_t w = write(ex[1], &e, sizeof(e)); /* tells the parent why */
        (void)w;
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(er[1]);
    close(ex[1]);
    in[0] = out[1] = er[1] = ex[1] = -1;
    /* The exec's outcome: the pipe closes on success (CLOEXEC), or carries errno. */
    int e = 0;
    ssize_t r;
    do {
        r = read(ex[0], &e, sizeof(e));
    } while (r < 0 && errno == EINTR);
    close(ex[0]);
    ex[0] = -1;
    if (r == (ssize_t)sizeof(e)) {
        errf(err, size, "cannot run \"%s\": %s", argv[0], strerror(e));
        waitpid(pid, NULL, 0);
        close(in[1]);
        close(out[0]);
        close(er[0]);
        return -1;
    }
    ch->pid = pid;
    ch->in_fd = in[1];
    ch->out_fd = out[0];
    ch->err_fd = er[0];
    if (pthread_create(&ch->err_thread, NULL, stderr_main, ch) == 0)
        ch->err_thread_started = true;
    return 0;
fail:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (out[i] >= 0)
            close(out[i]);
        if (er[i] >= 0)
            close(er[i]);
        if (ex[i] >= 0)
            close(ex[i]);
    }
    return -1;
}

int ml_child_send(ml_child_t *ch, const char *line, size_t len, char *err, size_t size)
{
    if (ch->in_fd < 0) {
        errf(err, size, "the processor is not running");
        return -1;
    }
    struct part {
        const char *p;
        size_t n;
    } parts[2] = {{line, len}, {"\n", 1}};
    for (int i = 0; i < 2; i++) {
        size_t off = 0;
        while (off < parts[i].n) {
            ssize_t w = write(ch->in_fd, parts[i].p + off, parts[i].n - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                errf(err, size, "writing to the processor: %s%s", strerror(errno),
                     errno == EPIPE ? " (it exited)" : "");
                return -1;
            }
            off += (size_t)w;
        }
    }
    return 0;
}

int ml_child_read_line(ml_child_t *ch, int64_t deadline_ms, char **line, char *err, size_t size)
{
    for (;;) {
        /* A whole line already buffered? */
        char *nl = ch->len > ch->start ? memchr(ch->buf + ch->start, '\n', ch->len - ch->start) : NULL;
        if (nl) {
            *nl = '\0';
            if (nl > ch->buf + ch->start && nl[-1] == '\r')
                nl[-1] = '\0';
            *line = ch->buf + ch->start;
            ch->start = (size_t)(nl - ch->buf) + 1;
            return 1;
        }
        if (ch->len - ch->start > ML_MAX_LINE) {
            errf(err, size, "the processor wrote a line of over %u bytes", ML_MAX_LINE);
            return -1;
        }
        if (ch->eof) {
            errf(err, size, "the processor closed its stdout");
            return -1;
        }
        if (ch->start > 0) {
            memmove(ch->buf, ch->buf + ch->start, ch->len - ch->start);
            ch->len -= ch->start;
            ch->start = 0;
        }
        if (ch->cap - ch->len < 65536) {
            size_t cap = ch->cap ? ch->cap * 2 : 65536;
            char *b = realloc(ch->buf, cap + 1);
            if (!b) {
                errf(err, size, "out of memory");
                return -1;
            }
            ch->buf = b;
            ch->cap = cap;
        }
        int wait = -1;
        if (deadline_ms != INT64_MAX) {
            int64_t left = deadline_ms - ml_now_ms();
            if (left <= 0)
                return 0;
            wait = left > 1000 ? 1000 : (int)left;
        } else {
            wait = 1000;
        }
        struct pollfd p = {ch->out_fd, POLLIN, 0};
        int pr = poll(&p, 1, wait);
        if (pr < 0 && errno != EINTR) {
            errf(err, size, "poll: %s", strerror(errno));
            return -1;
        }
        if (pr <= 0)
            continue;
        ssize_t r = read(ch->out_fd, ch->buf + ch->len, ch->cap - ch->len);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r < 0) {
            errf(err, size, "reading from the processor: %s", strerror(errno));
            return -1;
        }
        if (r == 0)
            ch->eof = true;
        ch->len += (size_t)r;
    }
}

int ml_child_end(ml_child_t *ch, int grace_ms)
{
    int status = 0;
    if (ch->in_fd >= 0) {
        close(ch->in_fd);
        ch->in_fd = -1;
    }
    if (ch->pid > 0) {
        int64_t deadline = ml_now_ms() + grace_ms;
        pid_t w = 0;
        int step = 0; /* 0: waiting after EOF, 1: after SIGTERM, 2: after SIGKILL */
        for (;;) {
            w = waitpid(ch->pid, &status, WNOHANG);
            if (w == ch->pid || (w < 0 && errno != EINTR))
                break;
            if (ml_now_ms() >= deadline) {
                if (step == 0) {
                    kill(-ch->pid, SIGTERM); /* its process group: what it started too */
                    step = 1;
                    deadline = ml_now_ms() + 2000;
                } else if (step == 1) {
                    kill(-ch->pid, SIGKILL);
                    step = 2;
                    deadline = INT64_MAX;
                }
            }
            usleep(10000);
        }
        if (step > 0)
            ml_log("%s: the processor did not exit when its stdin closed: %s", ch->shard,
                   step == 1 ? "terminated" : "killed");
        kill(-ch->pid, SIGKILL); /* anything it left behind holding our pipes */
        ch->pid = 0;
    }
    if (ch->out_fd >= 0) {
        close(ch->out_fd);
        ch->out_fd = -1;
    }
    if (ch->err_thread_started) {
        pthread_join(ch->err_thread, NULL); /* the child is gone: its stderr ends */
        ch->err_thread_started = false;
    }
    if (ch->err_fd >= 0) {
        close(ch->err_fd);
        ch->err_fd = -1;
    }
    free(ch->buf);
    ch->buf = NULL;
    ch->len = ch->cap = ch->start = 0;
    ch->eof = false;
    return status;
}
