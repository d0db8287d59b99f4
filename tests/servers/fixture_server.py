#!/usr/bin/env python3
"""Scripted HTTP/1.1 server for tests (loopback only).

Plays endpoints and failures that no real server produces on demand: IMDS-like
credential endpoints, error pages, hangs, truncated or garbage responses,
huge bodies, and it counts connections so a test can prove connection reuse.

Usage:
  fixture_server.py [--port N] [--port-file PATH] [--routes FILE.json]
                    [--route 'METHOD PATH JSON'] ... [--cert PEM --key PEM]
                    [--forward-proxy] [--quiet]
  fixture_server.py --gen-certs DIR [--hosts 127.0.0.1,localhost]

  --port N          listen on 127.0.0.1:N (default 0: a free port)
  --port-file PATH  also write the port to PATH (atomically, via rename)
                    The port is always printed on stdout as the first line.
  --routes FILE     routes as JSON (see below)
  --route SPEC      one route: 'METHOD PATH RESPONSE' where RESPONSE is a JSON
                    object or a JSON list of objects (repeatable)
  --cert/--key      serve HTTPS with this certificate chain and key (PEM)
  --forward-proxy   act as a forward proxy too: absolute-form requests
                    ("GET http://127.0.0.1:P/x HTTP/1.1") are forwarded to the
                    origin and CONNECT opens a tunnel; loopback targets only
  --gen-certs DIR   write ca.pem, ca.key, server.pem (leaf + CA chain) and
                    server.key for --hosts into DIR, then exit (needs the
                    python 'cryptography' package)
  Stops on SIGTERM or SIGINT.

Route file: {"routes": [ROUTE, ...]} or a plain list of ROUTE.
  ROUTE = {"method": "GET", "path": "/x", "responses": [RESP, ...],
           "after": "repeat_last" | "cycle"}
  method "*" matches any method; a path ending in "*" is a prefix match; the
  query string is ignored unless the route path contains "?". Each request
  takes the next RESP of its route; after the last one, "repeat_last" (the
  default) keeps serving the last one and "cycle" starts over. Unmatched
  requests get 404 with a JSON body.

  RESP fields (all optional):
    status         200
    reason         reason phrase (default from the status)
    headers        {"Name": "value"} or [["Name", "value"], ...]
    body           text body | body_json: any JSON value | body_b64: bytes
    delay_ms       wait before sending anything
    body_delay_ms  wait between the headers and the body
    chunked        true: send the body with Transfer-Encoding: chunked
    close          true: "Connection: close" and close after the response
    close_silently true: close after the response without announcing it
    size           byte count for "huge", "garbage" and "truncate"
    behavior       normal    the response as described
                   close     read the request, close without any reply
                   reset     read the request, close with a TCP RST
                   truncate  Content-Length is len(body)+size (default 100),
                             send the body, close
                   garbage   send size (default 64) bytes that are not HTTP
                   huge      a body of size bytes (Content-Length unless
                             chunked)
                   hang      never answer; hold the connection until the
                             client goes away
                   stall     send the headers and half the body, then hang
                             (with size: Content-Length is len(body)+size)
                   echo      200 with JSON {"method", "target", "path",
                             "headers": [[n, v]...], "body", "body_len"}
  A Content-Length is added unless given or chunked; a Date header too.

Control endpoints (never counted in the statistics):
  GET  /__stats     JSON: connections (connections that carried at least one
                    counted request), accepted (every accepted connection),
                    open and max_concurrent (counted connections open now /
                    at most at once), requests, proxied, tunnels, by_route
                    {"METHOD /path": n}
  GET  /__requests  JSON list of the last 100 counted requests
                    (method, target, path, headers, body as text)
  POST /__reset     zero the statistics and the response sequences
  POST /__routes    body like the route file; routes with the same method
                    and path are replaced; {"replace_all": true, ...} first
                    drops every route
"""

import argparse
import base64
import email.utils
import http
import ipaddress
import json
import os
import select
import signal
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time

LOCK = threading.Lock()
STOP = threading.Event()


