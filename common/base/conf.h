/*
 * Internal: the property table and typed getters. conf.c owns parsing,
 * validation, aliases and the list dump. Later components add their rows to
 * KN_CONF_PROPS (one table drives defaults, validation, -X list and docs).
 */
#ifndef KN_CONF_H
#define KN_CONF_H

#include <stdbool.h>
#include <stdint.h>

#include "kinesis/common.h"

typedef enum kn__ctype_e {
    KN__CT_STR,    /* free string */
    KN__CT_SECRET, /* string, never printed (reads back as "[redacted]") */
    KN__CT_URL,    /* "" or an http:// / https:// URL */
    KN__CT_INT,    /* int64 within [min, max] */
    KN__CT_BOOL,   /* true/false (also 1/0, yes/no, on/off; case-insensitive) */
    KN__CT_LEVEL,  /* log level name */
    KN__CT_DEBUG,  /* comma-separated debug contexts */
    KN__CT_CHOICE, /* one word of KN_CONF_CHOICES (case-insensitive; kept lower-case; num = its index) */
} kn__ctype_t;

/* X(ID, name, type, default, min, max, doc). min/max apply to INT only. */
#define KN_CONF_PROPS(X)                                                                         \
    X(REGION, "aws.region", KN__CT_STR, "", 0, 0,                                                \
      "AWS region. Empty: AWS_REGION, AWS_DEFAULT_REGION, the profile's region, else us-east-1") \
    X(PROFILE, "aws.profile", KN__CT_STR, "", 0, 0,                                              \
      "Shared-config profile. Empty: AWS_PROFILE, else \"default\"")                             \
    X(ACCESS_KEY_ID, "aws.access.key.id", KN__CT_STR, "", 0, 0,                                  \
      "Static access key id; when set (with the secret) the credential chain is skipped")        \
    X(SECRET_ACCESS_KEY, "aws.secret.access.key", KN__CT_SECRET, "", 0, 0,                       \
      "Static secret access key")                                                                \
    X(SESSION_TOKEN, "aws.session.token", KN__CT_SECRET, "", 0, 0,                               \
      "Static session token (optional)")                                                         \
    X(KINESIS_ENDPOINT, "kinesis.endpoint", KN__CT_URL, "", 0, 0,                                \
      "Kinesis endpoint URL. Empty: AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL, the profile's "  \
      "endpoint_url, else the regional endpoint")                                                \
    X(DYNAMODB_ENDPOINT, "dynamodb.endpoint", KN__CT_URL, "", 0, 0,                              \
      "DynamoDB endpoint URL (lease table). Empty: AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL, "\
      "the profile's endpoint_url, else the regional endpoint")                                  \
    X(STS_ENDPOINT, "sts.endpoint", KN__CT_URL, "", 0, 0,                                        \
      "STS endpoint URL for role credentials. Empty: AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, "   \
      "else the regional endpoint")                                                              \
    X(CLOUDWATCH_ENDPOINT, "cloudwatch.endpoint", KN__CT_URL, "", 0, 0,                          \
      "CloudWatch endpoint URL for the metrics publisher. Empty: AWS_ENDPOINT_URL_CLOUDWATCH, "  \
      "AWS_ENDPOINT_URL, the profile's endpoint_url, else the regional endpoint")                \
    X(CA_BUNDLE, "http.ca.bundle", KN__CT_STR, "", 0, 0,                                         \
      "PEM file of CA certificates. Empty: AWS_CA_BUNDLE, else the system store")                \
    X(TLS_VERIFY, "http.tls.verify", KN__CT_BOOL, "true", 0, 0,                                  \
      "Verify the TLS certificate and host name of the Kinesis and DynamoDB endpoints (false "    \
      "logs a warning; credential traffic stays verified, see aws.credentials.tls.verify)")      \
    X(CREDS_TLS_VERIFY, "aws.credentials.tls.verify", KN__CT_BOOL, "true", 0, 0,                 \
      "Verify the TLS certificates of credential traffic (STS, SSO, container and instance "    \
      "metadata endpoints over https), independently of http.tls.verify")                       \
    X(MAX_CONNECTIONS, "http.max.connections", KN__CT_INT, "24", 1, 256,                         \
      "Maximum concurrent HTTP connections per client")                                          \
    X(CONNECT_TIMEOUT_MS, "http.connect.timeout.ms", KN__CT_INT, "6000", 100, 300000,            \
      "TCP+TLS connect timeout in milliseconds")                                                 \
    X(REQUEST_TIMEOUT_MS, "http.request.timeout.ms", KN__CT_INT, "6000", 100, 600000,            \
      "Timeout of one HTTP request attempt in milliseconds")                                     \
    X(MAX_RESPONSE_BYTES, "http.max.response.bytes", KN__CT_INT, "67108864", 1024,               \
      1073741824, "Largest response body accepted; larger fails with KN_ERR_TOO_LARGE")          \
    X(RETRY_MAX_ATTEMPTS, "aws.retry.max.attempts", KN__CT_INT, "10", 1, 100,                   \
      "Attempts (first try included) of a control-plane request before giving up")              \
    X(RETRY_BASE_MS, "aws.retry.base.ms", KN__CT_INT, "100", 1, 60000,                           \
      "Base delay of exponential backoff with full jitter, in milliseconds")                     \
    X(RETRY_MAX_BACKOFF_MS, "aws.retry.max.backoff.ms", KN__CT_INT, "20000", 1, 600000,          \
      "Largest backoff delay between two attempts, in milliseconds")                             \
    X(PUT_MAX_RECORDS, "kinesis.putrecords.max.records", KN__CT_INT, "500", 1, 100000,           \
      "Most records in one PutRecords request (the service allows 500)")                         \
    X(PUT_MAX_BYTES, "kinesis.putrecords.max.bytes", KN__CT_INT, "5242880", 1024, 1073741824,    \
      "Most bytes (data plus partition keys) in one PutRecords request")                         \
    X(RECORD_MAX_BYTES, "kinesis.record.max.bytes", KN__CT_INT, "1048576", 1, 1073741824,        \
      "Largest record (data plus partition key); the stream's MaxRecordSizeInKiB may raise it")  \
    X(LOG_LEVEL, "log.level", KN__CT_LEVEL, "info", 0, 0,                                        \
      "Least severe level delivered to the log callback: error, warn, info, debug, trace")       \
    X(DEBUG, "debug", KN__CT_DEBUG, "", 0, 0,                                                    \
      "Debug contexts for debug/trace messages: generic,conf,http,sigv4,creds,aws,kinesis,"      \
      "dynamodb,producer,consumer,lease,metrics or all")                                         \
    X(P_BUFFERED_MS, "producer.record.max.buffered.ms", KN__CT_INT, "100", 0, 600000,          \
      "Longest time a record waits to be aggregated and collected before it is sent")           \
    X(P_TTL_MS, "producer.record.ttl.ms", KN__CT_INT, "30000", 100, 86400000,                   \
      "A record not put within this time after kn_producer_put fails with KN_ERR_TIMEOUT")      \
    X(P_AGG_ENABLED, "producer.aggregation.enabled", KN__CT_BOOL, "true", 0, 0,                \
      "Pack user records of one shard into KPL aggregates")                                     \
    X(P_AGG_MAX_COUNT, "producer.aggregation.max.count", KN__CT_INT, "4294967295", 1,          \
      4294967295, "Most user records in one aggregate")                                         \
    X(P_AGG_MAX_BYTES, "producer.aggregation.max.size", KN__CT_INT, "51200", 64, 1048576,      \
      "Largest aggregate in bytes (magic, protobuf and MD5 included)")                          \
    X(P_OUTER_KEY, "producer.aggregation.partition.key", KN__CT_STR, "a", 0, 0,                \
      "Partition key of the Kinesis record that carries an aggregate (its explicit hash key "   \
      "is the first user record's hash key)")                                                   \
    X(P_RATE_LIMIT, "producer.rate.limit.percent", KN__CT_INT, "150", 1, 10000,                \
      "Per-shard rate limit as a percentage of the shard's 1,000 records/s and 1 MiB/s")       \
    X(P_FAIL_IF_THROTTLED, "producer.fail.if.throttled", KN__CT_BOOL, "false", 0, 0,           \
      "Fail a record at once when the service throttles it instead of retrying")               \
    X(P_MAX_INFLIGHT, "producer.max.inflight.requests", KN__CT_INT, "24", 1, 1024,            \
      "Most PutRecords requests in flight per producer")                                        \
    X(P_STRICT_ORDER, "producer.ordering.strict", KN__CT_BOOL, "false", 0, 0,                  \
      "At most one request in flight per shard and retries before later records, so records " \
      "of one partition key land in put order")                                                 \
    X(P_BUF_RECORDS, "producer.buffer.max.records", KN__CT_INT, "200000", 1, 100000000,       \
      "Most records put and not yet served (buffered, in flight or with a result waiting)")    \
    X(P_BUF_BYTES, "producer.buffer.max.bytes", KN__CT_INT, "12582912", 65536,                 \
      68719476736, "Most bytes put and not yet served: data, keys and about 232 bytes of bookkeeping per record")                        \
    X(P_PUT_TIMEOUT_MS, "producer.put.timeout.ms", KN__CT_INT, "60000", 0, 86400000,          \
      "How long a put waits for room (serving the caller's results meanwhile) before "         \
      "KN_ERR_QUEUE_FULL; 0: fail at once")                                                     \
    X(P_BACKGROUND, "producer.results.background", KN__CT_BOOL, "false", 0, 0,                 \
      "Call the result callback from an internal thread instead of kn_producer_poll")          \
    X(P_SHUTDOWN_MS, "producer.shutdown.timeout.ms", KN__CT_INT, "30000", 0, 3600000,          \
      "How long destroy flushes before failing what is left with KN_ERR_DESTROYED")            \
    X(P_COMPRESSION, "producer.compression.codec", KN__CT_STR, "none", 0, 0,                   \
      "none, gzip or zstd")                                                                     \
    X(P_COMPRESSION_SCOPE, "producer.compression.scope", KN__CT_STR, "aggregate", 0, 0,        \
      "aggregate (best ratio, read by libkinesis) or record (each record's data a standard "   \
      "frame tagged content-encoding, read by every KPL deaggregator)")                         \
    X(P_COMPRESSION_LEVEL, "producer.compression.level", KN__CT_INT, "0", -7, 22,             \
      "Codec level; 0: the codec's default")                                                    \
    X(P_STATS_MS, "producer.stats.interval.ms", KN__CT_INT, "0", 0, 86400000,                  \
      "Interval of the stats callback (0: off)")                                                \
    X(C_MAX_RECORDS, "consumer.max.records", KN__CT_INT, "10000", 1, 10000,                    \
      "Most records one GetRecords call asks for (the service allows 10,000)")                  \
    X(C_GETRECORDS_INTERVAL_MS, "consumer.getrecords.interval.ms", KN__CT_INT, "200", 0,       \
      600000, "Least time between the starts of two GetRecords calls on one shard (the service " \
      "allows 5 calls per second per shard)")                                                   \
    X(C_GETRECORDS_TIMEOUT_MS, "consumer.getrecords.timeout.ms", KN__CT_INT, "30000", 100,     \
      600000, "Time one GetRecords call may take, its answer of up to 10 MiB included "         \
      "(http.request.timeout.ms is for small calls)")                                           \
    X(C_IDLE_MS, "consumer.idle.time.ms", KN__CT_INT, "1000", 0, 600000,                       \
      "Wait before the next GetRecords after an empty read of a caught-up shard")               \
    X(C_GETRECORDS_MAX_BYTES, "consumer.getrecords.max.bytes", KN__CT_INT, "4194304", 65536,   \
      67108864, "Largest GetRecords answer a shard asks for: each call's Limit comes from the "  \
      "shard's recent record sizes, so an answer stays near this however far behind the "      \
      "shard is (the service caps answers at 10 MiB; emulators do not)")                        \
    X(C_PREFETCH_SHARD_BYTES, "consumer.prefetch.shard.max.bytes", KN__CT_INT, "8388608", 1,   \
      68719476736, "Response bytes of one shard read but not yet served above which its next "  \
      "GetRecords waits")                                                                       \
    X(C_PREFETCH_BYTES, "consumer.prefetch.max.bytes", KN__CT_INT, "33554432", 1,              \
      68719476736, "Response bytes of all shards read or being read (the expected size of "     \
      "answers in flight) and not yet served, above which no new GetRecords starts")                              \
    X(C_APP_NAME, "consumer.application.name", KN__CT_STR, "", 0, 0,                          \
      "Consumer: the application (consumer group) this worker belongs to; names the lease "    \
      "table unless consumer.table.name is set. Required")                                     \
    X(C_TABLE_NAME, "consumer.table.name", KN__CT_STR, "", 0, 0,                               \
      "Consumer: the DynamoDB lease table. Empty: the application name")                        \
    X(C_WORKER_ID, "consumer.worker.id", KN__CT_STR, "", 0, 0,                                 \
      "Consumer: this worker's id in the lease table. Empty: host name and process id")         \
    X(C_FAILOVER_MS, "consumer.failover.ms", KN__CT_INT, "10000", 1000, 3600000,               \
      "Consumer: how long a lease lasts without renewal; renewals come every third of it, a "   \
      "worker stops processing a shard before its lease can expire for the others")           \
    X(C_LEASE_SCAN_MS, "consumer.lease.scan.ms", KN__CT_INT, "500", 100, 600000,               \
      "Consumer: interval of lease table scans (free, expired and released leases are taken, " \
      "the load balanced); at most a fifth of consumer.failover.ms is used")                  \
    X(C_MAX_LEASES, "consumer.max.leases", KN__CT_INT, "2147483647", 1, 2147483647,            \
      "Consumer: most leases this worker holds")                                                \
    X(C_STEAL_MAX, "consumer.steal.max", KN__CT_INT, "1", 0, 1000,                             \
      "Consumer: most leases asked from busier workers per scan (0: never balance by asking)") \
    X(C_HANDOFF_MS, "consumer.handoff.timeout.ms", KN__CT_INT, "30000", 1000, 3600000,          \
      "Consumer: how long a lease asked for by a busier worker's peer may take to be handed "   \
      "over (the owner finishes its batch and checkpoints); the owner then lets go without "    \
      "its processor, and an owner that never answers (not this library) loses the lease")     \
    X(C_INITIAL_POSITION, "consumer.initial.position", KN__CT_STR, "LATEST", 0, 0,             \
      "Consumer: where shards without a checkpoint start: TRIM_HORIZON, LATEST or "            \
      "AT_TIMESTAMP (consumer.initial.timestamp.ms); children of read shards always start at " \
      "TRIM_HORIZON")                                                                           \
    X(C_INITIAL_TIMESTAMP_MS, "consumer.initial.timestamp.ms", KN__CT_INT, "0", 0,              \
      9223372036854775807, "Consumer: the epoch milliseconds of AT_TIMESTAMP")                   \
    X(C_SHARD_SYNC_MS, "consumer.shard.sync.ms", KN__CT_INT, "60000", 1000, 86400000,          \
      "Consumer: interval of the comparison of the stream's shards with the lease table "       \
      "(leases for new shards); also done at start and when a shard ends")                    \
    X(C_CLEANUP_LEASES, "consumer.cleanup.leases", KN__CT_BOOL, "true", 0, 0,                  \
      "Consumer: delete the lease of a finished shard once its children have started")          \
    X(C_SHARD_END_CHECKPOINT, "consumer.shard.end.checkpoint", KN__CT_STR, "auto", 0, 0,       \
      "Consumer: auto (the consumer checkpoints SHARD_END after shard_ended returns) or "      \
      "processor (shard_ended must call kn_checkpoint, as in the KCL; else it is called again)") \
    X(C_CHECKPOINT_ON_SHUTDOWN, "consumer.checkpoint.on.shutdown", KN__CT_BOOL, "true", 0, 0,  \
      "Consumer: at shutdown and when handing a shard over, checkpoint after the last batch "  \
      "processed when the processor did not")                                                  \
    X(C_PROCESS_EMPTY, "consumer.process.empty.batches", KN__CT_BOOL, "false", 0, 0,           \
      "Consumer: call process_records for empty reads too")                                    \
    X(C_THREADS, "consumer.processor.threads", KN__CT_INT, "8", 1, 1024,                       \
      "Consumer: threads that run record processors (each shard on one at a time)")            \
    X(C_PROCESSOR_RETRY_MS, "consumer.processor.retry.ms", KN__CT_INT, "1000", 1, 3600000,     \
      "Consumer: first wait before a callback that returned an error is called again "         \
      "(doubling up to 30 times that, at most 5 minutes)")                                       \
    X(C_PROCESSOR_MAX_RETRIES, "consumer.processor.max.retries", KN__CT_INT, "0", 0, 1000000,    \
      "Consumer: after this many failed calls in a row of one shard's processor, let the shard "  \
      "go (released, not taken again here for three failover times) so another worker may try; " \
      "0: retry for ever")                                                                       \
    X(C_SHUTDOWN_MS, "consumer.shutdown.timeout.ms", KN__CT_INT, "30000", 0, 3600000,          \
      "Consumer: how long destroy waits for a graceful shutdown before ending shards without "  \
      "a checkpoint")                                                                           \
    X(METRICS_LEVEL, "metrics.level", KN__CT_CHOICE, "detailed", 0, 0,                         \
      "Metrics gathered: none, summary (the main ones) or detailed (all). Metrics are only "    \
      "gathered when a metrics callback is set or metrics.cloudwatch is on")                    \
    X(METRICS_GRANULARITY, "metrics.granularity", KN__CT_CHOICE, "shard", 0, 0,                \
      "Metrics dimensions: global (none), stream (also per stream) or shard (also per shard)")  \
    X(METRICS_NAMESPACE, "metrics.namespace", KN__CT_STR, "", 0, 0,                            \
      "CloudWatch namespace. Empty: KinesisProducerLibrary for a producer, the application "    \
      "name for a consumer (as the KPL and the KCL do)")                                        \
    X(METRICS_INTERVAL_MS, "metrics.interval.ms", KN__CT_INT, "60000", 100, 86400000,          \
      "Window over which each metric is aggregated; one callback and one upload per window")    \
    X(METRICS_CLOUDWATCH, "metrics.cloudwatch", KN__CT_BOOL, "false", 0, 0,                    \
      "Publish the metrics to CloudWatch (PutMetricData), in the background")                   \
    X(METRICS_MAX_BYTES, "metrics.cloudwatch.max.bytes", KN__CT_INT, "4194304", 65536,         \
      1073741824, "PutMetricData bodies waiting or in flight at most; beyond, a window's "     \
      "upload is dropped (counted and logged), never the data path held up")                   \
    X(METRICS_SHUTDOWN_MS, "metrics.cloudwatch.shutdown.ms", KN__CT_INT, "5000", 0, 600000,    \
      "How long destroy waits for the last uploads to CloudWatch")

