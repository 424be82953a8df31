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

typedef struct tr_http_opts {
    const char *host;              /* listen address; NULL: 127.0.0.1 */
    int         port;
    const char *script;            /* the app script each handler VM loads */
    tr_lvm_opts vm;                /* memory cap and CPU budget of the handler VMs */
    size_t      max_head;          /* request line + headers; 0: 16 KB (431 beyond) */
    size_t      body_limit;        /* default body limit; 0: 1 MB (413 beyond) */
    uint32_t    header_timeout_ms; /* 0: 10 s (408) */
    uint32_t    body_timeout_ms;   /* 0: 60 s (408) */
    uint32_t    idle_timeout_ms;   /* keep-alive; 0: 5 s */
    uint32_t    max_conns;         /* per worker; 0: 10,000 (accepting pauses) */
    uint32_t    drain_ms;          /* a replaced generation's requests may run this
                                      long; 0: 30 s (then they are cancelled) */
    int         development;       /* error pages carry the Lua error */
} tr_http_opts;

/* Binds the port on every worker (errors come back here, with err filled), spawns
 * a handler VM per worker with the app script (a load error fails it too), and
 * starts serving. At most one server per runtime (TR_EEXIST). */
int tr_http_start(tr_runtime *rt, const tr_http_opts *opts, char *err, size_t errlen);

/* The port actually bound (useful with port 0), or -1 when no server runs. */
int tr_http_port(tr_runtime *rt);

/* Hot reload: loads the app script again as a new generation in fresh handler VMs
 * (one per worker). If any fails to load or its app:self_check() returns false, the
 * new generation is discarded, the old one keeps serving, and err says why (file and
 * line for a Lua error). Else new requests go to it while those in flight finish on
 * their generation. Not from a worker thread (it waits for every worker to switch).
 * 0, TR_ESTATE (no server), TR_EFAIL/TR_ENOMEM with err. *gen: the generation now. */
int tr_http_reload(tr_runtime *rt, char *err, size_t errlen, uint64_t *gen);

/* Graceful shutdown, first step: stop accepting, close idle connections, let the
 * requests in flight finish (their connections close after the response). Returns
 * when no connection is left (0) or deadline_ms passed (TR_ETIMEDOUT). Not from a
 * worker thread. */
int tr_http_drain(tr_runtime *rt, int deadline_ms);

/* The server's status as a JSON object (generation, connections, requests in flight
 * per generation, reloads, the last reload error). Returns snprintf's count. */
int tr_http_status(tr_runtime *rt, char *out, size_t n);

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
