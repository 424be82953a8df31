/*
 * fuzz_http.c — libFuzzer harness for the HTTP connection code (`make fuzz`):
 * runtime/http/conn.c and response.c with llhttp, on a real libuv loop and real
 * loopback TCP connections, without Lua. This file stands in for server.c
 * (tr__http_dispatch, tr__http_body_limit, tr__http_conn_count): it answers each
 * request itself, in one of several ways drawn from the input (a response at once or
 * later, a stream at once or over later loop turns, a stream cut short, no response,
 * a response the server must refuse), so that the whole state machine runs: pipelining,
 * a request that waits while more input arrives, 100-continue, limits, lingering close.
 *
 * Each input is what a client sends on a new connection, fed three ways: whole, one
 * byte per write (each its own read on the server), and cut at points drawn from a
 * generator seeded by the input; the client then half-closes and the loop runs until
 * the connection is gone. Checked for each feed:
 *   - no crash, ASan/UBSan quiet; the connection freed, every tr_malloc'd block freed
 *     (tr_alloc_live back to 0), no handle left on the loop but the listener;
 *   - what the client got is a sequence of well-formed HTTP/1.1 responses: a status
 *     line "HTTP/1.1 NNN reason", header lines that are tokens and values without CR
 *     or LF, Server, one Date, X-Request-Id, a body framed by exactly one of
 *     Content-Length or chunked (none for HEAD, 204, 304), interim 100s with nothing
 *     else; the n-th final response is the n-th dispatched request's (its id, status
 *     and body); after a response that says Connection: close — and after the error
 *     response of a refused request, which must say it — nothing at all;
 *   - the three feeds get the same bytes (Date masked): how TCP cuts a request must
 *     not change the answer; the server must not reset the connection (a close with
 *     unread input) and must close it after a half-close once all is answered.
 *
 * Why a listening TCP socket and not a socketpair: conn.c takes its connections with
 * uv_accept from the worker's listener (tr__http_accept), so the accept path, peer
 * name and TCP options run as in the server; a loopback connect completes at once.
 * The limits are small (1 KB of head, 256-byte bodies, some 0..63-byte per-request
 * limits) so that inputs of at most 4 KB reach them; the timeouts are long, so that
 * no run depends on the clock (the 408 paths are left to tests/integration/http.py).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define CHECK(cond, ...)                                                            \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "fuzz_http: check failed: %s (line %d): ", #cond,       \
                    __LINE__);                                                      \
            fprintf(stderr, __VA_ARGS__);                                           \
            fputc('\n', stderr);                                                    \
            abort();                                                                \
        }                                                                           \
    } while (0)

/* ---- the stand-in server --------------------------------------------------------- */

static uv_loop_t loop;
static tr_http_server srv;
static tr_http_worker hw;
static int port;
static uint64_t seed;           /* of the current input */

/* What each dispatched request of the current feed must get. */
#define MAX_DISPATCH 1024
typedef struct {
    int     status;             /* the final status the client must see */
    int     head, cut, bodyless;
    char    id[72];
    size_t  id_len;
    char    body[160];          /* the body the client must see (a cut stream: a prefix) */
    size_t  blen;
} expect_t;
static expect_t expects[MAX_DISPATCH];
static size_t n_dispatch;

/* Requests answered later (a handler that waited): one step per loop turn. */
typedef struct {
    tr_http_req *r;
    size_t       k;             /* its expectation */
    int          action;        /* A_* */
    int          step;
    int          status;
} pending_t;
enum { A_RESPOND, A_STREAM, A_STREAM_CUT, A_NOTHING };
static pending_t pending[4];
static size_t n_pending;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

void tr__http_conn_count(tr_http_worker *w)
{
    (void)w;
}

size_t tr__http_body_limit(tr_http_conn *c)
{
    /* A per-route limit now and then, as app._body_limit would give. */
    uint64_t s = mix(seed ^ (0x11 + c->hw->requests));
    return s % 4 == 0 ? (size_t)(s >> 8) % 64 : c->hw->srv->o.body_limit;
}

