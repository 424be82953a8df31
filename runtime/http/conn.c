/*
 * conn.c — one HTTP/1.1 connection: reading, parsing with llhttp (strict: no lenient
 * flag is ever set), the limits and timeouts, and writing.
 *
 * A connection handles one request at a time. The parser pauses at the end of each
 * message; the request runs (server.c); when it is finished the parser resumes on
 * what is left of the read buffer, so pipelined requests are answered in order and
 * the responses of one pass leave in one write. While a request waits (its handler
 * yielded) the connection stops reading: the client's backlog stays in the kernel.
 */
#include <stdio.h>
#include <string.h>

#include "http_int.h"

#define IN_INITIAL 8192
#define IN_MAX     (64 * 1024)
#define OUT_HIGH   (1024 * 1024)    /* stop reading while this much waits to be sent */
#define MAX_HEADERS 128

static tr_http_conn *conn_of_parser(llhttp_t *p) { return p->data; }

/* ---- limits and refusals ---- */

static int refuse(tr_http_conn *c, int status, const char *why)
{
    c->err_status = status;
    llhttp_set_error_reason(&c->parser, why);
    return HPE_USER;
}

static int head_grow(tr_http_conn *c, size_t n)
{
    c->req.head_bytes += n;
    size_t max = c->hw->srv->o.max_head;
    if (c->req.head_bytes > max)
        return refuse(c, 431, "Request Header Fields Too Large");
    return 0;
}

static void timer_arm(tr_http_conn *c, uint32_t ms);
static void timer_clear(tr_http_conn *c);

/* ---- obs-fold ----
 * A header line that begins with SP or HT continues the previous one (obs-fold, RFC
 * 9112 5.2). llhttp 8 accepts it and joins the lines, so "Transfer-Encoding:\r\n
 * chunked" would mean chunked here and perhaps nothing to a proxy in front: it is
 * refused (400). Header spans never hold an LF, so a fold is an LF followed by SP or
 * HT among a head's bytes from its first header field on. They are looked at up to
 * each span's end, and at the end of each execute (process). */

static int fold_scan(tr_http_conn *c, const char *from, const char *to)
{
    for (const char *s = from; s < to && c->fold != 2; s++) {
        if (c->fold == 1 && (*s == ' ' || *s == '\t'))
            c->fold = 2;
        else
            c->fold = *s == '\n';
    }
    return c->fold == 2;
}

static int fold_check(tr_http_conn *c, const char *at, size_t len)
{
    if (!c->in_fields) {
        c->in_fields = 1;
        c->fold = 0;
        c->scan_at = at;
    }
    int folded = fold_scan(c, c->scan_at ? c->scan_at : c->exec_start, at + len);
    c->scan_at = at + len;
    return folded;
}

/* ---- parser callbacks ---- */

static int on_message_begin(llhttp_t *p)
{
    tr_http_conn *c = conn_of_parser(p);
    tr_http_req *r = &c->req;
    r->state = TR__RQ_PARSING;
    r->arena.len = 0;
    r->url_len = 0;
    r->nh = 0;
    r->head_bytes = 0;
    r->last_cb = 0;
    r->body_len = r->body_off = 0;
    r->body_expected = 0;
    r->head_only = 0;
    r->id_len = 0;
    c->in_fields = 0;
    timer_arm(c, c->hw->srv->o.header_timeout_ms);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    tr_http_conn *c = conn_of_parser(p);
    int rc = head_grow(c, len);
    if (rc)
        return rc;
    if (tr_buf_append(&c->req.arena, at, len))
        return refuse(c, 503, "out of memory");
    c->req.url_len += (uint32_t)len;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    tr_http_conn *c = conn_of_parser(p);
    tr_http_req *r = &c->req;
    /* ": " and CRLF, once per header: a name may come in several pieces */
    int rc = head_grow(c, len + (r->last_cb != 1 ? 4 : 0));
    if (rc)
        return rc;
    if (fold_check(c, at, len))
        return refuse(c, 400, "Obsolete line folding");
    if (r->last_cb != 1) {
        if (r->nh >= MAX_HEADERS)
            return refuse(c, 431, "Too many headers");
        if (r->nh == r->cap_h) {
            uint32_t cap = r->cap_h ? r->cap_h * 2 : 16;
            tr__hdr *h = tr_realloc(r->hdrs, cap * sizeof *h);
            if (h == NULL)
                return refuse(c, 503, "out of memory");
            r->hdrs = h;
            r->cap_h = cap;
        }
        tr__hdr *h = &r->hdrs[r->nh++];
        h->no = (uint32_t)r->arena.len;
        h->nl = 0;
        h->vo = h->vl = 0;
        r->last_cb = 1;
    }
    if (tr_buf_append(&r->arena, at, len))
        return refuse(c, 503, "out of memory");
    r->hdrs[r->nh - 1].nl += (uint32_t)len;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    tr_http_conn *c = conn_of_parser(p);
    tr_http_req *r = &c->req;
    int rc = head_grow(c, len);
    if (rc)
        return rc;
    if (fold_check(c, at, len))
        return refuse(c, 400, "Obsolete line folding");
    tr__hdr *h = &r->hdrs[r->nh - 1];
    if (r->last_cb != 2) {
        h->vo = (uint32_t)r->arena.len;
        r->last_cb = 2;
    }
    if (tr_buf_append(&r->arena, at, len))
        return refuse(c, 503, "out of memory");
    h->vl += (uint32_t)len;
    return 0;
}

