/* http.h — the HTTP/1.1 server (runtime/http): listeners, connections, responses.
 *
 * One listener per worker on the same port (SO_REUSEPORT); each worker's handler VM
 * (a Lua actor pinned to it) owns the listener and the connections the kernel gives
 * that worker, so a request never leaves the thread that read it. Requests on one
 * connection are handled one at a time, in order: pipelined requests wait in the
 * read buffer, and the responses produced in one pass go out in one write.
 */
#ifndef TR_HTTP_H
#define TR_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "codec.h"
#include "troupe.h"
#include "vm.h"

/* The server's public API (tr_http_config, tr_http_start, _port, _reload, _drain,
 * _status) is in troupe.h. */

/* ---- for the Lua binding (bindings/http.c) ---- */

typedef struct tr_http_worker tr_http_worker;
typedef struct tr_http_req tr_http_req;

/* The worker state of the handler VM whose state is L (NULL outside one). */
tr_http_worker *tr_http_worker_of(lua_State *L);
/* The request a handle names, or NULL when it is over or its client is gone. */
tr_http_req *tr_http_lookup(tr_http_worker *hw, uint64_t handle);

/* The n-th header (0-based): 0, or -1 past the end. */
int  tr_http_header_at(const tr_http_req *r, uint32_t i, const char **name, size_t *nlen,
                       const char **value, size_t *vlen);
uint32_t tr_http_header_count(const tr_http_req *r);

typedef struct tr_http_hdr {
    const char *name, *value;
    size_t      nlen, vlen;
} tr_http_hdr;

/* Whether a response (or a stream) was started for r. */
int  tr_http_started(const tr_http_req *r);

/* Sends the whole response. The server adds Server, Date, Content-Length,
 * X-Request-Id and Connection. 0, TR_EINVAL (bad status, or a header name or value
 * that could split the response), TR_ESTATE (already responded), TR_ENOMEM. */
int  tr_http_respond(tr_http_req *r, int status, const char *ctype, size_t ctlen,
                     const tr_http_hdr *h, size_t nh, const char *body, size_t blen);
/* A scratch buffer of the worker, for a body produced in place (JSON): reset by
 * the caller before use, valid until the next call into the server. */
tr_buf *tr_http_scratch(tr_http_worker *hw);

/* Streaming (chunked): begin sends the head; write sends a chunk (empty chunks are
 * skipped); end sends the last chunk. Same errors as tr_http_respond. */
int  tr_http_stream_begin(tr_http_req *r, int status, const char *ctype, size_t ctlen,
                          const tr_http_hdr *h, size_t nh);
int  tr_http_stream_write(tr_http_req *r, const char *data, size_t len);
int  tr_http_stream_end(tr_http_req *r);
int  tr_http_streaming(const tr_http_req *r);

#endif