static void body_of(expect_t *e, size_t k, size_t n)
{
    e->blen = 0;
    while (e->blen < n && e->blen < sizeof e->body) {
        e->body[e->blen] = (char)('a' + (k + e->blen) % 26);
        e->blen++;
    }
}

static void expect_error(expect_t *e, int status, const char *msg)
{
    e->status = status;
    e->bodyless = 0;
    e->blen = (size_t)snprintf(e->body, sizeof e->body,
                               "{\"success\":false,\"error\":\"%s\"}", msg);
}

static const tr_http_hdr good_hdr[] = { { "X-Fuzz", "yes", 6, 3 },
                                        { "Cache-Control", "no-store", 13, 8 } };
static const tr_http_hdr bad_hdr[] = { { "X-Bad", "a\r\nX-Injected: 1", 5, 16 } };

/* Answers request r (expectation e) with a whole response, as a handler would; a
 * refused response (bad status or header) ends like a handler error: 500. */
static void respond(tr_http_req *r, expect_t *e, int status, int bad)
{
    int rc = tr_http_respond(r, status, "text/plain", 10, bad ? bad_hdr : good_hdr,
                             bad ? 1 : 2, e->body, e->blen);
    if (rc == 0) {
        e->status = status;
        e->bodyless = status == 204 || status == 304;
        if (e->bodyless)
            e->blen = 0;
        return;
    }
    CHECK(rc == TR_EINVAL, "tr_http_respond: %d", rc);
    CHECK(tr__http_error_response(r->c, 500, "Internal Server Error", 0) == 0, "500");
    expect_error(e, 500, "Internal Server Error");
}

static const char *const chunks[] = { "first;", "", "second-chunk;", "3" };

/* Streams step `step` of a stream (0: head and first chunk; 1, 2: chunks; 3: end).
 * Returns 1 when the stream is over. */
static int stream_step(tr_http_req *r, expect_t *e, int step, int cut)
{
    if (step == 0) {
        e->status = 200;
        e->bodyless = 0;
        e->cut = cut;
        e->blen = 0;
        CHECK(tr_http_stream_begin(r, 200, "text/plain", 10, good_hdr, 1) == 0, "begin");
    }
    if (step < 3) {
        const char *s = chunks[step];
        size_t n = strlen(s);
        CHECK(tr_http_stream_write(r, s, n) == 0, "write");
        memcpy(e->body + e->blen, s, n);
        e->blen += n;
        return 0;
    }
    if (cut) {                  /* as server.c does for a handler that raised mid-stream */
        r->keep_alive = 0;
        r->c->closing = 1;
    } else {
        CHECK(tr_http_stream_end(r) == 0, "end");
    }
    return 1;
}

