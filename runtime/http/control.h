/* control.h — reaching a running server: control socket, admin endpoint, --watch. */
#ifndef TR_HTTP_CONTROL_H
#define TR_HTTP_CONTROL_H

#include "troupe.h"

typedef struct tr_control_opts {
    const char *control_path;  /* unix socket for `troupe reload|status`; NULL: none */
    const char *admin_host;    /* admin HTTP endpoint (loopback only); NULL: off */
    int         admin_port;    /*   0: any free port (tr_control_admin_port) */
    const char *watch_dir;     /* reload when a .lua file in it changes; NULL: off */
} tr_control_opts;

/* Starts the control thread (one per process). 0, or an error with err filled. */
int  tr_control_start(tr_runtime *rt, const tr_control_opts *o, char *err, size_t errlen);
/* Stops it and removes the control socket. */
void tr_control_stop(void);
int  tr_control_admin_port(void);

/* A reload of everything (the HTTP app's generation and changed actor scripts), as
 * SIGHUP, `troupe reload` and the admin endpoint do; out gets a JSON line. 0 or -1.
 * Not from a worker thread. */
int  tr_control_reload(tr_runtime *rt, char *out, size_t n);

#endif