/* Whether s[0..n) equals the lowercase lower[0..len), ignoring ASCII case. */
static int lower_eq(const char *s, size_t n, const char *lower, size_t len)
{
    if (n != len)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch + 32);
        if (ch != lower[i])
            return 0;
    }
    return 1;
}

static int name_is(const tr_http_req *r, const tr__hdr *h, const char *lower, size_t n)
{
    return lower_eq(r->arena.data + h->no, h->nl, lower, n);
}

static int value_is(const tr_http_req *r, const tr__hdr *h, const char *lower, size_t n)
{
    return lower_eq(r->arena.data + h->vo, h->vl, lower, n);
}

/* A request id the client chose is echoed when it is short and plain. */
static int id_ok(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' || ch == ':'))
            return 0;
    }
    return 1;
}

static void write_continue(tr_http_conn *c);

static int on_headers_complete(llhttp_t *p)
{
    tr_http_conn *c = conn_of_parser(p);
    tr_http_req *r = &c->req;
    r->method = (uint8_t)p->method;
    r->http_minor = p->http_minor;
    r->head_only = p->method == HTTP_HEAD;
    c->in_fields = 0;
    /* llhttp 8 takes HTTP/0.9 and HTTP/2.0 request lines too. */
    if (p->http_major != 1)
        return refuse(c, 505, "HTTP Version Not Supported");
    if (p->method == HTTP_CONNECT)
        return refuse(c, 405, "CONNECT is not supported");
    int hosts = 0, expect = 0, expect_other = 0;
    r->id_len = 0;
    for (uint32_t i = 0; i < r->nh; i++) {
        tr__hdr *h = &r->hdrs[i];
        if (name_is(r, h, "host", 4))
            hosts++;
        else if (name_is(r, h, "expect", 6)) {
            if (value_is(r, h, "100-continue", 12))
                expect = 1;
            else
                expect_other = 1;
        } else if (name_is(r, h, "x-request-id", 12) && id_ok(r->arena.data + h->vo, h->vl)) {
            memcpy(r->id, r->arena.data + h->vo, h->vl);
            r->id_len = (uint8_t)h->vl;
        }
    }
    if (p->http_major == 1 && p->http_minor >= 1 && hosts != 1)
        return refuse(c, 400, hosts ? "Duplicate Host header" : "Missing Host header");
    if (hosts > 1)
        return refuse(c, 400, "Duplicate Host header");
    if (expect_other)
        return refuse(c, 417, "Expectation Failed");
    r->body_expected = (p->flags & F_CHUNKED) ||
                       ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
    r->body_limit = r->body_expected ? tr__http_body_limit(c) : 0;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > r->body_limit)
        return refuse(c, 413, "Payload Too Large");
    r->body_off = r->arena.len;
    if (r->body_expected) {
        timer_arm(c, c->hw->srv->o.body_timeout_ms);
        if (expect && p->http_minor >= 1)
            write_continue(c);
    } else {
        timer_clear(c);
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    tr_http_conn *c = conn_of_parser(p);
    tr_http_req *r = &c->req;
    if (r->body_len + len > r->body_limit)
        return refuse(c, 413, "Payload Too Large");
    if (tr_buf_append(&r->arena, at, len))
        return refuse(c, 503, "out of memory");
    r->body_len += len;
    return 0;
}