/* The words a CHOICE property takes, "|"-separated, in the order of their numbers. */
#define KN_CONF_CHOICES(X)                                                                       \
    X(METRICS_LEVEL, "none|summary|detailed")                                                    \
    X(METRICS_GRANULARITY, "global|stream|shard")

#define KN__PROP_ENUM(id, name, type, def, min, max, doc) KN_P_##id,
typedef enum kn__prop_e { KN_CONF_PROPS(KN__PROP_ENUM) KN_P__COUNT } kn__prop_t;
#undef KN__PROP_ENUM

/*
 * How an alias's value becomes the target property's value.
 *   SAME       unchanged (the units already match, e.g. KPL RequestTimeout in ms)
 *   SEC_TO_MS  the alias takes whole seconds, the target milliseconds
 *   HOST       the KPL's "<Service>Endpoint": a bare host name; with the PORT
 *              alias of the same target it forms https://host[:port] (":443"
 *              left out), whichever of the two is set first
 *   PORT       the KPL's "<Service>Port" (1..65535, default 443)
 */
typedef enum kn__conv_e {
    KN__CONV_SAME,
    KN__CONV_SEC_TO_MS,
    KN__CONV_HOST,
    KN__CONV_PORT,
} kn__conv_t;

/*
 * KPL and KCL property names we implement, matched case-sensitively.
 * X(alias, origin, target ID, conversion). origin is KPL or KCL. A later
 * component that implements a KPL/KCL setting adds its property row above and
 * one line here (and drops the name from KN_CONF_FOREIGN below), e.g.
 *   X("failoverTimeMillis", KCL, CONSUMER_FAILOVER_MS, SAME)
 *   X("timeoutInSeconds", KCL, CONSUMER_PROCESS_TIMEOUT_MS, SEC_TO_MS)
 */
