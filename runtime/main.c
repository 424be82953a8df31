/* main.c — the troupe command: a thin embedder of libtroupe. The Lua host (issue:
 * "Lua actors") adds `run`, `test` and `eval`; this build answers --version/--help. */
#include <stdio.h>
#include <string.h>

#include "troupe.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: troupe --version | --help\n"
            "troupe " TROUPE_VERSION ": an actor runtime (C core; the Lua host is not built yet)\n");
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("troupe %s\n", TROUPE_VERSION);
        return 0;
    }
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
