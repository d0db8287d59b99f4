/* Unit tests for common/format/compress.c: gzip and zstd frames, interop with the system tools, bounded decompression. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>
#include <zstd.h>

#include "compress.h"

#define MIB ((size_t)1 << 20)

/* Deterministic JSON log lines of about 200 bytes each, like a service's access log. */
static void json_lines(kn_buf_t *b, size_t n, uint32_t seed)
{
    static const char *lvls[] = {"INFO", "WARN", "DEBUG", "ERROR"};
    static const char *paths[] = {"/api/v1/orders", "/api/v1/users/me", "/health", "/api/v2/search",
                                  "/static/app.js"};
    uint32_t x = seed;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        unsigned r = x >> 8;
        assert_int_equal(
            kn__buf_printf(b,
                           "{\"ts\":\"2026-11-25T22:%02u:%02u.%03uZ\",\"level\":\"%s\",\"svc\":\"checkout\","
                           "\"path\":\"%s\",\"status\":%u,\"latency_ms\":%u,\"req\":\"%08x-%04x\","
                           "\"user\":\"u%05u\",\"msg\":\"request served\"}\n",
                           (r >> 3) % 60, (r >> 9) % 60, r % 1000, lvls[r % 4], paths[(r >> 5) % 5],
                           200 + (r % 3) * 100, r % 900, x, r & 0xffff, (r >> 7) % 20000),
            0);
    }
}

static void roundtrip(kn__zctx_t *z, kn__codec_t c, int level, const void *data, size_t len)
{
    kn_buf_t comp = KN_BUF_INIT, back = KN_BUF_INIT;
    kn_error_t *err = kn_error_new();
    assert_int_equal(kn__compress(z, c, level, data, len, &comp, err), KN_ERR_OK);
    assert_true(kn__codec_sniff(c, comp.data, comp.len));
    /* An exact bound is enough, and the buffer never grows past it. */
    assert_int_equal(kn__decompress(z, c, comp.data, comp.len, len, &back, err), KN_ERR_OK);
    assert_int_equal(back.len, len);
    if (len)
        assert_memory_equal(back.data, data, len);
    assert_true(back.cap <= len + 1 || back.cap == 0);
    kn__buf_free(&comp);
    kn__buf_free(&back);
    kn_error_destroy(err);
}

/* Both codecs, several levels, empty to 1 MiB, with one context reused throughout. */
static void test_roundtrip_both_codecs_reused_context(void **state)
{
    (void)state;
    kn__zctx_t *z = kn__zctx_new();
    kn_buf_t logs = KN_BUF_INIT;
    json_lines(&logs, 6500, 7); /* a little over 1 MiB */
    assert_true(logs.len > MIB);
    unsigned char *rnd = malloc(MIB);
    uint32_t x = 99;
    for (size_t i = 0; i < MIB; i++) {
        x = x * 1664525u + 1013904223u;
        rnd[i] = (unsigned char)(x >> 24);
    }
    const kn__codec_t codecs[] = {KN__CODEC_GZIP, KN__CODEC_ZSTD};
    const int levels[] = {KN__CODEC_LEVEL_DEFAULT, 1, 9, 3, KN__CODEC_LEVEL_DEFAULT};
    for (int ci = 0; ci < 2; ci++) {
        for (size_t li = 0; li < sizeof(levels) / sizeof(levels[0]); li++) {
            roundtrip(z, codecs[ci], levels[li], "", 0);
            roundtrip(z, codecs[ci], levels[li], logs.data, 200);
            roundtrip(z, codecs[ci], levels[li], logs.data, 50 * 1024);
        }
        roundtrip(z, codecs[ci], 0, logs.data, MIB);
        roundtrip(z, codecs[ci], 0, rnd, MIB); /* incompressible: the frame grows a little */
        roundtrip(z, codecs[ci], 1, "x", 1);
    }
    roundtrip(z, KN__CODEC_ZSTD, -5, logs.data, 100000);
    roundtrip(z, KN__CODEC_ZSTD, 19, logs.data, 100000);
    /* A NULL pointer with length 0 is empty data. */
    roundtrip(z, KN__CODEC_GZIP, 0, NULL, 0);
    free(rnd);
    kn__buf_free(&logs);
    kn__zctx_destroy(z);
}