#define KN_CONF_ALIASES(X)                                                                       \
    X("Region", KPL, REGION, SAME)                                                               \
    X("MaxConnections", KPL, MAX_CONNECTIONS, SAME)                                              \
    X("RequestTimeout", KPL, REQUEST_TIMEOUT_MS, SAME)                                           \
    X("ConnectTimeout", KPL, CONNECT_TIMEOUT_MS, SAME)                                           \
    X("VerifyCertificate", KPL, TLS_VERIFY, SAME)                                                \
    X("LogLevel", KPL, LOG_LEVEL, SAME)                                                          \
    X("KinesisEndpoint", KPL, KINESIS_ENDPOINT, HOST)                                            \
    X("KinesisPort", KPL, KINESIS_ENDPOINT, PORT)                                                \
    X("StsEndpoint", KPL, STS_ENDPOINT, HOST)                                                    \
    X("StsPort", KPL, STS_ENDPOINT, PORT)                                                        \
    X("CloudwatchEndpoint", KPL, CLOUDWATCH_ENDPOINT, HOST)                                      \
    X("CloudwatchPort", KPL, CLOUDWATCH_ENDPOINT, PORT)                                          \
    X("MetricsLevel", KPL, METRICS_LEVEL, SAME)                                                  \
    X("MetricsGranularity", KPL, METRICS_GRANULARITY, SAME)                                      \
    X("MetricsNamespace", KPL, METRICS_NAMESPACE, SAME)                                          \
    X("MetricsUploadDelay", KPL, METRICS_INTERVAL_MS, SAME)                                      \
    X("metricsLevel", KCL, METRICS_LEVEL, SAME)                                                  \
    X("metricsBufferTimeMillis", KCL, METRICS_INTERVAL_MS, SAME)                                 \
    X("CaCertFile", KPL, CA_BUNDLE, SAME)                                                        \
    X("CollectionMaxCount", KPL, PUT_MAX_RECORDS, SAME)                                          \
    X("CollectionMaxSize", KPL, PUT_MAX_BYTES, SAME)                                             \
    X("regionName", KCL, REGION, SAME)                                                           \
    X("kinesisEndpoint", KCL, KINESIS_ENDPOINT, SAME)                                            \
    X("dynamoDBEndpoint", KCL, DYNAMODB_ENDPOINT, SAME)                                          \
    X("RecordMaxBufferedTime", KPL, P_BUFFERED_MS, SAME)                                         \
    X("RecordTtl", KPL, P_TTL_MS, SAME)                                                          \
    X("AggregationEnabled", KPL, P_AGG_ENABLED, SAME)                                            \
    X("AggregationMaxCount", KPL, P_AGG_MAX_COUNT, SAME)                                         \
    X("AggregationMaxSize", KPL, P_AGG_MAX_BYTES, SAME)                                          \
    X("RateLimit", KPL, P_RATE_LIMIT, SAME)                                                      \
    X("FailIfThrottled", KPL, P_FAIL_IF_THROTTLED, SAME)                                         \
    X("maxRecords", KCL, C_MAX_RECORDS, SAME)                                                    \
    X("idleTimeBetweenReadsInMillis", KCL, C_IDLE_MS, SAME)                                      \
    X("applicationName", KCL, C_APP_NAME, SAME)                                                  \
    X("tableName", KCL, C_TABLE_NAME, SAME)                                                      \
    X("workerId", KCL, C_WORKER_ID, SAME)                                                        \
    X("failoverTimeMillis", KCL, C_FAILOVER_MS, SAME)                                            \
    X("maxLeasesForWorker", KCL, C_MAX_LEASES, SAME)                                             \
    X("maxLeasesToStealAtOneTime", KCL, C_STEAL_MAX, SAME)                                       \
    X("initialPositionInStream", KCL, C_INITIAL_POSITION, SAME)                                  \
    X("shardSyncIntervalMillis", KCL, C_SHARD_SYNC_MS, SAME)                                     \
    X("cleanupLeasesUponShardCompletion", KCL, C_CLEANUP_LEASES, SAME)                           \
    X("callProcessRecordsEvenForEmptyRecordList", KCL, C_PROCESS_EMPTY, SAME)