int tr__http_dispatch(tr_http_conn *c)
{
    tr_http_worker *w = c->hw;
    tr_http_req *r = &c->req;
    size_t k = n_dispatch;
    CHECK(k < MAX_DISPATCH, "too many requests");
    if (r->id_len == 0) {
        int n = snprintf(r->id, sizeof r->id, "fz-%zu", k);
        r->id_len = (uint8_t)n;
    }
    w->requests++;
    if (++w->seq == 0)
        w->seq = 1;
    r->seq = w->seq;
    r->state = TR__RQ_RUNNING;
    c->busy = 1;
    expect_t *e = &expects[n_dispatch++];
    memset(e, 0, sizeof *e);
    memcpy(e->id, r->id, r->id_len);
    e->id_len = r->id_len;
    e->head = r->head_only;

    uint64_t s = mix(seed ^ (0x9e3779b97f4a7c15ULL * (k + 1)));
    static const int statuses[] = { 200, 200, 201, 204, 304, 404, 500, 101, 99 };
    int status = statuses[(s >> 8) % (sizeof statuses / sizeof *statuses)];
    body_of(e, k, (size_t)(s >> 16) % 48);
    switch ((s >> 3) % 10) {
    case 0: case 1: case 2: case 3:                  /* a response now */
        respond(r, e, status, (s >> 24) % 16 == 0);
        break;
    case 4:                                          /* a stream now */
        for (int step = 0; !stream_step(r, e, step, 0); step++)
            ;
        break;
    case 5:                                          /* sends nothing: 500 */
        CHECK(tr__http_error_response(c, 500, "Internal Server Error", 0) == 0, "500");
        expect_error(e, 500, "Internal Server Error");
        break;
    default: {                                       /* waits: answered on later turns */
        static const int actions[] = { A_RESPOND, A_STREAM, A_STREAM_CUT, A_NOTHING };
        pending_t *p = &pending[n_pending++];
        CHECK(n_pending <= 1, "two requests running on one connection");
        p->r = r;
        p->k = k;
        p->action = actions[(s >> 32) % 4];
        p->step = 0;
        p->status = status;
        e->status = -1;         /* not known yet */
        return 0;
    }
    }
    tr__http_req_finished(r);
    return 0;
}

/* One step of each waiting request, as the handler VM's turns would do. */
static void advance_pending(void)
{
    for (size_t i = 0; i < n_pending;) {
        pending_t *p = &pending[i];
        tr_http_req *r = p->r;
        expect_t *e = &expects[p->k];
        int over = 1;
        if (!r->c->closed) {
            switch (p->action) {
            case A_RESPOND:
                respond(r, e, p->status, 0);
                break;
            case A_STREAM:
            case A_STREAM_CUT:
                over = stream_step(r, e, p->step++, p->action == A_STREAM_CUT);
                break;
            default:
                CHECK(tr__http_error_response(r->c, 500, "Internal Server Error", 0) == 0,
                      "500");
                expect_error(e, 500, "Internal Server Error");
                break;
            }
        }
        if (!over) {
            i++;
            continue;
        }
        pending[i] = pending[--n_pending];
        tr__http_req_finished(r);
    }
}

static void on_connection(uv_stream_t *s, int status)
{
    (void)s;
    CHECK(status == 0, "listen: %s", uv_strerror(status));
    tr__http_accept(&hw);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    CHECK(uv_loop_init(&loop) == 0, "loop");
    srv.o.max_head = 1024;          /* small limits, so that inputs reach them */
    srv.o.body_limit = 256;
    srv.o.header_timeout_ms = srv.o.body_timeout_ms = srv.o.idle_timeout_ms = 600000;
    srv.o.max_conns = 4;
    srv.n = 1;
    srv.w = &hw;
    hw.srv = &srv;
    hw.fd = -1;
    CHECK(uv_tcp_init(&loop, &hw.listener) == 0, "tcp");
    hw.listener.data = &hw;
    hw.listening = 1;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    CHECK(uv_tcp_bind(&hw.listener, (struct sockaddr *)&a, 0) == 0, "bind");
    CHECK(uv_listen((uv_stream_t *)&hw.listener, 16, on_connection) == 0, "listen");
    int len = sizeof a;
    CHECK(uv_tcp_getsockname(&hw.listener, (struct sockaddr *)&a, &len) == 0, "name");
    port = ntohs(a.sin_port);
    return 0;
}



/* ---- the client ----------------------------------------------------------------------- */

/* What the client got: plain malloc, so that tr_alloc_live counts the server only. */
typedef struct {
    char  *data;
    size_t len, cap;
} obuf;

/* The start of the last response in o (the last "HTTP/1.1 " at a line start). */
static size_t last_response(const obuf *o)
{
    size_t at = 0;
    for (size_t i = 0; i + 9 <= o->len; i++)
        if ((i == 0 || o->data[i - 1] == '\n') && memcmp(o->data + i, "HTTP/1.1 ", 9) == 0)
            at = i;
    return at;
}

