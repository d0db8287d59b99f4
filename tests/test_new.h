/*
 * For the C tests: the library's constructors (which report failure through a
 * kn_error_t *) wrapped to also fill a message buffer, as most tests print it
 * in fail_msg(). The error object, when given, receives code and details too.
 */
#ifndef KN_TEST_NEW_H
#define KN_TEST_NEW_H

#include <stdio.h>

#include "err.h"
#include "kinesis/common.h"
#include "kinesis/producer.h"
#include "kinesis/reader.h"

static inline void kn_t_keep_error(kn_error_t *tmp, kn_error_t *err, char *errstr, size_t size)
{
    if (errstr && size)
        snprintf(errstr, size, "%s", kn_error_message(tmp));
    if (err)
        kn__error_copy(err, tmp);
}

static inline kn_client_t *kn_t_client_new(const kn_conf_t *conf, char *errstr, size_t size)
{
    kn_error_t e;
    kn__error_clear(&e);
    kn_client_t *c = kn_client_new(conf, &e);
    kn_t_keep_error(&e, NULL, errstr, size);
    return c;
}

static inline kn_producer_t *kn_t_producer_new(const kn_conf_t *conf, char *errstr, size_t size)
{
    kn_error_t e;
    kn__error_clear(&e);
    kn_producer_t *p = kn_producer_new(conf, &e);
    kn_t_keep_error(&e, NULL, errstr, size);
    return p;
}

static inline kn_producer_t *kn_t_producer_new_on(kn_client_t *c, const kn_conf_t *conf, char *errstr,
                                                  size_t size)
{
    kn_error_t e;
    kn__error_clear(&e);
    kn_producer_t *p = kn_producer_new_on(c, conf, &e);
    kn_t_keep_error(&e, NULL, errstr, size);
    return p;
}

static inline kn_reader_t *kn_t_reader_new(const kn_conf_t *conf, const char *stream,
                                           const kn_reader_opts_t *opts, kn_error_t *err, char *errstr,
                                           size_t size)
{
    kn_error_t e;
    kn__error_clear(&e);
    kn_reader_t *r = kn_reader_new(conf, stream, opts, &e);
    kn_t_keep_error(&e, err, errstr, size);
    return r;
}

static inline kn_reader_t *kn_t_reader_new_on(kn_client_t *c, const kn_conf_t *conf, const char *stream,
                                              const kn_reader_opts_t *opts, kn_error_t *err, char *errstr,
                                              size_t size)
{
    kn_error_t e;
    kn__error_clear(&e);
    kn_reader_t *r = kn_reader_new_on(c, conf, stream, opts, &e);
    kn_t_keep_error(&e, err, errstr, size);
    return r;
}

#endif