/*
 * KPL and KCL names that no component of ours reads yet. Setting one (for
 * example from a KCL MultiLang .properties file) is accepted without
 * validation and the value is kept as a pass-through "extra": kn_conf_get()
 * and kn__conf_extra() return it, so the component that implements it can
 * pick it up. Any other unknown name is rejected with KN_ERR_CONF_UNKNOWN, so
 * typos still fail. X(name, origin, secret): secret extras read back as
 * "[redacted]" through kn_conf_get().
 */
#define KN_CONF_FOREIGN(X)                                                                       \
    /* KPL (KinesisProducerConfiguration) */                                                     \
    X("CaCertPath", KPL, 0)                                                                      \
    X("CredentialsRefreshDelay", KPL, 0)                                                         \
    X("EnableCoreDumps", KPL, 0)                                                                 \
    X("EnableOldestFutureTracker", KPL, 0)                                                       \
    X("GlueSchemaRegistryPropertiesFilePath", KPL, 0)                                            \
    X("MinConnections", KPL, 0)                                                                  \
    X("NativeExecutable", KPL, 0)                                                                \
    X("ProxyHost", KPL, 0)                                                                       \
    X("ProxyPassword", KPL, 1)                                                                   \
    X("ProxyPort", KPL, 0)                                                                       \
    X("ProxyUserName", KPL, 0)                                                                   \
    X("TempDirectory", KPL, 0)                                                                   \
    X("ThreadPoolSize", KPL, 0)                                                                  \
    X("ThreadingModel", KPL, 0)                                                                  \
    X("UserRecordTimeoutInMillis", KPL, 0)                                                       \
    /* KCL (MultiLangDaemon properties) */                                                       \
    X("executableName", KCL, 0)                                                                  \
    X("streamName", KCL, 0)                                                                      \
    X("streamArn", KCL, 0)                                                                       \
    X("processingLanguage", KCL, 0)                                                              \
    X("AWSCredentialsProvider", KCL, 0)                                                          \
    X("AWSCredentialsProviderDynamoDB", KCL, 0)                                                  \
    X("AWSCredentialsProviderCloudWatch", KCL, 0)                                                \
    X("AwsCredentialsProvider", KCL, 0)                                                          \
    X("AwsCredentialsProviderDynamoDB", KCL, 0)                                                  \
    X("AwsCredentialsProviderCloudWatch", KCL, 0)                                                \
    X("initialPositionInStreamExtended", KCL, 0)                                                 \
    X("ignoreUnexpectedChildShards", KCL, 0)                                                     \
    X("initialLeaseTableReadCapacity", KCL, 0)                                                   \
    X("initialLeaseTableWriteCapacity", KCL, 0)                                                  \
    X("maxLeaseRenewalThreads", KCL, 0)                                                          \
    X("enablePriorityLeaseAssignment", KCL, 0)                                                   \
    X("listShardsBackoffTimeInMillis", KCL, 0)                                                   \
    X("maxListShardsRetryAttempts", KCL, 0)                                                      \
    X("retryGetRecordsInSeconds", KCL, 0)                                                        \
    X("maxGetRecordsThreadPool", KCL, 0)                                                         \
    X("parentShardPollIntervalMillis", KCL, 0)                                                   \
    X("shardPrioritization", KCL, 0)                                                             \
    X("skipShardSyncAtWorkerInitializationIfLeasesExist", KCL, 0)                                \
    X("schedulerInitializationBackoffTimeMillis", KCL, 0)                                        \
    X("taskBackoffTimeMillis", KCL, 0)                                                           \
    X("logWarningForTaskAfterMillis", KCL, 0)                                                    \
    X("metricsMaxQueueSize", KCL, 0)                                                             \
    X("metricsEnabledDimensions", KCL, 0)                                                        \
    X("validateSequenceNumberBeforeCheckpointing", KCL, 0)                                       \
    X("shutdownGraceMillis", KCL, 0)                                                             \
    X("timeoutInSeconds", KCL, 0)                                                                \
    X("maxActiveThreads", KCL, 0)                                                                \
    X("retrievalMode", KCL, 0)                                                                   \
    X("consumerArn", KCL, 0)                                                                     \
    X("consumerName", KCL, 0)                                                                    \
    X("clientVersionConfig", KCL, 0)

