#!/usr/bin/env python3
"""Local stand-ins for the credential endpoints that cannot run on a test
machine: EC2 instance metadata (IMDSv2), the ECS/EKS container credentials
endpoint and the SSO portal (GetRoleCredentials). It also relays STS calls to
a real STS implementation (moto) and records them, checking the SigV4
signature of signed calls with botocore's own signer.

Listens on 127.0.0.1 (a free port unless --port is given) and prints the
port on its first line of stdout. Stop it with SIGTERM.

  IMDS       PUT /latest/api/token (needs X-aws-ec2-metadata-token-ttl-seconds)
             GET /latest/meta-data/iam/security-credentials/[ROLE]
             (needs a token from the PUT in X-aws-ec2-metadata-token, else 401)
  container  GET /container/credentials (Authorization must equal
             --container-token when one is given, else 401)
  SSO        GET /federation/credentials?account_id=..&role_name=..
             (x-amz-sso_bearer_token must equal --sso-token, else 401)
  STS relay  POST /sts... forwarded to --moto; GET /_sts_log lists the calls
  canned STS POST /canned/NAME: fixed STS answers (see CANNED_STS)
  stats      GET /_stats: how many credentials each endpoint handed out
"""
import argparse
import datetime
import json
import secrets
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

IMDS_CREDS = {
    "AccessKeyId": "ASIAIMDSEXAMPLE00001",
    "SecretAccessKey": "imdsSecretKeyExample0000000000000000000001",
    "Token": "imdsSessionTokenExample0001",
}
CONTAINER_CREDS = {
    "AccessKeyId": "ASIACONTAINEREXAMPLE",
    "SecretAccessKey": "containerSecretKeyExample00000000000000001",
    "Token": "containerSessionTokenExample0001",
}
SSO_CREDS = {
    "accessKeyId": "ASIASSOEXAMPLE000001",
    "secretAccessKey": "ssoSecretKeyExample0000000000000000000001",
    "sessionToken": "ssoSessionTokenExample0001",
}

# Canned STS answers (POST /canned/NAME) for the XML reader's edge cases.
_WI = "AssumeRoleWithWebIdentity"
CANNED_STS = {
    "entities": (200, (
        '<?xml version="1.0"?>\n<%sResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        '<%sResult><SubjectFromWebIdentityToken>x</SubjectFromWebIdentityToken>'
        '<Credentials>\n  <AccessKeyId> ASIACANNED0000000001 </AccessKeyId>\n'
        '  <SecretAccessKey><![CDATA[sec<ret&1]]></SecretAccessKey>\n'
        '  <SessionToken>tok&amp;en&#47;x&#x2B;y&lt;&gt;&quot;&apos;&#xE9;</SessionToken>\n'
        '  <Expiration>2031-02-03T04:05:06.789Z</Expiration>\n'
        '</Credentials></%sResult></%sResponse>') % (_WI, _WI, _WI, _WI)),
    "truncated": (200, '<%sResponse><%sResult><Credentials><AccessKeyId>ASIA' % (_WI, _WI)),
    "badentity": (200, (
        '<%sResponse><%sResult><Credentials><AccessKeyId>ASIACANNED0000000001</AccessKeyId>'
        '<SecretAccessKey>a&bogus;b</SecretAccessKey><SessionToken>t</SessionToken>'
        '<Expiration>2031-02-03T04:05:06Z</Expiration></Credentials></%sResult></%sResponse>')
        % (_WI, _WI, _WI, _WI)),
    "noexpiry": (200, (
        '<%sResponse><%sResult><Credentials><AccessKeyId>ASIACANNED0000000001</AccessKeyId>'
        '<SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken>'
        '<Expiration>tomorrow</Expiration></Credentials></%sResult></%sResponse>')
        % (_WI, _WI, _WI, _WI)),
    "denied": (403, (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
        '<Code>AccessDenied</Code><Message>Not authorized &amp; denied</Message></Error>'
        '<RequestId>req-123</RequestId></ErrorResponse>')),
    "html502": (502, "<html><body><h1>502 Bad Gateway</h1></body></html>"),
    "huge": (200, "<x>" + "a" * (300 * 1024) + "</x>"),
}