/* A chunk announcing more than the limit allows is refused before its data. */
static int on_chunk_header(llhttp_t *p)
{
    tr_http_conn *c = conn_of_parser(p);
    if (p->content_length > c->req.body_limit - c->req.body_len)
        return refuse(c, 413, "Payload Too Large");
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    tr_http_conn *c = conn_of_parser(p);
    c->req.keep_alive = (uint8_t)llhttp_should_keep_alive(p);
    c->in_fields = 0;                          /* after trailers */
    timer_clear(c);
    return HPE_PAUSED;
}

static llhttp_settings_t settings;
static uv_once_t settings_once = UV_ONCE_INIT;

static void settings_init(void)
{
    llhttp_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_chunk_header = on_chunk_header;
    settings.on_message_complete = on_message_complete;
}

/* ---- closing ---- */

static void conn_free(tr_http_conn *c)
{
    tr_http_worker *hw = c->hw;
    hw->conns[c->index] = NULL;
    hw->free_idx[hw->n_free++] = c->index;
    hw->live_conns--;
    tr__http_conn_count(hw);
    tr_free(c->in);
    tr_buf_free(&c->out);
    tr_buf_free(&c->wout);
    tr_buf_free(&c->req.arena);
    tr_free(c->req.hdrs);
    tr_free(c);
    if (hw->accept_paused && !hw->stopped)
        tr__http_accept(hw);
}

static void on_handle_closed(uv_handle_t *h)
{
    tr_http_conn *c = h->data;
    /* A request still running in the VM keeps the conn until it ends. */
    if (--c->handles == 0 && !c->busy)
        conn_free(c);
}

void tr__http_conn_close(tr_http_conn *c)
{
    if (c->closed)
        return;
    c->closed = 1;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

/* ---- timers ---- */

static void on_timer(uv_timer_t *t)
{
    tr_http_conn *c = t->data;
    if (c->hw->draining && !c->busy && c->linger != 2) {
        tr__http_conn_close(c);
        return;
    }
    if (c->linger == 2) {           /* the client did not hang up: enough */
        tr__http_conn_close(c);
        return;
    }
    if (c->deadline == 0)
        return;                     /* the wait it was set for is over */
    uint64_t now = uv_now(t->loop);
    if (now < c->deadline) {        /* set for an earlier deadline: wait the rest */
        c->timer_due = c->deadline;
        uv_timer_start(t, on_timer, c->deadline - now, 0);
        return;
    }
    c->deadline = 0;
    if (c->busy || c->closing)
        return;
    if (c->req.state == TR__RQ_PARSING) {
        /* Headers or body too slow (slowloris): say so and close. */
        tr__http_error_response(c, 408, "Request Timeout", 1);
        tr__http_flush(c);
        return;
    }
    tr__http_conn_close(c);         /* idle keep-alive connection */
}

/* Deadlines are lazy: c->deadline is when the current wait ends (0: none). The uv
 * timer is only moved when a deadline comes sooner than the timer is due; one that
 * fires early waits again for the rest. So setting and clearing a deadline, which
 * every request does three times, costs no timer call. */
static void timer_arm(tr_http_conn *c, uint32_t ms)
{
    uint64_t due = uv_now(c->timer.loop) + ms;
    c->deadline = due;
    if (!uv_is_active((uv_handle_t *)&c->timer) || c->timer_due > due) {
        c->timer_due = due;
        uv_timer_start(&c->timer, on_timer, ms, 0);
    }
}

static void timer_clear(tr_http_conn *c)
{
    c->deadline = 0;
}

/* ---- lingering close ----
 * After an error response the client may still be sending (a body we refused, the
 * rest of a pipeline): closing with unread bytes would make the kernel send a reset
 * that can destroy the response before the client reads it. So: shut down our side,
 * read and drop what comes for up to 2 s, then close. */

static void on_linger_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    tr_http_conn *c = s->data;
    if (nread < 0)
        tr__http_conn_close(c);
    else
        c->in_len = c->in_pos = 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);

