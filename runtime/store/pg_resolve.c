/* pg_resolve.c — a connection's host name, looked up off the worker thread.
 *
 * libpq resolves a host name with a blocking getaddrinfo inside PQconnectPoll, on the
 * thread that polls: the worker's, where a resolver that does not answer would stop
 * every request and actor of that worker. When the pool's URL names one host
 * (pg.c: resolvable_host), a new connection starts here instead: uv_getaddrinfo on
 * libuv's thread pool, then libpq with host repeated once per address found and
 * hostaddr listing them, so that libpq tries each in turn (as after its own lookup)
 * and still checks certificates and .pgpass against the name.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "pg_int.h"

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res);

enum { MAX_ADDRS = 8 };

/* 1 if addr is one of the comma-separated entries of list[0..n). */
static int listed(const char *list, size_t n, const char *addr)
{
    size_t len = strlen(addr);
    for (size_t i = 0; i + len <= n; i++)
        if ((i == 0 || list[i - 1] == ',') && memcmp(list + i, addr, len) == 0 &&
            (i + len == n || list[i + len] == ','))
            return 1;
    return 0;
}

/* libpq's conninfo with the addresses found for the host: host repeated once per
 * address and hostaddr listing them, so libpq tries each in turn as it does after
 * its own lookup, and still checks certificates and .pgpass against the name. */
static PGconn *pq_start_resolved(pg_pool *p, const struct addrinfo *res, tr_pg_error **err)
{
    char addrs[MAX_ADDRS * (INET6_ADDRSTRLEN + 1)], hosts[MAX_ADDRS * 256];
    size_t na = 0, nh = 0, n = 0, nkw = 0;
    const char *name = p->resolve_host;
    for (const struct addrinfo *a = res; a && n < MAX_ADDRS; a = a->ai_next) {
        const void *in = a->ai_family == AF_INET
                             ? (const void *)&((const struct sockaddr_in *)a->ai_addr)->sin_addr
                             : (const void *)&((const struct sockaddr_in6 *)a->ai_addr)->sin6_addr;
        char one[INET6_ADDRSTRLEN];
        if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) ||
            inet_ntop(a->ai_family, in, one, sizeof one) == NULL ||
            listed(addrs, na, one))              /* one per address, not per socktype */
            continue;
        na += (size_t)snprintf(addrs + na, sizeof addrs - na, "%s%s", n ? "," : "", one);
        nh += (size_t)snprintf(hosts + nh, sizeof hosts - nh, "%s%s", n ? "," : "", name);
        n++;
    }
    if (n == 0) {
        *err = tr__pg_error_new("08001", 1, "cannot connect: could not translate host name "
                                "\"%s\" to address: no IPv4 or IPv6 address", name);
        return NULL;
    }
    while (p->kw[nkw])
        nkw++;
    const char **kw = tr_malloc(sizeof(char *) * 2 * (nkw + 2));
    if (kw == NULL) {
        *err = tr__pg_error_new("53200", 0, "out of memory");
        return NULL;
    }
    const char **val = kw + nkw + 2;
    for (size_t i = 0; i < nkw; i++) {
        kw[i] = p->kw[i];
        val[i] = strcmp(p->kw[i], "host") == 0 ? hosts : p->val[i];
    }
    kw[nkw] = "hostaddr";
    val[nkw] = addrs;
    kw[nkw + 1] = val[nkw + 1] = NULL;
    PGconn *pq = tr__pg_pq_start(kw, val, err);
    tr_free(kw);
    return pq;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    tr_pg_conn *c = req->data;
    pg_pool *p = c->pool;
    c->resolving = 0;
    p->resolving--;
    if (c->closed) {               /* timed out, or the pool is closing */
        uv_freeaddrinfo(res);
        if (--c->handles == 0)
            tr__pg_conn_gone(p, c);
        return;
    }
    c->handles--;
    tr__pg_enter(p);
    tr_pg_error *err = NULL;
    if (c->gen != p->conn_gen) {   /* the settings changed meanwhile: connect with them */
        uv_freeaddrinfo(res);
        c->gen = p->conn_gen;
        if (p->kw == NULL)
            err = tr__pg_error_new("08001", 1, "cannot connect: %s",
                                   p->cfg_err[0] ? p->cfg_err : "no connection settings");
        else if (p->resolve_host)
            tr__pg_lookup(c);
        else if ((c->pq = tr__pg_pq_start(p->kw, p->val, &err)) != NULL &&
                 tr__pg_conn_watch(c, UV_WRITABLE, 1) < 0)
            tr__pg_connect_failed(c, "cannot watch the socket");
        if (err) {
            tr__pg_conn_failed(p, c, err, 0);
            tr_pg_error_free(err);
        }
        tr__pg_leave(p);
        return;
    }
    if (status < 0)
        err = tr__pg_error_new("08001", 1, "cannot connect: could not translate host name "
                               "\"%s\" to address: %s", p->resolve_host, uv_strerror(status));
    else
        c->pq = pq_start_resolved(p, res, &err);
    uv_freeaddrinfo(res);
    if (c->pq == NULL) {
        tr__pg_conn_failed(p, c, err, 0);
        tr_pg_error_free(err);
    } else if (tr__pg_conn_watch(c, UV_WRITABLE, 1) < 0) {
        tr__pg_connect_failed(c, "cannot watch the socket");
    }
    tr__pg_leave(p);
}

void tr__pg_lookup(tr_pg_conn *c)
{
    pg_pool *p = c->pool;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    c->gai.data = c;
    int rc = uv_getaddrinfo(p->loop, &c->gai, on_resolved, p->resolve_host, NULL, &hints);
    if (rc < 0) {
        char why[320];
        snprintf(why, sizeof why, "could not translate host name \"%s\" to address: %s",
                 p->resolve_host, uv_strerror(rc));
        tr__pg_connect_failed(c, why);
        return;
    }
    c->resolving = 1;
    c->handles++;
    p->resolving++;
}
