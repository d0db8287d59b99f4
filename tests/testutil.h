/* Small helpers shared by the C tests (header-only). */
#ifndef KN_TESTUTIL_H
#define KN_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>

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

#endif