static void on_shutdown(uv_shutdown_t *req, int status)
{
    tr_http_conn *c = req->data;
    if (c->closed)
        return;
    if (status < 0) {
        tr__http_conn_close(c);
        return;
    }
    c->in_len = c->in_pos = 0;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_linger_read) != 0) {
        tr__http_conn_close(c);
        return;
    }
    c->deadline = 0;
    uv_timer_start(&c->timer, on_timer, 2000, 0);
}

static void finish_close(tr_http_conn *c)
{
    if (c->linger == 2)             /* under way */
        return;
    if (c->linger == 1) {
        c->linger = 2;
        c->sreq.data = c;
        uv_timer_stop(&c->timer);
        if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) == 0)
            return;
    }
    tr__http_conn_close(c);
}

/* ---- writing ---- */

static void on_written(uv_write_t *w, int status);

static void start_reading(tr_http_conn *c);

/* Sends what the responses produced (c->out): a try_write first, the rest through
 * uv_write; at most one uv_write in flight. */
void tr__http_flush(tr_http_conn *c)
{
    if (c->closed || c->writing || c->processing)
        return;
    if (c->out.len == 0) {
        if (c->closing)
            finish_close(c);
        return;
    }
    uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == (int)c->out.len) {
        c->out.len = 0;
        if (c->closing)
            finish_close(c);
        return;
    }
    if (n < 0 && n != UV_EAGAIN) {
        tr__http_conn_close(c);
        return;
    }
    if (n < 0)
        n = 0;
    /* The rest goes out from wout; out keeps collecting. */
    tr_buf t = c->wout;
    c->wout = c->out;
    c->out = t;
    c->out.len = 0;
    if (n > 0) {
        memmove(c->wout.data, c->wout.data + n, c->wout.len - (size_t)n);
        c->wout.len -= (size_t)n;
    }
    b = uv_buf_init(c->wout.data, (unsigned)c->wout.len);
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        tr__http_conn_close(c);
        return;
    }
    c->writing = 1;
    if (c->reading && c->wout.len > OUT_HIGH) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static void process(tr_http_conn *c);

static void on_written(uv_write_t *w, int status)
{
    tr_http_conn *c = w->data;
    c->writing = 0;
    c->wout.len = 0;
    if (c->closed)
        return;
    if (status < 0) {
        tr__http_conn_close(c);
        return;
    }
    tr__http_flush(c);
    if (!c->closed && !c->writing && !c->busy && !c->closing)
        process(c);
}

static void write_continue(tr_http_conn *c)
{
    static const char line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (tr_buf_append(&c->out, line, sizeof line - 1) == 0) {
        int was = c->processing;
        c->processing = 0;
        tr__http_flush(c);
        c->processing = (uint8_t)was;
    }
}

/* ---- reading and parsing ---- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    tr_http_conn *c = h->data;
    if (c->in_pos > 0 && c->in_pos == c->in_len)
        c->in_pos = c->in_len = 0;
    if (c->in_cap - c->in_len < 1024 && c->in_cap < IN_MAX) {
        size_t cap = c->in_cap ? c->in_cap * 2 : IN_INITIAL;
        char *p = tr_realloc(c->in, cap);
        if (p) {
            c->in = p;
            c->in_cap = cap;
        }
    }
    if (c->in_cap - c->in_len == 0 && c->in_pos > 0) {
        memmove(c->in, c->in + c->in_pos, c->in_len - c->in_pos);
        c->in_len -= c->in_pos;
        c->in_pos = 0;
    }
    *buf = uv_buf_init(c->in ? c->in + c->in_len : NULL, (unsigned)(c->in_cap - c->in_len));
}

static void fail_parse(tr_http_conn *c, llhttp_errno_t err)
{
    int status = c->err_status;
    const char *why = llhttp_get_error_reason(&c->parser);
    if (status == 0) {
        status = 400;
        why = "Bad Request";
    }
    (void)err;
    c->req.state = TR__RQ_DONE;
    tr__http_error_response(c, status, why, 1);
}

/* Parses and runs what the read buffer holds, one request at a time, until a request
 * waits, the buffer is used up, or the connection is to close; then flushes. */