static int is_final_error(const obuf *o, size_t at)
{
    if (o->len < at + 12)
        return 0;
    int status = atoi(o->data + at + 9);
    const char *rest = o->data + at;
    size_t n = o->len - at;
    int closes = 0;
    for (size_t i = 0; i + 19 <= n && !closes; i++)
        closes = memcmp(rest + i, "Connection: close\r\n", 19) == 0;
    return (status == 400 || status == 408 || status == 413 || status == 431) && closes;
}

/* A request that breaks two rules at once (a head over the limit that also holds a
 * bad byte) gets the error of whichever check the bytes reach first, and that
 * depends on how TCP cut them: like any streaming parser. So the feeds may differ in
 * the status of a final error response, and in nothing else. */
static int same_but_final_error(const obuf *a, const obuf *b)
{
    size_t la = last_response(a), lb = last_response(b);
    if (la != lb || memcmp(a->data, b->data, la) != 0)
        return 0;
    return is_final_error(a, la) && is_final_error(b, lb);
}


static void obuf_add(obuf *b, const char *p, size_t n)
{
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < n)
            cap *= 2;
        b->data = realloc(b->data, cap);
        CHECK(b->data != NULL, "out of memory");
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static int cfd = -1;
static int client_eof, client_reset;

static void drain(obuf *out)
{
    char buf[65536];
    for (;;) {
        ssize_t n = recv(cfd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            obuf_add(out, buf, (size_t)n);
            continue;
        }
        if (n == 0)
            client_eof = 1;
        else if (errno == ECONNRESET)
            client_reset = 1;
        else
            CHECK(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR, "recv: %s",
                  strerror(errno));
        return;
    }
}

static void pump(obuf *out, int rounds)
{
    for (int i = 0; i < rounds; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        advance_pending();
        drain(out);
    }
}

static void send_piece(const uint8_t *p, size_t n, obuf *out)
{
    while (n > 0) {
        ssize_t k = send(cfd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (k > 0) {
            p += k;
            n -= (size_t)k;
        } else if (k < 0 && (errno == EPIPE || errno == ECONNRESET)) {
            return;             /* the server closed (after a refusal): fine */
        } else {
            CHECK(k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR),
                  "send: %s", strerror(errno));
        }
        pump(out, 1);
    }
    pump(out, 2);
}

static void count_handle(uv_handle_t *h, void *arg)
{
    if (h != (uv_handle_t *)&hw.listener && !uv_is_closing(h))
        ++*(int *)arg;
}

enum { WHOLE, BYTES, SPLIT };

/* Sends data on a new connection, cut as mode says; returns what the client got. */
static void feed(const uint8_t *data, size_t size, int mode, obuf *out, int track)
{
    out->len = 0;
    n_dispatch = 0;
    n_pending = 0;
    client_eof = client_reset = 0;
    hw.requests = 0;
    tr_alloc_track(track);

    cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(cfd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(cfd, (struct sockaddr *)&a, sizeof a) == 0, "connect: %s", strerror(errno));
    int one = 1;
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (int i = 0; i < 1000 && hw.live_conns == 0; i++)
        pump(out, 1);
    CHECK(hw.live_conns == 1, "not accepted");

    uint64_t rng = seed ^ 0x5851f42d4c957f2dULL;
    for (size_t pos = 0; pos < size;) {
        size_t n = size - pos;
        if (mode == BYTES)
            n = 1;
        else if (mode == SPLIT) {
            rng = mix(rng + 1);
            size_t cut = 1 + (size_t)(rng % (rng & 0x100 ? 8 : 96));
            if (cut < n)
                n = cut;
        }
        send_piece(data + pos, n, out);
        pos += n;
    }
    shutdown(cfd, SHUT_WR);
    int rounds = 0;
    while ((hw.live_conns > 0 || n_pending > 0 || !client_eof) && !client_reset) {
        CHECK(++rounds < 100000, "the connection never closed (%u live, %zu pending)",
              hw.live_conns, n_pending);
        pump(out, 1);
    }
    close(cfd);
    cfd = -1;
    CHECK(!client_reset, "the server reset the connection (feed %d, %zu requests, got %zu bytes)",
          mode, n_dispatch, out->len);
    CHECK(n_pending == 0, "a request never ended");
    int handles = 0;
    uv_walk(&loop, count_handle, &handles);
    CHECK(handles == 0, "%d handles left open", handles);
    uv_run(&loop, UV_RUN_NOWAIT);   /* close callbacks */
    CHECK(!track || tr_alloc_live() == 0, "%ld blocks not freed", tr_alloc_live());
    tr_alloc_track(0);
}

