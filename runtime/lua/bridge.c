/* bridge.c — Lua actors for C programs: spawn one from a script, talk to it in JSON.
 *
 * A Lua actor's messages are codec-encoded Lua values (codec.c); a C program has no
 * Lua state to build them in. The bridge converts at the edge: JSON text in, through a
 * scratch lua_State of the calling thread (kept for the thread's next call, closed
 * when the thread exits), to the codec bytes the actor reads; its reply the other way
 * round. What the actor's handle(state, msg) returns is the reply; an error it raises
 * comes back as TR_EFAIL with the error's text.
 */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "json.h"
#include "lactor.h"

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_close(void *L)
{
    lua_close(L);
}

static void scratch_init(void)
{
    pthread_key_create(&scratch_key, scratch_close);
}

/* The calling thread's scratch state (plain: no libraries, nothing runs in it). */
static lua_State *scratch(void)
{
    pthread_once(&scratch_once, scratch_init);
    lua_State *L = pthread_getspecific(scratch_key);
    if (L == NULL && (L = luaL_newstate()) != NULL &&
        pthread_setspecific(scratch_key, L) != 0) {
        lua_close(L);
        L = NULL;
    }
    if (L)
        lua_settop(L, 0);
    return L;
}

static int fail(char *err, size_t errlen, int rc, const char *what)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", what);
    return rc;
}

int tr_spawn_lua(tr_runtime *rt, const char *script, const tr_lua_config *cfg,
                 const tr_spawn_opts *opts, tr_pid *pid, char *err, size_t errlen)
{
    if (script == NULL || pid == NULL)
        return fail(err, errlen, TR_EINVAL, "no script");
    char path[4 * PATH_MAX];
    const char *lua_path = cfg ? cfg->lua_path : NULL;
    if (lua_path == NULL) {
        if (tr__lua_script_path(path, sizeof path, script) < 0)
            return fail(err, errlen, TR_EINVAL, "the default package.path is too long");
        lua_path = path;
    }
    tr_lua_spawn req;
    memset(&req, 0, sizeof req);
    req.script = script;
    req.vm.lua_path = lua_path;
    if (cfg) {
        req.vm.mem_limit = cfg->mem_limit;
        req.vm.budget_ms = cfg->budget_ms;
        req.vm.unsafe = cfg->unsafe != 0;
    }
    int rc = tr_lua_spawn_actor(rt, &req, opts, pid);
    if (rc < 0)
        fail(err, errlen, rc, req.err[0] ? req.err : tr_strerror(rc));
    return rc;
}

/* The codec bytes of the JSON text, into out. */
static int encode(lua_State *L, const char *json, size_t len, tr_buf *out, char *err,
                  size_t errlen)
{
    const char *why = NULL;
    int rc = tr_json_decode_protected(L, json, len, &why);
    if (rc < 0)
        return fail(err, errlen, rc, why ? why : tr_strerror(rc));
    rc = tr_codec_encode(L, -1, out, &why);
    lua_settop(L, 0);
    if (rc < 0)
        return fail(err, errlen, rc, why ? why : tr_strerror(rc));
    return 0;
}

int tr_lua_send_json(tr_runtime *rt, tr_pid to, const char *json, size_t len, char *err,
                     size_t errlen)
{
    lua_State *L = scratch();
    if (L == NULL)
        return fail(err, errlen, TR_ENOMEM, "out of memory");
    tr_buf b = { 0 };
    int rc = encode(L, json, len, &b, err, errlen);
    if (rc == 0 && (rc = tr_send(rt, to, TR_LUA_TAG_VALUE, b.data, b.len)) < 0)
        fail(err, errlen, rc, tr_strerror(rc));
    tr_buf_free(&b);
    return rc;
}

int tr_lua_call_json(tr_runtime *rt, tr_pid to, const char *json, size_t len,
                     int timeout_ms, char **reply, size_t *reply_len, char *err,
                     size_t errlen)
{
    *reply = NULL;
    if (reply_len)
        *reply_len = 0;
    lua_State *L = scratch();
    if (L == NULL)
        return fail(err, errlen, TR_ENOMEM, "out of memory");
    tr_buf b = { 0 };
    int rc = encode(L, json, len, &b, err, errlen);
    if (rc < 0)
        return rc;
    tr_msg *m = NULL;
    rc = tr_call_sync(rt, to, TR_LUA_TAG_VALUE, b.data, b.len, timeout_ms, &m);
    tr_buf_free(&b);
    if (rc < 0)
        return fail(err, errlen, rc, tr_strerror(rc));
    if (m->tag == TR_LUA_TAG_ERROR) {          /* the handler raised: its message */
        if (err && errlen)
            snprintf(err, errlen, "%.*s", (int)m->size, (const char *)m->data);
        tr_msg_free(m);
        return TR_EFAIL;
    }
    const char *why = NULL;
    if (m->tag != TR_LUA_TAG_VALUE ||
        (rc = tr_codec_decode_protected(L, m->data, m->size, &why)) < 0) {
        tr_msg_free(m);
        return fail(err, errlen, rc < 0 ? rc : TR_EINVAL,
                    why ? why : "the reply is not a Lua value");
    }
    tr_msg_free(m);
    rc = tr_json_encode(L, -1, &b, &why);
    lua_settop(L, 0);
    if (rc < 0 || tr_buf_append(&b, "", 1) < 0) {     /* NUL-terminated for C */
        tr_buf_free(&b);
        return fail(err, errlen, rc < 0 ? rc : TR_ENOMEM,
                    rc < 0 && why ? why : "out of memory");
    }
    *reply = (char *)b.data;
    if (reply_len)
        *reply_len = b.len - 1;
    return 0;
}
