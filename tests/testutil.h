/* Small helpers shared by the C tests (header-only). */
#ifndef KN_TESTUTIL_H
#define KN_TESTUTIL_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* The URL of a local test server from the environment, or exit(1) with a clear message. */
static inline const char *kn_test_server_url(const char *var)
{
    const char *v = getenv(var);
    if (!v || !*v) {
        fprintf(stderr,
                "%s is not set: integration tests need the local servers; run them through "
                "tests/servers/with-servers.sh (tools/test.sh does)\n",
                var);
        exit(1);
    }
    return v;
}

/* Path of a file in the source tree (KN_SOURCE_ROOT is set by meson test). Static buffer. */
static inline const char *kn_test_source_path(const char *rel)
{
    static char buf[4096];
    const char *root = getenv("KN_SOURCE_ROOT");
    snprintf(buf, sizeof(buf), "%s/%s", root && *root ? root : ".", rel);
    return buf;
}

/*
 * Starts a helper process (argv[0] searched in PATH) whose first stdout line
 * is "PORT <n>"; returns its pid and port, or exits with a message. The child
 * gets SIGTERM if the test dies first (PR_SET_PDEATHSIG); tests stop it with
 * kn_test_stop().
 */
static inline pid_t kn_test_spawn_port(char *const argv[], int *port)
{
    int fds[2];
    if (pipe(fds) != 0) {
        perror("pipe");
        exit(1);
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execvp(argv[0], argv);
        perror(argv[0]);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[128] = "";
    if (!f || !fgets(line, sizeof(line), f) || sscanf(line, "PORT %d", port) != 1) {
        fprintf(stderr, "%s did not report its port (got \"%s\")\n", argv[0], line);
        kill(pid, SIGKILL);
        exit(1);
    }
    /* Keep the pipe open (reading end leaks into the test; the child may write more). */
    return pid;
}

static inline void kn_test_stop(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 50; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return;
        usleep(20000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

#endif
