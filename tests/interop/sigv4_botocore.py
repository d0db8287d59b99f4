#!/usr/bin/env python3
"""Cross-check of our SigV4 signer against botocore.auth.SigV4Auth.

Usage: sigv4_botocore.py PATH/TO/sigv4_tool
Env:   KN_SIGV4_SEED  (default 20151202)  random seed; printed on every run
       KN_SIGV4_CASES (default 2000)      number of random requests

Generates randomized requests (methods; wire paths with percent-encoding, raw
Unicode, sub-delims, dot segments and duplicate slashes; query strings with
repeated keys, empty values, reserved and non-ASCII characters; header names
and values with odd case and spacing, duplicates, folded lines, headers that
must not be signed; empty, text and binary bodies; session tokens; several
credentials, days, regions and services so the tool's key cache both hits and
evicts), signs each with botocore at a frozen time, runs the tool once on all
of them and compares the Authorization header values.

Where botocore's canonicalization differs from what a request on the wire
means, the generator only produces inputs whose meaning is unambiguous:

1. Query strings. botocore copies a query that is part of the URL verbatim into
   the canonical request (no decoding, no re-encoding), while AWS (and the
   official vectors, e.g. get-vanilla-utf8-query) canonicalize the meaning:
   decode, then encode everything but A-Z a-z 0-9 - _ . ~ with upper-case hex.
   So a request is generated in one of two ways:
   a. "url": the wire query is already in canonical form (what botocore's
      verbatim copy gets right), with any bytes, including non-UTF-8 ones;
   b. "params": botocore gets the decoded (name, value) pairs through
      request.params and encodes them itself, while the tool gets one of the
      many legal wire spellings of the same pairs (raw unreserved or
      sub-delim characters, escapes of characters that need none, lower-case
      hex, raw UTF-8, a raw '=' inside a value, a name without '=').
   Never generated: a raw '+' ("a plus or a space?": form encoding and RFC
   3986 disagree; we sign it as a plus, %2B), a raw '%' that does not start
   an escape, and empty pieces ("a=1&&b=2", which botocore's verbatim copy
   turns into an "=" pair; we skip them).
2. Paths ending in a "." or ".." segment after a slash ("/a/."): RFC 3986
   dot-segment removal keeps a trailing slash there, botocore drops it.
   Other dot segments and duplicate slashes are generated (both remove them).
3. Header whitespace: botocore folds with Python's str.split(), which also
   splits on \\v \\f \\x1c-\\x1f \\x85 \\xa0 and other Unicode spaces; in HTTP
   only SP and HT (and an obs-fold line break) are whitespace. Values use SP,
   HT and folds "\\r\\n " / "\\n\\t" around printable ASCII.
4. Headers botocore rewrites: "Date" (replaced and changes which date is
   signed) and X-Amz-Security-Token when a token is given (replaced) are not
   generated. X-Amz-Date (set to the same frozen time), Authorization (both
   drop it) and X-Amz-Content-SHA256 (both use its value as the payload hash;
   generated without surrounding spaces, which botocore would keep) are.
5. Methods are upper case: botocore upper-cases them, but HTTP methods are
   case-sensitive and we sign the method as given.
6. Host is always given as a header: botocore would derive it from the URL,
   we require it.
"""

import base64
import datetime
import difflib
import json
import os
import random
import subprocess
import sys
from unittest import mock
from urllib.parse import quote

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
SUB_DELIMS_PATH = "!$&'()*+,;=:@"          # legal raw in a path segment
QUERY_RAW_OK = "!$'()*,;:@/?"                # legal raw in a query, meaning unambiguous
TCHAR_EXTRA = "!#$%&'*+-.^_`|~"
UNICODE = ["é", "ß", "ሴ", "中文", "😀", "Ω", "ñ", "€"]
NEVER_SIGNED = ["User-Agent", "Expect", "Connection", "Keep-Alive", "TE", "Trailer",
                "Transfer-Encoding", "Upgrade", "X-Amzn-Trace-Id", "Proxy-Authorization",
                "Proxy-Authenticate"]
COMMON = ["Content-Type", "X-Amz-Target", "Content-Length", "Accept", "Accept-Encoding",
          "X-Amz-Meta-Color", "Content-Encoding", "X-Amz-User-Agent", "amz-sdk-invocation-id"]
REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2", "cn-north-1", "us-gov-west-1"]
SERVICES = ["kinesis", "dynamodb", "sts", "service", "execute-api"]
HOSTS = ["kinesis.us-east-1.amazonaws.com", "example.amazonaws.com", "127.0.0.1:4567",
         "localhost:8000", "dynamodb.eu-west-1.amazonaws.com.cn"]
DAYS = [1440892800, 1704067200, 1735603200, 2000000000 // 86400 * 86400]


def rand_str(rng, alphabet, lo, hi):
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


def pct(b, lower=False):
    s = "%%%02X" % b
    return s.lower() if lower else s


# ---- paths ----

def path_segment(rng):
    kind = rng.random()
    if kind < 0.35:
        return rand_str(rng, UNRESERVED, 1, 10)
    if kind < 0.5:  # percent-encoded bytes, any value, either hex case
        return "".join(pct(rng.randrange(256), rng.random() < 0.3) for _ in range(rng.randint(1, 4)))
    if kind < 0.65:
        return rng.choice(UNICODE) + rand_str(rng, UNRESERVED, 0, 3)
    if kind < 0.8:
        return rand_str(rng, SUB_DELIMS_PATH + "abc", 1, 6)
    if kind < 0.9:
        return rng.choice([".", ".."])
    return ""  # duplicate slash


def gen_path(rng):
    r = rng.random()
    if r < 0.1:
        return "/"
    if r < 0.12:
        return ""
    segs = [path_segment(rng) for _ in range(rng.randint(1, 6))]
    # 2.: no trailing "." / ".." segment (RFC 3986 and botocore disagree there).
    while segs and segs[-1] in (".", ".."):
        segs.pop()
    path = "/" + "/".join(segs)
    if rng.random() < 0.3:
        path += "/"
    return path


# ---- queries ----

def query_text(rng):
    """A decoded query name or value (str)."""
    kind = rng.random()
    if kind < 0.15:
        return ""
    if kind < 0.45:
        return rand_str(rng, UNRESERVED, 1, 8)
    pool = UNRESERVED + " +=&%#/?!$'()*,;:@[]\"<>\\^`{|}\t"
    s = rand_str(rng, pool, 1, 8)
    if rng.random() < 0.5:
        s += rng.choice(UNICODE)
    return s


def canonical_encode(b):
    return "".join(chr(c) if chr(c) in UNRESERVED else pct(c) for c in b)


def wire_spelling(rng, text, is_value):
    """One legal, unambiguous wire spelling of a decoded name or value."""
    out = []
    for ch in text:
        if ch in UNRESERVED or ch in QUERY_RAW_OK or (is_value and ch == "="):
            if rng.random() < 0.7:
                out.append(ch)
                continue
        elif ord(ch) > 127 and rng.random() < 0.5:
            out.append(ch)  # raw UTF-8
            continue
        out.append("".join(pct(b, rng.random() < 0.5) for b in ch.encode("utf-8")))
    return "".join(out)


def gen_query(rng):
    """Returns (mode, wire query for the tool, url query, params for botocore)."""
    if rng.random() < 0.3:
        return "none", "", "", None
    n = rng.randint(1, 6)
    keys = []
    for _ in range(n):
        if keys and rng.random() < 0.25:
            keys.append(rng.choice(keys))  # repeated key
        else:
            keys.append(query_text(rng) or "k")
    if rng.random() < 0.5:
        # a. canonical wire form, arbitrary bytes
        pairs = []
        for k in keys:
            kb = k.encode("utf-8")
            if rng.random() < 0.2:
                vb = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
            else:
                vb = query_text(rng).encode("utf-8")
            ke, ve = canonical_encode(kb), canonical_encode(vb)
            pairs.append(ke if not ve and rng.random() < 0.3 else ke + "=" + ve)
        q = "&".join(pairs)
        return "url", q, q, None
    params, wire = [], []
    for k in keys:
        v = query_text(rng)
        params.append((k, v))
        wk = wire_spelling(rng, k, False)
        if not v and rng.random() < 0.4:
            wire.append(wk)  # a name without '=' means an empty value
        else:
            wire.append(wk + "=" + wire_spelling(rng, v, True))
    return "params", "&".join(wire), "", params


# ---- headers ----

def header_value(rng):
    kind = rng.random()
    if kind < 0.1:
        return ""
    if kind < 0.15:
        return rng.choice([" ", "\t", "  \t "])
    words = [rand_str(rng, "".join(chr(c) for c in range(0x21, 0x7f)), 1, 8)
             for _ in range(rng.randint(1, 4))]
    seps = [rng.choice([" ", "  ", "\t", " \t ", "   "]) if rng.random() < 0.5 else " " for _ in words]
    v = words[0]
    for w, s in zip(words[1:], seps):
        if rng.random() < 0.1:
            s = rng.choice(["\r\n ", "\n\t", "\r\n\t  "])  # obs-fold
        v += s + w
    if rng.random() < 0.3:
        v = rng.choice([" ", "  ", "\t"]) + v
    if rng.random() < 0.3:
        v += rng.choice([" ", "  ", "\t"])
    return v


def random_case(rng, name):
    r = rng.random()
    if r < 0.3:
        return name.lower()
    if r < 0.45:
        return name.upper()
    if r < 0.6:
        return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in name)
    return name