/* Output appends to what the buffer holds; compression helps a lot on JSON logs. */
static void test_appends_and_compresses_json(void **state)
{
    (void)state;
    kn__zctx_t *z = kn__zctx_new();
    kn_buf_t logs = KN_BUF_INIT, comp = KN_BUF_INIT, back = KN_BUF_INIT;
    json_lines(&logs, 500, 3);
    for (kn__codec_t c = KN__CODEC_GZIP; c <= KN__CODEC_ZSTD; c++) {
        kn__buf_reset(&comp);
        kn__buf_reset(&back);
        assert_int_equal(kn__buf_puts(&comp, "prefix"), 0);
        assert_int_equal(kn__compress(z, c, 0, logs.data, logs.len, &comp, NULL), KN_ERR_OK);
        assert_memory_equal(comp.data, "prefix", 6);
        assert_true(comp.len - 6 < logs.len / 3);
        assert_int_equal(kn__buf_puts(&back, "ab"), 0);
        assert_int_equal(kn__decompress(z, c, comp.data + 6, comp.len - 6, logs.len, &back, NULL),
                         KN_ERR_OK);
        assert_int_equal(back.len, 2 + logs.len);
        assert_memory_equal(back.data, "ab", 2);
        assert_memory_equal(back.data + 2, logs.data, logs.len);
        assert_int_equal(back.data[back.len], '\0');
    }
    kn__buf_free(&logs);
    kn__buf_free(&comp);
    kn__buf_free(&back);
    kn__zctx_destroy(z);
}

/* The zstd frame carries the content size and a content checksum; the gzip header is plain RFC 1952. */
static void test_frame_headers_are_standard(void **state)
{
    (void)state;
    kn__zctx_t *z = kn__zctx_new();
    kn_buf_t comp = KN_BUF_INIT;
    const char *msg = "hello hello hello hello";
    assert_int_equal(kn__compress(z, KN__CODEC_ZSTD, 0, msg, strlen(msg), &comp, NULL), KN_ERR_OK);
    assert_int_equal(ZSTD_getFrameContentSize(comp.data, comp.len), strlen(msg));
    /* Frame header descriptor (byte 4), bit 2: Content_Checksum_flag (RFC 8878 3.1.1.1.1). */
    assert_true(((unsigned char)comp.data[4] & 0x04) != 0);
    kn__buf_reset(&comp);
    assert_int_equal(kn__compress(z, KN__CODEC_GZIP, 0, msg, strlen(msg), &comp, NULL), KN_ERR_OK);
    const unsigned char *g = (const unsigned char *)comp.data;
    assert_int_equal(g[0], 0x1f);
    assert_int_equal(g[1], 0x8b);
    assert_int_equal(g[2], 8);  /* deflate */
    assert_int_equal(g[3], 0);  /* no optional fields */
    /* Trailer: CRC-32 and ISIZE, little-endian. */
    uint32_t crc = (uint32_t)crc32(0, (const Bytef *)msg, (uInt)strlen(msg));
    size_t n = comp.len;
    assert_int_equal(g[n - 8] | g[n - 7] << 8 | g[n - 6] << 16 | (uint32_t)g[n - 5] << 24, crc);
    assert_int_equal(g[n - 4], strlen(msg));
    kn__buf_free(&comp);
    kn__zctx_destroy(z);
}

/* ------------------------------------------------ interop with system tools */

static char tmpdir[64];

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void read_file(const char *path, kn_buf_t *b)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        assert_int_equal(kn__buf_append(b, tmp, n), 0);
    fclose(f);
}

static bool have(const char *prog)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", prog);
    return system(cmd) == 0;
}

static void run(const char *cmd)
{
    int r = system(cmd);
    if (r != 0)
        fail_msg("command failed (%d): %s", r, cmd);
}

/* Decodes our frame with a tool command that reads %s (input) and writes to %s (output). */
static void check_tool_decodes(kn__zctx_t *z, kn__codec_t c, const kn_buf_t *plain, const char *fmt)
{
    char in[128], outp[128], cmd[1024];
    kn_buf_t comp = KN_BUF_INIT, back = KN_BUF_INIT;
    snprintf(in, sizeof(in), "%s/in.%s", tmpdir, kn__codec_name(c));
    snprintf(outp, sizeof(outp), "%s/out.txt", tmpdir);
    assert_int_equal(kn__compress(z, c, 0, plain->data, plain->len, &comp, NULL), KN_ERR_OK);
    write_file(in, comp.data, comp.len);
    snprintf(cmd, sizeof(cmd), fmt, in, outp);
    run(cmd);
    read_file(outp, &back);
    assert_int_equal(back.len, plain->len);
    assert_memory_equal(back.data, plain->data, plain->len);
    unlink(in);
    unlink(outp);
    kn__buf_free(&comp);
    kn__buf_free(&back);
}

