/*
 * registry.c — names for actors (Erlang's register/whereis). A hash table under one
 * mutex: names are looked up far less often than messages are sent, and a lookup
 * returns a pid, which stays safe to use after the lock is released.
 */
#include <string.h>

#include "internal.h"

typedef struct tr__name {
    struct tr__name *next;
    tr_pid           pid;
    char             name[];
} tr__name;

#define NAME_MAX_LEN 255

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;          /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

int tr__registry_init(tr_runtime *rt)
{
    rt->names_cap = 64;
    rt->names = tr_malloc(sizeof(tr__name *) * rt->names_cap);
    if (rt->names == NULL)
        return TR_ENOMEM;
    memset(rt->names, 0, sizeof(tr__name *) * rt->names_cap);
    if (pthread_mutex_init(&rt->names_lock, NULL) != 0) {
        tr_free(rt->names);
        return TR_ESYS;
    }
    return 0;
}

void tr__registry_close(tr_runtime *rt)
{
    for (uint32_t i = 0; i < rt->names_cap; i++)
        for (tr__name *n = rt->names[i], *next; n; n = next) {
            next = n->next;
            tr_free(n);
        }
    tr_free(rt->names);
    pthread_mutex_destroy(&rt->names_lock);
}

/* The bucket link that points at name's entry (or at the NULL ending the chain). */
static tr__name **find(tr_runtime *rt, const char *name)
{
    tr__name **p = &rt->names[hash(name) & (rt->names_cap - 1)];
    while (*p && strcmp((*p)->name, name) != 0)
        p = &(*p)->next;
    return p;
}

static void grow(tr_runtime *rt)
{
    uint32_t cap = rt->names_cap * 2;
    tr__name **v = tr_malloc(sizeof(tr__name *) * cap);
    if (v == NULL)
        return;   /* longer chains, still correct */
    memset(v, 0, sizeof(tr__name *) * cap);
    for (uint32_t i = 0; i < rt->names_cap; i++)
        for (tr__name *n = rt->names[i], *next; n; n = next) {
            next = n->next;
            uint32_t b = hash(n->name) & (cap - 1);
            n->next = v[b];
            v[b] = n;
        }
    tr_free(rt->names);
    rt->names = v;
    rt->names_cap = cap;
}

int tr_register(tr_runtime *rt, const char *name, tr_pid pid)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > NAME_MAX_LEN)
        return TR_EINVAL;
    if (!tr_alive(rt, pid))
        return TR_ENOPROC;
    int rc = 0;
    pthread_mutex_lock(&rt->names_lock);
    tr__name **p = find(rt, name);
    if (*p) {
        if (tr_alive(rt, (*p)->pid)) {
            rc = TR_EEXIST;
        } else {
            (*p)->pid = pid;   /* its actor is exiting: the name is free */
        }
        goto out;
    }
    tr__name *n = tr_malloc(sizeof(*n) + len + 1);
    if (n == NULL) {
        rc = TR_ENOMEM;
        goto out;
    }
    memcpy(n->name, name, len + 1);
    n->pid = pid;
    n->next = NULL;
    *p = n;
    if (atomic_fetch_add(&rt->n_names, 1) + 1 > rt->names_cap)
        grow(rt);
out:
    pthread_mutex_unlock(&rt->names_lock);
    return rc;
}

int tr_unregister(tr_runtime *rt, const char *name)
{
    if (name == NULL)
        return TR_EINVAL;
    pthread_mutex_lock(&rt->names_lock);
    tr__name **p = find(rt, name), *n = *p;
    if (n) {
        *p = n->next;
        atomic_fetch_sub(&rt->n_names, 1);
    }
    pthread_mutex_unlock(&rt->names_lock);
    tr_free(n);
    return n ? 0 : TR_ENOPROC;
}

tr_pid tr_whereis(tr_runtime *rt, const char *name)
{
    if (name == NULL)
        return TR_PID_NONE;
    pthread_mutex_lock(&rt->names_lock);
    tr__name *n = *find(rt, name);
    tr_pid pid = n ? n->pid : TR_PID_NONE;
    pthread_mutex_unlock(&rt->names_lock);
    return pid && tr_alive(rt, pid) ? pid : TR_PID_NONE;
}

/* An actor exited: its names go. */
void tr__registry_drop_pid(tr_runtime *rt, tr_pid pid)
{
    if (atomic_load_explicit(&rt->n_names, memory_order_relaxed) == 0)
        return;
    tr__name *dead = NULL;
    pthread_mutex_lock(&rt->names_lock);
    for (uint32_t i = 0; i < rt->names_cap; i++)
        for (tr__name **p = &rt->names[i]; *p;) {
            tr__name *n = *p;
            if (n->pid == pid) {
                *p = n->next;
                n->next = dead;
                dead = n;
                atomic_fetch_sub(&rt->n_names, 1);
            } else {
                p = &n->next;
            }
        }
    pthread_mutex_unlock(&rt->names_lock);
    while (dead) {
        tr__name *next = dead->next;
        tr_free(dead);
        dead = next;
    }
}