def header_name(rng):
    r = rng.random()
    if r < 0.3:
        return rng.choice(COMMON)
    if r < 0.4:
        return rng.choice(NEVER_SIGNED)
    first = rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    name = first + rand_str(rng, "abcdefghijklmnopqrstuvwxyz0123456789-" + TCHAR_EXTRA, 0, 12)
    if name.lower() in ("date", "host", "authorization", "x-amz-date", "x-amz-security-token",
                        "x-amz-content-sha256"):
        name = "x-" + name
    return name


def gen_headers(rng, host, body, ts):
    hdrs = [[random_case(rng, "Host"), rng.choice(["", " ", "  "]) + host + rng.choice(["", " "])]]
    for _ in range(rng.randint(0, 7)):
        if len(hdrs) > 1 and rng.random() < 0.2:
            name = random_case(rng, rng.choice(hdrs[1:])[0])  # duplicate, other case
        else:
            name = random_case(rng, header_name(rng))
        hdrs.append([name, header_value(rng)])
    r = rng.random()
    if r < 0.08:
        hdrs.append([random_case(rng, "X-Amz-Date"), ts])
    elif r < 0.14:
        hdrs.append([random_case(rng, "Authorization"), "AWS4-HMAC-SHA256 stale"])
    elif r < 0.22:
        value = rng.choice(["UNSIGNED-PAYLOAD", botocore.auth.sha256(body).hexdigest()])
        hdrs.append([random_case(rng, "X-Amz-Content-SHA256"), value])
    rng.shuffle(hdrs)
    return hdrs


# ---- whole requests ----

def gen_creds(rng):
    creds = []
    for _ in range(4):
        akid = "AKIA" + rand_str(rng, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16, 16)
        secret = rand_str(rng, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+", 40, 40)
        creds.append((akid, secret))
    # Same access key id, another secret: must not share a cached key.
    creds.append((creds[0][0], creds[0][1][::-1]))
    return creds


def gen_body(rng):
    r = rng.random()
    if r < 0.3:
        return b""
    if r < 0.6:
        return json.dumps({"StreamName": rand_str(rng, UNRESERVED, 1, 20),
                           "Data": rand_str(rng, UNRESERVED, 0, 200)}).encode()
    if r < 0.97:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 3000)))
    return rng.randbytes(rng.randint(100000, 300000))