/* Decodes a tool-made frame (command reads %s plain, writes %s compressed) with us. */
static void check_we_decode_tool(kn__zctx_t *z, kn__codec_t c, const kn_buf_t *plain, const char *fmt)
{
    char in[128], outp[128], cmd[1024];
    kn_buf_t comp = KN_BUF_INIT, back = KN_BUF_INIT;
    snprintf(in, sizeof(in), "%s/plain.txt", tmpdir);
    snprintf(outp, sizeof(outp), "%s/tool.%s", tmpdir, kn__codec_name(c));
    write_file(in, plain->data, plain->len);
    snprintf(cmd, sizeof(cmd), fmt, in, outp);
    run(cmd);
    read_file(outp, &comp);
    assert_int_equal(kn__decompress(z, c, comp.data, comp.len, plain->len, &back, NULL), KN_ERR_OK);
    assert_int_equal(back.len, plain->len);
    assert_memory_equal(back.data, plain->data, plain->len);
    unlink(in);
    unlink(outp);
    kn__buf_free(&comp);
    kn__buf_free(&back);
}

static void test_interop_gzip_tools(void **state)
{
    (void)state;
    kn__zctx_t *z = kn__zctx_new();
    kn_buf_t plain = KN_BUF_INIT;
    json_lines(&plain, 2000, 11);
    /* Every peer must be there: a missing tool is a failure that says so, never a silent pass. */
    if (!have("gzip"))
        fail_msg("the gzip command is not installed (tools/setup.sh installs it): the gzip tool interop "
                 "cannot run");
    if (!have("node"))
        fail_msg("node is not installed (tools/setup.sh installs it): the Node zlib interop cannot run");
    check_tool_decodes(z, KN__CODEC_GZIP, &plain, "gzip -dc < '%s' > '%s'");
    /* Streamed through a pipe, and two members concatenated (as `cat a.gz b.gz`). */
    check_we_decode_tool(z, KN__CODEC_GZIP, &plain, "gzip -c '%s' > '%s'"); /* FNAME set */
    check_we_decode_tool(z, KN__CODEC_GZIP, &plain,
                         "head -c 1000 '%1$s' | gzip -c > '%2$s' && tail -c +1001 '%1$s' | gzip -9c >> '%2$s'");
    check_tool_decodes(z, KN__CODEC_GZIP, &plain,
                       "python3 -c 'import gzip,sys; open(sys.argv[2],\"wb\").write(gzip.decompress(open(sys.argv[1],\"rb\").read()))' '%s' '%s'");
    check_we_decode_tool(z, KN__CODEC_GZIP, &plain,
                         "python3 -c 'import gzip,sys; open(sys.argv[2],\"wb\").write(gzip.compress(open(sys.argv[1],\"rb\").read()))' '%s' '%s'");
    check_tool_decodes(z, KN__CODEC_GZIP, &plain,
                       "node -e 'const fs=require(\"fs\"),zl=require(\"zlib\");fs.writeFileSync(process.argv[2],zl.gunzipSync(fs.readFileSync(process.argv[1])))' '%s' '%s'");
    kn__buf_free(&plain);
    kn__zctx_destroy(z);
}

static void test_interop_zstd_tools(void **state)
{
    (void)state;
    if (!have("zstd"))
        fail_msg("the zstd command is not installed (tools/setup.sh installs it): the zstd tool interop "
                 "cannot run");
    kn__zctx_t *z = kn__zctx_new();
    kn_buf_t plain = KN_BUF_INIT;
    json_lines(&plain, 2000, 13);
    check_tool_decodes(z, KN__CODEC_ZSTD, &plain, "zstd -q -dc < '%s' > '%s'");
    /* `zstd --check` verifies the content checksum we write. */
    check_tool_decodes(z, KN__CODEC_ZSTD, &plain, "zstd -q --check -dc '%s' > '%s'");
    /* Through a pipe: no content size in the header, our decoder sizes the output itself. */
    check_we_decode_tool(z, KN__CODEC_ZSTD, &plain, "zstd -q -c < '%s' > '%s'");
    check_we_decode_tool(z, KN__CODEC_ZSTD, &plain, "zstd -q -19 -c '%s' > '%s'");
    check_we_decode_tool(z, KN__CODEC_ZSTD, &plain,
                         "head -c 700 '%1$s' | zstd -q -c > '%2$s' && tail -c +701 '%1$s' | zstd -q -c >> '%2$s'");
    kn__buf_free(&plain);
    kn__zctx_destroy(z);
}