/* ---- checking what the client got ---------------------------------------------------- */

static const char *find(const char *s, const char *end, const char *pat)
{
    size_t n = strlen(pat);
    for (; s + n <= end; s++)
        if (memcmp(s, pat, n) == 0)
            return s;
    return NULL;
}

static int token_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static int ieq(const char *a, size_t n, const char *lower)
{
    if (strlen(lower) != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = a[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch + 32);
        if (ch != lower[i])
            return 0;
    }
    return 1;
}

typedef struct {
    int         status;
    const char *cl, *te, *conn, *id, *ctype;
    size_t      cl_len, te_len, conn_len, id_len, ctype_len;
    int         n_cl, n_te, n_date, n_server, n_id;
} head_t;

/* Parses one head at p; returns the byte after it. */
static const char *parse_head(const char *p, const char *end, head_t *h)
{
    memset(h, 0, sizeof *h);
    const char *eoh = find(p, end, "\r\n\r\n");
    CHECK(eoh != NULL, "a response head without its end: %.60s", p);
    CHECK(end - p >= 13 && memcmp(p, "HTTP/1.1 ", 9) == 0, "status line: %.30s", p);
    CHECK(p[9] >= '1' && p[9] <= '9' && p[10] >= '0' && p[10] <= '9' && p[11] >= '0' &&
          p[11] <= '9' && p[12] == ' ', "status: %.30s", p);
    h->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    const char *line = find(p, eoh + 2, "\r\n");
    for (const char *q = p; q < line; q++)
        CHECK((unsigned char)*q >= 0x20 && *q != 0x7f, "control byte in the status line");
    line += 2;
    while (line < eoh + 2) {
        const char *le = find(line, eoh + 2, "\r\n");
        const char *colon = memchr(line, ':', (size_t)(le - line));
        CHECK(colon && colon > line, "header line without a name: %.40s", line);
        for (const char *q = line; q < colon; q++)
            CHECK(token_char((unsigned char)*q), "header name: %.40s", line);
        const char *v = colon + 1;
        while (v < le && *v == ' ')
            v++;
        for (const char *q = v; q < le; q++)
            CHECK(*q != '\r' && *q != '\n' && *q != '\0', "header value: %.40s", line);
        size_t nl = (size_t)(colon - line), vl = (size_t)(le - v);
        if (ieq(line, nl, "content-length")) {
            h->n_cl++;
            h->cl = v;
            h->cl_len = vl;
        } else if (ieq(line, nl, "transfer-encoding")) {
            h->n_te++;
            h->te = v;
            h->te_len = vl;
        } else if (ieq(line, nl, "connection")) {
            h->conn = v;
            h->conn_len = vl;
        } else if (ieq(line, nl, "x-request-id")) {
            h->n_id++;
            h->id = v;
            h->id_len = vl;
        } else if (ieq(line, nl, "content-type")) {
            h->ctype = v;
            h->ctype_len = vl;
        } else if (ieq(line, nl, "date")) {
            h->n_date++;
        } else if (ieq(line, nl, "server")) {
            h->n_server++;
        }
        CHECK(!ieq(line, nl, "x-injected"), "a split response");
        line = le + 2;
    }
    return eoh + 4;
}

