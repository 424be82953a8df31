#!/usr/bin/env python3
"""examples/techempower against the TechEmpower Framework Benchmarks rules, on Postgres.

    python3 tests/integration/techempower.py [BUILD_DIR]

BUILD_DIR holds the troupe binary (default: $TROUPE_BUILD_DIR, else build). The database
is $TROUPE_PG_URL (tests/run.sh exports it); without it the script starts its own with
tests/services.sh and stops it after. examples/techempower/schema.sql is loaded with
psql (it drops and recreates `world` and `fortune`), then one server runs the app
(`troupe run ... --listen 127.0.0.1:0`, the port read from its "serving" line) and every
route is checked: /db, /queries clamping, /fortunes' page, /updates reaching the
database, concurrent /updates (no deadlock), the four headers on every answer, /json
and /plaintext unchanged, a clean exit on SIGTERM.

One line per test, `ok - name` or `not ok - name: why`, then `N passed, N failed`.
Python 3 standard library only.
"""
import os
import sys

# This folder holds http.py: keep it off the module path, or it would shadow the
# standard library's http package.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import email.utils  # noqa: E402
import html  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APP = os.path.join(ROOT, "examples", "techempower", "app.lua")
SCHEMA = os.path.join(ROOT, "examples", "techempower", "schema.sql")
HOST = "127.0.0.1"
TIMEOUT = 10.0
ADDITIONAL = "Additional fortune added at request time."
FORTUNES = {
    1: "fortune: No such file or directory",
    2: "A computer scientist is someone who fixes things that aren't broken.",
    3: "After enough decimal points, nobody gives a damn.",
    4: "A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1",
    5: "A computer program does what you tell it to do, not what you want it to do.",
    6: "Emacs is a nice operating system, but I prefer UNIX. \u2014 Tom Christaensen",
    7: "Any program that runs right is obsolete.",
    8: "A list is only as strong as its weakest link. \u2014 Donald Knuth",
    9: "Feature: A bug with seniority.",
    10: "Computers make very fast, very accurate mistakes.",
    11: '<script>alert("This should not be displayed in a browser alert box.");</script>',
    12: "\u30d5\u30ec\u30fc\u30e0\u30ef\u30fc\u30af\u306e\u30d9\u30f3\u30c1\u30de\u30fc\u30af",
}
SANITIZER = re.compile(r"ERROR: (Address|Leak|Memory)Sanitizer|WARNING: ThreadSanitizer|"
                       r"ThreadSanitizer: reported|: runtime error: ")


class Fail(Exception):
    """A check that did not hold; the message says why."""


def check(cond, why):
    if not cond:
        raise Fail(why)


def eq(got, want, what):
    if got != want:
        raise Fail("%s: got %r, want %r" % (what, got, want))


# ---- the database ------------------------------------------------------------------

def psql_bin():
    return shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"


