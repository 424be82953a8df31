/* path.c — tr_lua_default_path: the package.path that finds the troupe framework.
 *
 * The framework (the .lua files of scripts/troupe/ in the source tree, of
 * PREFIX/share/troupe/lua/troupe/ once installed) is looked for next to the file
 * libtroupe was loaded from (libtroupe.so, or the program itself when it links
 * libtroupe.a), then next to the program
 * (/proc/self/exe): the troupe command and an embedder find it the same way, in the
 * source tree (build/, build/asan/, build/asan/tests/) and installed (bin/, lib/).
 */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "troupe.h"
#include "vm.h"

/* Into dir (PATH_MAX): the framework's directory below the directory of file, or "". */
static int probe_from(const char *file, char *dir)
{
    char real[PATH_MAX], cand[PATH_MAX + 64];
    static const char *const rel[] = { "/../share/troupe/lua", "/../scripts", "/../../scripts",
                                       "/../../../scripts" };
    if (file == NULL || file[0] == '\0' || realpath(file, real) == NULL)
        return 0;
    char *slash = strrchr(real, '/');
    if (slash == NULL)
        return 0;
    *slash = '\0';
    for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) {
        snprintf(cand, sizeof cand, "%s%s/troupe/app.lua", real, rel[i]);
        if (access(cand, R_OK) == 0) {
            snprintf(cand, sizeof cand, "%s%s", real, rel[i]);
            if (realpath(cand, dir) != NULL)
                return 1;
        }
    }
    return 0;
}

int tr_lua_default_path(char *out, size_t n, const char *script_dir)
{
    char fw[PATH_MAX] = "";
    Dl_info info;
    if (!(dladdr((void *)tr_lua_default_path, &info) && probe_from(info.dli_fname, fw)))
        probe_from("/proc/self/exe", fw);
    const char *extra = getenv("TROUPE_LUA_PATH");
    const char *dir = script_dir && script_dir[0] ? script_dir : ".";
    int len;
    if (fw[0])
        len = snprintf(out, n, "%s%s%s/?.lua;%s/?/init.lua;%s/?.lua;%s/?/init.lua;./?.lua",
                       extra ? extra : "", extra ? ";" : "", fw, fw, dir, dir);
    else
        len = snprintf(out, n, "%s%s%s/?.lua;%s/?/init.lua;./?.lua",
                       extra ? extra : "", extra ? ";" : "", dir, dir);
    return len < 0 || (size_t)len >= n ? TR_EINVAL : 0;
}

int tr__lua_script_path(char *out, size_t n, const char *script)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(script, '/');
    size_t len = slash ? (size_t)(slash - script) : 0;
    if (len >= sizeof dir)
        return TR_EINVAL;
    memcpy(dir, script, len);
    dir[len] = '\0';
    if (slash && len == 0)
        snprintf(dir, sizeof dir, "/");
    return tr_lua_default_path(out, n, slash ? dir : ".");
}