/* ------------------------------------------------------------- bounds */

/* 100 MiB of zeros, compressed by streaming 64 KiB at a time (the input never exists in memory). */
static void make_bomb(kn__codec_t c, bool with_size, kn_buf_t *out)
{
    static const unsigned char zeros[65536];
    const size_t total = 100 * MIB;
    if (c == KN__CODEC_GZIP) {
        z_stream s;
        memset(&s, 0, sizeof(s));
        assert_int_equal(deflateInit2(&s, 9, Z_DEFLATED, 31, 9, Z_DEFAULT_STRATEGY), Z_OK);
        unsigned char tmp[65536];
        for (size_t done = 0; done <= total; done += sizeof(zeros)) {
            bool last = done == total;
            s.next_in = (Bytef *)zeros;
            s.avail_in = last ? 0 : sizeof(zeros);
            do {
                s.next_out = tmp;
                s.avail_out = sizeof(tmp);
                int r = deflate(&s, last ? Z_FINISH : Z_NO_FLUSH);
                assert_true(r == Z_OK || r == Z_STREAM_END || r == Z_BUF_ERROR);
                assert_int_equal(kn__buf_append(out, tmp, sizeof(tmp) - s.avail_out), 0);
            } while (s.avail_out == 0);
        }
        deflateEnd(&s);
    } else {
        ZSTD_CCtx *cc = ZSTD_createCCtx();
        ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 3);
        ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
        if (with_size)
            assert_false(ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(cc, total)));
        unsigned char tmp[65536];
        for (size_t done = 0; done <= total; done += sizeof(zeros)) {
            bool last = done == total;
            ZSTD_inBuffer ib = {zeros, last ? 0 : sizeof(zeros), 0};
            size_t rem;
            do {
                ZSTD_outBuffer ob = {tmp, sizeof(tmp), 0};
                rem = ZSTD_compressStream2(cc, &ob, &ib, last ? ZSTD_e_end : ZSTD_e_continue);
                assert_false(ZSTD_isError(rem));
                assert_int_equal(kn__buf_append(out, tmp, ob.pos), 0);
            } while (last ? rem != 0 : ib.pos < ib.size);
        }
        ZSTD_freeCCtx(cc);
    }
    assert_true(out->len < MIB);
}

static long maxrss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void check_bomb(kn__codec_t c, bool with_size)
{
    kn__zctx_t *z = kn__zctx_new();
    kn_buf_t bomb = KN_BUF_INIT, out = KN_BUF_INIT;
    kn_error_t *err = kn_error_new();
    make_bomb(c, with_size, &bomb);
    long before = maxrss_kib();
    const size_t limit = MIB;
    assert_int_equal(kn__decompress(z, c, bomb.data, bomb.len, limit, &out, err), KN_ERR_TOO_LARGE);
    assert_non_null(strstr(kn_error_message(err), kn__codec_name(c)));
    assert_int_equal(out.len, 0);
    /* The output buffer never went past the bound, and the process did not balloon. */
    assert_true(out.cap <= limit + 1);
    long grown = maxrss_kib() - before;
    print_message("%s bomb (%zu bytes -> 100 MiB%s): %s; peak RSS grew by %ld KiB\n",
                  kn__codec_name(c), bomb.len, with_size ? ", size in header" : "",
                  kn_error_message(err), grown);
    assert_true(grown < 32 * 1024);
    kn__buf_free(&bomb);
    kn__buf_free(&out);
    kn_error_destroy(err);
    kn__zctx_destroy(z);
}

static void test_gzip_bomb_refused(void **state)
{
    (void)state;
    check_bomb(KN__CODEC_GZIP, false);
}

static void test_zstd_bomb_refused_streamed(void **state)
{
    (void)state;
    check_bomb(KN__CODEC_ZSTD, false);
}

static void test_zstd_bomb_refused_by_header(void **state)
{
    (void)state;
    check_bomb(KN__CODEC_ZSTD, true);
}

