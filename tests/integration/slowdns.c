/* slowdns.c: an LD_PRELOAD shim for dns.sh. getaddrinfo for a name ending in
 * ".slow.test" sleeps SLOWDNS_MS (1500) and answers 127.0.0.1; one ending in
 * ".fail.test" sleeps as long and answers EAI_NONAME; any other name goes to libc.
 * A resolver that is slow, as one is when its server does not answer: whatever thread
 * calls getaddrinfo for such a name waits that long. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *,
                      struct addrinfo **);

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    gai_fn real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    if (node && (ends_with(node, ".slow.test") || ends_with(node, ".fail.test"))) {
        const char *ms_env = getenv("SLOWDNS_MS");
        long ms = ms_env ? atol(ms_env) : 1500;
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
        if (ends_with(node, ".fail.test"))
            return EAI_NONAME;
        struct addrinfo h;
        memset(&h, 0, sizeof h);
        if (hints)
            h = *hints;
        h.ai_family = AF_INET;
        h.ai_flags |= AI_NUMERICHOST;
        return real("127.0.0.1", service, &h, res);
    }
    return real(node, service, hints, res);
}