class State:
    def __init__(self):
        self.routes = []  # list of dicts with "method", "path", "responses", "after", "_next"
        self.reset()

    def reset(self):
        self.connections = 0
        self.accepted = 0
        self.open = 0
        self.max_concurrent = 0
        self.requests = 0
        self.proxied = 0
        self.tunnels = 0
        self.by_route = {}
        self.log = []
        for r in self.routes:
            r["_next"] = 0

    def add_routes(self, spec):
        if isinstance(spec, dict):
            if spec.get("replace_all"):
                self.routes = []
            spec = spec.get("routes", [])
        for r in spec:
            resps = r.get("responses", r.get("response", {}))
            if isinstance(resps, dict):
                resps = [resps]
            route = {
                "method": r.get("method", "*").upper(),
                "path": r["path"],
                "responses": resps or [{}],
                "after": r.get("after", "repeat_last"),
                "_next": 0,
            }
            self.routes = [x for x in self.routes
                           if not (x["method"] == route["method"] and x["path"] == route["path"])]
            self.routes.append(route)

    def match(self, method, target):
        path_only = target.split("?", 1)[0]
        for r in self.routes:
            if r["method"] not in ("*", method):
                continue
            p = r["path"]
            subject = target if "?" in p else path_only
            if p.endswith("*") and subject.startswith(p[:-1]):
                return r
            if subject == p:
                return r
        return None

    def next_response(self, route):
        resps = route["responses"]
        i = route["_next"]
        if route["after"] == "cycle":
            resp = resps[i % len(resps)]
        else:
            resp = resps[min(i, len(resps) - 1)]
        route["_next"] = i + 1
        return resp

    def stats(self):
        return {
            "connections": self.connections,
            "accepted": self.accepted,
            "open": self.open,
            "max_concurrent": self.max_concurrent,
            "requests": self.requests,
            "proxied": self.proxied,
            "tunnels": self.tunnels,
            "by_route": dict(self.by_route),
        }


STATE = State()


class ClientGone(Exception):
    pass


def read_request(rfile):
    """Returns (method, target, version, headers list, body bytes) or None at EOF."""
    line = rfile.readline(65537)
    while line in (b"\r\n", b"\n"):
        line = rfile.readline(65537)
    if not line:
        return None
    parts = line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(parts) != 3:
        raise ValueError("bad request line %r" % line)
    method, target, version = parts
    headers = []
    while True:
        h = rfile.readline(65537)
        if not h:
            raise ClientGone()
        if h in (b"\r\n", b"\n"):
            break
        name, _, value = h.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    hmap = {n.lower(): v for n, v in headers}
    body = b""
    if "chunked" in hmap.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            size_line = rfile.readline(65537)
            if not size_line:
                raise ClientGone()
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                break
            chunks.append(rfile.read(size))
            rfile.readline(65537)
        body = b"".join(chunks)
    elif "content-length" in hmap:
        n = int(hmap["content-length"])
        body = rfile.read(n)
        if len(body) < n:
            raise ClientGone()
    return method, target, version, headers, body


def reason_of(status):
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Status"


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def sleep_ms(ms):
    if ms:
        STOP.wait(ms / 1000.0)


def hold_until_gone(sock):
    """Keeps the connection open without answering until the client leaves or we stop."""
    sock.settimeout(0.2)
    while not STOP.is_set():
        try:
            if not sock.recv(4096):
                return
        except socket.timeout:
            continue
        except (OSError, ssl.SSLError):
            return


