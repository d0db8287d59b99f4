#!/usr/bin/env python3
"""A scripted MultiLang child for the daemon's tests, by $KN_ML_MODE:
  transcript  every line in and out is logged ("> " what the daemon sent, "< " what we sent) to
              $KN_ML_OUT.<shard>; it tries each checkpoint the protocol allows and refuses:
              in initialize (refused), past the last record and not a number (refused), at the
              last record (accepted), in leaseLost (refused), at SHARD_END in shardEnded, and in
              shutdownRequested; it writes a line that is not a message before each status
  crash       on the shard $KN_ML_BAD_SHARD, the first process exits (status 3) in processRecords
  hang        ... the first process stops answering in processRecords
  garbage     ... the first process writes lines that are not messages, then a status for the
              wrong action
Every process also appends "INIT <shard> <pid>" and "REC <shard> <seq> <sub> <data>" lines to
$KN_ML_OUT, checkpoints each batch at its last record, and writes one line to stderr.
$KN_ML_STATE is a directory for marks (which shard misbehaved already)."""
import base64
import json
import os
import sys
import time

MODE = os.environ.get("KN_ML_MODE", "transcript")
OUT = os.environ["KN_ML_OUT"]
STATE = os.environ.get("KN_ML_STATE", "/tmp")
BAD = os.environ.get("KN_ML_BAD_SHARD", "")
shard = None
pending = []  # transcript lines before the shard is known


def log(line):
    if MODE != "transcript":
        return
    if shard is None:
        pending.append(line)
        return
    with open("%s.%s" % (OUT, shard), "a") as f:
        for p in pending:
            f.write(p + "\n")
        pending.clear()
        f.write(line + "\n")


def note(line):
    with open(OUT, "a") as f:
        f.write(line + "\n")


def send_raw(text):
    log("< " + text)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def send(msg):
    send_raw(json.dumps(msg, separators=(",", ":")))


def receive():
    while True:
        line = sys.stdin.readline()
        if not line:
            return None
        line = line.rstrip("\n")
        log("> " + line)
        if line.strip():
            return json.loads(line)


def checkpoint(seq, sub=None, with_sub=False):
    req = {"action": "checkpoint", "sequenceNumber": seq}
    if with_sub:
        req["subSequenceNumber"] = sub
    send(req)
    reply = receive()
    return reply.get("error") if reply else "no reply"


def misbehaving_first_time():
    if shard != BAD:
        return False
    mark = os.path.join(STATE, "bad-%s" % shard)
    if os.path.exists(mark):
        return False
    open(mark, "w").close()
    return True


batches = 0
while True:
    m = receive()
    if m is None:
        break
    a = m["action"]
    if a == "initialize":
        shard = m["shardId"]
        note("INIT %s %d" % (shard, os.getpid()))
        sys.stderr.write("scripted child for %s starting (%s)\n" % (shard, MODE))
        sys.stderr.flush()
        if MODE == "transcript":
            checkpoint(None)  # not allowed in initialize
    elif a == "processRecords":
        recs = m["records"]
        if MODE != "transcript" and misbehaving_first_time():
            if MODE == "crash":
                sys.exit(3)
            if MODE == "hang":
                time.sleep(3600)
            if MODE == "garbage":
                for i in range(5):
                    send_raw("this is not a message %d" % i)
                send({"action": "status", "responseFor": "initialize"})
                time.sleep(3600)
        for r in recs:
            note("REC %s %s %s %s" % (shard, r["sequenceNumber"], r["subSequenceNumber"],
                                      base64.b64decode(r["data"]).decode()))
        if recs:
            last = recs[-1]
            if MODE == "transcript" and batches == 0:
                checkpoint(last["sequenceNumber"] + "0")       # past the last record
                checkpoint("not-a-number")                      # not a sequence number
                checkpoint(last["sequenceNumber"], last["subSequenceNumber"], True)
            else:
                checkpoint(None)
        batches += 1
    elif a == "leaseLost":
        note("LOST %s" % shard)
        if MODE == "transcript":
            checkpoint(None)  # refused: the lease is gone
    elif a == "shardEnded":
        note("ENDED %s" % shard)
        checkpoint(None)
    elif a == "shutdownRequested":
        note("SHUTDOWN %s" % shard)
        checkpoint(None)
    if MODE == "transcript":
        send_raw("a line that is not a message")
    send({"action": "status", "responseFor": a})