static void process(tr_http_conn *c)
{
    if (c->processing)
        return;
    c->processing = 1;
    while (!c->busy && !c->closing && c->in_pos < c->in_len) {
        const char *start = c->in + c->in_pos;
        size_t len = c->in_len - c->in_pos;
        c->exec_start = start;
        c->scan_at = NULL;
        llhttp_errno_t err = llhttp_execute(&c->parser, start, len);
        if (err == HPE_OK) {
            c->in_pos = c->in_len;
            if (c->in_fields)           /* the head goes on in the next read */
                fold_scan(c, c->scan_at ? c->scan_at : start, start + len);
            break;
        }
        if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
            c->in_pos += (size_t)(llhttp_get_error_pos(&c->parser) - start);
            if (err == HPE_PAUSED) {
                llhttp_resume(&c->parser);
            } else {
                /* An upgrade we do not speak: answer this request, then close. */
                c->req.keep_alive = 0;
            }
            tr__http_dispatch(c);
            continue;
        }
        fail_parse(c, err);
        break;
    }
    if (c->in_pos == c->in_len)
        c->in_pos = c->in_len = 0;
    if (c->eof && !c->busy)
        c->closing = 1;             /* the client sent no more: all it sent is answered */
    c->processing = 0;
    tr__http_flush(c);
    if (c->closed || c->closing)
        return;
    if (!c->busy && !c->writing) {
        if (c->req.state != TR__RQ_PARSING && c->in_len == 0)
            timer_arm(c, c->hw->srv->o.idle_timeout_ms);
        start_reading(c);
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    tr_http_conn *c = s->data;
    if (nread < 0) {
        /* EOF or error: a request half-sent is dropped; one running finishes into
         * the void (its conn lives until it ends). After EOF (a half-close) the
         * requests already read are still answered: process closes once they are. */
        c->reading = 0;
        if (nread == UV_EOF && (c->busy || c->writing)) {
            uv_read_stop(s);
            c->eof = 1;
            return;
        }
        tr__http_conn_close(c);
        return;
    }
    if (nread == 0)
        return;
    c->in_len += (size_t)nread;
    if (c->busy) {
        /* A request waits: stop reading until it ends. */
        uv_read_stop(s);
        c->reading = 0;
        return;
    }
    process(c);
}

static void start_reading(tr_http_conn *c)
{
    if (c->reading || c->closed || c->eof || c->hw->stopped)
        return;
    if (c->writing && c->wout.len > OUT_HIGH)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = 1;
}

/* ---- the end of a request ---- */

/* The request's response is complete (or abandoned): the next one may start. */
void tr__http_req_finished(tr_http_req *r)
{
    tr_http_conn *c = r->c;
    r->state = TR__RQ_DONE;
    c->busy = 0;
    if (c->closed) {
        if (c->handles == 0)
            conn_free(c);
        return;
    }
    if (!r->keep_alive)
        c->linger = 1;              /* the client may have sent more: no reset (see linger) */
    if (!r->keep_alive || c->hw->draining)
        c->closing = 1;
    if (!c->processing) {           /* it ended later, on its own: carry on */
        tr__http_flush(c);
        if (!c->closed && !c->closing)
            process(c);
    }
}

/* ---- accepting ---- */

static int conn_slot(tr_http_worker *hw, uint32_t *idx)
{
    if (hw->n_free > 0) {
        *idx = hw->free_idx[--hw->n_free];
        return 0;
    }
    if (hw->n_conns == hw->cap_conns) {
        uint32_t cap = hw->cap_conns ? hw->cap_conns * 2 : 64;
        tr_http_conn **v = tr_realloc(hw->conns, cap * sizeof *v);
        if (v == NULL)
            return TR_ENOMEM;
        hw->conns = v;
        uint32_t *f = tr_realloc(hw->free_idx, cap * sizeof *f);
        if (f == NULL)
            return TR_ENOMEM;
        hw->free_idx = f;
        hw->cap_conns = cap;
    }
    *idx = hw->n_conns++;
    return 0;
}

