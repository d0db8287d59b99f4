"""Shared by the benchmark drivers (producer/bench.py, consumer/bench.py, group/bench.py): a private
kinesalite (and dynalite) on a free loopback port and a boto3 client for setting up streams."""
import http.client
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def answers(port):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        c.request("GET", "/")
        c.getresponse().read()
        c.close()
        return True
    except (OSError, http.client.HTTPException):
        return False


def start_server(what, cmd, port):
    """Starts cmd (a server listening on the loopback port) and waits up to 60 s until it answers:
    (process, URL), or exits saying what failed."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL if what == "moto_server" else None)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit("bench: %s exited at start" % what)
        if answers(port):
            return proc, "http://127.0.0.1:%d" % port
        time.sleep(0.1)
    proc.kill()
    sys.exit("bench: %s did not answer within 60 s" % what)


def start_kinesalite(shard_limit=100):
    port = free_port()
    return start_server("kinesalite", ["node", os.path.join(ROOT, "tests", "servers", "kinesalite-loopback.js"),
                                       "--port", str(port), "--shardLimit", str(shard_limit), "--createStreamMs",
                                       "0", "--deleteStreamMs", "0"], port)


def start_moto():
    """A private moto_server on a free loopback port: at 1,000 shards it answers a GetRecords in a few
    milliseconds, where kinesalite takes about a second (tests/bench/README.md, "shards")."""
    import shutil
    cmd = ["moto_server"] if shutil.which("moto_server") else [sys.executable, "-m", "moto.server"]
    port = free_port()
    return start_server("moto_server", cmd + ["-H", "127.0.0.1", "-p", str(port)], port)


def start_dynalite():
    """A private in-memory dynalite on a free loopback port (the consumer's lease table)."""
    port = free_port()
    return start_server("dynalite", ["node", os.path.join(ROOT, "tests", "servers", "node_modules", "dynalite",
                                                          "cli.js"), "--host", "127.0.0.1", "--port", str(port)], port)


def kinesis(url):
    import boto3
    return boto3.client("kinesis", endpoint_url=url, region_name="us-east-1", aws_access_key_id="AKIDBENCH",
                        aws_secret_access_key="bench-secret")


def create_stream(k, name, shards):
    k.create_stream(StreamName=name, ShardCount=shards)
    for _ in range(300):
        if k.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.1)
    sys.exit("bench: stream %s did not become ACTIVE" % name)