def iso_in(seconds):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.imds_tokens = set()
        self.sts_log = []
        self.stats = {"imds": 0, "container": 0, "sso": 0, "sts": 0, "imds_rejected": 0}


def check_sigv4(headers, path, body, secret):
    """Recomputes the signature of a request with botocore. Returns (ok, detail)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    auth = headers.get("Authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return False, "no AWS4-HMAC-SHA256 Authorization header"
    fields = {}
    for part in auth[len("AWS4-HMAC-SHA256 "):].split(","):
        k, _, v = part.strip().partition("=")
        fields[k] = v
    try:
        akid, date, region, service, term = fields["Credential"].split("/")
        signed = fields["SignedHeaders"].split(";")
        signature = fields["Signature"]
    except (KeyError, ValueError):
        return False, "malformed Authorization header"
    amz_date = headers.get("X-Amz-Date", "")
    if not amz_date.startswith(date) or term != "aws4_request":
        return False, "credential scope does not match X-Amz-Date"
    sign_headers = {}
    for name in signed:
        value = headers.get(name)
        if value is None:
            return False, "signed header %s missing" % name
        sign_headers[name] = value
    req = AWSRequest(method="POST", url="http://%s%s" % (headers.get("Host"), path),
                     data=body, headers=sign_headers)
    req.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(akid, secret), service, region)
    expected = signer.signature(signer.string_to_sign(req, signer.canonical_request(req)), req)
    if expected != signature:
        return False, "signature mismatch"
    return True, "%s/%s/%s" % (akid, region, service)


class Handler(BaseHTTPRequestHandler):
    server_version = "cred-endpoints/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):  # keep test output quiet
        pass

    @property
    def st(self):
        return self.server.state

    def reply(self, status, body, ctype="application/json", extra=None):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    # ---------------------------------------------------------------- PUT
    def do_PUT(self):
        self.body()
        if self.path == "/latest/api/token":
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
            if not ttl or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                return self.reply(400, "missing or bad ttl", "text/plain")
            tok = secrets.token_hex(16)
            with self.st.lock:
                self.st.imds_tokens.add(tok)
            return self.reply(200, tok, "text/plain")
        self.reply(404, "not found", "text/plain")

    # ---------------------------------------------------------------- GET
    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        prefix = "/latest/meta-data/iam/security-credentials/"
        if u.path.startswith(prefix):
            tok = self.headers.get("X-aws-ec2-metadata-token")
            with self.st.lock:
                ok = tok in self.st.imds_tokens
                if not ok:
                    self.st.stats["imds_rejected"] += 1
            if not ok:
                return self.reply(401, "", "text/plain")
            role = u.path[len(prefix):]
            if not self.st.args.imds_role:
                return self.reply(404, "", "text/plain")
            if role == "":
                return self.reply(200, self.st.args.imds_role + "\n", "text/plain")
            if role != self.st.args.imds_role:
                return self.reply(404, "", "text/plain")
            with self.st.lock:
                self.st.stats["imds"] += 1
            doc = dict(IMDS_CREDS, Code="Success", Type="AWS-HMAC",
                       LastUpdated=iso_in(0), Expiration=iso_in(6 * 3600))
            return self.reply(200, json.dumps(doc), "text/plain")
        if u.path == "/container/credentials":
            want = self.st.args.container_token
            if want and self.headers.get("Authorization") != want:
                return self.reply(401, json.dumps({"message": "bad authorization token"}))
            with self.st.lock:
                self.st.stats["container"] += 1
            return self.reply(200, json.dumps(dict(CONTAINER_CREDS, Expiration=iso_in(6 * 3600))))
        if u.path == "/federation/credentials":
            q = urllib.parse.parse_qs(u.query)
            if self.headers.get("x-amz-sso_bearer_token") != self.st.args.sso_token:
                return self.reply(401, json.dumps({"message": "Session token not found or invalid"}),
                                  extra={"x-amzn-ErrorType": "UnauthorizedException"})
            if (q.get("account_id") != [self.st.args.sso_account]
                    or q.get("role_name") != [self.st.args.sso_role]):
                return self.reply(403, json.dumps({"message": "No access"}),
                                  extra={"x-amzn-ErrorType": "ForbiddenException"})
            with self.st.lock:
                self.st.stats["sso"] += 1
            exp_ms = int((datetime.datetime.now(datetime.timezone.utc).timestamp() + 3600) * 1000)
            return self.reply(200, json.dumps({"roleCredentials": dict(SSO_CREDS, expiration=exp_ms)}))
        if u.path == "/_sts_log":
            with self.st.lock:
                return self.reply(200, json.dumps(self.st.sts_log))
        if u.path == "/_stats":
            with self.st.lock:
                return self.reply(200, json.dumps(self.st.stats))
        self.reply(404, json.dumps({"message": "no such endpoint"}))

    # --------------------------------------------------------------- POST
    def do_POST(self):
        body = self.body()
        u = urllib.parse.urlsplit(self.path)
        if u.path.startswith("/canned/"):
            name = u.path[len("/canned/"):]
            if name not in CANNED_STS:
                return self.reply(404, json.dumps({"message": "no such canned answer"}))
            status, text = CANNED_STS[name]
            return self.reply(status, text, "text/xml")
        if not u.path.startswith("/sts") or not self.st.args.moto:
            return self.reply(404, json.dumps({"message": "no such endpoint"}))
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        entry = {
            "path": u.path,
            "action": (form.get("Action") or [""])[0],
            "role_arn": (form.get("RoleArn") or [""])[0],
            "session_name": (form.get("RoleSessionName") or [""])[0],
            "external_id": (form.get("ExternalId") or [""])[0],
            "duration": (form.get("DurationSeconds") or [""])[0],
            "signed": "Authorization" in self.headers,
            "security_token": "X-Amz-Security-Token" in self.headers,
            "amz_date": self.headers.get("X-Amz-Date", ""),
        }
        if entry["signed"] and self.st.args.sts_secret:
            ok, detail = check_sigv4(self.headers, self.path, body, self.st.args.sts_secret)
            entry["signature_valid"] = ok
            entry["signature_detail"] = detail
        fwd_headers = {"Content-Type": self.headers.get("Content-Type",
                                                        "application/x-www-form-urlencoded")}
        if "Authorization" in self.headers:
            fwd_headers["Authorization"] = self.headers["Authorization"]
            fwd_headers["X-Amz-Date"] = self.headers.get("X-Amz-Date", "")
        req = urllib.request.Request(self.st.args.moto.rstrip("/") + "/", data=body,
                                     headers=fwd_headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, data, ctype = r.status, r.read(), r.headers.get("Content-Type", "text/xml")
        except urllib.error.HTTPError as e:
            status, data, ctype = e.code, e.read(), e.headers.get("Content-Type", "text/xml")
        entry["status"] = status
        with self.st.lock:
            self.st.sts_log.append(entry)
            self.st.stats["sts"] += 1
        self.reply(status, data, ctype)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that stops reading an oversized answer is expected here.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--imds-role", default="kn-test-role")
    ap.add_argument("--container-token", default="")
    ap.add_argument("--sso-token", default="kn-sso-access-token")
    ap.add_argument("--sso-account", default="123456789012")
    ap.add_argument("--sso-role", default="kn-sso-role")
    ap.add_argument("--moto", default="")
    ap.add_argument("--sts-secret", default="")
    args = ap.parse_args()
    srv = Server(("127.0.0.1", args.port), Handler)
    srv.state = State(args)
    print(srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