def sql(query):
    """Runs query with psql: the rows, each a list of column strings."""
    p = subprocess.run([psql_bin(), os.environ["TROUPE_PG_URL"], "-X", "-q", "-A", "-t",
                        "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", query],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    if p.returncode != 0:
        raise Fail("psql %r: %s" % (query, p.stderr.decode(errors="replace").strip()))
    out = p.stdout.decode("utf-8")
    return [line.split("\t") for line in out.split("\n") if line != ""]


def worlds():
    """The whole `world` table: {id: randomnumber}."""
    return {int(i): int(r) for i, r in sql("SELECT id, randomnumber FROM world")}


# ---- the server --------------------------------------------------------------------

class Server:
    def __init__(self, troupe):
        self.troupe = troupe
        self.proc = None
        self.port = None
        self.log = []
        self._ready = threading.Event()

    def start(self, timeout=30.0):
        cmd = [self.troupe, "run", APP, "--workers", "2", "--listen", "%s:0" % HOST,
               "--env", "production"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, cwd=ROOT)
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(timeout) or self.port is None:
            self.kill()
            raise Fail("the server did not start: %s" % self.tail())

    def _read(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.log.append(line)
            m = re.search(r"serving http://[^ ]*:(\d+) ", line)
            if m and self.port is None:
                self.port = int(m.group(1))
                self._ready.set()
        self._ready.set()

    def tail(self, n=15):
        return " | ".join(self.log[-n:]) or "(no output)"

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        """SIGTERM, then SIGKILL after 10 s. The exit status (None: killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        return self.proc.returncode


SERVER = None


def get(path, conn=None):
    """GET path: (status, headers as a list of pairs, body bytes)."""
    c = conn or http.client.HTTPConnection(HOST, SERVER.port, timeout=TIMEOUT)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.getheaders(), r.read()
    finally:
        if conn is None:
            c.close()


def header(headers, name):
    vals = [v for k, v in headers if k.lower() == name.lower()]
    return vals[0] if len(vals) == 1 else (None if not vals else vals)


def check_headers(path, headers, body, ctype):
    """The four headers the rules ask for, on every answer."""
    check(header(headers, "Server"), "%s: no Server header" % path)
    date = header(headers, "Date")
    check(isinstance(date, str), "%s: Date header %r" % (path, date))
    check(email.utils.parsedate_to_datetime(date) is not None, "%s: Date %r" % (path, date))
    eq(header(headers, "Content-Type"), ctype, "%s: Content-Type" % path)
    eq(header(headers, "Content-Length"), str(len(body)), "%s: Content-Length" % path)


def get_json(path, conn=None):
    status, headers, body = get(path, conn)
    eq(status, 200, "%s: status (body %r)" % (path, body[:200]))
    check_headers(path, headers, body, "application/json")
    return json.loads(body)


def check_world(obj, what):
    check(isinstance(obj, dict), "%s: not an object: %r" % (what, obj))
    eq(sorted(obj), ["id", "randomNumber"], "%s: keys" % what)
    for k in ("id", "randomNumber"):
        v = obj[k]
        check(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 10000,
              "%s: %s = %r, want an integer 1..10000" % (what, k, v))


# ---- the tests ---------------------------------------------------------------------

TESTS = []


def test(name):
    def deco(fn):
        TESTS.append((name, fn))
        return fn
    return deco


@test("schema.sql: world has 10,000 rows, ids 1..10000, numbers 1..10000")
def _():
    eq(sql("SELECT count(*), min(id), max(id), count(DISTINCT id) FROM world"),
       [["10000", "1", "10000", "10000"]], "count, min id, max id, distinct ids")
    lo, hi = sql("SELECT min(randomnumber), max(randomnumber) FROM world")[0]
    check(1 <= int(lo) and int(hi) <= 10000, "randomnumber from %s to %s" % (lo, hi))


@test("schema.sql: fortune holds the 12 standard fortunes, UTF-8 intact")
def _():
    rows = {int(i): m for i, m in sql("SELECT id, message FROM fortune")}
    eq(rows, FORTUNES, "fortune rows")


@test("/db: one object, id and randomNumber 1..10000, as in the table")
def _():
    seen = set()
    table = worlds()
    c = http.client.HTTPConnection(HOST, SERVER.port, timeout=TIMEOUT)
    try:
        for _ in range(30):
            obj = get_json("/db", c)
            check_world(obj, "/db")
            eq(obj["randomNumber"], table[obj["id"]], "/db: randomNumber of row %d" % obj["id"])
            seen.add(obj["id"])
    finally:
        c.close()
    check(len(seen) > 20, "/db: only %d distinct ids in 30 requests: not random" % len(seen))


@test("/queries: N objects, N clamped to 1..500, a missing or bad value is 1")
def _():
    cases = [("?queries=0", 1), ("?queries=1", 1), ("?queries=20", 20), ("?queries=500", 500),
             ("?queries=501", 500), ("?queries=foo", 1), ("", 1), ("?queries=", 1),
             ("?queries=-5", 1), ("?queries=2.5", 1), ("?queries=99999999999999999999", 500)]
    for qs, n in cases:
        got = get_json("/queries" + qs)
        check(isinstance(got, list), "/queries%s: not an array: %r" % (qs, got))
        eq(len(got), n, "/queries%s: objects" % qs)
        for i, obj in enumerate(got):
            check_world(obj, "/queries%s [%d]" % (qs, i))


@test("/queries?queries=20: rows as in the table, random ids")
def _():
    table = worlds()
    got = get_json("/queries?queries=20")
    for obj in got:
        eq(obj["randomNumber"], table[obj["id"]], "randomNumber of row %d" % obj["id"])
    check(len({o["id"] for o in got}) > 10, "/queries?queries=20: ids %r" % got)


FORTUNES_PAGE = re.compile(
    r"^<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
    r"<tr><th>id</th><th>message</th></tr>((?:<tr><td>\d+</td><td>[^<]*</td></tr>)*)"
    r"</table></body></html>$")


@test("/fortunes: 13 rows sorted by message, escaped, UTF-8, the added fortune")
def _():
    status, headers, body = get("/fortunes")
    eq(status, 200, "status")
    check_headers("/fortunes", headers, body, "text/html; charset=utf-8")
    text = body.decode("utf-8")           # raises on anything but UTF-8
    m = FORTUNES_PAGE.match(text)
    check(m, "/fortunes: not the expected page: %r" % text[:300])
    rows = [(int(i), html.unescape(msg)) for i, msg in
            re.findall(r"<tr><td>(\d+)</td><td>([^<]*)</td></tr>", m.group(1))]
    eq(len(rows), 13, "rows")
    want = dict(FORTUNES)
    want[0] = ADDITIONAL
    eq(dict(rows), want, "id -> message")
    msgs = [msg for _, msg in rows]
    eq(msgs, sorted(msgs), "order of the messages")
    check("&lt;script&gt;alert(&quot;This should not be displayed in a browser alert box."
          "&quot;);&lt;/script&gt;" in text, "the <script> fortune is not escaped as expected")
    check("<script>" not in text, "an unescaped <script> in the page")
    check(FORTUNES[12] in text, "the UTF-8 fortune is not intact")
    check("aren&#39;t" in text or "aren&#x27;t" in text, "the apostrophe is not escaped")


@test("/updates: N objects, N clamped to 1..500, a missing or bad value is 1")
def _():
    for qs, n in [("?queries=0", 1), ("?queries=1", 1), ("?queries=501", 500),
                  ("?queries=foo", 1), ("", 1)]:
        got = get_json("/updates" + qs)
        check(isinstance(got, list), "/updates%s: not an array: %r" % (qs, got))
        eq(len(got), n, "/updates%s: objects" % qs)
        for i, obj in enumerate(got):
            check_world(obj, "/updates%s [%d]" % (qs, i))


@test("/updates?queries=20: every row read gets a new number, written to the table")
def _():
    before = worlds()
    got = get_json("/updates?queries=20")
    after = worlds()
    eq(len(got), 20, "objects")
    ids = {o["id"] for o in got}
    for obj in got:
        check_world(obj, "/updates")
        eq(after[obj["id"]], obj["randomNumber"], "row %d in the table after" % obj["id"])
        check(before[obj["id"]] != obj["randomNumber"],
              "row %d kept its number %d" % (obj["id"], obj["randomNumber"]))
    changed = {i for i in after if after[i] != before[i]}
    eq(changed, ids, "rows changed in the table")


@test("/updates: 24 concurrent requests of 20 rows all succeed (no deadlock)")
def _():
    errors = []

    def worker():
        try:
            c = http.client.HTTPConnection(HOST, SERVER.port, timeout=30)
            try:
                for _ in range(5):
                    got = get_json("/updates?queries=20", c)
                    if len(got) != 20:
                        errors.append("got %d objects" % len(got))
            finally:
                c.close()
        except Exception as e:          # noqa: BLE001 (reported below)
            errors.append("%s: %s" % (type(e).__name__, e))

    threads = [threading.Thread(target=worker) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    check(not any(t.is_alive() for t in threads), "requests still running after 120 s")
    check(not errors, "%d failures, first: %s" % (len(errors), errors[:1]))


@test("/json and /plaintext: unchanged, with the four headers")
def _():
    eq(get_json("/json"), {"message": "Hello, World!"}, "/json body")
    status, headers, body = get("/plaintext")
    eq(status, 200, "/plaintext status")
    eq(body, b"Hello, World!", "/plaintext body")
    check_headers("/plaintext", headers, body, "text/plain")


@test("the server stops on SIGTERM with status 0 and no sanitizer report")
def _():
    rc = SERVER.stop()
    eq(rc, 0, "exit status (%s)" % SERVER.tail())
    bad = [line for line in SERVER.log if SANITIZER.search(line)]
    check(not bad, "sanitizer report: %s" % bad[:3])


# ---- main --------------------------------------------------------------------------

def start_services():
    """Throwaway Postgres (and Redis) from tests/services.sh: its dir."""
    p = subprocess.run([os.path.join(ROOT, "tests", "services.sh"), "start"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, timeout=120)
    if p.returncode != 0:
        raise Fail("tests/services.sh start failed")
    for line in p.stdout.decode().splitlines():
        m = re.match(r"^export (TROUPE_[A-Z_]+)=(.*)$", line)
        if m:
            # printf %q output; the values have no characters it would quote
            os.environ[m.group(1)] = m.group(2).strip("'")
    return os.environ["TROUPE_SERVICES_DIR"]


def main():
    global SERVER
    build = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("TROUPE_BUILD_DIR", "build")
    troupe = os.path.join(os.path.abspath(build), "troupe")
    services = None
    passed = failed = 0

    def report(name, err):
        nonlocal passed, failed
        if err is None:
            passed += 1
            print("ok - %s" % name, flush=True)
        else:
            failed += 1
            print("not ok - %s: %s" % (name, err), flush=True)

    try:
        if not os.access(troupe, os.X_OK):
            raise Fail("no executable %s (make first)" % troupe)
        if not os.environ.get("TROUPE_PG_URL"):
            services = start_services()
        p = subprocess.run([psql_bin(), os.environ["TROUPE_PG_URL"], "-X", "-q",
                            "-v", "ON_ERROR_STOP=1", "-f", SCHEMA],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        if p.returncode != 0:
            raise Fail("loading schema.sql: %s" % p.stderr.decode(errors="replace").strip())
        SERVER = Server(troupe)
        SERVER.start()
        report("the server starts with examples/techempower/app.lua", None)
    except Fail as e:
        report("setup (services, schema.sql, server)", e)
        TESTS.clear()
    try:
        for name, fn in TESTS:
            try:
                fn()
                report(name, None)
            except Fail as e:
                report(name, e)
            except Exception:          # noqa: BLE001 (a bug in the test: one failure)
                report(name, traceback.format_exc().strip().replace("\n", " | "))
    finally:
        if SERVER is not None:
            SERVER.kill()
        if services is not None:
            subprocess.run([os.path.join(ROOT, "tests", "services.sh"), "stop", services],
                           stdin=subprocess.DEVNULL, timeout=120)
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
