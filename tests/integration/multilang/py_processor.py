#!/usr/bin/env python3
"""A record processor that speaks the KCL MultiLang protocol itself, as amazon_kclpy does (a blank
line before each message, one JSON object per line): every record appended to $KN_ML_OUT, a
checkpoint after each batch at its last record (sequence and sub-sequence numbers), SHARD_END at
shardEnded. Exits when its stdin closes."""
import base64
import json
import os
import sys

OUT = os.environ["KN_ML_OUT"]
shard = "?"


def note(line):
    with open(OUT, "a") as f:
        f.write(line + "\n")


def send(msg):
    sys.stdout.write("\n" + json.dumps(msg) + "\n")
    sys.stdout.flush()


def receive():
    while True:
        line = sys.stdin.readline()
        if not line:
            return None
        line = line.strip()
        if line:
            return json.loads(line)


def checkpoint(seq=None, sub=None):
    req = {"action": "checkpoint", "sequenceNumber": seq}
    if sub is not None:
        req["subSequenceNumber"] = sub
    send(req)
    reply = receive()
    if reply is None or reply.get("action") != "checkpoint":
        sys.exit("no checkpoint reply: %r" % reply)
    return reply.get("error")


while True:
    m = receive()
    if m is None:
        break
    a = m["action"]
    if a == "initialize":
        shard = m["shardId"]
        note("INIT %s %s %d" % (shard, m["sequenceNumber"], os.getpid()))
    elif a == "processRecords":
        recs = m["records"]
        for r in recs:
            note("REC %s %s %s %s %s" % (shard, r["sequenceNumber"], r["subSequenceNumber"], r["partitionKey"],
                                         base64.b64decode(r["data"]).decode()))
        if recs:
            err = checkpoint(recs[-1]["sequenceNumber"], recs[-1]["subSequenceNumber"])
            note("CK %s %s %s" % (shard, recs[-1]["sequenceNumber"], err or "ok"))
    elif a == "leaseLost":
        note("LOST %s" % shard)
    elif a == "shardEnded":
        note("ENDED %s %s" % (shard, checkpoint() or "ok"))
    elif a == "shutdownRequested":
        note("SHUTDOWN %s %s" % (shard, checkpoint() or "ok"))
    send({"action": "status", "responseFor": a})