/* The body after a head: into body (its length in *blen); returns the byte after it,
 * or NULL for a chunked body that the end of the stream cut (allowed: cut). */
static const char *parse_body(const char *p, const char *end, const head_t *h, int none,
                              int cut, char *body, size_t cap, size_t *blen)
{
    *blen = 0;
    if (none)
        return p;
    if (h->n_te) {
        CHECK(h->te_len == 7 && memcmp(h->te, "chunked", 7) == 0, "Transfer-Encoding");
        for (;;) {
            const char *le = find(p, end, "\r\n");
            if (le == NULL && cut)
                return NULL;
            CHECK(le != NULL, "chunk size line cut");
            size_t n = 0;
            CHECK(le > p && le - p <= 8, "chunk size");
            for (const char *q = p; q < le; q++) {
                int d = *q >= '0' && *q <= '9' ? *q - '0' : *q >= 'a' && *q <= 'f' ? *q - 'a' + 10
                                                                                   : -1;
                CHECK(d >= 0, "chunk size digit");
                n = n * 16 + (size_t)d;
            }
            p = le + 2;
            if (n == 0) {
                if (end - p < 2 && cut)
                    return NULL;
                CHECK(end - p >= 2 && p[0] == '\r' && p[1] == '\n', "last chunk");
                return p + 2;
            }
            CHECK(n > 0, "an empty chunk before the last");
            if ((size_t)(end - p) < n + 2 && cut)
                return NULL;
            CHECK((size_t)(end - p) >= n + 2 && p[n] == '\r' && p[n + 1] == '\n', "chunk data");
            CHECK(*blen + n <= cap, "chunked body too long");
            memcpy(body + *blen, p, n);
            *blen += n;
            p += n + 2;
        }
    }
    CHECK(h->n_cl == 1, "a body without Content-Length (%d) or chunked", h->n_cl);
    size_t n = 0;
    for (size_t i = 0; i < h->cl_len; i++) {
        CHECK(h->cl[i] >= '0' && h->cl[i] <= '9', "Content-Length digit");
        n = n * 10 + (size_t)(h->cl[i] - '0');
    }
    CHECK((size_t)(end - p) >= n, "body cut: %zu of %zu", (size_t)(end - p), n);
    CHECK(n <= cap, "body too long");
    memcpy(body, p, n);
    *blen = n;
    return p + n;
}

