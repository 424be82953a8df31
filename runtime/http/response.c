/*
 * response.c — response heads and bodies, written into the connection's output
 * buffer (conn.c sends it). Header names and values from Lua are checked so that no
 * value can split the response (no CR, LF or NUL; names are tokens).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "http_int.h"

const char *tr__http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 418: return "I'm a teapot";
    case 421: return "Misdirected Request";
    case 423: return "Locked";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 451: return "Unavailable For Legal Reasons";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default:  return status < 400 ? "OK" : status < 500 ? "Error" : "Server Error";
    }
}

/* "Date: <IMF-fixdate>\r\n", formatted once a second per worker. */
static void date_refresh(tr_http_worker *hw)
{
    time_t now = time(NULL);
    if (now == hw->date_sec)
        return;
    hw->date_sec = now;
    struct tm tm;
    gmtime_r(&now, &tm);
    hw->date_len = strftime(hw->date, sizeof hw->date, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n",
                            &tm);
}

static int token_char(unsigned char ch)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr(extra, ch) != NULL);
}

static int header_ok(const tr_http_hdr *h)
{
    if (h->nlen == 0)
        return 0;
    for (size_t i = 0; i < h->nlen; i++)
        if (!token_char((unsigned char)h->name[i]))
            return 0;
    for (size_t i = 0; i < h->vlen; i++) {
        unsigned char ch = (unsigned char)h->value[i];
        if (ch == '\r' || ch == '\n' || ch == '\0')
            return 0;
    }
    return 1;
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

/* Writes v in decimal at p; returns the length. */
static size_t put_uint(char *p, unsigned long long v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

#define PUT(s, n) do { memcpy(o->data + o->len, (s), (n)); o->len += (n); } while (0)
#define PUTS(lit) PUT(lit, sizeof(lit) - 1)

/* Appends the head; body_len < 0: chunked. */
static int write_head(tr_http_req *r, int status, const char *ctype, size_t ctlen,
                      const tr_http_hdr *h, size_t nh, long long body_len)
{
    tr_http_conn *c = r->c;
    tr_http_worker *hw = c->hw;
    if (status < 100 || status > 999 || status == 100 || status == 101)
        return TR_EINVAL;
    size_t need = 256 + ctlen + r->id_len;
    for (size_t i = 0; i < nh; i++) {
        if (!header_ok(&h[i]))
            return TR_EINVAL;
        /* What the server writes itself is not the handler's to set. */
        if (ieq(h[i].name, h[i].nlen, "content-length") ||
            ieq(h[i].name, h[i].nlen, "transfer-encoding") ||
            ieq(h[i].name, h[i].nlen, "connection"))
            return TR_EINVAL;
        need += h[i].nlen + h[i].vlen + 4;
    }
    for (size_t i = 0; i < ctlen; i++)
        if (ctype[i] == '\r' || ctype[i] == '\n' || ctype[i] == '\0')
            return TR_EINVAL;
    tr_buf *o = &c->out;
    if (tr_buf_reserve(o, need))
        return TR_ENOMEM;
    date_refresh(hw);
    const char *reason = tr__http_reason(status);
    PUTS("HTTP/1.1 ");
    o->len += put_uint(o->data + o->len, (unsigned)status);
    PUTS(" ");
    PUT(reason, strlen(reason));
    PUTS("\r\n");
    PUTS("Server: troupe\r\n");
    PUT(hw->date, hw->date_len);
    if (ctlen) {
        PUTS("Content-Type: ");
        PUT(ctype, ctlen);
        PUTS("\r\n");
    }
    for (size_t i = 0; i < nh; i++) {
        PUT(h[i].name, h[i].nlen);
        PUTS(": ");
        PUT(h[i].value, h[i].vlen);
        PUTS("\r\n");
    }
    if (body_len >= 0) {
        PUTS("Content-Length: ");
        o->len += put_uint(o->data + o->len, (unsigned long long)body_len);
        PUTS("\r\n");
    }
    else if (body_len == -1)
        PUTS("Transfer-Encoding: chunked\r\n");
    PUTS("X-Request-Id: ");
    PUT(r->id, r->id_len);
    PUTS("\r\n");
    if (!r->keep_alive || hw->draining)
        PUTS("Connection: close\r\n");
    else if (r->http_minor == 0)
        PUTS("Connection: keep-alive\r\n");
    PUTS("\r\n");
    return 0;
}

int tr_http_respond(tr_http_req *r, int status, const char *ctype, size_t ctlen,
                    const tr_http_hdr *h, size_t nh, const char *body, size_t blen)
{
    if (r->state != TR__RQ_RUNNING)
        return TR_ESTATE;
    size_t mark = r->c->out.len;
    int bodyless = status == 204 || status == 304 || (status >= 100 && status < 200);
    int rc = write_head(r, status, ctype, ctlen, h, nh, bodyless ? -2 : (long long)blen);
    if (rc == 0 && !r->head_only && !bodyless && tr_buf_append(&r->c->out, body, blen))
        rc = TR_ENOMEM;
    if (rc < 0) {
        r->c->out.len = mark;
        return rc;
    }
    r->state = TR__RQ_DONE;
    return 0;
}

int tr_http_stream_begin(tr_http_req *r, int status, const char *ctype, size_t ctlen,
                         const tr_http_hdr *h, size_t nh)
{
    if (r->state != TR__RQ_RUNNING)
        return TR_ESTATE;
    size_t mark = r->c->out.len;
    int rc = write_head(r, status, ctype, ctlen, h, nh, -1);
    if (rc < 0) {
        r->c->out.len = mark;
        return rc;
    }
    r->state = TR__RQ_STREAMING;
    tr__http_flush(r->c);
    return 0;
}

int tr_http_stream_write(tr_http_req *r, const char *data, size_t len)
{
    if (r->state != TR__RQ_STREAMING)
        return TR_ESTATE;
    if (len == 0 || r->head_only)
        return 0;
    tr_buf *o = &r->c->out;
    if (tr_buf_reserve(o, len + 24))
        return TR_ENOMEM;
    o->len += (size_t)snprintf(o->data + o->len, 20, "%zx\r\n", len);
    PUT(data, len);
    PUTS("\r\n");
    tr__http_flush(r->c);
    return 0;
}

int tr_http_stream_end(tr_http_req *r)
{
    if (r->state != TR__RQ_STREAMING)
        return TR_ESTATE;
    if (!r->head_only && tr_buf_append(&r->c->out, "0\r\n\r\n", 5))
        return TR_ENOMEM;
    r->state = TR__RQ_DONE;
    return 0;
}

int tr_http_started(const tr_http_req *r)
{
    return r->state == TR__RQ_STREAMING || r->state == TR__RQ_DONE;
}

int tr_http_streaming(const tr_http_req *r)
{
    return r->state == TR__RQ_STREAMING;
}

/* A response the server makes itself (a refused or failed request): a JSON error
 * body the seeds' way. close: the connection ends after it (lingering). */
int tr__http_error_response(tr_http_conn *c, int status, const char *msg, int close)
{
    tr_http_req *r = &c->req;
    char text[160], body[256];
    size_t k = 0;
    for (const char *p = msg; *p && k < sizeof text - 2; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch < 0x20)
            continue;
        if (ch == '"' || ch == '\\')
            text[k++] = '\\';
        text[k++] = (char)ch;
    }
    text[k] = '\0';
    int n = snprintf(body, sizeof body, "{\"success\":false,\"error\":\"%s\"}", text);
    if (close) {
        r->keep_alive = 0;
        c->closing = 1;
        c->linger = 1;
    }
    if (r->id_len == 0) {
        memcpy(r->id, "-", 1);
        r->id_len = 1;
    }
    int was = r->state;
    r->state = TR__RQ_RUNNING;
    int rc = tr_http_respond(r, status, "application/json", 16, NULL, 0, body, (size_t)n);
    if (rc < 0)
        r->state = was;
    return rc;
}
