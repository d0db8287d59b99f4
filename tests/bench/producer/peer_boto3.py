#!/usr/bin/env python3
"""Producer benchmark, Python peer: boto3 put_records of 500 records a call, no aggregation, failed
entries resent. Records: 100-byte windows into a random pool, keys of 16 random hex digits (as in
producer_bench.c). Prints one JSON line like producer_bench.

Usage: peer_boto3.py ENDPOINT STREAM COUNT
"""
import json
import os
import random
import resource
import sys
import time

import boto3
import botocore.config


def main():
    endpoint, stream, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    t0 = time.monotonic()
    k = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="AKIDBENCH",
                     aws_secret_access_key="bench-secret",
                     config=botocore.config.Config(retries={"max_attempts": 10, "mode": "standard"}))
    pool = os.urandom(65536)
    rnd = random.Random(1)
    ok = failed = 0
    first_error = ""
    done = 0
    while done < count:
        n = min(500, count - done)
        batch = []
        for _ in range(n):
            v = rnd.getrandbits(64)
            off = v % (len(pool) - 100)
            batch.append({"PartitionKey": "%016x" % v, "Data": pool[off:off + 100]})
        done += n
        while batch:
            res = k.put_records(StreamName=stream, Records=batch)
            retry = []
            for entry, r in zip(batch, res["Records"]):
                if "ErrorCode" in r:
                    retry.append(entry)
                    first_error = first_error or r["ErrorCode"]
                else:
                    ok += 1
            batch = retry
    wall = time.monotonic() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"impl": "boto3", "records": count, "ok": ok, "failed": failed, "wall_s": round(wall, 3),
                      "cpu_user_s": ru.ru_utime, "cpu_sys_s": ru.ru_stime, "maxrss_kib": ru.ru_maxrss,
                      "first_error": first_error}))
    return 0 if ok == count else 1


if __name__ == "__main__":
    sys.exit(main())
