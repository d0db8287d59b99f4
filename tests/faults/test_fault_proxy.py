#!/usr/bin/env python3
"""The fault proxy itself, against kinesalite, through boto3 (the fault tests trust what it does):
  - partial PutRecords failures: the chosen entries fail with the chosen code, FailedRecordCount is
    set, the answer keeps request order, only the survivors reach the stream (in order);
  - whole-request throttling, 500s, resets, corrupt and slow answers, only for the targeted operations;
  - run-time config and per-kind stats;
  - its own kinesalite (--kinesalite-path) killed and restarted keeps the stream and its records;
  - ExpiredIteratorException on GetRecords (--expire-fraction), and ChildShards added to the last
    GetRecords answer of a closed shard (--add-child-shards) after a split and a merge.
Needs KN_TEST_KINESALITE_URL (tests/servers/with-servers.sh).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3
import botocore.config
import botocore.exceptions

HERE = os.path.dirname(os.path.abspath(__file__))


def start(*args):
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "fault_proxy.py"), *args], stdout=subprocess.PIPE,
                         text=True)
    line = p.stdout.readline()
    assert line.startswith("PORT "), line
    return p, int(line.split()[1])


def ctl(port, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    return json.loads(urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), data=data, timeout=90).read())


def client(url):
    return boto3.client("kinesis", endpoint_url=url, region_name="us-east-1", aws_access_key_id="AKIDPROXY",
                        aws_secret_access_key="proxy-secret",
                        config=botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"},
                                                      read_timeout=30, connect_timeout=5))


def wait_active(k, name):
    for _ in range(300):
        if k.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.1)
    raise AssertionError("stream %s not ACTIVE" % name)


def read_all(k, name):
    out = []
    for sh in k.list_shards(StreamName=name)["Shards"]:
        it = k.get_shard_iterator(StreamName=name, ShardId=sh["ShardId"],
                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            r = k.get_records(ShardIterator=it, Limit=10000)
            out += [(sh["ShardId"], x["SequenceNumber"], x["Data"]) for x in r["Records"]]
            if not r["Records"]:
                break
            it = r.get("NextShardIterator")
    return out


def expect_error(fn, code):
    try:
        fn()
    except botocore.exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == code or str(e.response["ResponseMetadata"].get("HTTPStatusCode")) \
            == code, e.response
        return
    raise AssertionError("no %s error" % code)


def test_partial_and_whole_request_faults(upstream):
    p, port = start(upstream, "--seed", "3", "--partial-every", "4", "--partial-error", "InternalFailure")
    try:
        k = client("http://127.0.0.1:%d" % port)
        direct = client(upstream)
        name = "knproxy-%d-%d" % (os.getpid(), int(time.time() * 1000) % 1000000)
        k.create_stream(StreamName=name, ShardCount=1)
        wait_active(direct, name)
        recs = [{"Data": b"d%03d" % i, "PartitionKey": "k%d" % i} for i in range(25)]
        r = k.put_records(StreamName=name, Records=recs)
        failed = [i for i, e in enumerate(r["Records"]) if "ErrorCode" in e]
        assert failed == [3, 7, 11, 15, 19, 23], failed
        assert r["FailedRecordCount"] == 6, r["FailedRecordCount"]
        assert all(r["Records"][i]["ErrorCode"] == "InternalFailure" for i in failed)
        assert all("SequenceNumber" in e and "ShardId" in e for i, e in enumerate(r["Records"]) if i not in failed)
        got = read_all(direct, name)
        want = [b"d%03d" % i for i in range(25) if i not in failed]
        assert [d for _, _, d in got] == want, got
        # The answer's sequence numbers are those of the records in the stream, in request order.
        seqs = [e["SequenceNumber"] for i, e in enumerate(r["Records"]) if i not in failed]
        assert seqs == [s for _, s, _ in got]

        st = ctl(port, "/__proxy/stats")
        assert st["kinds"]["partial_entries"] == 6 and st["kinds"]["partial_requests"] == 1, st["kinds"]
        assert st["put_entries"] == 25

        # Whole-request faults hit only the targeted operation.
        ctl(port, "/__proxy/config", {"partial_every": 0, "throttle_fraction": 1.0})
        expect_error(lambda: k.put_records(StreamName=name, Records=recs[:2]),
                     "ProvisionedThroughputExceededException")
        k.describe_stream_summary(StreamName=name)  # not targeted: forwarded
        ctl(port, "/__proxy/config", {"throttle_fraction": 0, "error_fraction": 1.0})
        expect_error(lambda: k.put_records(StreamName=name, Records=recs[:2]), "InternalFailure")
        ctl(port, "/__proxy/config", {"error_fraction": 0, "reset_fraction": 1.0})
        try:
            k.put_records(StreamName=name, Records=recs[:2])
            raise AssertionError("no connection error")
        except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError):
            pass
        ctl(port, "/__proxy/config", {"reset_fraction": 0, "corrupt_fraction": 1.0})
        before = len(read_all(direct, name))
        try:  # botocore either fails to parse the cut JSON or gives up on it and returns no records
            r = k.put_records(StreamName=name, Records=recs[:2])
            assert len(r.get("Records") or []) != 2, r
        except botocore.exceptions.BotoCoreError:
            pass
        assert len(read_all(direct, name)) == before + 2  # the request took effect
        ctl(port, "/__proxy/config", {"corrupt_fraction": 0, "slow_fraction": 1.0, "slow_ms": 300})
        t0 = time.time()
        k.put_records(StreamName=name, Records=recs[:2])
        assert time.time() - t0 >= 0.3
        st = ctl(port, "/__proxy/stats")
        assert st["kinds"]["throttle"] >= 1 and st["kinds"]["error"] >= 1 and st["kinds"]["reset"] >= 1 \
            and st["kinds"]["slow"] == 1 and st["kinds"]["corrupt"] == 1, st["kinds"]
        direct.delete_stream(StreamName=name)
    finally:
        p.terminate()
        p.wait()


def test_expired_iterators_and_child_shards(upstream):
    p, port = start(upstream, "--fault-target", "GetRecords", "--add-child-shards")
    try:
        k = client("http://127.0.0.1:%d" % port)
        direct = client(upstream)
        name = "knproxy-child-%d-%d" % (os.getpid(), int(time.time() * 1000) % 1000000)
        direct.create_stream(StreamName=name, ShardCount=1)
        wait_active(direct, name)
        direct.put_record(StreamName=name, Data=b"p", PartitionKey="a")
        direct.split_shard(StreamName=name, ShardToSplit="shardId-000000000000",
                           NewStartingHashKey=str(2 ** 127))
        wait_active(direct, name)
        direct.merge_shards(StreamName=name, ShardToMerge="shardId-000000000001",
                            AdjacentShardToMerge="shardId-000000000002")
        wait_active(direct, name)

        def last_answer(shard):
            it = k.get_shard_iterator(StreamName=name, ShardId=shard,
                                      ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            for _ in range(100):
                r = k.get_records(ShardIterator=it)
                if not r.get("NextShardIterator"):
                    return r
                it = r["NextShardIterator"]
            raise AssertionError("shard %s did not end" % shard)

        r = last_answer("shardId-000000000000")
        got = sorted((c["ShardId"], tuple(c["ParentShards"])) for c in r["ChildShards"])
        assert got == [("shardId-000000000001", ("shardId-000000000000",)),
                       ("shardId-000000000002", ("shardId-000000000000",))], r["ChildShards"]
        assert all("StartingHashKey" in c["HashKeyRange"] for c in r["ChildShards"])
        r = last_answer("shardId-000000000002")
        assert [(c["ShardId"], sorted(c["ParentShards"])) for c in r["ChildShards"]] == \
            [("shardId-000000000003", ["shardId-000000000001", "shardId-000000000002"])], r["ChildShards"]
        # An open shard's answers are left alone.
        it = k.get_shard_iterator(StreamName=name, ShardId="shardId-000000000003",
                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        r = k.get_records(ShardIterator=it)
        assert r.get("NextShardIterator") and "ChildShards" not in r, r
        assert ctl(port, "/__proxy/stats")["kinds"]["child_shards"] == 2

        ctl(port, "/__proxy/config", {"expire_fraction": 1.0})
        expect_error(lambda: k.get_records(ShardIterator=it), "ExpiredIteratorException")
        k.list_shards(StreamName=name)  # not targeted: forwarded
        ctl(port, "/__proxy/config", {"expire_fraction": 0})
        k.get_records(ShardIterator=it)
        assert ctl(port, "/__proxy/stats")["kinds"]["expire"] == 1
        direct.delete_stream(StreamName=name)
    finally:
        p.terminate()
        p.wait()


def test_own_kinesalite_restart():
    d = tempfile.mkdtemp(prefix="kn-proxy-")
    p, port = start("--kinesalite-path", d)
    try:
        k = client("http://127.0.0.1:%d" % port)
        name = "knproxy-restart-%d" % os.getpid()
        k.create_stream(StreamName=name, ShardCount=1)
        wait_active(k, name)
        k.put_record(StreamName=name, Data=b"before", PartitionKey="a")
        assert ctl(port, "/__proxy/upstream/stop", {})["result"] == "stopped"
        expect_error(lambda: k.put_record(StreamName=name, Data=b"during", PartitionKey="a"), "502")
        assert ctl(port, "/__proxy/upstream/start", {})["result"] == "started"
        k.put_record(StreamName=name, Data=b"after", PartitionKey="a")
        assert [x for _, _, x in read_all(k, name)] == [b"before", b"after"]
        assert ctl(port, "/__proxy/stats")["kinds"]["upstream_down"] >= 1
    finally:
        p.terminate()
        p.wait()
        shutil.rmtree(d, ignore_errors=True)


def main():
    upstream = os.environ.get("KN_TEST_KINESALITE_URL")
    if not upstream:
        print("KN_TEST_KINESALITE_URL is not set: run through tests/servers/with-servers.sh", file=sys.stderr)
        return 1
    for t in (lambda: test_partial_and_whole_request_faults(upstream),
              lambda: test_expired_iterators_and_child_shards(upstream), test_own_kinesalite_restart):
        t()
    print("fault proxy: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
