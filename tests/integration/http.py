#!/usr/bin/env python3
"""HTTP integration tests: the C server (runtime/http) against real clients.

    python3 tests/integration/http.py [BUILD_DIR] [-k SUBSTRING]

BUILD_DIR holds the troupe binary (default: $TROUPE_BUILD_DIR, else build). Each group
of tests starts its own server (`troupe run tests/integration/apps/raw.lua`, port 0,
the port read from the "serving" line on stderr) and stops it after (SIGTERM, then
SIGKILL); each server is a test too: it must accept a connection as soon as it says
"serving", live through its tests, exit 0 and print no sanitizer report (this is what
makes the run under an ASan or TSan build worth it). The apps are raw (a table with
_serve, tests/integration/apps/raw.lua), so the server is tested without the framework;
the "framework" group runs a few requests through troupe.app (apps/framework.lua).

One line per test, `ok - name` or `not ok - name: why`, then `N passed, N failed`.
Python 3 standard library only.
"""
import os
import sys

# This file is named http.py: keep its folder off the module path, or it would shadow
# the standard library's http package.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import email.utils  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APPS = os.path.join(ROOT, "tests", "integration", "apps")
RAW_APP = os.path.join(APPS, "raw.lua")
HOST = "127.0.0.1"
TIMEOUT = 5.0          # default per socket operation
SANITIZER = re.compile(r"ERROR: (Address|Leak|Memory)Sanitizer|WARNING: ThreadSanitizer|"
                       r"ThreadSanitizer: reported|: runtime error: ")

TROUPE = None          # the binary, set in main()
CURL = "curl"


class Fail(Exception):
    """A check that did not hold; the message says why."""


def check(cond, why):
    if not cond:
        raise Fail(why)


def eq(got, want, what):
    if got != want:
        raise Fail("%s: got %r, want %r" % (what, got, want))


# ---- the server --------------------------------------------------------------------

