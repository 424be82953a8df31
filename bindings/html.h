/* html.h — the troupe.html module (bindings/html.c): HTML escaping. */
#ifndef TR_BINDINGS_HTML_H
#define TR_BINDINGS_HTML_H

#include <lua.h>

/* The troupe.html module (package.preload["troupe.html"]). */
int luaopen_troupe_html(lua_State *L);

#endif