/*
 * Typed getters. kn__conf_str works for every type and returns the
 * normalized text (integers in decimal, booleans as "true"/"false", levels by
 * their canonical name) and, unlike kn_conf_get(), the real value of a secret;
 * never NULL. kn__conf_int accepts INT, LEVEL (the kn_log_level_t value) and
 * DEBUG (the context bit mask); kn__conf_bool accepts BOOL. A wrong type is a
 * programming error (asserted).
 */
const char *kn__conf_str(const kn_conf_t *conf, kn__prop_t id);
int64_t kn__conf_int(const kn_conf_t *conf, kn__prop_t id);
bool kn__conf_bool(const kn_conf_t *conf, kn__prop_t id);
/* Whether the property was set explicitly (not the default). */
bool kn__conf_is_set(const kn_conf_t *conf, kn__prop_t id);
/*
 * Callbacks of components above common/ (the producer's result and stats
 * callbacks), kept as untyped function pointers; each component casts back
 * to its own type.
 */
typedef void(kn__conf_fn_t)(void);
typedef enum kn__conf_cb_e { KN__CB_RESULT, KN__CB_STATS, KN__CB_METRICS, KN__CB__COUNT } kn__conf_cb_t;
void kn__conf_set_cb(kn_conf_t *conf, kn__conf_cb_t which, kn__conf_fn_t *fn, void *opaque);
kn__conf_fn_t *kn__conf_cb(const kn_conf_t *conf, kn__conf_cb_t which, void **opaque);

/* The log callback set with kn_conf_set_log_cb(). */
kn_log_cb_t *kn__conf_log_cb(const kn_conf_t *conf, void **opaque);
/*
 * The value of a pass-through KPL/KCL name (KN_CONF_FOREIGN) as set, secrets
 * included, or NULL when it was not set. Valid until the conf changes.
 */
const char *kn__conf_extra(const kn_conf_t *conf, const char *name);

/*
 * Sets target from value given in an alias's units (what an alias row does);
 * errors start with label. For tests, and for code that takes KPL/KCL-style
 * values from somewhere other than a name.
 */
kn_err_t kn__conf_set_as(kn_conf_t *conf, const char *label, kn__prop_t target, kn__conv_t conv,
                         const char *value, char *errstr, size_t size);

/*
 * Checks the tables for mistakes a compiler cannot see: defaults that fail
 * their own validation, min > max, duplicate names across properties,
 * aliases and foreign names, HOST/PORT aliases without their partner.
 * Returns 0, or -1 with the first problem in errstr. Used by the unit test.
 */
int kn__conf_check_tables(char *errstr, size_t size);

#endif