class Handler(socketserver.BaseRequestHandler):
    def setup(self):
        self.counted = False
        with LOCK:
            STATE.accepted += 1
        self.sock = self.request
        if self.server.tls_ctx is not None:
            self.sock.settimeout(10)
            self.sock = self.server.tls_ctx.wrap_socket(self.sock, server_side=True)
            self.sock.settimeout(None)
        self.rfile = self.sock.makefile("rb")

    def finish(self):
        with LOCK:
            if self.counted:
                STATE.open -= 1
        try:
            self.rfile.close()
        except OSError:
            pass

    def count_connection(self):
        if not self.counted:
            self.counted = True
            STATE.connections += 1
            STATE.open += 1
            STATE.max_concurrent = max(STATE.max_concurrent, STATE.open)

    def send(self, data):
        self.sock.sendall(data)

    def handle(self):
        try:
            while not STOP.is_set():
                req = read_request(self.rfile)
                if req is None:
                    return
                if not self.serve(*req):
                    return
        except (ClientGone, ConnectionError, BrokenPipeError, ssl.SSLError, OSError, ValueError):
            return

    # --- one request; returns False to close the connection ---
    def serve(self, method, target, version, headers, body):
        hmap = {n.lower(): v for n, v in headers}
        if method == "CONNECT" or target.startswith("http://") or target.startswith("https://"):
            if self.server.forward_proxy:
                return self.proxy(method, target, version, headers, body)
        path = target
        if target.startswith("http://") or target.startswith("https://"):
            path = "/" + target.split("://", 1)[1].partition("/")[2]
        if path.startswith("/__"):
            return self.control(method, path, body)
        with LOCK:
            self.count_connection()
            STATE.requests += 1
            key = "%s %s" % (method, path.split("?", 1)[0])
            STATE.by_route[key] = STATE.by_route.get(key, 0) + 1
            STATE.log.append({"method": method, "target": target, "path": path, "headers": headers,
                              "body": body.decode("latin-1")})
            del STATE.log[:-100]
            route = STATE.match(method, path)
            resp = STATE.next_response(route) if route else None
        if resp is None:
            self.respond(404, [("Content-Type", "application/json")],
                         json.dumps({"error": "no route", "method": method, "path": path}).encode())
            return True
        keep = hmap.get("connection", "").lower() != "close" and version == "HTTP/1.1"
        return self.play(resp, method, target, path, headers, body) and keep

    def respond(self, status, headers, body, close=False, chunked=False, reason=None, body_delay_ms=0):
        names = {n.lower() for n, _ in headers}
        out = ["HTTP/1.1 %d %s" % (status, reason or reason_of(status))]
        out += ["%s: %s" % (n, v) for n, v in headers]
        if "date" not in names:
            out.append("Date: " + email.utils.formatdate(usegmt=True))
        if chunked:
            out.append("Transfer-Encoding: chunked")
        elif "content-length" not in names:
            out.append("Content-Length: %d" % len(body))
        if close:
            out.append("Connection: close")
        self.send(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
        sleep_ms(body_delay_ms)
        if chunked:
            for i in range(0, len(body), 65536):
                piece = body[i:i + 65536]
                self.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
            self.send(b"0\r\n\r\n")
        else:
            self.send(body)

    def play(self, resp, method, target, path, headers, body):
        behavior = resp.get("behavior", "normal")
        sleep_ms(resp.get("delay_ms", 0))
        hdrs = resp.get("headers", {})
        hdrs = list(hdrs.items()) if isinstance(hdrs, dict) else [tuple(h) for h in hdrs]
        if "body_json" in resp:
            out = json.dumps(resp["body_json"]).encode()
            if not any(n.lower() == "content-type" for n, _ in hdrs):
                hdrs.append(("Content-Type", "application/json"))
        elif "body_b64" in resp:
            out = base64.b64decode(resp["body_b64"])
        else:
            out = resp.get("body", "").encode("utf-8")
        status = int(resp.get("status", 200))
        close = bool(resp.get("close", False))
        chunked = bool(resp.get("chunked", False))
        size = resp.get("size")
        if behavior == "close":
            return False
        if behavior == "reset":
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if behavior == "hang":
            hold_until_gone(self.sock)
            return False
        if behavior == "garbage":
            n = int(size or 64)
            junk = (b"\x00\xff garbage, not HTTP \x7f\x80" * (n // 24 + 1))[:n]
            self.send(junk)
            return False
        if behavior == "echo":
            out = json.dumps({"method": method, "target": target, "path": path,
                              "headers": [list(h) for h in headers],
                              "body": body.decode("latin-1"), "body_len": len(body)}).encode()
            hdrs.append(("Content-Type", "application/json"))
        if behavior == "huge":
            n = int(size or (1 << 20))
            names = {h[0].lower() for h in hdrs}
            head = ["HTTP/1.1 %d %s" % (status, reason_of(status))] + ["%s: %s" % h for h in hdrs]
            if "date" not in names:
                head.append("Date: " + email.utils.formatdate(usegmt=True))
            head.append("Transfer-Encoding: chunked" if chunked else "Content-Length: %d" % n)
            self.send(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            block = b"0123456789abcdef" * 4096
            sent = 0
            while sent < n:
                piece = block[:min(len(block), n - sent)]
                self.send(b"%x\r\n" % len(piece) + piece + b"\r\n" if chunked else piece)
                sent += len(piece)
            if chunked:
                self.send(b"0\r\n\r\n")
            return not close
        if behavior == "truncate":
            extra = int(size or 100)
            hdrs = [h for h in hdrs if h[0].lower() != "content-length"]
            hdrs.append(("Content-Length", str(len(out) + extra)))
            self.respond(status, hdrs, out, reason=resp.get("reason"))
            return False
        if behavior == "stall":
            hdrs = [h for h in hdrs if h[0].lower() != "content-length"]
            # With "size": announce that many bytes more than the body (a length never sent).
            hdrs.append(("Content-Length", str(len(out) + int(size)) if size else str(max(len(out), 2))))
            self.respond(status, hdrs, out[:len(out) // 2], reason=resp.get("reason"))
            hold_until_gone(self.sock)
            return False
        self.respond(status, hdrs, out, close=close, chunked=chunked, reason=resp.get("reason"),
                     body_delay_ms=resp.get("body_delay_ms", 0))
        return not close and not resp.get("close_silently", False)

    def control(self, method, path, body):
        path = path.split("?", 1)[0]
        with LOCK:
            if method == "GET" and path == "/__stats":
                out = STATE.stats()
            elif method == "GET" and path == "/__requests":
                out = list(STATE.log)
            elif method == "POST" and path == "/__reset":
                STATE.reset()
                out = {"ok": True}
            elif method == "POST" and path == "/__routes":
                try:
                    STATE.add_routes(json.loads(body or b"[]"))
                    out = {"ok": True, "routes": len(STATE.routes)}
                except (ValueError, KeyError, TypeError) as e:
                    out = None
                    err = str(e)
            else:
                out = None
                err = "unknown control endpoint"
        if out is None:
            self.respond(400, [("Content-Type", "application/json")], json.dumps({"error": err}).encode())
        else:
            self.respond(200, [("Content-Type", "application/json")], json.dumps(out).encode())
        return True

    # --- forward proxy ---
    def proxy(self, method, target, version, headers, body):
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
        else:
            rest = target.split("://", 1)[1]
            hostport, _, tail = rest.partition("/")
            host, _, port = hostport.rpartition(":") if ":" in hostport.split("]")[-1] else (hostport, "", "")
            port = port or ("443" if target.startswith("https") else "80")
        host = host.strip("[]")
        if not is_loopback(host):
            self.respond(403, [], b"fixture proxy: loopback targets only", close=True)
            return False
        try:
            up = socket.create_connection((host, int(port)), timeout=10)
        except OSError as e:
            self.respond(502, [], ("fixture proxy: %s" % e).encode(), close=True)
            return False
        with LOCK:
            self.count_connection()
            if method == "CONNECT":
                STATE.tunnels += 1
            else:
                STATE.proxied += 1
        if method == "CONNECT":
            self.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.tunnel(up)
            return False
        up.settimeout(None)
        keep = [(n, v) for n, v in headers
                if n.lower() not in ("proxy-connection", "proxy-authorization", "connection", "content-length",
                                     "transfer-encoding")]
        head = ["%s /%s %s" % (method, tail, "HTTP/1.1")] + ["%s: %s" % h for h in keep]
        head += ["Content-Length: %d" % len(body), "Connection: close"]
        up.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        while True:
            data = up.recv(65536)
            if not data:
                break
            self.send(data)
        up.close()
        return False

    def tunnel(self, up):
        # The client waits for our 200 before it sends, so nothing sits in rfile's buffer.
        socks = [self.sock, up]
        try:
            while not STOP.is_set():
                r, _, _ = select.select(socks, [], [], 0.2)
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    (up if s is self.sock else self.sock).sendall(data)
        except OSError:
            return
        finally:
            up.close()


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        pass  # a client that hangs up or fails the TLS handshake is normal here


def gen_certs(out_dir, hosts):
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    os.makedirs(out_dir, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def key_pem(k):
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "libkinesis test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    files = {
        "ca.pem": ca.public_bytes(pem),
        "ca.key": key_pem(ca_key),
        "server.pem": cert.public_bytes(pem) + ca.public_bytes(pem),
        "server.key": key_pem(key),
    }
    for name, data in files.items():
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)


def main():
    ap = argparse.ArgumentParser(description="scripted HTTP/1.1 test server (see the module docstring)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--routes")
    ap.add_argument("--route", action="append", default=[])
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--forward-proxy", action="store_true")
    ap.add_argument("--gen-certs")
    ap.add_argument("--hosts", default="127.0.0.1,localhost")
    ap.add_argument("--quiet", action="store_true", help="accepted for compatibility; the server never logs")
    args = ap.parse_args()

    if args.gen_certs:
        gen_certs(args.gen_certs, [h for h in args.hosts.split(",") if h])
        return 0

    if args.routes:
        with open(args.routes) as f:
            STATE.add_routes(json.load(f))
    for spec in args.route:
        method, path, resp = spec.split(" ", 2)
        STATE.add_routes([{"method": method, "path": path, "responses": json.loads(resp)}])

    def stop(signum, frame):
        STOP.set()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    server = Server(("127.0.0.1", args.port), Handler)
    server.forward_proxy = args.forward_proxy
    server.tls_ctx = None
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        server.tls_ctx = ctx
    port = server.server_address[1]
    print(port, flush=True)
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, args.port_file)
    server.serve_forever(poll_interval=0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
