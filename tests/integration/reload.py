#!/usr/bin/env python3
"""Hot reload and graceful shutdown against a real server and real clients.

    python3 tests/integration/reload.py [BUILD_DIR] [-k SUBSTRING]

BUILD_DIR holds the troupe binary (default: $TROUPE_BUILD_DIR, else build). Each test
writes its app into a temp dir (the tests rewrite it: v1, v2, a syntax error, ...),
starts its own server (`troupe run APP --workers 2 --listen 127.0.0.1:0 --control
SOCK`, the port read from the "serving" line on stderr) and, unless stopping is what
it tests, stops it after with SIGTERM: the server must then exit 0 and print no
sanitizer report, or the test fails.

One line per test, `ok - name` or `not ok - name: why`, then `N passed, N failed`.
Python 3 standard library only.
"""
import os
import sys

# Keep this folder off the module path: http.py beside this file would shadow the
# standard library's http package.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import http.client  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOST = "127.0.0.1"
TIMEOUT = 10.0         # per socket operation (the machine may be busy)
SANITIZER = re.compile(r"ERROR: (Address|Leak|Memory)Sanitizer|WARNING: ThreadSanitizer|"
                       r"ThreadSanitizer: reported|: runtime error: ")

TROUPE = None          # the binary, set in main()
SERVERS = []           # those the running test started (their logs show on failure)


class Fail(Exception):
    """A check that did not hold; the message says why."""


def check(cond, why):
    if not cond:
        raise Fail(why)


def eq(got, want, what):
    if got != want:
        raise Fail("%s: got %r, want %r" % (what, got, want))


def wait_for(fn, timeout, step=0.02):
    """Calls fn until it returns a truthy value (returned) or timeout seconds pass
    (then returns the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)


# ---- the app ------------------------------------------------------------------------

# A raw app (a table with _serve) whose every answer names its version:
#   /          VERSION
#   /slow      sleeps SLOW seconds, then "VERSION slow"
#   /stuck     sleeps 60 s (past every deadline), then "VERSION stuck"
#   /counter   asks the actor registered as "counter" (counter.lua, started by the
#              main script when the dir holds one) for "inc"; its answer
#   /whereis   the counter's pid
# CHECK is the body of app:self_check() (none when empty); EXTRA goes before `return`.
APP = """-- reload.py's app, version {version}
local http = require "troupe.http"
local actor = require "troupe.actor"
local VERSION = "{version}"
if ... ~= "handler" and {counter} then
  -- the main script (not a handler VM): start the helper actor once
  assert(actor.spawn("{dir}/counter.lua"))
end
local app = {{}}
function app:_serve(h, method, path)
  if path == "/slow" then
    actor.sleep({slow})
    return http.respond(h, 200, VERSION .. " slow", "text/plain")
  end
  if path == "/stuck" then
    actor.sleep(60)
    return http.respond(h, 200, VERSION .. " stuck", "text/plain")
  end
  if path == "/counter" then
    local pid = actor.whereis("counter")
    local r, err = actor.call(pid, "inc", 5)
    return http.respond(h, r and 200 or 500, tostring(r or err), "text/plain")
  end
  if path == "/whereis" then
    return http.respond(h, 200, tostring(actor.whereis("counter")), "text/plain")
  end
  return http.respond(h, 200, VERSION, "text/plain")
