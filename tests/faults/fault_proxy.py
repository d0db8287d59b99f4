#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of a real server (kinesalite, dynalite, moto).

Usage: fault_proxy.py UPSTREAM_URL [options]
       fault_proxy.py --kinesalite-path DIR [options]
  Prints "PORT <n>" as its first line on stdout once it listens on 127.0.0.1:<n> (and, with
  --kinesalite-path, once its own kinesalite answers).

Faults are applied to requests in arrival order (control requests excluded):
  --fail-first N         answer the first N requests with --fail-status/--fail-body instead of forwarding
  --fail-status S        status of injected failures (default 500)
  --fail-body B          body of injected failures (default an InternalFailure JSON error)
  --fail-header H:V      extra header on injected failures (repeatable)
  --reset-first N        close the connection without answering the first N requests
  --skew-seconds S       the proxy's clock runs S seconds ahead of the real one: a request whose X-Amz-Date
                         is more than 300 s from the proxy's clock gets InvalidSignatureException with the
                         proxy's Date; other requests are forwarded and answered with the proxy's Date
  --delay-ms MS          wait before forwarding each request

Random faults (seeded; they apply only to requests whose X-Amz-Target operation is in --fault-target):
  --seed N               seed of the proxy's random choices (default 1)
  --fault-target OPS     comma-separated operations (e.g. PutRecords,PutRecord); "all" for every request
                         (default PutRecords)
  One draw per request picks at most one of these (fractions of matching requests):
  --reset-fraction F     close the connection without answering and without forwarding
  --error-fraction F     answer 500 InternalFailure without forwarding
  --throttle-fraction F  answer 400 ProvisionedThroughputExceededException without forwarding
  --lost-answer-fraction F  forward, then close the connection without answering (the request took
                         effect; the client cannot know)
  --corrupt-fraction F   forward, then answer 200 with the upstream's body cut in half (broken JSON; the
                         request took effect)
  --expire-fraction F    answer 400 ExpiredIteratorException without forwarding (meant for GetRecords)
  Independently of that draw, for requests that are forwarded:
  --slow-fraction F      answer late: wait --slow-ms after the upstream answered (default 2000)
  --partial-every K      PutRecords: fail every K-th entry the proxy sees (one counter over all requests)
  --partial-fraction F   PutRecords: fail each entry with probability F
  --partial-error CODE   error code of failed entries (repeatable; one is picked at random per entry;
                         default ProvisionedThroughputExceededException). InternalFailure is the other
                         code the service uses.
  --rewrite-shard FROM=TO  PutRecords: in answers the upstream sends, say that entries stored on shard FROM
                         landed on shard TO (repeatable): what a producer sees when the service routes a
                         record to a shard its map did not predict (after a reshard). The records stay where
                         the upstream put them. Counted in kinds.rewritten (entries). Independent of
                         --fault-target.
  --add-child-shards     GetRecords: when the upstream's answer ends a closed shard (no NextShardIterator)
                         and has no ChildShards, add them as the service does, from a ListShards of the
                         upstream (children: shards naming the shard as parent or adjacent parent). The
                         proxy learns which stream and shard an iterator belongs to from the GetShardIterator
                         and GetRecords answers it forwards (kinds.child_shards counts the answers changed).
                         Independent of --fault-target.
  Partial failures: only the surviving entries are forwarded (the body is re-serialised, so the
  signature no longer matches: fine for kinesalite, which does not check it); the upstream's answer
  is merged with the failed entries in request order and FailedRecordCount is set. When every entry
  of a request is picked, nothing is forwarded.

Upstream:
  --kinesalite-path DIR  start our own kinesalite (tests/servers/kinesalite-loopback.js --path DIR) on a
                         free loopback port as the upstream; it is killed when the proxy exits. Then
     POST /__proxy/upstream/stop   kills it (SIGKILL: as a crash) and waits for it to exit;
     POST /__proxy/upstream/start  starts it again on the same port and path, waits until it answers.
  While the upstream is down, requests get 502 Bad Gateway (counted as "upstream_down").

Control:
  GET /__proxy/stats returns {"requests": n, "forwarded": n, "injected": n, "dates": [X-Amz-Date...],
      "kinds": {"reset": n, "error": n, "throttle": n, "lost_answer": n, "corrupt": n, "slow": n,
                "partial_requests": n, "partial_entries": n, "upstream_down": n},
      "targets": {operation: n}, "put_entries": n (PutRecords entries seen while partial
      failures are on), "upstream": url}
      (dates are kept for the first 1000 requests only).
  POST /__proxy/config with a JSON object changes options at run time; keys are the option names
      with underscores (e.g. {"throttle_fraction": 0, "partial_every": 0}); answers the new settings.