/* The bound is exact: max_out == size passes, size - 1 fails; concatenated frames count in total. */
static void test_bound_is_exact(void **state)
{
    (void)state;
    kn__zctx_t *z = kn__zctx_new();
    kn_buf_t plain = KN_BUF_INIT, comp = KN_BUF_INIT, out = KN_BUF_INIT;
    json_lines(&plain, 300, 5);
    for (kn__codec_t c = KN__CODEC_GZIP; c <= KN__CODEC_ZSTD; c++) {
        for (int frames = 1; frames <= 2; frames++) {
            kn__buf_reset(&comp);
            size_t half = plain.len / 2;
            if (frames == 1) {
                assert_int_equal(kn__compress(z, c, 0, plain.data, plain.len, &comp, NULL), KN_ERR_OK);
            } else {
                assert_int_equal(kn__compress(z, c, 0, plain.data, half, &comp, NULL), KN_ERR_OK);
                assert_int_equal(
                    kn__compress(z, c, 0, plain.data + half, plain.len - half, &comp, NULL), KN_ERR_OK);
            }
            kn__buf_reset(&out);
            assert_int_equal(kn__decompress(z, c, comp.data, comp.len, plain.len, &out, NULL), KN_ERR_OK);
            assert_int_equal(out.len, plain.len);
            assert_memory_equal(out.data, plain.data, plain.len);
            kn__buf_reset(&out);
            assert_int_equal(kn__decompress(z, c, comp.data, comp.len, plain.len - 1, &out, NULL),
                             KN_ERR_TOO_LARGE);
            assert_int_equal(out.len, 0);
            kn__buf_reset(&out);
            assert_int_equal(kn__decompress(z, c, comp.data, comp.len, 0, &out, NULL), KN_ERR_TOO_LARGE);
        }
        /* Empty data under a zero bound is fine. */
        kn__buf_reset(&comp);
        kn__buf_reset(&out);
        assert_int_equal(kn__compress(z, c, 0, "", 0, &comp, NULL), KN_ERR_OK);
        assert_int_equal(kn__decompress(z, c, comp.data, comp.len, 0, &out, NULL), KN_ERR_OK);
        assert_int_equal(out.len, 0);
    }
    kn__buf_free(&plain);
    kn__buf_free(&comp);
    kn__buf_free(&out);
    kn__zctx_destroy(z);
}

/* ------------------------------------------------------------- corrupt */

static void expect_corrupt(kn__zctx_t *z, kn__codec_t c, const void *p, size_t n, const char *what)
{
    kn_buf_t out = KN_BUF_INIT;
    kn_error_t *err = kn_error_new();
    assert_int_equal(kn__buf_puts(&out, "keep"), 0);
    kn_err_t rc = kn__decompress(z, c, p, n, MIB, &out, err);
    if (rc != KN_ERR_BAD_RESPONSE)
        fail_msg("%s (%s): got %s: %s", what, kn__codec_name(c), kn_err2name(rc), kn_error_message(err));
    /* The message names the codec; the buffer is as it was. */
    assert_memory_equal(kn_error_message(err), kn__codec_name(c), 4);
    assert_int_equal(out.len, 4);
    assert_string_equal(out.data, "keep");
    kn__buf_free(&out);
    kn_error_destroy(err);
}