def gen_case(rng, creds):
    akid, secret = rng.choice(creds)
    if rng.random() < 0.6:
        t = rng.choice(DAYS) + rng.randrange(86400)
    else:
        t = rng.randint(946684800, 4102444799)  # 2000 .. 2099
    ts = datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    body = gen_body(rng)
    host = rng.choice(HOSTS)
    mode, wire_query, url_query, params = gen_query(rng)
    path = gen_path(rng)
    token = None
    if rng.random() < 0.3:
        token = rand_str(rng, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+=", 16, 400)
    return {
        "method": rng.choice(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"]),
        "host": host,
        "path": path,
        "query": wire_query,
        "query_mode": mode,
        "url_query": url_query,
        "params": params,
        "headers": gen_headers(rng, host, body, ts),
        "body": body,
        "region": rng.choice(REGIONS) if rng.random() < 0.8 else rand_str(rng, "abcdefghijklmnopqrstuvwxyz0123456789-", 1, 20),
        "service": rng.choice(SERVICES) if rng.random() < 0.8 else rand_str(rng, "abcdefghijklmnopqrstuvwxyz0123456789-", 1, 20),
        "time": t,
        "access_key": akid,
        "secret": secret,
        "token": token,
    }


class CapturingSigV4Auth(botocore.auth.SigV4Auth):
    def canonical_request(self, request):
        self.last_canonical = super().canonical_request(request)
        return self.last_canonical


def botocore_sign(case):
    url = "https://" + case["host"] + case["path"]
    if case["url_query"]:
        url += "?" + case["url_query"]
    request = AWSRequest(method=case["method"], url=url, data=case["body"], params=case["params"] or {})
    for name, value in case["headers"]:
        request.headers[name] = value  # appends: repeated names are kept in order
    signer = CapturingSigV4Auth(Credentials(case["access_key"], case["secret"], case["token"]),
                                case["service"], case["region"])
    now = datetime.datetime.fromtimestamp(case["time"], datetime.timezone.utc).replace(tzinfo=None)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=now):
        signer.add_auth(request)
    return request.headers["Authorization"], signer.last_canonical


def tool_input(case):
    return {
        "method": case["method"],
        "path": case["path"],
        "query": case["query"],
        "headers": case["headers"],
        "body_b64": base64.b64encode(case["body"]).decode(),
        "region": case["region"],
        "service": case["service"],
        "time": case["time"],
        "access_key": case["access_key"],
        "secret": case["secret"],
        "token": case["token"],
    }


def printable_case(case):
    shown = dict(case)
    shown["secret"] = "<%d chars, not shown>" % len(case["secret"])
    body = case["body"]
    shown["body"] = "<%d bytes, sha256 %s>" % (len(body), botocore.auth.sha256(body).hexdigest())
    if len(body) <= 256:
        shown["body_b64"] = base64.b64encode(body).decode()
    return json.dumps(shown, indent=2, ensure_ascii=False)


def main():
    if len(sys.argv) != 2:
        print("usage: sigv4_botocore.py PATH/TO/sigv4_tool", file=sys.stderr)
        return 2
    tool = sys.argv[1]
    seed = int(os.environ.get("KN_SIGV4_SEED", "20151202"))
    count = int(os.environ.get("KN_SIGV4_CASES", "2000"))
    print("seed %d (set KN_SIGV4_SEED to change), %d cases" % (seed, count))
    rng = random.Random(seed)
    creds = gen_creds(rng)
    cases = [gen_case(rng, creds) for _ in range(count)]
    expected = [botocore_sign(c) for c in cases]

    stdin = "".join(json.dumps(tool_input(c)) + "\n" for c in cases)
    proc = subprocess.run([tool], input=stdin.encode(), stdout=subprocess.PIPE, timeout=240)
    if proc.returncode != 0:
        print("FAIL: %s exited with %d" % (tool, proc.returncode))
        return 1
    lines = proc.stdout.decode("utf-8").splitlines()
    if len(lines) != len(cases):
        print("FAIL: %s printed %d lines for %d requests" % (tool, len(lines), len(cases)))
        return 1

    passed = failed = 0
    modes = {}
    first = None
    for i, (case, (want_auth, want_creq), line) in enumerate(zip(cases, expected, lines)):
        got = json.loads(line)
        if got.get("authorization") == want_auth:
            passed += 1
            modes[case["query_mode"]] = modes.get(case["query_mode"], 0) + 1
            continue
        failed += 1
        if first is None:
            first = (i, case, want_auth, want_creq, got)
    if first:
        i, case, want_auth, want_creq, got = first
        print("FIRST MISMATCH: case #%d (seed %d)" % (i, seed))
        print(printable_case(case))
        print("botocore Authorization: %s" % want_auth)
        if "error" in got:
            print("our signer failed: %s" % got["error"])
        else:
            print("our      Authorization: %s" % got["authorization"])
            print("canonical request diff (botocore -> ours):")
            for d in difflib.unified_diff(want_creq.split("\n"), got["canonical"].split("\n"),
                                          "botocore", "ours", lineterm=""):
                print("  " + repr(d)[1:-1])
    print("query modes among passes: %s" % ", ".join("%s=%d" % kv for kv in sorted(modes.items())))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