Stops on SIGTERM or SIGINT, and when the process that started it exits.
"""
import argparse
import calendar
import ctypes
import email.utils
import http.client
import http.server
import json
import os
import queue
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
KINESALITE_JS = os.path.join(HERE, "..", "servers", "kinesalite-loopback.js")
RUNTIME_KEYS = ("delay_ms", "reset_fraction", "error_fraction", "throttle_fraction", "lost_answer_fraction",
                "corrupt_fraction", "expire_fraction", "add_child_shards", "slow_fraction", "slow_ms", "partial_every", "partial_fraction", "partial_error", "fault_target",
                "seed")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def answers(port):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        c.request("GET", "/")
        c.getresponse().read()
        c.close()
        return True
    except (OSError, http.client.HTTPException):
        return False


def _pdeathsig(sig=signal.SIGKILL):
    # Dies with the thread that started it (for our kinesalite: the manager thread, which lives as
    # long as the proxy; for the proxy itself: whoever started it).
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(sig))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Kinesalite:
    """Our own kinesalite on a fixed port and path. Started and stopped from one long-lived thread
    (PR_SET_PDEATHSIG fires when the thread that forked exits, so never from a request thread)."""

    def __init__(self, path):
        self.path = path
        self.port = free_port()
        self.proc = None
        self.jobs = queue.Queue()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            fn, done = self.jobs.get()
            try:
                done.append(fn())
            except Exception as e:  # reported to the caller
                done.append(e)

    def call(self, fn):
        done = []
        self.jobs.put((fn, done))
        while not done:
            time.sleep(0.01)
        if isinstance(done[0], Exception):
            raise done[0]
        return done[0]

    def _start(self):
        if self.proc and self.proc.poll() is None:
            return "already running"
        for _ in range(3):
            self.proc = subprocess.Popen(
                ["node", KINESALITE_JS, "--port", str(self.port), "--path", self.path, "--shardLimit", "100",
                 "--createStreamMs", "0", "--deleteStreamMs", "0", "--updateStreamMs", "0"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sys.stderr,
                preexec_fn=_pdeathsig)
            deadline = time.time() + 60
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    break
                if answers(self.port):
                    return "started"
                time.sleep(0.1)
            if self.proc.poll() is None:
                raise RuntimeError("kinesalite did not answer on port %d within 60 s" % self.port)
            time.sleep(0.5)  # exited: the port may still be held by the old process; try again
        raise RuntimeError("kinesalite exited at start (port %d, path %s)" % (self.port, self.path))

    def _stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            return "stopped"
        return "not running"

    def start(self):
        return self.call(self._start)

    def stop(self):
        return self.call(self._stop)

    def url(self):
        return "http://127.0.0.1:%d" % self.port


def main():
    _pdeathsig(signal.SIGTERM)  # never outlive the test that started us
    ap = argparse.ArgumentParser()
    ap.add_argument("upstream", nargs="?")
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--fail-status", type=int, default=500)
    ap.add_argument("--fail-body", default='{"__type":"InternalFailure","message":"injected by fault_proxy"}')
    ap.add_argument("--fail-header", action="append", default=[])
    ap.add_argument("--reset-first", type=int, default=0)
    ap.add_argument("--skew-seconds", type=int, default=0)
    ap.add_argument("--delay-ms", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fault-target", default="PutRecords")
    ap.add_argument("--reset-fraction", type=float, default=0.0)
    ap.add_argument("--error-fraction", type=float, default=0.0)
    ap.add_argument("--throttle-fraction", type=float, default=0.0)
    ap.add_argument("--lost-answer-fraction", type=float, default=0.0)
    ap.add_argument("--corrupt-fraction", type=float, default=0.0)
    ap.add_argument("--expire-fraction", type=float, default=0.0)
    ap.add_argument("--add-child-shards", action="store_true")
    ap.add_argument("--rewrite-shard", action="append", default=[])
    ap.add_argument("--slow-fraction", type=float, default=0.0)
    ap.add_argument("--slow-ms", type=int, default=2000)
    ap.add_argument("--partial-every", type=int, default=0)
    ap.add_argument("--partial-fraction", type=float, default=0.0)
    ap.add_argument("--partial-error", action="append", default=[])
    ap.add_argument("--kinesalite-path")
    args = ap.parse_args()
    if not args.partial_error:
        args.partial_error = ["ProvisionedThroughputExceededException"]
    if (args.upstream is None) == (args.kinesalite_path is None):
        ap.error("give either UPSTREAM_URL or --kinesalite-path DIR")

    own = None
    if args.kinesalite_path:
        own = Kinesalite(args.kinesalite_path)
        own.start()
        args.upstream = own.url()

    up = urllib.parse.urlsplit(args.upstream)
    lock = threading.Lock()
    rng = random.Random(args.seed)
    kinds = {k: 0 for k in ("reset", "error", "throttle", "lost_answer", "corrupt", "slow", "partial_requests",
                            "partial_entries", "upstream_down", "expire", "child_shards", "rewritten")}
    rewrite = dict(x.split("=", 1) for x in args.rewrite_shard)
    stats = {"requests": 0, "forwarded": 0, "injected": 0, "dates": [], "kinds": kinds, "targets": {},
             "put_entries": 0, "upstream": args.upstream}
    entry_counter = [0]
    iterators = {}  # shard iterator -> (stream name or ARN key, value, shard id), for --add-child-shards

    def targeted(op):
        t = args.fault_target
        return t == "all" or op in [x.strip() for x in t.split(",")]

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            pass

        def _send(self, status, body, headers=()):
            data = body.encode() if isinstance(body, str) else body
            self.send_response_only(status)
            date = time.time() + args.skew_seconds
            self.send_header("Date", email.utils.formatdate(date, usegmt=True))
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _json(self, status, obj):
            self._send(status, json.dumps(obj), [("Content-Type", "application/json")])

        def _reset(self):
            self.close_connection = True
            try:
                # SO_LINGER 0: the peer sees a RST, not an orderly close.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def do_GET(self):
            if self.path == "/__proxy/stats":
                with lock:
                    body = json.dumps(stats)
                self._send(200, body, [("Content-Type", "application/json")])
            elif self.path.startswith("/__proxy/"):
                self._control()
            else:
                self._forward()

        def do_POST(self):
            if self.path.startswith("/__proxy/"):
                self._control()
            else:
                self._forward()

        def _control(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path == "/__proxy/config":
                try:
                    changes = json.loads(body or b"{}")
                    with lock:
                        for k, v in changes.items():
                            if k not in RUNTIME_KEYS:
                                raise ValueError("unknown option " + k)
                            if k == "partial_error" and isinstance(v, str):
                                v = [v]
                            setattr(args, k, v)
                            if k == "seed":
                                rng.seed(v)
                        now = {k: getattr(args, k) for k in RUNTIME_KEYS}
                except (ValueError, AttributeError) as e:
                    self._json(400, {"error": str(e)})
                    return
                self._json(200, now)
            elif self.path in ("/__proxy/upstream/stop", "/__proxy/upstream/start"):
                if own is None:
                    self._json(400, {"error": "the upstream is not ours (no --kinesalite-path)"})
                    return
                try:
                    what = own.stop() if self.path.endswith("stop") else own.start()
                except RuntimeError as e:
                    self._json(500, {"error": str(e)})
                    return
                self._json(200, {"ok": True, "result": what, "upstream": own.url()})
            else:
                self._json(404, {"error": "unknown control path " + self.path})

        def _upstream(self, body, hdrs):
            """Returns (status, headers, data) or None when the upstream cannot be reached."""
            conn = http.client.HTTPConnection(up.hostname, up.port or 80, timeout=30)
            try:
                conn.request(self.command, self.path, body=body, headers=hdrs)
                r = conn.getresponse()
                return r.status, r.getheaders(), r.read()
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    kinds["upstream_down"] += 1
                self._send(502, "<html><head><title>502 Bad Gateway</title></head><body>%s</body></html>" % e,
                           [("Content-Type", "text/html")])
                return None
            finally:
                conn.close()

        def _partial(self, body):
            """Picks failing entries of a PutRecords body. Returns (failed {index: code}, records) or None."""
            if not (args.partial_every or args.partial_fraction):
                return None
            try:
                req = json.loads(body)
                records = req["Records"]
                if not isinstance(records, list):
                    return None
            except (ValueError, KeyError, TypeError):
                return None
            failed = {}
            with lock:
                for i in range(len(records)):
                    entry_counter[0] += 1
                    hit = args.partial_every and entry_counter[0] % args.partial_every == 0
                    if not hit and args.partial_fraction and rng.random() < args.partial_fraction:
                        hit = True
                    if hit:
                        failed[i] = rng.choice(args.partial_error)
            return req, failed

        def _forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            op = (self.headers.get("X-Amz-Target") or "").rsplit(".", 1)[-1]
            with lock:
                stats["requests"] += 1
                n = stats["requests"]
                if len(stats["dates"]) < 1000:
                    stats["dates"].append(self.headers.get("X-Amz-Date", ""))
                stats["targets"][op] = stats["targets"].get(op, 0) + 1
            if n <= args.reset_first:
                with lock:
                    stats["injected"] += 1
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if n <= args.reset_first + args.fail_first:
                with lock:
                    stats["injected"] += 1
                hdrs = [tuple(h.split(":", 1)) for h in args.fail_header]
                self._send(args.fail_status, args.fail_body, [("Content-Type", "application/x-amz-json-1.1")] + hdrs)
                return
            if args.skew_seconds:
                amz = self.headers.get("X-Amz-Date", "")
                try:
                    sent = calendar.timegm(time.strptime(amz, "%Y%m%dT%H%M%SZ"))
                except ValueError:
                    sent = 0
                if abs(sent - (time.time() + args.skew_seconds)) > 300:
                    with lock:
                        stats["injected"] += 1
                    self._send(400, '{"__type":"InvalidSignatureException","message":"Signature expired: '
                               + amz + ' is now earlier than the allowed window"}',
                               [("Content-Type", "application/x-amz-json-1.1")])
                    return

            amz_json = [("Content-Type", "application/x-amz-json-1.1")]
            lost = slow = corrupt = False
            partial = None
            if targeted(op):
                with lock:
                    draw = rng.random()
                    slow = args.slow_fraction > 0 and rng.random() < args.slow_fraction
                    edges = [("reset", args.reset_fraction), ("error", args.error_fraction),
                             ("throttle", args.throttle_fraction), ("lost_answer", args.lost_answer_fraction),
                             ("corrupt", args.corrupt_fraction), ("expire", args.expire_fraction)]
                    kind, acc = None, 0.0
                    for name, frac in edges:
                        acc += frac
                        if draw < acc:
                            kind = name
                            break
                    if kind and kind not in ("lost_answer", "corrupt"):
                        kinds[kind] += 1
                        stats["injected"] += 1
                if kind == "reset":
                    self._reset()
                    return
                if kind == "error":
                    self._send(500, '{"__type":"InternalFailure","message":"injected by fault_proxy"}', amz_json)
                    return
                if kind == "expire":
                    self._send(400, '{"__type":"ExpiredIteratorException","message":'
                               '"Iterator expired (injected by fault_proxy)"}', amz_json)
                    return
                if kind == "throttle":
                    self._send(400, '{"__type":"ProvisionedThroughputExceededException","message":'
                               '"Rate exceeded for shard (injected by fault_proxy)"}', amz_json)
                    return
                lost = kind == "lost_answer"
                corrupt = kind == "corrupt"
                if op == "PutRecords":
                    partial = self._partial(body)

            if args.delay_ms:
                time.sleep(args.delay_ms / 1000.0)
            hdrs = {k: v for k, v in self.headers.items()
                    if k.lower() not in ("connection", "keep-alive", "content-length")}
            failed = {}
            if partial:
                req, failed = partial
                if op == "PutRecords":
                    with lock:
                        stats["put_entries"] += len(req["Records"])
            if failed:
                records = req["Records"]
                survivors = [r for i, r in enumerate(records) if i not in failed]
                with lock:
                    kinds["partial_requests"] += 1
                    kinds["partial_entries"] += len(failed)
                    stats["injected"] += 1
                if survivors:
                    req["Records"] = survivors
                    res = self._upstream(json.dumps(req).encode(), hdrs)
                    if res is None:
                        return
                    status, rhdrs, data = res
                    if status == 200:
                        try:
                            answer = json.loads(data)
                            upr = answer["Records"]
                            if len(upr) != len(survivors):
                                raise ValueError("upstream answered %d entries for %d" % (len(upr), len(survivors)))
                        except (ValueError, KeyError, TypeError) as e:
                            self._send(502, "bad upstream PutRecords answer: %s" % e, [("Content-Type", "text/plain")])
                            return
                    else:
                        # The upstream refused the whole request: pass its answer on.
                        with lock:
                            stats["forwarded"] += 1
                        self._pass(status, rhdrs, data, slow, lost)
                        return
                else:
                    status, answer, upr = 200, {"FailedRecordCount": 0}, []
                merged, it = [], iter(upr)
                for i in range(len(records)):
                    if i in failed:
                        code = failed[i]
                        msg = ("Rate exceeded for shard (injected by fault_proxy)"
                               if code == "ProvisionedThroughputExceededException"
                               else "Internal service failure (injected by fault_proxy)")
                        merged.append({"ErrorCode": code, "ErrorMessage": msg})
                    else:
                        merged.append(next(it))
                answer["Records"] = merged
                answer["FailedRecordCount"] = int(answer.get("FailedRecordCount") or 0) + len(failed)
                with lock:
                    stats["forwarded"] += 1 if survivors else 0
                self._pass(200, amz_json, json.dumps(answer).encode(), slow, lost, corrupt)
                return

            res = self._upstream(body, hdrs)
            if res is None:
                return
            with lock:
                stats["forwarded"] += 1
            status, rhdrs, data = res
            if status == 200 and op in ("GetShardIterator", "GetRecords"):
                data = self._track_iterators(op, body, hdrs, data)
            if status == 200 and op == "PutRecords" and rewrite:
                data = self._rewrite_shards(data)
            self._pass(status, rhdrs, data, slow, lost, corrupt)

        def _rewrite_shards(self, data):
            try:
                answer = json.loads(data)
            except ValueError:
                return data
            n = 0
            for e in answer.get("Records") or []:
                if e.get("ShardId") in rewrite:
                    e["ShardId"] = rewrite[e["ShardId"]]
                    n += 1
            with lock:
                kinds["rewritten"] += n
            return json.dumps(answer).encode()

        def _track_iterators(self, op, body, hdrs, data):
            """Remembers whose iterators pass by; with --add-child-shards, adds ChildShards to the last
            answer of a closed shard. Returns the (possibly changed) answer body."""
            try:
                req = json.loads(body)
                answer = json.loads(data)
            except ValueError:
                return data
            if op == "GetShardIterator":
                ref = ("StreamARN", req["StreamARN"]) if req.get("StreamARN") else ("StreamName", req.get("StreamName"))
                if answer.get("ShardIterator"):
                    with lock:
                        iterators[answer["ShardIterator"]] = (ref, req.get("ShardId"))
                return data
            with lock:
                owner = iterators.pop(req.get("ShardIterator"), None)
                if owner and answer.get("NextShardIterator"):
                    iterators[answer["NextShardIterator"]] = owner
            if not (args.add_child_shards and owner and not answer.get("NextShardIterator")
                    and not answer.get("ChildShards")):
                return data
            (key, value), shard = owner
            lh = {k: v for k, v in hdrs.items() if k.lower() != "x-amz-target"}
            lh["X-Amz-Target"] = "Kinesis_20131202.ListShards"
            shards, token = [], None
            while True:
                q = {"NextToken": token} if token else {key: value}
                conn = http.client.HTTPConnection(up.hostname, up.port or 80, timeout=30)
                try:
                    conn.request("POST", "/", body=json.dumps(q).encode(), headers=lh)
                    r = conn.getresponse()
                    page = json.loads(r.read())
                    if r.status != 200:
                        return data
                except (OSError, http.client.HTTPException, ValueError):
                    return data
                finally:
                    conn.close()
                shards += page.get("Shards", [])
                token = page.get("NextToken")
                if not token:
                    break
            children = []
            for c in shards:
                parents = [x for x in (c.get("ParentShardId"), c.get("AdjacentParentShardId")) if x]
                if shard in parents:
                    children.append({"ShardId": c["ShardId"], "ParentShards": parents,
                                     "HashKeyRange": c["HashKeyRange"]})
            if not children:
                return data
            answer["ChildShards"] = children
            with lock:
                kinds["child_shards"] += 1
            return json.dumps(answer).encode()

        def _pass(self, status, rhdrs, data, slow, lost, corrupt=False):
            if lost:
                with lock:
                    kinds["lost_answer"] += 1
                    stats["injected"] += 1
                self._reset()
                return
            if corrupt and status == 200:
                with lock:
                    kinds["corrupt"] += 1
                    stats["injected"] += 1
                data = data[:len(data) // 2]
            if slow:
                with lock:
                    kinds["slow"] += 1
                time.sleep(args.slow_ms / 1000.0)
            passthru = [(k, v) for k, v in rhdrs
                        if k.lower() not in ("content-length", "date", "connection", "transfer-encoding", "keep-alive")]
            try:
                self._send(status, data, passthru)
            except OSError:
                self.close_connection = True  # the client gave up (timeout) while we were slow

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True

    def stop(*a):
        if own:
            try:
                own.proc and own.proc.kill()
            except OSError:
                pass
        threading.Thread(target=srv.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    print("PORT %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if own and own.proc and own.proc.poll() is None:
            own.proc.kill()
            own.proc.wait()


if __name__ == "__main__":
    main()
