/* http_int.h — structures shared by server.c, conn.c and response.c. Not installed. */
#ifndef TR_HTTP_INT_H
#define TR_HTTP_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include <llhttp.h>
#include <uv.h>

#include "http.h"
#include "lactor.h"

/* Request states. */
enum { TR__RQ_IDLE, TR__RQ_PARSING, TR__RQ_RUNNING, TR__RQ_STREAMING, TR__RQ_DONE };

typedef struct {
    uint32_t no, nl, vo, vl;       /* name and value: offsets into the arena */
} tr__hdr;

/* A handler VM: a Lua actor pinned to one worker, running one generation of the
 * app. The worker's current VM takes new requests; a replaced one finishes those it
 * has, then exits (or is cut off at the drain deadline). */
typedef struct tr_http_vm {
    tr_http_worker  *hw;
    tr_lactor       *la;           /* set when it starts on its worker */
    tr_ctx          *ctx;
    tr_pid           pid;
    uint64_t         gen;
    int              serve_ref, limit_ref;   /* app._serve, app._body_limit */
    uint32_t         inflight;
    uint64_t         retired_ms;   /* when it stopped taking requests; 0: never */
    int              exiting;
    _Atomic uint32_t pub_inflight; /* inflight, for the status */
    struct tr_http_vm *next;       /* in hw->retired */
    struct tr_http_vm *all_next;   /* in srv->vms (under vms_lock) */
} tr_http_vm;

/* The request being parsed or handled on a connection (one at a time). */
struct tr_http_req {
    tr_lactor_job    job;          /* first: the Lua job's completion */
    struct tr_http_conn *c;
    tr_http_vm      *vm;           /* the VM running it */
    uint32_t         seq;          /* in the handle: a stale handle never matches */
    int              state;
    uint8_t          method, keep_alive, head_only, body_expected;
    uint8_t          last_cb;      /* 1 after a header field piece, 2 after a value */
    uint8_t          http_minor;
    size_t           head_bytes;   /* request line + headers so far */
    tr_buf           arena;        /* url, then header names and values, then body */
    uint32_t         url_len;
    tr__hdr         *hdrs;
    uint32_t         nh, cap_h;
    size_t           body_off, body_len, body_limit;
    char             id[72];
    uint8_t          id_len;
};

typedef struct tr_http_conn {
    uv_tcp_t         tcp;          /* first: handle callbacks find the conn by it */
    uv_timer_t       timer;
    uv_write_t       wreq;
    tr_http_worker  *hw;
    uint32_t         index;        /* in hw->conns */
    uint8_t          handles;      /* open handles (tcp, timer): freed at 0 */
    uint8_t          closing;      /* no more requests: close once the output is out */
    uint8_t          closed;       /* uv_close called */
    uint8_t          reading, writing, processing, busy;
    uint8_t          linger;       /* 1: close slowly after the output; 2: doing so */
    uint8_t          eof;          /* the client half-closed: answer what it sent, close */
    uv_shutdown_t    sreq;
    uint64_t         deadline;     /* uv_now time the current wait ends; 0: none */
    uint64_t         timer_due;    /* when the uv timer was last set to fire */
    int              err_status;   /* set by a parser callback that refuses */
    llhttp_t         parser;
    const char      *exec_start;   /* obs-fold check (conn.c, fold_check): the input */
    const char      *scan_at;      /*   executing, the first byte not looked at, */
    uint8_t          in_fields;    /*   1 from a head's first field to its end, */
    uint8_t          fold;         /*   1: the last byte was LF; 2: a fold */
    char            *in;           /* read buffer: in[pos..len) is not parsed yet */
    size_t           in_len, in_pos, in_cap;
    tr_buf           out, wout;    /* responses being produced / being written */
    tr_http_req      req;
    char             ip[48];
} tr_http_conn;

struct tr_http_worker {
    struct tr_http_server *srv;
    tr_runtime      *rt;
    int              id;
    int              fd;           /* the bound socket until uv_tcp_open takes it */
    uv_tcp_t         listener;
    uv_timer_t       drain_timer;  /* cuts retired VMs off at the drain deadline */
    int              listening, accept_paused, stopped, timer_on;
    int              draining;     /* shutting down: no new connections or requests */
    tr_http_vm      *cur;          /* the VM taking new requests */
    tr_http_vm      *retired;      /* replaced VMs still finishing requests */
    _Atomic uint64_t cur_gen;      /* cur->gen, for threads waiting on a reload */
    _Atomic uint64_t cur_pid;      /* cur->pid, for the drain message */
    _Atomic uint32_t pub_conns;    /* live_conns, for threads waiting on a drain */
    _Atomic uint32_t pub_inflight; /* requests running on this worker */
    tr_http_conn   **conns;        /* handle index -> conn (NULL: free) */
    uint32_t         n_conns, cap_conns, live_conns;
    uint32_t        *free_idx;     /* free indices of conns */
    uint32_t         n_free;
    uint32_t         seq;
    tr_buf           scratch;
    time_t           date_sec;
    char             date[40];     /* "Date: ...\r\n" */
    size_t           date_len;
    char             id_prefix[32];
    size_t           id_prefix_len;
    uint64_t         requests;
};

typedef struct tr_http_server {
    tr_runtime      *rt;
    tr_http_config   o;
    tr_lvm_opts      vm;           /* of the handler VMs, from o.lua */
    pthread_mutex_t  lock;         /* reloads, one at a time; last_error */
    uint64_t         gen;          /* the newest generation started */
    uint64_t         reloads, reload_failures;
    int              draining;     /* tr_http_drain was called (under lock) */
    char             last_error[512];
    pthread_mutex_t  vms_lock;     /* the list of every VM alive, for the status */
    tr_http_vm      *vms;
    char            *script, *host, *lua_path;
    int              port;
    int              n;
    tr_http_worker  *w;            /* n of them */
} tr_http_server;

/* conn.c */
void tr__http_accept(tr_http_worker *hw);
void tr__http_conn_close(tr_http_conn *c);
void tr__http_req_finished(tr_http_req *r);
void tr__http_flush(tr_http_conn *c);
void tr__http_close_all(tr_http_worker *hw);

/* response.c */
int  tr__http_error_response(tr_http_conn *c, int status, const char *msg, int close);
const char *tr__http_reason(int status);

/* server.c */
int  tr__http_dispatch(tr_http_conn *c);
size_t tr__http_body_limit(tr_http_conn *c);
void tr__http_conn_count(tr_http_worker *hw);

/* conn.c: the VM's requests will never end (it exited): their conns close. */
void tr__http_abandon(tr_http_worker *hw, tr_http_vm *vm);
/* conn.c: shutting down: idle conns close now, busy ones after their response. */
void tr__http_drain_conns(tr_http_worker *hw);

#endif