static void test_corrupt_frames_are_rejected_with_messages(void **state)
{
    (void)state;
    kn__zctx_t *z = kn__zctx_new();
    kn_buf_t plain = KN_BUF_INIT, comp = KN_BUF_INIT, tmp = KN_BUF_INIT;
    json_lines(&plain, 100, 17);
    for (kn__codec_t c = KN__CODEC_GZIP; c <= KN__CODEC_ZSTD; c++) {
        kn__buf_reset(&comp);
        assert_int_equal(kn__compress(z, c, 0, plain.data, plain.len, &comp, NULL), KN_ERR_OK);
        expect_corrupt(z, c, "", 0, "empty");
        expect_corrupt(z, c, plain.data, plain.len, "plain text");
        /* Every truncation point fails (a sample of them, and the last byte). */
        for (size_t cut = 1; cut < comp.len; cut += comp.len / 37 + 1)
            expect_corrupt(z, c, comp.data, cut, "truncated");
        expect_corrupt(z, c, comp.data, comp.len - 1, "truncated by one byte");
        /* A flipped bit in the middle (the gzip CRC-32 or zstd XXH64 or block parser catches it). */
        kn__buf_reset(&tmp);
        assert_int_equal(kn__buf_append(&tmp, comp.data, comp.len), 0);
        tmp.data[tmp.len / 2] ^= 0x10;
        expect_corrupt(z, c, tmp.data, tmp.len, "bit flip");
        /* The checksum itself altered (last bytes of either frame). */
        kn__buf_reset(&tmp);
        assert_int_equal(kn__buf_append(&tmp, comp.data, comp.len), 0);
        tmp.data[tmp.len - (c == KN__CODEC_GZIP ? 6 : 2)] ^= 0x01;
        expect_corrupt(z, c, tmp.data, tmp.len, "checksum altered");
        /* Trailing garbage after a good frame. */
        kn__buf_reset(&tmp);
        assert_int_equal(kn__buf_append(&tmp, comp.data, comp.len), 0);
        assert_int_equal(kn__buf_puts(&tmp, "garbage"), 0);
        expect_corrupt(z, c, tmp.data, tmp.len, "trailing garbage");
        /* The other codec's frame. */
        kn__buf_reset(&tmp);
        kn__codec_t other = c == KN__CODEC_GZIP ? KN__CODEC_ZSTD : KN__CODEC_GZIP;
        assert_int_equal(kn__compress(z, other, 0, plain.data, plain.len, &tmp, NULL), KN_ERR_OK);
        expect_corrupt(z, c, tmp.data, tmp.len, "other codec");
        /* The context still works after all of that. */
        roundtrip(z, c, 0, plain.data, plain.len);
    }
    /* A zlib (RFC 1950) stream is not gzip. */
    unsigned char zl[256];
    uLongf zn = sizeof(zl);
    assert_int_equal(compress2(zl, &zn, (const Bytef *)"hello", 5, 6), Z_OK);
    expect_corrupt(z, KN__CODEC_GZIP, zl, zn, "zlib stream");
    kn__buf_free(&plain);
    kn__buf_free(&comp);
    kn__buf_free(&tmp);
    kn__zctx_destroy(z);
}

static void test_arguments(void **state)
{
    (void)state;
    kn__zctx_t *z = kn__zctx_new();
    kn_buf_t out = KN_BUF_INIT;
    kn_error_t *err = kn_error_new();
    assert_int_equal(kn__compress(z, KN__CODEC_GZIP, 10, "a", 1, &out, err), KN_ERR_INVALID_ARG);
    assert_non_null(strstr(kn_error_message(err), "level 10"));
    assert_int_equal(kn__compress(z, KN__CODEC_GZIP, -1, "a", 1, &out, err), KN_ERR_INVALID_ARG);
    assert_int_equal(kn__compress(z, KN__CODEC_ZSTD, ZSTD_maxCLevel() + 1, "a", 1, &out, err),
                     KN_ERR_INVALID_ARG);
    assert_int_equal(kn__compress(z, KN__CODEC_NONE, 0, "a", 1, &out, err), KN_ERR_INVALID_ARG);
    assert_int_equal(kn__decompress(z, KN__CODEC_NONE, "a", 1, 10, &out, err), KN_ERR_INVALID_ARG);
    assert_int_equal(out.len, 0);
    kn__codec_t c = KN__CODEC_NONE;
    assert_true(kn__codec_from_name("ZSTD", 4, &c));
    assert_int_equal(c, KN__CODEC_ZSTD);
    assert_true(kn__codec_from_name("gzip", 4, &c));
    assert_int_equal(c, KN__CODEC_GZIP);
    assert_true(kn__codec_from_name("none", 4, &c));
    assert_int_equal(c, KN__CODEC_NONE);
    assert_false(kn__codec_from_name("gzi", 3, &c));
    assert_false(kn__codec_from_name("snappy", 6, &c));
    int lo, hi;
    kn__codec_level_range(KN__CODEC_GZIP, &lo, &hi);
    assert_int_equal(lo, 1);
    assert_int_equal(hi, 9);
    kn__buf_free(&out);
    kn_error_destroy(err);
    kn__zctx_destroy(z);
}

static int setup_tmp(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/kn_compress_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state)
{
    (void)state;
    return rmdir(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gzip_bomb_refused),
        cmocka_unit_test(test_zstd_bomb_refused_streamed),
        cmocka_unit_test(test_zstd_bomb_refused_by_header),
        cmocka_unit_test(test_roundtrip_both_codecs_reused_context),
        cmocka_unit_test(test_appends_and_compresses_json),
        cmocka_unit_test(test_frame_headers_are_standard),
        cmocka_unit_test(test_interop_gzip_tools),
        cmocka_unit_test(test_interop_zstd_tools),
        cmocka_unit_test(test_bound_is_exact),
        cmocka_unit_test(test_corrupt_frames_are_rejected_with_messages),
        cmocka_unit_test(test_arguments),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