static void check_output(const obuf *out)
{
    if (out->len == 0) {
        CHECK(n_dispatch == 0, "no response for %zu requests", n_dispatch);
        return;
    }
    const char *p = out->data, *end = out->data + out->len;
    size_t k = 0;
    char body[4096];
    while (p < end) {
        head_t h;
        p = parse_head(p, end, &h);
        if (h.status == 100) {
            CHECK(h.n_cl + h.n_te + h.n_date + h.n_server + h.n_id == 0, "headers in a 100");
            continue;
        }
        CHECK(h.n_server == 1 && h.n_date == 1 && h.n_id == 1, "Server %d, Date %d, Id %d",
              h.n_server, h.n_date, h.n_id);
        CHECK(h.n_cl + h.n_te <= 1, "Content-Length and Transfer-Encoding");
        int close = h.conn_len == 5 && memcmp(h.conn, "close", 5) == 0;
        size_t blen;
        if (k < n_dispatch) {
            const expect_t *e = &expects[k++];
            CHECK(h.status == e->status, "response %zu: status %d, want %d", k - 1, h.status,
                  e->status);
            CHECK(h.id_len == e->id_len && memcmp(h.id, e->id, e->id_len) == 0,
                  "response %zu: X-Request-Id %.*s, want %.*s", k - 1, (int)h.id_len, h.id,
                  (int)e->id_len, e->id);
            if (e->bodyless)
                CHECK(h.n_cl + h.n_te == 0, "a %d with a body length", h.status);
            else
                CHECK(h.n_cl + h.n_te == 1, "no body length");
            const char *q = parse_body(p, end, &h, e->head || e->bodyless, e->cut, body,
                                       sizeof body, &blen);
            if (q == NULL) {            /* a stream cut short: the end of everything */
                CHECK(blen <= e->blen && memcmp(body, e->body, blen) == 0, "cut stream body");
                CHECK(k == n_dispatch, "requests after a cut stream");
                return;
            }
            p = q;
            if (!e->head) {
                CHECK(blen == e->blen && memcmp(body, e->body, blen) == 0,
                      "response %zu: body %zu bytes, want %zu", k - 1, blen, e->blen);
            }
            if (e->cut) {
                CHECK(p == end, "bytes after a cut stream");
                return;
            }
        } else {
            /* The server's own answer to a request it refused: the end. */
            CHECK(h.status >= 400 && h.status <= 599, "refusal status %d", h.status);
            CHECK(close, "a refusal without Connection: close");
            CHECK(h.ctype_len == 16 && memcmp(h.ctype, "application/json", 16) == 0,
                  "refusal Content-Type");
            if (p == end)               /* to a HEAD: no body */
                return;
            p = parse_body(p, end, &h, 0, 0, body, sizeof body, &blen);
            CHECK(blen > 12 && memcmp(body, "{\"success\":false", 16) == 0, "refusal body");
            CHECK(p == end, "%zu bytes after a refusal", (size_t)(end - p));
            return;
        }
        if (close)
            CHECK(p == end, "%zu bytes after Connection: close", (size_t)(end - p));
    }
    CHECK(k == n_dispatch, "%zu responses for %zu requests", k, n_dispatch);
}

/* Date changes with the clock: masked before the three feeds are compared. */
static void mask_dates(obuf *b)
{
    if (b->len == 0)
        return;
    const char *end = b->data + b->len;
    for (char *p = b->data; (p = (char *)find(p, end, "\r\nDate: ")) != NULL; p += 8) {
        char *e = (char *)find(p + 2, end, "\r\n");
        if (e)
            memset(p + 8, 'x', (size_t)(e - (p + 8)));
    }
}

/* One connection before tracking: the worker's connection table is allocated once
 * and kept, as in the server. */
static void warm_up(void)
{
    static obuf out;
    feed((const uint8_t *)"", 0, WHOLE, &out, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static obuf out[3];
    static int warm;
    if (!warm) {
        warm = 1;
        warm_up();
    }
    seed = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < size; i++)
        seed = (seed ^ data[i]) * 0x100000001b3ULL;
    for (int mode = WHOLE; mode <= SPLIT; mode++) {
        feed(data, size, mode, &out[mode], 1);
        check_output(&out[mode]);
        mask_dates(&out[mode]);
    }
    for (int mode = BYTES; mode <= SPLIT; mode++) {
        if (out[mode].len == out[WHOLE].len &&
            (out[WHOLE].len == 0 || memcmp(out[mode].data, out[WHOLE].data, out[WHOLE].len) == 0))
            continue;
        if (same_but_final_error(&out[WHOLE], &out[mode]))
            continue;
        size_t i = 0;
        while (i < out[mode].len && i < out[WHOLE].len && out[mode].data[i] == out[WHOLE].data[i])
            i++;
        fprintf(stderr, "fuzz_http: fed %s, the client got other bytes than fed whole, from "
                "byte %zu:\n--- whole:\n%.*s\n--- %s:\n%.*s\n", mode == BYTES ? "byte by byte"
                : "in pieces", i, (int)(out[WHOLE].len - i > 300 ? 300 : out[WHOLE].len - i),
                out[WHOLE].data + i, mode == BYTES ? "bytes" : "pieces",
                (int)(out[mode].len - i > 300 ? 300 : out[mode].len - i), out[mode].data + i);
        abort();
    }
    return 0;
}