end
{check}
{extra}
return app
"""

COUNTER_V1 = """-- counts "inc" messages
local actor = require "troupe.actor"
return {
  version = 1,
  init = function() assert(actor.register("counter")); return { n = 0 } end,
  handle = function(s, m)
    if m == "inc" then s.n = s.n + 1 end
    return "counter v1 n=" .. s.n
  end,
  terminate = function(s, reason) print("counter terminated n=" .. s.n) end,
}
"""

COUNTER_V2 = """-- v2 keeps the count under another name and remembers where it came from
return {
  version = 2,
  upgrade = function(old, old_version) return { count = old.n, from = old_version } end,
  handle = function(s, m)
    if m == "inc" then s.count = s.count + 1 end
    return "counter v2 count=" .. s.count .. " from=" .. tostring(s.from)
  end,
  terminate = function(s, reason) print("counter terminated count=" .. s.count) end,
}
"""


def write_file(path, text):
    """Replaces path atomically (a rename), so a reload never reads half a file. The
    temp name does not end in .lua, which --watch ignores."""
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def app_source(d, version, slow=2.0, check="", extra="", counter=False):
    return APP.format(version=version, slow=slow, check=check, extra=extra, dir=d,
                      counter="true" if counter else "false")


class AppDir:
    """A temp dir with app.lua (and the control socket)."""

    def __init__(self, version="v1", **kw):
        self.dir = tempfile.mkdtemp(prefix="troupe-reload-")
        self.app = os.path.join(self.dir, "app.lua")
        self.sock = os.path.join(self.dir, "ctl.sock")
        self.kw = kw
        self.write(version)

    def write(self, version, **kw):
        args = dict(self.kw)
        args.update(kw)
        write_file(self.app, app_source(self.dir, version, **args))

    def write_raw(self, text):
        write_file(self.app, text)

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- the server --------------------------------------------------------------------

class Server:
    def __init__(self, appdir, workers=2, args=(), control=True):
        self.appdir = appdir
        self.workers = workers
        self.args = list(args)
        if control:
            self.args += ["--control", appdir.sock]
        self.proc = None
        self.port = None
        self.admin_port = None
        self.log = []            # stderr lines
        self.out = []            # stdout lines (print from actors)
        self._ready = threading.Event()
        self._readers = []
        SERVERS.append(self)

    def start(self, timeout=30.0):
        cmd = [TROUPE, "run", self.appdir.app, "--workers", str(self.workers),
               "--listen", "%s:0" % HOST] + self.args
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=ROOT)
        for stream, sink, watch in ((self.proc.stderr, self.log, True),
                                    (self.proc.stdout, self.out, False)):
            t = threading.Thread(target=self._read, args=(stream, sink, watch), daemon=True)
            t.start()
            self._readers.append(t)
        if not self._ready.wait(timeout) or self.port is None:
            self.kill()
            raise Fail("the server did not start: %s" % self.tail())
        return self

    def _read(self, stream, sink, watch):
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            sink.append(line)
            if not watch:
                continue
            m = re.search(r"admin endpoint on http://[^ ]*:(\d+) ", line)
            if m:
                self.admin_port = int(m.group(1))
            m = re.search(r"serving http://[^ ]*:(\d+) ", line)
            if m and self.port is None:
                self.port = int(m.group(1))
                self._ready.set()
        if watch:
            self._ready.set()      # exited before serving

    def tail(self, n=15):
        return " | ".join(self.log[-n:]) or "(no output)"

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """The exit status, or None (still running after timeout)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def join_readers(self):
        for t in self._readers:
            t.join(5)

    def stop(self):
        """SIGTERM, then SIGKILL after 15 s. Returns the exit status (None: killed)."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            self.signal(signal.SIGTERM)
            rc = self.wait(15)
            if rc is None:
                self.kill()
        self.join_readers()
        return rc

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def ctl(self, cmd, timeout=30):
        """troupe reload|status --control SOCK: (exit status, stdout)."""
        p = subprocess.run([TROUPE, cmd, "--control", self.appdir.sock],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        return p.returncode, p.stdout.decode("utf-8", "replace")

    def reload(self):
        return self.ctl("reload")

    def status(self):
        rc, out = self.ctl("status")
        check(rc == 0, "troupe status: exit %d, %r" % (rc, out))
        try:
            return json.loads(out)
        except ValueError:
            raise Fail("troupe status printed no JSON: %r" % out)


# ---- clients ------------------------------------------------------------------------

def get(port, path="/", timeout=TIMEOUT, method="GET"):
    """One request on a new connection: (status, headers, body as str)."""
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.headers, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def body_of(port, path="/"):
    status, _, body = get(port, path)
    eq(status, 200, "status of %s" % path)
    return body


def refused(port):
    """Whether a new TCP connection to port is refused."""
    try:
        s = socket.create_connection((HOST, port), timeout=2)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    s.close()
    return False


class Load:
    """Continuous traffic: `keep` threads each on one keep-alive connection (through
    http.client) and `fresh` threads each opening a new connection per request. Every
    request is recorded as (start, end, body) or, for a failure, (start, end, None,
    why). A keep-alive thread reconnects after a failure (and records it)."""

    def __init__(self, port, keep=4, fresh=2, path="/", stop_on_error=False):
        self.port, self.path = port, path
        self.stop_on_error = stop_on_error
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.results = []
        self.reconnects = 0      # keep-alive connections the server closed cleanly
        self.threads = [threading.Thread(target=self._keep, daemon=True) for _ in range(keep)]
        self.threads += [threading.Thread(target=self._fresh, daemon=True)
                         for _ in range(fresh)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.done.set()
        for t in self.threads:
            t.join(TIMEOUT + 5)

    def _record(self, *r):
        with self.lock:
            self.results.append(r)

    def _one(self, c):
        t0 = time.monotonic()
        try:
            c.request("GET", self.path)
            r = c.getresponse()
            body = r.read().decode("utf-8", "replace")
            if r.status != 200:
                self._record(t0, time.monotonic(), None, "status %d: %r" % (r.status, body))
                return False, False
            self._record(t0, time.monotonic(), body)
            return True, (r.getheader("Connection") or "").lower() == "close"
        except (OSError, http.client.HTTPException) as e:
            self._record(t0, time.monotonic(), None, "%s: %s" % (type(e).__name__, e))
            return False, True

    def _keep(self):
        c = http.client.HTTPConnection(HOST, self.port, timeout=TIMEOUT)
        try:
            while not self.done.is_set():
                ok, closed = self._one(c)
                if not ok and self.stop_on_error:
                    return
                if closed:
                    c.close()
                    if ok:
                        with self.lock:
                            self.reconnects += 1
                    c = http.client.HTTPConnection(HOST, self.port, timeout=TIMEOUT)
        finally:
            c.close()

    def _fresh(self):
        while not self.done.is_set():
            c = http.client.HTTPConnection(HOST, self.port, timeout=TIMEOUT)
            try:
                ok, _ = self._one(c)
            finally:
                c.close()
            if not ok and self.stop_on_error:
                return

    def ok(self):
        return [r for r in self.results if r[2] is not None]

    def failures(self):
        return [r for r in self.results if r[2] is None]


class Slow:
    """One request in a thread (GET /slow, say), on a keep-alive http.client
    connection kept open after the response (self.conn) for a follow-up request."""

    def __init__(self, port, path="/slow", timeout=TIMEOUT):
        self.port, self.path = port, path
        self.status = self.body = self.error = self.headers = None
        self.ended = None
        self.conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.conn.connect()
        self.sock = self.conn.sock
        self.thread.start()
        return self

    def _run(self):
        try:
            self.conn.request("GET", self.path)
            r = self.conn.getresponse()
            self.status, self.headers = r.status, r.headers
            self.body = r.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as e:
            self.error = "%s: %s" % (type(e).__name__, e)
        self.ended = time.monotonic()

    def join(self, timeout=TIMEOUT + 5):
        timeout = max(timeout, self.conn.timeout + 5)
        self.thread.join(timeout)
        check(not self.thread.is_alive(), "%s did not end" % self.path)
        return self

    def close(self):
        self.conn.close()


def wait_in_flight(srv, n, timeout=5):
    """Waits until the server has at least n requests in flight; the status."""
    st = wait_for(lambda: (lambda s: s if s["requests_in_flight"] >= n else None)(srv.status()),
                  timeout, 0.02)
    check(st, "the server never had %d requests in flight: %r" % (n, srv.status()))
    return st


def live_generations(srv):
    return sorted(int(g) for g in srv.status()["in_flight_by_generation"])


# ---- the tests ----------------------------------------------------------------------

TESTS = []     # (name, fn(appdir) -> None, setup dict)


def test(name, **setup):
    def deco(fn):
        TESTS.append((name, fn, setup))
        return fn
    return deco


@test("50 reloads v1<->v2 under load (keep-alive and new connections): 0 failed requests, "
      "only v1/v2, then only the last version")
def t_reload_storm(d):
    srv = Server(d).start()
    try:
        eq(body_of(srv.port), "v1", "before any reload")
        load = Load(srv.port, keep=4, fresh=2).start()
        time.sleep(0.3)
        versions = []
        last_done = None
        try:
            for i in range(1, 51):
                v = "v2" if i % 2 == 1 else "v1"
                d.write(v)
                rc, out = srv.reload()
                check(rc == 0 and '"ok":true' in out,
                      "reload %d (%s): exit %d, %r" % (i, v, rc, out))
                eq(json.loads(out)["generation"], i + 1, "generation after reload %d" % i)
                versions.append(v)
                last_done = time.monotonic()
                time.sleep(random.uniform(0.05, 0.10))
            time.sleep(0.3)
        finally:
            load.stop()
        final = versions[-1]
        fails = load.failures()
        check(not fails, "%d of %d requests failed, e.g. %r" %
              (len(fails), len(load.results), fails[:3]))
        bodies = [r[2] for r in load.ok()]
        check(len(bodies) >= 200, "only %d requests were made" % len(bodies))
        odd = sorted(set(b for b in bodies if b not in ("v1", "v2")))
        check(not odd, "bodies other than v1/v2: %r" % odd[:5])
        check(bodies.count("v1") > 0 and bodies.count("v2") > 0,
              "v1 %d, v2 %d: both versions should have served" %
              (bodies.count("v1"), bodies.count("v2")))
        eq(load.reconnects, 0, "keep-alive connections the server closed")
        late = [r[2] for r in load.ok() if r[0] > last_done and r[2] != final]
        check(not late, "%d requests started after the last reload got %r, not %s" %
              (len(late), late[:3], final))
        # A burst on new connections (spread over both workers) and on one kept open.
        burst = [body_of(srv.port) for _ in range(60)]
        c = http.client.HTTPConnection(HOST, srv.port, timeout=TIMEOUT)
        for _ in range(40):
            c.request("GET", "/")
            burst.append(c.getresponse().read().decode())
        c.close()
        wrong = [b for b in burst if b != final]
        check(not wrong, "after the last reload (%s): %d of %d answers were %r" %
              (final, len(wrong), len(burst), wrong[:3]))
        # Every replaced generation's VMs went away (nothing in flight held them).
        gens = wait_for(lambda: live_generations(srv) == [51], 5)
        check(gens, "generations still alive after the storm: %r" % live_generations(srv))
        st = srv.status()
        eq((st["generation"], st["reloads"], st["reload_failures"]), (51, 50, 0),
           "generation, reloads, reload_failures")
        print("# %d requests, v1 %d, v2 %d" % (len(bodies), bodies.count("v1"),
                                              bodies.count("v2")), flush=True)
    finally:
        stop_clean(srv)


@test("a syntax error: troupe reload exits 1 with file:line, the old version serves, "
      "status shows last_reload_error; an error at load is refused too")
def t_syntax_error(d):
    srv = Server(d).start()
    try:
        eq(body_of(srv.port), "v1", "before")
        src = app_source(d.dir, "v2").split("\n")
        bad_line = 12
        src.insert(bad_line - 1, "local broken = = 1")
        d.write_raw("\n".join(src))
        rc, out = srv.reload()
        eq(rc, 1, "troupe reload's exit status (output %r)" % out)
        res = json.loads(out)
        eq(res["ok"], False, "ok")
        eq(res["generation"], 1, "generation")
        where = "%s:%d:" % (d.app, bad_line)
        check(where in res["error"], "the error %r does not name %s" % (res["error"], where))
        for _ in range(20):
            eq(body_of(srv.port), "v1", "after the failed reload")
        st = srv.status()
        check(st["last_reload_error"] and where in st["last_reload_error"],
              "status last_reload_error %r" % st["last_reload_error"])
        eq((st["generation"], st["reloads"], st["reload_failures"]), (1, 1, 1),
           "generation, reloads, reload_failures")
        check(any("reload failed" in line and where in line for line in srv.log),
              "no 'reload failed' log line naming %s" % where)
        # An error raised while loading (not a syntax error) is refused the same way.
        d.write("v2", extra='error("cannot start: no config")')
        rc, out = srv.reload()
        eq(rc, 1, "exit status for an error at load (output %r)" % out)
        check("cannot start: no config" in out and re.search(r"app\.lua:\d+:", out),
              "the error at load %r lacks its message or file:line" % out)
        eq(body_of(srv.port), "v1", "after the second failed reload")
        # Fixed: the next reload goes through.
        d.write("v2")
        rc, out = srv.reload()
        check(rc == 0 and json.loads(out)["generation"] == 2, "fixed reload: %d %r" % (rc, out))
        eq(body_of(srv.port), "v2", "after the fixed reload")
        eq(srv.status()["reload_failures"], 2, "reload_failures")
    finally:
        stop_clean(srv)


@test("a reload while 2 s requests are in flight: they finish with v1 (keep-alive kept), "
      "new requests get v2 at once")
def t_in_flight(d):
    srv = Server(d).start()
    slows = []
    try:
        slows = [Slow(srv.port).start() for _ in range(4)]
        st = wait_in_flight(srv, 4)
        eq(st["in_flight_by_generation"], {"1": 4}, "in flight by generation before")
        d.write("v2")
        t0 = time.monotonic()
        rc, out = srv.reload()
        check(rc == 0, "reload: %d %r" % (rc, out))
        answers = [body_of(srv.port) for _ in range(20)]
        t1 = time.monotonic()
        eq(set(answers), {"v2"}, "new requests right after the reload")
        check(all(s.ended is None for s in slows),
              "a slow request ended before the new version answered (%.2f s)" % (t1 - t0))
        st = srv.status()
        eq(st["in_flight_by_generation"], {"2": 0, "1": 4}, "in flight by generation after")
        for s in slows:
            s.join()
            check(s.error is None, "a slow request failed: %s" % s.error)
            eq((s.status, s.body), (200, "v1 slow"), "slow request's answer")
            check((s.headers.get("Connection") or "").lower() != "close",
                  "the slow request's connection is closed (%r)" % s.headers.get("Connection"))
        # The same connections, kept alive across the reload, now reach v2.
        for s in slows:
            s.conn.request("GET", "/")
            r = s.conn.getresponse()
            eq(r.read().decode(), "v2", "next request on the kept-alive connection")
            check(s.conn.sock is s.sock, "http.client had to reconnect")
        gens = wait_for(lambda: live_generations(srv) == [2], 5)
        check(gens, "generation 1 did not exit once its requests ended: %r" %
              srv.status()["in_flight_by_generation"])
    finally:
        for s in slows:
            s.close()
        stop_clean(srv)


@test("self_check returning false: the reload is refused with its message, v1 serves")
def t_self_check(d):
    srv = Server(d, args=["--admin", "127.0.0.1:0"]).start()
    try:
        d.write("v1", check="function app:self_check() return true end")
        rc, out = srv.reload()
        check(rc == 0, "a passing self_check: %d %r" % (rc, out))
        d.write("v2", check='function app:self_check() return false, "database unreachable" end')
        rc, out = srv.reload()
        eq(rc, 1, "troupe reload's exit status (output %r)" % out)
        res = json.loads(out)
        check("self_check failed" in res["error"] and "database unreachable" in res["error"],
              "the error %r" % res["error"])
        eq(res["generation"], 2, "generation")
        for _ in range(10):
            eq(body_of(srv.port), "v1", "after the refused reload")
        st = srv.status()
        check("self_check failed" in (st["last_reload_error"] or ""),
              "status: %r" % st["last_reload_error"])
        # Through the admin endpoint: a 500 with the same JSON.
        c = http.client.HTTPConnection(HOST, srv.admin_port, timeout=TIMEOUT)
        c.request("POST", "/reload")
        r = c.getresponse()
        res = json.loads(r.read())
        c.close()
        eq((r.status, res["ok"]), (500, False), "POST /reload status, ok")
        eq(body_of(srv.port), "v1", "still")
    finally:
        stop_clean(srv)


@test("SIGTERM under load: requests in flight complete (200, full body, Connection: close), "
      "new connections refused, idle keep-alive closed, actors terminate, exit 0 in time")
def t_sigterm(d):
    d.write("v1", counter=True)
    write_file(os.path.join(d.dir, "counter.lua"), COUNTER_V1)
    deadline = 8.0
    srv = Server(d, args=["--stop-deadline", str(int(deadline * 1000))]).start()
    slows = []
    try:
        eq(body_of(srv.port, "/counter"), "counter v1 n=1", "the counter actor")
        idle = http.client.HTTPConnection(HOST, srv.port, timeout=TIMEOUT)
        idle.request("GET", "/")
        eq(idle.getresponse().read(), b"v1", "idle connection's first answer")
        load = Load(srv.port, keep=3, fresh=1, stop_on_error=True).start()
        slows = [Slow(srv.port).start() for _ in range(4)]
        wait_in_flight(srv, 4)
        time.sleep(0.3)          # the slow ones are well under way
        t_sig = time.monotonic()
        srv.signal(signal.SIGTERM)
        # New connections are refused soon after the signal, and stay refused.
        first = wait_for(lambda: refused(srv.port), 2, 0.01)
        t_refused = time.monotonic() - t_sig
        check(first, "new connections still accepted 2 s after SIGTERM")
        for _ in range(20):
            check(refused(srv.port), "a new connection was accepted after a refusal")
            time.sleep(0.01)
        # The idle keep-alive connection was closed by the server.
        idle.sock.settimeout(3)
        try:
            eof = idle.sock.recv(1) == b""
        except ConnectionResetError:
            eof = True
        except socket.timeout:
            eof = False
        check(eof, "the idle keep-alive connection was not closed")
        idle.close()
        for s in slows:
            s.join()
            check(s.error is None, "a request in flight failed: %s" % s.error)
            eq((s.status, s.body), (200, "v1 slow"), "the answer of a request in flight")
            eq((s.headers.get("Connection") or "").lower(), "close",
               "Connection header of a request that finished during shutdown")
        rc = srv.wait(deadline + 2 - (time.monotonic() - t_sig))
        elapsed = time.monotonic() - t_sig
        load.stop()
        eq(rc, 0, "exit status (%.2f s after SIGTERM)" % elapsed)
        check(elapsed < deadline, "exited %.2f s after SIGTERM (deadline %.0f s)" %
              (elapsed, deadline))
        bad = [r for r in load.results if r[2] is not None and r[2] != "v1"]
        check(not bad, "wrong answers under load: %r" % bad[:3])
        early = [r for r in load.failures() if r[0] < t_sig - 0.05]
        check(not early, "requests failed before the signal: %r" % early[:3])
        partial = [r for r in load.failures() if "IncompleteRead" in r[3] or "status" in r[3]]
        check(not partial, "a response was cut or an error: %r" % partial[:3])
        check(len(load.ok()) > 20, "only %d requests under load" % len(load.ok()))
        srv.join_readers()
        check(any(line.startswith("counter terminated n=") for line in srv.out),
              "the counter actor's terminate did not run (stdout %r)" % srv.out[-5:])
        print("# refused %.3f s after SIGTERM, exit 0 after %.2f s; %d requests under load, "
              "%d cut by the shutdown" % (t_refused, elapsed, len(load.ok()),
                                          len(load.failures())), flush=True)
        no_sanitizer(srv)
    finally:
        for s in slows:
            s.close()
        srv.kill()


@test("a second SIGTERM during the graceful stop exits at once (130)")
def t_second_sigterm(d):
    srv = Server(d, args=["--stop-deadline", "20000"]).start()
    s = None
    try:
        # A request that would hold a graceful stop for its whole 20 s deadline.
        s = Slow(srv.port, "/stuck", timeout=70).start()
        wait_in_flight(srv, 1)
        srv.signal(signal.SIGTERM)
        time.sleep(0.3)
        check(srv.alive(), "exited on the first SIGTERM with a request in flight")
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        rc = srv.wait(10)
        elapsed = time.monotonic() - t0
        eq(rc, 130, "exit status after the second SIGTERM")
        # (at once: well under a second, a little more under a sanitizer)
        check(elapsed < 2.0, "took %.2f s after the second SIGTERM" % elapsed)
        print("# exit 130 %.3f s after the second SIGTERM" % elapsed, flush=True)
    finally:
        if s:
            s.close()
        srv.kill()


@test("--stop-deadline bounds the graceful stop: a request past it is cut, the exit is "
      "prompt")
def t_stop_deadline(d):
    srv = Server(d, args=["--stop-deadline", "1000"]).start()
    s = None
    try:
        s = Slow(srv.port, "/stuck", timeout=70).start()
        wait_in_flight(srv, 1)
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        rc = srv.wait(10)
        elapsed = time.monotonic() - t0
        check(rc is not None, "still running 10 s after SIGTERM with a 1 s deadline")
        check(rc in (0, 1), "exit status %r" % rc)
        check(elapsed < 2.5, "exited %.2f s after SIGTERM (deadline 1 s)" % elapsed)
        s.join()
        check(s.error is not None, "the stuck request got an answer: %r" % s.body)
        srv.join_readers()
        no_sanitizer(srv)
    finally:
        if s:
            s.close()
        srv.kill()


@test("drain deadline (30 s): a replaced generation's stuck request is cancelled, its "
      "connection closed, its VM gone; the new generation serves throughout")
def t_drain_deadline(d):
    srv = Server(d).start()
    s = None
    try:
        s = Slow(srv.port, "/stuck", timeout=70).start()
        wait_in_flight(srv, 1)
        d.write("v2")
        t0 = time.monotonic()
        rc, out = srv.reload()
        check(rc == 0, "reload: %d %r" % (rc, out))
        eq(srv.status()["in_flight_by_generation"], {"2": 0, "1": 1}, "in flight")
        while s.ended is None and time.monotonic() - t0 < 40:
            eq(body_of(srv.port), "v2", "the new generation while the old one drains")
            time.sleep(0.5)
        check(s.ended is not None, "the stuck request still open 40 s after the reload")
        waited = s.ended - t0
        check(29 <= waited <= 33, "the stuck request ended %.1f s after the reload, not ~30 s"
              % waited)
        check(s.error is not None, "the stuck request got an answer: %r" % s.body)
        gens = wait_for(lambda: live_generations(srv) == [2], 3)
        check(gens, "generation 1 still listed: %r" % srv.status()["in_flight_by_generation"])
        eq(srv.status()["requests_in_flight"], 0, "requests in flight")
        check(any("cancelled" in x and "generation 1" in x for x in srv.log),
              "no 'cancelled' log line for generation 1: %s" % srv.tail())
        print("# the stuck request was cut %.1f s after the reload" % waited, flush=True)
    finally:
        if s:
            s.close()
        stop_clean(srv)


@test("--watch: editing the app file reloads it within 1 s; a broken edit keeps the old one")
def t_watch(d):
    srv = Server(d, args=["--watch"]).start()
    try:
        eq(body_of(srv.port), "v1", "before")
        times = []
        for v in ("v2", "v3"):
            t0 = time.monotonic()
            d.write(v)
            got = wait_for(lambda: all(body_of(srv.port) == v for _ in range(10)), 3, 0.01)
            check(got, "still %r 3 s after writing %s" % (body_of(srv.port), v))
            times.append(time.monotonic() - t0)
        check(max(times) < 1.0, "reloads took %s s" % ["%.2f" % t for t in times])
        d.write_raw("return {")            # broken: v3 keeps serving
        ok = wait_for(lambda: srv.status()["reload_failures"] >= 1, 3)
        check(ok, "the broken edit was not tried")
        eq(body_of(srv.port), "v3", "after a broken edit")
        st = srv.status()
        eq(st["generation"], 3, "generation")
        check("app.lua:" in (st["last_reload_error"] or ""), "error %r" % st["last_reload_error"])
        # A file not ending in .lua changes nothing.
        with open(os.path.join(d.dir, "notes.txt"), "w") as f:
            f.write("x")
        time.sleep(0.4)
        eq(srv.status()["reloads"], 3, "reloads after writing notes.txt")
        print("# --watch reloads took %s s" % ", ".join("%.3f" % t for t in times), flush=True)
    finally:
        stop_clean(srv)


@test("admin endpoint: GET /status JSON, POST /reload, 404 otherwise; --admin 0.0.0.0:0 "
      "refused at startup")
def t_admin(d):
    srv = Server(d, args=["--admin", "127.0.0.1:0"]).start()
    try:
        check(srv.admin_port and srv.admin_port != srv.port,
              "no admin port in the log: %s" % srv.tail())

        def admin(method, path):
            c = http.client.HTTPConnection(HOST, srv.admin_port, timeout=TIMEOUT)
            try:
                c.request(method, path)
                r = c.getresponse()
                return r.status, r.getheader("Content-Type"), r.read()
            finally:
                c.close()

        status, ctype, body = admin("GET", "/status")
        eq((status, ctype), (200, "application/json"), "GET /status status, Content-Type")
        st = json.loads(body)
        for k, want in (("serving", True), ("port", srv.port), ("workers", 2),
                        ("generation", 1), ("reloads", 0), ("reload_failures", 0),
                        ("last_reload_error", None)):
            eq(st.get(k), want, "status %s" % k)
        for k in ("connections", "requests_in_flight", "in_flight_by_generation"):
            check(k in st, "status lacks %s: %r" % (k, st))
        d.write("v2")
        status, _, body = admin("POST", "/reload")
        res = json.loads(body)
        eq((status, res["ok"], res["generation"]), (200, True, 2), "POST /reload")
        eq(body_of(srv.port), "v2", "after POST /reload")
        eq(json.loads(admin("GET", "/status")[2])["generation"], 2, "generation in /status")
        eq(admin("GET", "/reload")[0], 404, "GET /reload")
        eq(admin("GET", "/nothing")[0], 404, "GET /nothing")
        eq(srv.status()["generation"], 2, "generation in troupe status")
    finally:
        stop_clean(srv)
    bad = Server(d, args=["--admin", "0.0.0.0:0"], control=False)
    bad.proc = subprocess.Popen([TROUPE, "run", d.app, "--workers", "2", "--listen",
                                 "%s:0" % HOST, "--admin", "0.0.0.0:0"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, cwd=ROOT)
    try:
        _, err = bad.proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        bad.kill()
        raise Fail("--admin 0.0.0.0:0: the server started")
    err = err.decode("utf-8", "replace")
    check(bad.proc.returncode != 0, "--admin 0.0.0.0:0: exit 0")
    check("loopback" in err and "serving" not in err, "--admin 0.0.0.0:0: stderr %r" % err)


@test("SIGHUP reloads (and stays a reload, not a stop)")
def t_sighup(d):
    srv = Server(d).start()
    try:
        for gen, v in ((2, "v2"), (3, "v1")):
            d.write(v)
            t0 = time.monotonic()
            srv.signal(signal.SIGHUP)
            got = wait_for(lambda: srv.status()["generation"] == gen and body_of(srv.port) == v,
                           5, 0.01)
            check(got, "after SIGHUP: generation %r, body %r" %
                  (srv.status()["generation"], body_of(srv.port)))
            check(time.monotonic() - t0 < 2, "SIGHUP took %.2f s" % (time.monotonic() - t0))
        check(srv.alive(), "the server stopped")
        check(wait_for(lambda: sum("reloaded: generation" in x for x in srv.log) == 2, 2),
              "log: %s" % srv.tail())
    finally:
        stop_clean(srv)


@test("troupe reload upgrades a changed Lua actor in place (state converted, pid kept)")
def t_actor_upgrade(d):
    d.write("v1", counter=True)
    counter = os.path.join(d.dir, "counter.lua")
    write_file(counter, COUNTER_V1)
    srv = Server(d).start()
    try:
        for i in range(1, 4):
            eq(body_of(srv.port, "/counter"), "counter v1 n=%d" % i, "v1 counter")
        pid = body_of(srv.port, "/whereis")
        check(pid.startswith("<pid "), "the counter's pid: %r" % pid)
        rc, out = srv.reload()          # nothing changed: no actor upgraded
        check(rc == 0, "reload: %d %r" % (rc, out))
        eq(body_of(srv.port, "/counter"), "counter v1 n=4", "after a reload with no change")
        write_file(counter, COUNTER_V2)
        rc, out = srv.reload()
        check(rc == 0 and json.loads(out)["actors"] >= 1, "reload: %d %r" % (rc, out))
        # The upgrade message is handled at the actor's next message boundary: the
        # first "inc" after the reload may still meet v1.
        seen = []
        got = wait_for(lambda: seen.append(body_of(srv.port, "/counter")) or
                       seen[-1].startswith("counter v2"), 3)
        check(got, "the counter was not upgraded: %r %s" % (seen[-3:], srv.tail()))
        n = 4 + len(seen)
        eq(seen[-1], "counter v2 count=%d from=1" % n,
           "upgraded state (n carried over as count, old version 1)")
        for i in range(len(seen) - 1):
            eq(seen[i], "counter v1 n=%d" % (5 + i), "before the upgrade took")
        eq(body_of(srv.port, "/whereis"), pid, "the counter's pid after the upgrade")
        write_file(counter, "return { handle = function( }")
        rc, out = srv.reload()
        check(rc == 0, "the app reload does not fail for an actor's error: %d %r" % (rc, out))
        check(wait_for(lambda: any("upgrade failed" in x and "counter.lua:1:" in x
                                   for x in srv.log), 3),
              "no 'upgrade failed' log line with counter.lua:1: %s" % srv.tail())
        eq(body_of(srv.port, "/counter"), "counter v2 count=%d from=1" % (n + 1),
           "after a failed upgrade: old code, state intact")
    finally:
        stop_clean(srv)


def no_sanitizer(srv):
    reports = [line for line in srv.log if SANITIZER.search(line)]
    check(not reports, "sanitizer: %s" % (reports[:1],))


def stop_clean(srv):
    """Stops the server (SIGTERM); fails unless it was alive and exits 0, reportless.
    Called in a `finally:` while a failure propagates, it only kills the server (the
    failure is the one to report)."""
    if sys.exc_info()[0] is not None:
        srv.kill()
        return
    alive = srv.alive()
    rc = srv.stop()
    check(alive, "the server died during the test (status %r)" % rc)
    eq(rc, 0, "exit status on SIGTERM")
    no_sanitizer(srv)


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
    if not os.access(TROUPE, os.X_OK):
        print("not ok - %s is not an executable" % TROUPE)
        print("0 passed, 1 failed")
        return 1
    passed = failed = 0
    t_start = time.monotonic()
    for name, fn, setup in TESTS:
        if only is not None and only not in name:
            continue
        d = AppDir(**setup)
        t0 = time.monotonic()
        del SERVERS[:]
        show_logs = False
        try:
            fn(d)
            print("ok - %s (%.2f s)" % (name, time.monotonic() - t0), flush=True)
            passed += 1
        except Fail as e:
            print("not ok - %s: %s" % (name, e), flush=True)
            failed += 1
            show_logs = True
        except Exception as e:  # noqa: BLE001 (a broken test is a failure too)
            tb = traceback.format_exc().strip().splitlines()
            print("not ok - %s: %s: %s [%s]" % (name, type(e).__name__, e, tb[-3].strip()),
                  flush=True)
            failed += 1
            show_logs = True
        finally:
            for srv in SERVERS:
                srv.kill()
                if show_logs:
                    print("# server log (last 30 lines):")
                    for line in srv.log[-30:]:
                        print("#   " + line)
            d.remove()
    print("# %.1f s" % (time.monotonic() - t_start))
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
