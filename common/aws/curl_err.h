/* Internal: one classification of libcurl's result codes for http.c and http_sync.c. */
#ifndef KN_CURL_ERR_H
#define KN_CURL_ERR_H

#include <curl/curl.h>

#include "kinesis/common.h"

/*
 * KN_ERR_TIMEOUT, KN_ERR_INVALID_ARG (a URL curl cannot use: retrying cannot
 * help), KN_ERR_TLS (certificate, handshake or TLS set-up), else
 * KN_ERR_TRANSPORT. Size limits and out-of-memory are the callers' to tell.
 */
static inline kn_err_t kn__curl_err(CURLcode rc)
{
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return KN_ERR_TIMEOUT;
    case CURLE_URL_MALFORMAT:
        /* Not CURLE_UNSUPPORTED_PROTOCOL: curl also reports a garbage (HTTP/0.9) answer so. */
        return KN_ERR_INVALID_ARG;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_USE_SSL_FAILED:
        return KN_ERR_TLS;
    default:
        return KN_ERR_TRANSPORT;
    }
}

#endif
