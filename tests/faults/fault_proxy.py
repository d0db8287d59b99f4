#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of a real server (kinesalite, dynalite, moto).

Usage: fault_proxy.py UPSTREAM_URL [options]
  Prints "PORT <n>" as its first line on stdout once it listens on 127.0.0.1:<n>.

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

Control: GET /__proxy/stats returns {"requests": n, "forwarded": n, "injected": n, "dates": [X-Amz-Date...]}.
Stops on SIGTERM or SIGINT.
"""
import argparse
import calendar
import email.utils
import http.client
import http.server
import json
import signal
import sys
import threading
import time
import urllib.parse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("upstream")
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--fail-status", type=int, default=500)
    ap.add_argument("--fail-body", default='{"__type":"InternalFailure","message":"injected by fault_proxy"}')
    ap.add_argument("--fail-header", action="append", default=[])
    ap.add_argument("--reset-first", type=int, default=0)
    ap.add_argument("--skew-seconds", type=int, default=0)
    ap.add_argument("--delay-ms", type=int, default=0)
    args = ap.parse_args()

    up = urllib.parse.urlsplit(args.upstream)
    lock = threading.Lock()
    stats = {"requests": 0, "forwarded": 0, "injected": 0, "dates": []}

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

        def do_GET(self):
            if self.path == "/__proxy/stats":
                with lock:
                    body = json.dumps(stats)
                self._send(200, body, [("Content-Type", "application/json")])
            else:
                self._forward()

        def do_POST(self):
            self._forward()

        def _forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with lock:
                stats["requests"] += 1
                n = stats["requests"]
                stats["dates"].append(self.headers.get("X-Amz-Date", ""))
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
            if args.delay_ms:
                time.sleep(args.delay_ms / 1000.0)
            conn = http.client.HTTPConnection(up.hostname, up.port or 80, timeout=30)
            hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
            try:
                conn.request(self.command, self.path, body=body, headers=hdrs)
                r = conn.getresponse()
                data = r.read()
            except OSError as e:
                self._send(502, "<html><head><title>502 Bad Gateway</title></head><body>%s</body></html>" % e,
                           [("Content-Type", "text/html")])
                return
            finally:
                conn.close()
            with lock:
                stats["forwarded"] += 1
            passthru = [(k, v) for k, v in r.getheaders()
                        if k.lower() not in ("content-length", "date", "connection", "transfer-encoding", "keep-alive")]
            self._send(r.status, data, passthru)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=srv.shutdown).start())
    print("PORT %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