/* Accepts one pending connection (the listener has one: libuv said so). */
void tr__http_accept(tr_http_worker *hw)
{
    uv_once(&settings_once, settings_init);
    if (hw->live_conns >= hw->srv->o.max_conns) {
        /* Not accepting makes libuv stop watching the listener until uv_accept. */
        hw->accept_paused = 1;
        return;
    }
    hw->accept_paused = 0;
    tr_http_conn *c = tr_malloc(sizeof *c);
    uint32_t idx;
    if (c == NULL || conn_slot(hw, &idx) < 0) {
        tr_free(c);
        hw->accept_paused = 1;      /* retried when a connection closes */
        return;
    }
    memset(c, 0, sizeof *c);
    c->hw = hw;
    c->index = idx;
    hw->conns[idx] = c;
    hw->live_conns++;
    tr__http_conn_count(hw);
    uv_loop_t *loop = hw->listener.loop;
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    c->handles = 2;
    c->tcp.data = c->timer.data = c->wreq.data = c;
    c->req.c = c;
    if (uv_accept((uv_stream_t *)&hw->listener, (uv_stream_t *)&c->tcp) != 0) {
        tr__http_conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->ip, sizeof c->ip);
        else
            uv_ip4_name((struct sockaddr_in *)&ss, c->ip, sizeof c->ip);
    }
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
    timer_arm(c, hw->srv->o.idle_timeout_ms);
    start_reading(c);
}

/* ---- lookups for the binding ---- */

tr_http_req *tr_http_lookup(tr_http_worker *hw, uint64_t handle)
{
    uint32_t idx = (uint32_t)(handle >> 32), seq = (uint32_t)handle;
    if (hw == NULL || idx >= hw->n_conns)
        return NULL;
    tr_http_conn *c = hw->conns[idx];
    if (c == NULL || c->req.seq != seq || c->closed)
        return NULL;
    if (c->req.state != TR__RQ_RUNNING && c->req.state != TR__RQ_STREAMING)
        return NULL;
    return &c->req;
}

uint32_t tr_http_header_count(const tr_http_req *r)
{
    return r->nh;
}

int tr_http_header_at(const tr_http_req *r, uint32_t i, const char **name, size_t *nlen,
                      const char **value, size_t *vlen)
{
    if (i >= r->nh)
        return -1;
    const tr__hdr *h = &r->hdrs[i];
    *name = r->arena.data + h->no;
    *nlen = h->nl;
    *value = r->arena.data + h->vo;
    *vlen = h->vl;
    return 0;
}

/* The handler VM is gone: its requests will never end, so their conns go with the
 * handles (or now, when those are closed already). */
void tr__http_close_all(tr_http_worker *hw)
{
    for (uint32_t i = 0; i < hw->n_conns; i++) {
        tr_http_conn *c = hw->conns[i];
        if (c == NULL)
            continue;
        c->busy = 0;
        if (c->closed && c->handles == 0)
            conn_free(c);
        else
            tr__http_conn_close(c);
    }
}

void tr__http_abandon(tr_http_worker *hw, tr_http_vm *vm)
{
    for (uint32_t i = 0; i < hw->n_conns; i++) {
        tr_http_conn *c = hw->conns[i];
        if (c == NULL || !c->busy || c->req.vm != vm)
            continue;
        fprintf(stderr, "troupe: http %.*s (request %.*s): cancelled: its handler VM "
                "(generation %llu) was stopped\n", (int)c->req.url_len, c->req.arena.data,
                (int)c->req.id_len, c->req.id, (unsigned long long)vm->gen);
        c->busy = 0;
        if (c->closed && c->handles == 0)
            conn_free(c);
        else
            tr__http_conn_close(c);
    }
}

void tr__http_drain_conns(tr_http_worker *hw)
{
    for (uint32_t i = 0; i < hw->n_conns; i++) {
        tr_http_conn *c = hw->conns[i];
        if (c == NULL || c->closed)
            continue;
        if (c->busy || c->writing || c->linger == 2)
            c->closing = 1;     /* after its response: see tr__http_req_finished */
        else if (c->req.state == TR__RQ_PARSING)
            continue;           /* half-read: served, then closed (or its timer ends it) */
        else
            tr__http_conn_close(c);
    }
}