class Server:
    def __init__(self, name, app=RAW_APP, workers=2, env=None, args=()):
        self.name, self.app, self.workers = name, app, workers
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.args = list(args)
        self.proc = None
        self.port = None
        self.log = []
        self._ready = threading.Event()
        self._reader = None
        self.refused_at_start = None

    def start(self, timeout=30.0):
        cmd = [TROUPE, "run", self.app, "--workers", str(self.workers),
               "--listen", "%s:0" % HOST, "--stop-deadline", "2000"] + self.args
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=self.env, cwd=ROOT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout) or self.port is None:
            self.kill()
            raise Fail("server %s did not start: %s" % (self.name, self.tail()))
        # "serving" means listening: a connection right away must not be refused.
        try:
            socket.create_connection((HOST, self.port), timeout=TIMEOUT).close()
            self.refused_at_start = False
        except ConnectionRefusedError:
            self.refused_at_start = True

    def _read(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.log.append(line)
            m = re.search(r"serving http://[^ ]*:(\d+) ", line)
            if m and self.port is None:
                self.port = int(m.group(1))
                self._ready.set()
        self._ready.set()          # exited before serving

    def tail(self, n=15):
        return " | ".join(self.log[-n:]) or "(no output)"

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        """SIGTERM, then SIGKILL after 10 s. Returns the exit status (None: killed)."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
                rc = None
        if self._reader:
            self._reader.join(5)
        return rc

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def url(self, path="/"):
        return "http://%s:%d%s" % (HOST, self.port, path)


# ---- raw HTTP on sockets -------------------------------------------------------------

class Resp:
    def __init__(self, version, status, reason, headers, body):
        self.version, self.status, self.reason = version, status, reason
        self.headers, self.body = headers, body

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def count(self, name):
        return sum(1 for k, _ in self.headers if k.lower() == name.lower())

    def __repr__(self):
        return "<%d %r %d bytes>" % (self.status, self.reason, len(self.body))


class Incomplete(Exception):
    pass


def parse_one(data, pos, head=False):
    """The response at data[pos:]: (Resp, next pos). Incomplete when more is needed;
    Fail when the bytes are not a well-formed HTTP/1.1 response."""
    end = data.find(b"\r\n\r\n", pos)
    if end < 0:
        if not data.startswith(b"HTTP/1.1 "[:len(data) - pos], pos):
            raise Fail("not a response: %r" % data[pos:pos + 80])
        raise Incomplete()
    lines = data[pos:end].decode("latin-1").split("\r\n")
    m = re.match(r"^(HTTP/1\.1) (\d{3}) ([^\r\n]*)$", lines[0])
    if not m:
        raise Fail("bad status line %r" % lines[0])
    headers = []
    for line in lines[1:]:
        k, sep, v = line.partition(":")
        if not sep or not re.match(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", k):
            raise Fail("bad header line %r" % line)
        headers.append((k, v.strip(" \t")))
    r = Resp(m.group(1), int(m.group(2)), m.group(3), headers, b"")
    p = end + 4
    te, cl = r.header("Transfer-Encoding"), r.header("Content-Length")
    if head or 100 <= r.status < 200 or r.status in (204, 304):
        return r, p
    if te is not None:
        check(te.lower() == "chunked", "Transfer-Encoding %r" % te)
        check(cl is None, "both Content-Length and Transfer-Encoding")
        body = []
        while True:
            e = data.find(b"\r\n", p)
            if e < 0:
                raise Incomplete()
            size_s = data[p:e].split(b";")[0].strip()
            check(re.match(rb"^[0-9a-fA-F]+$", size_s) is not None, "bad chunk size %r" % size_s)
            size = int(size_s, 16)
            p = e + 2
            if size == 0:
                if len(data) < p + 2:
                    raise Incomplete()
                check(data[p:p + 2] == b"\r\n", "trailers after the last chunk")
                p += 2
                break
            if len(data) < p + size + 2:
                raise Incomplete()
            body.append(data[p:p + size])
            check(data[p + size:p + size + 2] == b"\r\n", "chunk not followed by CRLF")
            p += size + 2
        r.body = b"".join(body)
        return r, p
    check(cl is not None, "%d response without Content-Length or chunked" % r.status)
    check(r.count("Content-Length") == 1, "several Content-Length headers")
    n = int(cl)
    if len(data) < p + n:
        raise Incomplete()
    r.body = data[p:p + n]
    return r, p + n


def parse_all(data, methods=()):
    """Every complete response in data: (list, rest). methods names the requests in
    order (HEAD responses have no body); 1xx responses do not use up a request."""
    out, pos, i = [], 0, 0
    while pos < len(data):
        head = i < len(methods) and methods[i] == "HEAD"
        try:
            r, pos = parse_one(data, pos, head)
        except Incomplete:
            break
        out.append(r)
        if not 100 <= r.status < 200:
            i += 1
    return out, data[pos:]


def connect(port, timeout=TIMEOUT):
    s = socket.create_connection((HOST, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_close(s, timeout=TIMEOUT):
    """Everything until EOF: (bytes, closed). closed is False on timeout; a reset after
    some bytes counts as closed."""
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, False
        s.settimeout(left)
        try:
            b = s.recv(65536)
        except socket.timeout:
            return data, False
        except (ConnectionResetError, BrokenPipeError):
            return data, True
        if not b:
            return data, True
        data += b


def read_responses(s, n, methods=(), timeout=TIMEOUT):
    """Reads until n final responses are complete: (responses, rest, closed)."""
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        rs, rest = parse_all(data, methods)
        if len([r for r in rs if r.status >= 200]) >= n:
            return rs, rest, False
        left = deadline - time.monotonic()
        if left <= 0:
            raise Fail("timed out waiting for %d responses (got %r, %d bytes more)" %
                       (n, rs, len(rest)))
        s.settimeout(left)
        try:
            b = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            b = b""
        if not b:
            rs, rest = parse_all(data, methods)
            return rs, rest, True
        data += b


def exchange(port, data, timeout=TIMEOUT):
    """Sends data on a new connection, reads until the server closes: (responses, rest,
    closed)."""
    s = connect(port, timeout)
    try:
        s.sendall(data)
        got, closed = read_until_close(s, timeout)
    finally:
        s.close()
    rs, rest = parse_all(got)
    return rs, rest, closed


def expect_refusal(port, data, status, timeout=TIMEOUT):
    """data must get exactly one response, with status, then a closed connection."""
    rs, rest, closed = exchange(port, data, timeout)
    check(len(rs) == 1, "want exactly one response, got %r (+%r)" % (rs, rest[:80]))
    eq(rs[0].status, status, "status")
    eq(rest, b"", "bytes after the response")
    check(closed, "connection not closed after %d" % status)
    eq(rs[0].header("Connection"), "close", "Connection header")
    body = json.loads(rs[0].body)
    eq(body.get("success"), False, "error body's success")
    return rs[0]


def get(port, path, headers=None, timeout=TIMEOUT):
    """One GET through http.client on a new connection: (status, headers, body)."""
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, r.headers, r.read()
    finally:
        c.close()


def curl(*args, timeout=10):
    p = subprocess.run([CURL, "-sS", "--max-time", "5"] + list(args), stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout)
    if p.returncode != 0:
        raise Fail("curl %s: exit %d: %s" % (" ".join(args), p.returncode,
                                             p.stderr.decode(errors="replace").strip()))
    return p.stdout


def curl_i(*args):
    """curl -i: (status, {lowercase name: [values]}, body)."""
    out = curl("-i", *args)
    head, sep, body = out.partition(b"\r\n\r\n")
    check(sep, "no end of head in curl's output %r" % out[:200])
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hs.setdefault(k.strip().lower(), []).append(v.strip())
    return status, hs, body


# ---- the tests ----------------------------------------------------------------------

GROUPS = []     # (name, server kwargs, [(test name, fn)])


def group(name, **server):
    tests = []
    GROUPS.append((name, server, tests))

    def test(tname):
        def deco(fn):
            tests.append((tname, fn))
            return fn
        return deco
    return test


# ---- basic: normal traffic, limits, errors, streaming (2 workers) ----
basic = group("basic", workers=2)

IMF = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|"
                 r"Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$")


@basic("curl GET: 200, body, Server, Date (IMF-fixdate), Content-Type, Content-Length, X-Request-Id")
def t_curl_get(srv):
    status, hs, body = curl_i(srv.url("/"))
    eq(status, 200, "status")
    eq(body, b"hello\n", "body")
    eq(hs.get("server"), ["troupe"], "Server")
    eq(hs.get("content-type"), ["text/plain"], "Content-Type")
    eq(hs.get("content-length"), [str(len(body))], "Content-Length")
    date = hs.get("date", [""])
    eq(len(date), 1, "number of Date headers")
    check(IMF.match(date[0]), "Date %r is not an IMF-fixdate" % date[0])
    when = email.utils.parsedate_to_datetime(date[0]).timestamp()
    check(abs(when - time.time()) < 5, "Date %r is not now" % date[0])
    ids = hs.get("x-request-id", [])
    check(len(ids) == 1 and ids[0] not in ("", "-"), "X-Request-Id %r" % ids)
    _, hs2, _ = curl_i(srv.url("/"))
    check(hs2.get("x-request-id") != ids, "two requests got the same X-Request-Id %r" % ids)


@basic("curl: a client's X-Request-Id is echoed, a bad one replaced")
def t_curl_request_id(srv):
    _, hs, _ = curl_i("-H", "X-Request-Id: abc-123_x.y:z", srv.url("/"))
    eq(hs.get("x-request-id"), ["abc-123_x.y:z"], "echoed X-Request-Id")
    _, hs, _ = curl_i("-H", "X-Request-Id: has space<script>", srv.url("/"))
    ids = hs.get("x-request-id", [])
    check(len(ids) == 1 and "<" not in ids[0] and ids[0], "bad X-Request-Id not replaced: %r" % ids)
    long_id = "a" * 65
    _, hs, _ = curl_i("-H", "X-Request-Id: " + long_id, srv.url("/"))
    check(hs.get("x-request-id") != [long_id], "a 65-byte X-Request-Id was echoed")


@basic("curl POST: the body reaches the handler and comes back")
def t_curl_post(srv):
    payload = b"name=ada&lang=lua\x00\xff" * 50
    p = subprocess.run([CURL, "-sS", "--max-time", "5", "-i", "--data-binary", "@-",
                        "-H", "Content-Type: application/octet-stream", srv.url("/echo")],
                       input=payload, capture_output=True, timeout=10)
    eq(p.returncode, 0, "curl exit status")
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    check(head.startswith(b"HTTP/1.1 200 "), "status line %r" % head[:40])
    eq(body, payload, "echoed body")
    check(b"\r\nX-Method: POST\r\n" in head, "X-Method: POST missing in %r" % head)
    check(("\r\nX-Body-Length: %d\r\n" % len(payload)).encode() in head, "X-Body-Length")


@basic("curl HEAD: no body, the same Content-Length as GET")
def t_curl_head(srv):
    out = curl("-I", srv.url("/"))
    head = out.decode("latin-1")
    check(head.startswith("HTTP/1.1 200 "), "status line %r" % head[:40])
    check("\r\nContent-Length: 6\r\n" in head, "Content-Length: 6 missing in %r" % head)
    # curl -I does not read a body; a raw pipeline shows there is none: the next
    # response starts right after HEAD's head.
    s = connect(srv.port)
    try:
        s.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got, closed = read_until_close(s)
    finally:
        s.close()
    rs, rest = parse_all(got, ("HEAD", "GET"))
    eq([r.status for r in rs], [200, 200], "statuses")
    eq(rs[0].header("Content-Length"), "6", "HEAD's Content-Length")
    eq(rs[1].body, b"/after", "the response after HEAD")
    eq(rest, b"", "bytes after the last response")
    check(closed, "Connection: close not honoured")


@basic("curl keep-alive: two URLs on one connection (num_connects 1, 0)")
def t_curl_keepalive(srv):
    out = curl("-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects} %{http_code}\n",
               srv.url("/"), srv.url("/x"))
    eq(out.decode().split("\n")[:2], ["1 200", "0 200"], "num_connects and statuses")


@basic("HTTP/1.0: closes unless keep-alive is asked, keeps it when asked")
def t_http10(srv):
    status, hs, body = curl_i("--http1.0", srv.url("/"))
    eq(status, 200, "curl --http1.0 status")
    eq(body, b"hello\n", "curl --http1.0 body")
    rs, rest, closed = exchange(srv.port, b"GET / HTTP/1.0\r\n\r\n")
    eq([r.status for r in rs], [200], "statuses")
    check(closed, "HTTP/1.0 without keep-alive: connection left open")
    eq(rs[0].header("Connection"), "close", "Connection")
    s = connect(srv.port)
    try:
        s.sendall(b"GET /one HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        rs, _, closed = read_responses(s, 1)
        check(not closed, "HTTP/1.0 keep-alive: closed after the first response")
        eq(rs[0].header("Connection"), "keep-alive", "Connection")
        s.sendall(b"GET /two HTTP/1.0\r\n\r\n")
        got, closed = read_until_close(s)
    finally:
        s.close()
    rs, _ = parse_all(got)
    eq([r.body for r in rs], [b"/two"], "second response on the kept connection")
    check(closed, "closed after the second HTTP/1.0 request")


@basic("pipelining: 16 requests in one send, 16 responses in order on one connection")
def t_pipeline(srv):
    reqs = b"".join(b"GET /p/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(15))
    reqs += b"GET /p/15 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    rs, rest, closed = exchange(srv.port, reqs)
    eq([r.body for r in rs], [b"/p/%d" % i for i in range(16)], "bodies in order")
    eq(rest, b"", "bytes after the last response")
    check(closed, "not closed after Connection: close")


@basic("pipelining with slow requests, a POST and a HEAD: responses still in order")
def t_pipeline_slow(srv):
    parts, want, methods = [], [], []
    for i in range(8):
        if i % 3 == 1:
            parts.append(b"GET /slow?%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            want.append(b"/slow")
            methods.append("GET")
        elif i == 4:
            parts.append(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nbody4")
            want.append(b"body4")
            methods.append("POST")
        elif i == 6:
            parts.append(b"HEAD /p/6 HTTP/1.1\r\nHost: x\r\n\r\n")
            want.append(b"")
            methods.append("HEAD")
        else:
            parts.append(b"GET /p/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            want.append(b"/p/%d" % i)
            methods.append("GET")
    parts.append(b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    want.append(b"/last")
    methods.append("GET")
    s = connect(srv.port)
    t0 = time.monotonic()
    try:
        s.sendall(b"".join(parts))
        got, closed = read_until_close(s, 8)
    finally:
        s.close()
    rs, rest = parse_all(got, methods)
    eq([r.body for r in rs], want, "bodies in order")
    eq(rest, b"", "bytes after the last response")
    check(closed, "not closed after Connection: close")
    check(time.monotonic() - t0 >= 0.5, "the 3 slow requests did not wait (0.2 s each)")


@basic("pipelined requests behind a slow one, then a half-close: every one answered")
def t_half_close(srv):
    for first in (b"/slow", b"/p/0"):
        s = connect(srv.port)
        try:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\nGET /p/1 HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok" % first)
            s.shutdown(socket.SHUT_WR)
            got, closed = read_until_close(s)
        finally:
            s.close()
        rs, rest = parse_all(got)
        eq([r.body for r in rs], [first, b"/p/1", b"ok"], "bodies after %s and a half-close" % first)
        eq(rest, b"", "bytes after the last response")
        check(closed, "not closed after the half-close")


@basic("Connection: close with more sent behind it: the response, then FIN, not a reset")
def t_close_no_reset(srv):
    s = connect(srv.port)
    reset = False
    data = b""
    try:
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        # While the handler waits the server reads once more, then no more: the
        # second batch stays unread in its kernel buffer.
        for _ in range(2):
            time.sleep(0.05)
            s.sendall(b"GET /more HTTP/1.1\r\nHost: x\r\n\r\n" * 20)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                reset = True
                break
            if not b:
                break
            data += b
    finally:
        s.close()
    rs, rest = parse_all(data)
    eq([(r.status, r.body) for r in rs], [(200, b"/slow")], "responses")
    check(not reset, "the server reset the connection (closed with unread input)")


@basic("Expect: 100-continue: 100, then the body, then the final response")
def t_expect(srv):
    s = connect(srv.port)
    try:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            b = s.recv(4096)
            check(b, "closed before 100 Continue")
            data += b
        eq(data, b"HTTP/1.1 100 Continue\r\n\r\n", "interim response")
        s.sendall(b"hello world")
        rs, rest, _ = read_responses(s, 1)
        eq(rs[0].status, 200, "final status")
        eq(rs[0].body, b"hello world", "echoed body")
        # The connection is still good for another request.
        s.sendall(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
        rs, _, _ = read_responses(s, 1)
        eq(rs[0].body, b"/again", "next request")
    finally:
        s.close()


@basic("Expect: 100-continue with a too-big Content-Length: 413, no 100, closed")
def t_expect_too_big(srv):
    r = expect_refusal(srv.port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n"
                                 b"Expect: 100-continue\r\n\r\n", 413)
    eq(r.status, 413, "status")
    expect_refusal(srv.port, b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n"
                             b"Expect: 100-continue\r\n\r\n", 413)


@basic("Expect with anything but 100-continue: 417")
def t_expect_other(srv):
    expect_refusal(srv.port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                             b"Expect: something\r\n\r\nx", 417)


@basic("a 900 KB body is accepted and echoed whole")
def t_big_body(srv):
    payload = bytes(range(256)) * 3600       # 921,600 bytes
    c = http.client.HTTPConnection(HOST, srv.port, timeout=10)
    try:
        c.request("POST", "/echo", body=payload)
        r = c.getresponse()
        body = r.read()
        eq(r.status, 200, "status")
        eq(r.getheader("X-Body-Length"), str(len(payload)), "X-Body-Length")
        check(body == payload, "echoed body differs (%d bytes back)" % len(body))
    finally:
        c.close()


def send_in_background(s, data_iter):
    def run():
        try:
            for chunk in data_iter:
                s.sendall(chunk)
        except OSError:
            pass                # the server stopped reading: expected
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@basic("a 2 MB body: 413 and closed (default limit 1 MB)")
def t_body_too_big(srv):
    s = connect(srv.port)
    try:
        size = 2 * 1024 * 1024
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        t = send_in_background(s, (b"x" * 65536 for _ in range(size // 65536)))
        got, closed = read_until_close(s)
        t.join(5)
    finally:
        s.close()
    rs, rest = parse_all(got)
    eq([r.status for r in rs], [413], "statuses")
    check(closed, "not closed after 413")


@basic("a chunked body over the limit: 413 and closed")
def t_chunked_too_big(srv):
    s = connect(srv.port)
    try:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"10000\r\n" + b"y" * 0x10000 + b"\r\n"
        t = send_in_background(s, (chunk for _ in range(24)))   # 1.5 MB
        got, closed = read_until_close(s)
        t.join(5)
    finally:
        s.close()
    rs, _ = parse_all(got)
    eq([r.status for r in rs], [413], "statuses")
    check(closed, "not closed after 413")


@basic("a chunked body under the limit is decoded and echoed")
def t_chunked_ok(srv):
    req = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
           b"Connection: close\r\n\r\n5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n\r\n")
    rs, rest, closed = exchange(srv.port, req)
    eq([r.status for r in rs], [200], "statuses")
    eq(rs[0].body, b"hello world", "decoded body")


@basic("per-route body limit (_body_limit): 100 bytes pass, 101 and chunked 150 get 413")
def t_route_limit(srv):
    c = http.client.HTTPConnection(HOST, srv.port, timeout=TIMEOUT)
    try:
        c.request("POST", "/small", body=b"a" * 100)
        r = c.getresponse()
        eq((r.status, len(r.read())), (200, 100), "100 bytes to /small")
    finally:
        c.close()
    expect_refusal(srv.port, b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n"
                   + b"a" * 101, 413)
    expect_refusal(srv.port, b"POST /small?q=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                   b"\r\n\r\n96\r\n" + b"b" * 150 + b"\r\n0\r\n\r\n", 413)
    # The same 150 bytes are fine on a route with the default limit.
    rs, _, _ = exchange(srv.port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 150\r\n"
                        b"Connection: close\r\n\r\n" + b"b" * 150)
    eq([(r.status, len(r.body)) for r in rs], [(200, 150)], "150 bytes to /echo")


@basic("request line + headers over 16 KB: 431 (big header, long URL, too many headers)")
def t_431(srv):
    expect_refusal(srv.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 17000
                   + b"\r\n\r\n", 431)
    expect_refusal(srv.port, b"GET /" + b"u" * 17000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431)
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(200))
    expect_refusal(srv.port, b"GET / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n", 431)
    # Just under the limit passes.
    rs, _, _ = exchange(srv.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: "
                        + b"a" * 15000 + b"\r\n\r\n")
    eq([r.status for r in rs], [200], "15 KB of headers")


@basic("a handler that raises: 500 JSON, and the next request on the connection works")
def t_handler_error(srv):
    c = http.client.HTTPConnection(HOST, srv.port, timeout=TIMEOUT)
    try:
        c.request("GET", "/error")
        r = c.getresponse()
        body = r.read()
        eq(r.status, 500, "status")
        eq(r.getheader("Content-Type"), "application/json", "Content-Type")
        eq(body, b'{"success":false,"error":"Internal Server Error"}', "body")
        c.request("GET", "/next")
        r = c.getresponse()
        eq((r.status, r.read()), (200, b"/next"), "next request on the same connection")
    finally:
        c.close()
    eq(get(srv.port, "/")[0], 200, "a request on a new connection")


@basic("a handler that sends nothing: 500")
def t_handler_nothing(srv):
    status, _, body = get(srv.port, "/nothing")
    eq(status, 500, "status")
    eq(json.loads(body), {"success": False, "error": "Internal Server Error"}, "body")


@basic("streaming (http.write): a chunked response decoded by http.client")
def t_stream(srv):
    c = http.client.HTTPConnection(HOST, srv.port, timeout=TIMEOUT)
    try:
        c.request("GET", "/stream")
        r = c.getresponse()
        eq(r.getheader("Transfer-Encoding"), "chunked", "Transfer-Encoding")
        eq(r.getheader("Content-Length"), None, "Content-Length")
        eq(r.read(), b"".join(b"chunk %d\n" % i for i in range(1, 6)), "body")
        c.request("GET", "/after-stream")
        r = c.getresponse()
        eq(r.read(), b"/after-stream", "next request after the stream")
    finally:
        c.close()


@basic("response splitting: CR/LF in a header value, name or content type raises (500)")
def t_splitting(srv):
    for q in ("crlf", "lf", "name", "ctype"):
        rs, rest, _ = exchange(srv.port, b"GET /split?%s HTTP/1.1\r\nHost: x\r\n"
                               b"Connection: close\r\n\r\n" % q.encode())
        eq([r.status for r in rs], [500], "statuses for /split?" + q)
        raw = b"".join(k.encode() + v.encode() for r in rs for k, v in r.headers) + rest
        check(b"X-Injected" not in raw and rs[0].header("X-Split") is None,
              "the header was emitted for /split?%s: %r" % (q, rs[0].headers))


@basic("200 concurrent connections, 5 keep-alive requests each: all answered")
def t_concurrent(srv):
    n, per = 200, 5
    barrier = threading.Barrier(n, timeout=20)
    errors, done = [], []

    def client(i):
        try:
            s = connect(srv.port, 20)
            try:
                barrier.wait()      # all n connections are open at once
                for j in range(per):
                    last = j == per - 1
                    s.sendall(b"GET /c/%d/%d HTTP/1.1\r\nHost: x\r\n%s\r\n" %
                              (i, j, b"Connection: close\r\n" if last else b""))
                    rs, _, _ = read_responses(s, 1, timeout=20)
                    if rs[0].status != 200 or rs[0].body != b"/c/%d/%d" % (i, j):
                        raise Fail("client %d request %d: %r %r" % (i, j, rs[0], rs[0].body))
                done.append(i)
            finally:
                s.close()
        except Exception as e:      # noqa: BLE001 (every failure is reported)
            errors.append("client %d: %s" % (i, e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    check(not errors, "%d clients failed, first: %s" % (len(errors), errors[:3]))
    eq(len(done), n, "clients done")


# ---- strict: malformed requests and smuggling (1 worker, so /count sees everything) ----
strict = group("strict", workers=1)

H = b"Host: x\r\n"
REFUSALS = [
    ("Content-Length with Transfer-Encoding",
     b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n", 400),
    ("Transfer-Encoding then Content-Length",
     b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
     b"0\r\n\r\n", 400),
    ("duplicate Content-Length, same value",
     b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    ("duplicate Content-Length, different values",
     b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 5\r\n\r\nabcde", 400),
    ("Content-Length: 3, 3 (a list)",
     b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 3, 3\r\n\r\nabc", 400),
    ("Content-Length: abc", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: abc\r\n\r\n", 400),
    ("Content-Length: -1", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
    ("Content-Length: 1 2", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 1 2\r\n\r\nab", 400),
    ("Content-Length: +3", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: +3\r\n\r\nabc", 400),
    ("Content-Length overflowing 64 bits",
     b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999\r\n\r\n", 400),
    ("Transfer-Encoding: chunked, gzip (last coding not chunked)",
     b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
    ("Transfer-Encoding: identity",
     b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\nabc", 400),
    ("Transfer-Encoding: xchunked",
     b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
    ("chunk size zz",
     b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
     400),
    ("chunk size overflowing 64 bits",
     b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"fffffffffffffffffffff\r\nabc\r\n", 400),
    ("chunk data not followed by CRLF",
     b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
     400),
    ("bare CR line ending", b"GET / HTTP/1.1\r" + H + b"\r\n", 400),
    ("bare CR inside a header line", b"GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n", 400),
    ("bare LF line endings", b"GET / HTTP/1.1\nHost: x\n\n", 400),
    ("bare LF after a header", b"GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", 400),
    ("obs-fold (a header line starting with a space)",
     b"GET / HTTP/1.1\r\n" + H + b"X-A: b\r\n folded\r\n\r\n", 400),
    ("obs-fold with a tab", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\r\n\tfolded\r\n\r\n", 400),
    ("obs-fold of an empty value", b"GET / HTTP/1.1\r\n" + H + b"X-A:\r\n folded\r\n\r\n", 400),
    ("obs-fold of whitespace only", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\r\n \r\n\r\n", 400),
    ("obs-fold in a chunked trailer",
     b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX-T: a\r\n b\r\n\r\n",
     400),
    ("whitespace before the colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    ("whitespace before the colon (Transfer-Encoding)",
     b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    ("missing Host on HTTP/1.1", b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400),
    ("duplicate Host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("duplicate Host on HTTP/1.0", b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    ("bad method (FOO)", b"FOO / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("bad method (lower case get)", b"get / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("bad version HTTP/1.x", b"GET / HTTP/1.x\r\n" + H + b"\r\n", 400),
    ("version HTTP/2.0", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("bad version HTTP/1.2", b"GET / HTTP/1.2\r\n" + H + b"\r\n", 400),
    ("bad version HTTXP/1.1", b"GET / HTTXP/1.1\r\n" + H + b"\r\n", 400),
    ("no version (HTTP/0.9)", b"GET /\r\n" + H + b"\r\n", 505),
    ("version HTTP/0.9", b"GET / HTTP/0.9\r\n" + H + b"\r\n", 505),
    ("space in the URL", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("NUL in a header value", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\x00c\r\n\r\n", 400),
    ("NUL in a header name", b"GET / HTTP/1.1\r\n" + H + b"X-\x00A: b\r\n\r\n", 400),
    ("NUL in the URL", b"GET /a\x00b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("CONNECT", b"CONNECT x:443 HTTP/1.1\r\n" + H + b"\r\n", 405),
]


def refusal_test(data, status):
    def fn(srv):
        expect_refusal(srv.port, data, status)
    return fn


for _name, _data, _status in REFUSALS:
    strict("%s: %d and closed" % (_name, _status))(refusal_test(_data, _status))

SMUGGLE = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
SMUGGLING = [
    ("CL.TE", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % (5 + len(SMUGGLE)) + SMUGGLE),
    ("TE.CL", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
              b"Content-Length: 4\r\n\r\n%x\r\n" % len(SMUGGLE) + SMUGGLE + b"\r\n0\r\n\r\n"),
    ("CL.CL", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: %d\r\n"
              b"\r\n" % len(SMUGGLE) + SMUGGLE),
    ("TE obfuscated (chunked, identity)",
     b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
     b"Transfer-Encoding: identity\r\n\r\n0\r\n\r\n" + SMUGGLE),
    ("TE with a space before the colon",
     b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nTransfer-Encoding : chunked\r\n"
     b"\r\n0\r\n\r\n" % (5 + len(SMUGGLE)) + SMUGGLE),
    ("Transfer-Encoding folded onto the next line",
     b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"
     b"%x\r\n" % len(SMUGGLE) + SMUGGLE + b"\r\n0\r\n\r\n"),
    ("Content-Length folded onto the next line",
     b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n %d\r\n\r\n" % len(SMUGGLE)
     + SMUGGLE),
    ("LF-only request head hiding a request",
     b"POST /echo HTTP/1.1\nHost: x\nContent-Length: %d\r\n\r\n" % len(SMUGGLE) + SMUGGLE),
]


def smuggling_test(data):
    def fn(srv):
        rs, rest, closed = exchange(srv.port, data)
        check(len(rs) == 1 and rest == b"",
              "want exactly one response, got %r + %r" % (rs, rest[:100]))
        eq(rs[0].status, 400, "status")
        check(closed, "not closed")
    return fn


for _name, _data in SMUGGLING:
    strict("smuggling %s: one 400, the hidden request never runs" % _name)(smuggling_test(_data))


@strict("smuggling: the app never saw /smuggled (its request count per path)")
def t_smuggling_counts(srv):
    status, _, body = get(srv.port, "/count")
    eq(status, 200, "/count status")
    counts = json.loads(body)
    check("/smuggled" not in counts, "the hidden request ran: %r" % counts)


def trickle(port, data, timeout=TIMEOUT):
    """Sends data one byte per write (each its own read on the server, most of the
    time), then reads until the server closes: (responses, rest, closed)."""
    s = connect(port, timeout)
    try:
        for i in range(len(data)):
            try:
                s.send(data[i:i + 1])
            except OSError:
                break           # refused and closed: the rest is not needed
            time.sleep(0.0005)
        got, closed = read_until_close(s, timeout)
    finally:
        s.close()
    rs, rest = parse_all(got)
    return rs, rest, closed


@strict("obs-fold and a bare LF, sent one byte at a time: 400 and closed")
def t_fold_bytewise(srv):
    for data in (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n folded\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: x\r\nX-A:\r\n folded\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n \r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n"):
        rs, rest, closed = trickle(srv.port, data)
        eq([r.status for r in rs], [400], "statuses for %r" % data)
        check(closed, "not closed for %r" % data)


@strict("valid heads with empty values and trailing spaces, one byte at a time: 200")
def t_valid_bytewise(srv):
    data = (b"GET /header?X-E HTTP/1.1\r\nHost: x\r\nX-E:\r\nX-S: a  \r\nX-T:\t \r\n"
            b"X-U: v w\r\nConnection: close\r\n\r\n")
    rs, rest, closed = trickle(srv.port, data)
    eq([(r.status, r.body) for r in rs], [(200, b"")], "responses")
    data = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n3\r\n \n \r\n0\r\nX-T: a \r\n\r\n")
    rs, rest, closed = trickle(srv.port, data)
    eq([(r.status, r.body) for r in rs], [(200, b" \n ")], "chunked with trailer")


@strict("a valid request on the strict server still works (after all the refusals)")
def t_strict_alive(srv):
    rs, _, _ = exchange(srv.port, b"GET /fine HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    eq([(r.status, r.body) for r in rs], [(200, b"/fine")], "responses")


# ---- timeouts: keep-alive idle, slowloris (header and body) ----
timeouts = group("timeouts", workers=2, env={"TROUPE_HTTP_IDLE_TIMEOUT_MS": "300",
                                            "TROUPE_HTTP_HEADER_TIMEOUT_MS": "500",
                                            "TROUPE_HTTP_BODY_TIMEOUT_MS": "500"})


@timeouts("keep-alive idle timeout (300 ms) closes an idle connection")
def t_idle(srv):
    s = connect(srv.port)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        rs, _, closed = read_responses(s, 1)
        eq(rs[0].status, 200, "status")
        check(not closed, "closed right after a keep-alive response")
        t0 = time.monotonic()
        got, closed = read_until_close(s, 3)
        waited = time.monotonic() - t0
    finally:
        s.close()
    check(closed, "idle connection not closed within 3 s")
    eq(got, b"", "bytes sent on an idle connection")
    check(0.2 <= waited <= 1.5, "closed after %.2f s, want about 0.3" % waited)
    s = connect(srv.port)            # a connection that never sends a byte
    try:
        t0 = time.monotonic()
        got, closed = read_until_close(s, 3)
    finally:
        s.close()
    check(closed and got == b"", "silent connection: closed=%r, got %r" % (closed, got))
    check(time.monotonic() - t0 <= 1.5, "silent connection lived %.2f s" % (time.monotonic() - t0))


@timeouts("slowloris: headers trickled past 500 ms get 408 and a close; others are served")
def t_slowloris(srv):
    s = connect(srv.port)
    served = []
    try:
        t0 = time.monotonic()
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        trickle = b"X-Slow: " + b"z" * 200
        got, i = b"", 0
        while time.monotonic() - t0 < 4:
            r, _, _ = select.select([s], [], [], 0.05)
            if r:
                break
            if i < len(trickle):
                try:
                    s.send(trickle[i:i + 1])
                except OSError:
                    break
                i += 1
            if len(served) < 4 and time.monotonic() - t0 > 0.1 * (len(served) + 1):
                st, _, body = get(srv.port, "/other%d" % len(served), timeout=1)
                served.append((st, body, time.monotonic() - t0))
        got, closed = read_until_close(s, 3)
        took = time.monotonic() - t0
    finally:
        s.close()
    rs, rest = parse_all(got)
    eq([r.status for r in rs], [408], "statuses on the slow connection")
    check(closed, "slow connection not closed after 408")
    check(0.4 <= took <= 3, "408 after %.2f s, want about 0.5" % took)
    eq([(st, b) for st, b, _ in served], [(200, b"/other%d" % k) for k in range(4)],
       "other clients meanwhile")
    check(all(t < 0.5 for _, _, t in served), "other clients not served during the trickle")


@timeouts("a body trickled past the body timeout (500 ms): 408 and closed")
def t_slow_body(srv):
    s = connect(srv.port)
    try:
        t0 = time.monotonic()
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        got, closed = read_until_close(s, 4)
        took = time.monotonic() - t0
    finally:
        s.close()
    rs, _ = parse_all(got)
    eq([r.status for r in rs], [408], "statuses")
    check(closed, "not closed after 408")
    check(0.4 <= took <= 3, "408 after %.2f s" % took)


@timeouts("a request arriving within the idle timeout keeps the connection")
def t_idle_reuse(srv):
    s = connect(srv.port)
    try:
        for i in range(4):
            s.sendall(b"GET /r%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            rs, _, closed = read_responses(s, 1)
            eq(rs[0].body, b"/r%d" % i, "response")
            check(not closed, "closed")
            time.sleep(0.15)
    finally:
        s.close()


# ---- budget: a runaway handler on one worker, the other keeps serving ----
# A 1 s budget: a window wide enough for the other clients to get through even
# under a sanitizer on a loaded machine.
budget = group("budget", workers=2, args=["--vm-budget", "1000"])


@budget("runaway handler (while true) with --vm-budget 1000: 503; other requests answered meanwhile")
def t_runaway(srv):
    spin = {}

    def spinner():
        t0 = time.monotonic()
        try:
            spin["res"] = get(srv.port, "/spin", timeout=10)
        except Exception as e:      # noqa: BLE001
            spin["err"] = e
        spin["t"] = time.monotonic() - t0
        spin["end"] = time.monotonic()

    th = threading.Thread(target=spinner)
    th.start()
    time.sleep(0.05)                 # the spin has started on one worker
    results = []

    def client(i):
        try:
            st, _, body = get(srv.port, "/q%d" % i, timeout=10)
            results.append((i, st, body, time.monotonic()))
        except Exception as e:      # noqa: BLE001
            results.append((i, None, repr(e), time.monotonic()))

    clients = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for t in clients:
        t.start()
    for t in clients:
        t.join(15)
    th.join(15)
    check("res" in spin, "/spin failed: %r" % spin.get("err"))
    st, _, body = spin["res"]
    eq(st, 503, "/spin status")
    eq(json.loads(body), {"success": False, "error": "Service Unavailable"}, "/spin body")
    check(spin["t"] >= 0.9, "503 after %.3f s, before the budget" % spin["t"])
    bad = [(i, st, b) for i, st, b, _ in results if st != 200 or b != b"/q%d" % i]
    check(not bad and len(results) == 20, "other requests failed: %r" % bad[:3])
    during = [i for i, _, _, t in results if t < spin["end"]]
    check(during, "no other request was answered while the runaway ran (%.3f s)" % spin["t"])
    eq(get(srv.port, "/after")[0], 200, "a request after the runaway")


@budget("both workers still serve after a runaway on each")
def t_runaway_twice(srv):
    threads, res = [], []
    for _ in range(4):
        t = threading.Thread(target=lambda: res.append(get(srv.port, "/spin", timeout=10)[0]))
        t.start()
        threads.append(t)
    for t in threads:
        t.join(15)
    eq(res, [503] * 4, "statuses of 4 runaways")
    eq(sorted(get(srv.port, "/x%d" % i)[0] for i in range(10)), [200] * 10, "statuses after")


# ---- max connections: TROUPE_HTTP_MAX_CONNS=5 per worker, 2 workers ----
maxconns = group("maxconns", workers=2, env={"TROUPE_HTTP_MAX_CONNS": "5"})


@maxconns("30 connections with MAX_CONNS=5 x 2 workers: at most 10 served at once, all in the end")
def t_maxconns(srv):
    socks = {}
    try:
        for i in range(30):
            s = connect(srv.port)
            s.sendall(b"GET /m/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            socks[i] = [s, b""]
        answered = []

        def poll(wait):
            ready, _, _ = select.select([v[0] for v in socks.values()], [], [], wait)
            for i, v in list(socks.items()):
                if v[0] not in ready:
                    continue
                b = v[0].recv(65536)
                v[1] += b
                rs, _ = parse_all(v[1])
                if rs:
                    eq((rs[0].status, rs[0].body), (200, b"/m/%d" % i), "response %d" % i)
                    answered.append(i)
                    v[0].close()
                    del socks[i]
                elif not b:
                    raise Fail("connection %d closed without a response" % i)

        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.5:
            ready, _, _ = select.select([v[0] for v in socks.values()], [], [], 0.05)
            for i, v in list(socks.items()):
                if v[0] in ready:
                    v[1] += v[0].recv(65536)
        first = [i for i, v in socks.items() if parse_all(v[1])[0]]
        check(1 <= len(first) <= 10, "%d connections served at once, want 1..10" % len(first))
        # Close the served ones: the waiting ones are accepted and served in turn.
        for i in first:
            socks[i][0].close()
            answered.append(i)
            del socks[i]
        deadline = time.monotonic() + 15
        while socks and time.monotonic() < deadline:
            poll(0.1)
        check(not socks, "%d connections never served: %r" % (len(socks), sorted(socks)))
        eq(sorted(answered), list(range(30)), "connections answered")
    finally:
        for v in socks.values():
            v[0].close()
    check(srv.alive(), "the server died")
    eq(get(srv.port, "/after")[0], 200, "a request after")


# ---- framework: the same server under troupe.app (scripts/troupe/app.lua) ----
framework = group("framework", app=os.path.join(APPS, "framework.lua"), workers=2)


@framework("troupe.app: a route with a parameter and a query, middleware header, JSON")
def t_fw_route(srv):
    status, hs, body = get(srv.port, "/users/42?q=a%20b")
    eq(status, 200, "status")
    eq(json.loads(body), {"id": "42", "q": "a b"}, "body")
    eq(hs.get("X-Middleware"), "ran", "middleware header")
    check((hs.get("Content-Type") or "").startswith("application/json"), "Content-Type")


@framework("troupe.app: a JSON body in, 201 and JSON out")
def t_fw_json(srv):
    c = http.client.HTTPConnection(HOST, srv.port, timeout=TIMEOUT)
    try:
        c.request("POST", "/json", body=json.dumps({"name": "ada", "n": 41}),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        eq((r.status, json.loads(r.read())), (201, {"got": "ada", "n": 42}), "response")
    finally:
        c.close()


@framework("troupe.app: 404, an HTTP error (418) and a Lua error (500) as JSON, then 200")
def t_fw_errors(srv):
    c = http.client.HTTPConnection(HOST, srv.port, timeout=TIMEOUT)
    try:
        for path, status, msg in (("/nope", 404, "Not Found"), ("/teapot", 418, "I'm a teapot"),
                                  ("/boom", 500, "Internal Server Error")):
            c.request("GET", path)
            r = c.getresponse()
            body = json.loads(r.read())
            eq((r.status, body.get("success"), body.get("error")), (status, False, msg), path)
        c.request("GET", "/users/1")
        r = c.getresponse()
        eq((r.status, json.loads(r.read())["id"]), (200, "1"), "after the errors")
    finally:
        c.close()


@framework("troupe.app: a route's body_limit (64): 64 bytes pass, 65 get 413 from the server")
def t_fw_limit(srv):
    c = http.client.HTTPConnection(HOST, srv.port, timeout=TIMEOUT)
    try:
        c.request("POST", "/limited", body=b"x" * 64)
        r = c.getresponse()
        eq((r.status, r.read()), (200, b"got 64"), "64 bytes")
    finally:
        c.close()
    expect_refusal(srv.port, b"POST /limited HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n"
                   + b"x" * 65, 413)


@framework("troupe.app: res:write streams a chunked response")
def t_fw_stream(srv):
    c = http.client.HTTPConnection(HOST, srv.port, timeout=TIMEOUT)
    try:
        c.request("GET", "/stream")
        r = c.getresponse()
        eq(r.getheader("Transfer-Encoding"), "chunked", "Transfer-Encoding")
        eq(r.read(), b"part 1\npart 2\npart 3\n", "body")
    finally:
        c.close()


# ---- main ------------------------------------------------------------------------------

def main():
    global TROUPE
    args = sys.argv[1:]
    only = None
    if "-k" in args:
        i = args.index("-k")
        only = args[i + 1]
        del args[i:i + 2]
    build = args[0] if args else os.environ.get("TROUPE_BUILD_DIR", os.path.join(ROOT, "build"))
    TROUPE = os.path.join(os.path.abspath(build), "troupe")
    passed = failed = 0
    t_start = time.monotonic()
    if not os.access(TROUPE, os.X_OK):
        print("not ok - %s is not an executable" % TROUPE)
        print("0 passed, 1 failed")
        return 1

    for gname, kw, tests in GROUPS:
        tests = [(n, f) for n, f in tests if only is None or only in n]
        if not tests:
            continue
        srv = Server(gname, **kw)
        print("# group %s (%d tests)" % (gname, len(tests)), flush=True)
        try:
            srv.start()
        except Fail as e:
            for name, _ in tests:
                print("not ok - %s: %s" % (name, e), flush=True)
                failed += 1
            continue
        group_failed = 0
        for name, fn in tests:
            t0 = time.monotonic()
            try:
                fn(srv)
                print("ok - %s (%.2f s)" % (name, time.monotonic() - t0), flush=True)
                passed += 1
            except Fail as e:
                print("not ok - %s: %s" % (name, e), flush=True)
                failed += 1
                group_failed += 1
            except Exception as e:  # noqa: BLE001 (a broken test is a failure too)
                tb = traceback.format_exc().strip().splitlines()
                print("not ok - %s: %s: %s [%s]" % (name, type(e).__name__, e, tb[-3].strip()),
                      flush=True)
                failed += 1
                group_failed += 1
            if not srv.alive():
                break
        alive = srv.alive()
        rc = srv.stop()
        reports = [line for line in srv.log if SANITIZER.search(line)]
        name = ("server %s: listening when it says so, alive through its tests, exits 0 on "
                "SIGTERM, no sanitizer report" % gname)
        if alive and rc == 0 and not reports and not srv.refused_at_start:
            print("ok - " + name, flush=True)
            passed += 1
        else:
            why = ("refused a connection right after the serving line" if srv.refused_at_start
                   else "died during the tests (status %r)" % rc if not alive else
                   "exit status %r" % rc if rc != 0 else "sanitizer: %s" % reports[0])
            print("not ok - %s: %s" % (name, why), flush=True)
            failed += 1
            group_failed += 1
        if group_failed:
            print("# server %s log (last 40 lines):" % gname)
            for line in srv.log[-40:]:
                print("#   " + line)
    print("# %.1f s" % (time.monotonic() - t_start))
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
