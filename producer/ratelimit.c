/*
 * Per-shard rate limit: token buckets for records and bytes at
 * producer.rate.limit.percent of a shard's write limit (1,000 records/s and
 * 1 MiB/s), holding at most one second of tokens. A bucket may go into debt
 * (a record larger than the bucket still gets through once the bucket is
 * positive), so no record size is ever stuck. When the service throttles a
 * shard the bucket's rate is halved (down to 1/16) and recovers by a tenth
 * per second without throttling.
 */
#include "producer_int.h"

#define SHARD_RECORDS_PER_S 1000.0
#define SHARD_BYTES_PER_S (1024.0 * 1024.0)
#define MIN_FACTOR (1.0 / 16.0)

void kn__bucket_init(kn__bucket_t *b, double rate_percent, int64_t now)
{
    b->rec_tokens = SHARD_RECORDS_PER_S * rate_percent / 100.0;
    b->byte_tokens = SHARD_BYTES_PER_S * rate_percent / 100.0;
    b->factor = 1.0;
    b->last_ms = now;
    b->last_throttle_ms = 0;
}

static void refill(kn__bucket_t *b, double rate_percent, int64_t now)
{
    if (now <= b->last_ms)
        return;
    double dt = (double)(now - b->last_ms) / 1000.0;
    b->last_ms = now;
    if (b->factor < 1.0 && now - b->last_throttle_ms > 1000) {
        b->factor += dt / 10.0;
        if (b->factor > 1.0)
            b->factor = 1.0;
    }
    double scale = rate_percent / 100.0 * b->factor;
    double rcap = SHARD_RECORDS_PER_S * scale, bcap = SHARD_BYTES_PER_S * scale;
    b->rec_tokens += rcap * dt;
    b->byte_tokens += bcap * dt;
    if (b->rec_tokens > rcap)
        b->rec_tokens = rcap;
    if (b->byte_tokens > bcap)
        b->byte_tokens = bcap;
}

bool kn__bucket_ready(kn__bucket_t *b, double rate_percent, int64_t now)
{
    refill(b, rate_percent, now);
    return b->rec_tokens > 0 && b->byte_tokens > 0;
}

void kn__bucket_take(kn__bucket_t *b, size_t bytes)
{
    b->rec_tokens -= 1.0;
    b->byte_tokens -= (double)bytes;
}

void kn__bucket_throttled(kn__bucket_t *b, int64_t now)
{
    /* One halving per 100 ms: a request's many throttled entries count once. */
    if (now - b->last_throttle_ms >= 100) {
        b->factor /= 2.0;
        if (b->factor < MIN_FACTOR)
            b->factor = MIN_FACTOR;
    }
    b->last_throttle_ms = now;
}

int64_t kn__bucket_wait_ms(const kn__bucket_t *b, double rate_percent)
{
    double scale = rate_percent / 100.0 * b->factor;
    double need_r = b->rec_tokens > 0 ? 0 : (-b->rec_tokens + 1.0) / (SHARD_RECORDS_PER_S * scale);
    double need_b = b->byte_tokens > 0 ? 0 : (-b->byte_tokens + 1.0) / (SHARD_BYTES_PER_S * scale);
    double s = need_r > need_b ? need_r : need_b;
    int64_t ms = (int64_t)(s * 1000.0) + 1;
    return ms < 1 ? 1 : ms;
}
