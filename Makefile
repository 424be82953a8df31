# troupe — the one build entry point.
#   make                 build/troupe, build/libtroupe.{a,so}, build/troupe.pc
#   make test            deps, build, every suite; ends with "N passed, N failed"
#   make check-san       unit, spec, HTTP, reload and dns suites under SAN=asan and SAN=tsan
#   make run | bench | bench-actors | install PREFIX=... | clean
#   SAN=asan|tsan        build into build/asan or build/tsan
# Sources and warnings are listed explicitly.

CC      ?= cc
PREFIX  ?= /usr/local
SAN     ?=
MODE    ?= release

ifeq ($(SAN),asan)
  B        := build/asan
  SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else ifeq ($(SAN),tsan)
  B        := build/tsan
  SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer
else ifeq ($(MODE),debug)
  B        := build/debug
  SANFLAGS :=
else
  B        := build
  SANFLAGS :=
endif

ifeq ($(MODE),debug)
  OPT := -O0 -g3
else ifneq ($(SAN),)
  OPT := -O1 -g
else
  OPT := -O2 -g
endif

WARN := -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
        -Wpointer-arith -Wcast-align -Wwrite-strings -Wformat=2 -Wundef \
        -Wvla -Wnull-dereference -Wimplicit-fallthrough -Werror=implicit-function-declaration

PKGS     := libuv lua5.4 hiredis libpq
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

# llhttp: generated C from Debian's node-llhttp, compiled as it is (its own flags:
# it is not our code and is not warning-clean), never copied into the repository.
LLHTTP_DIR := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp

CFLAGS_ALL := -std=c11 -D_GNU_SOURCE -fPIC -pthread $(OPT) $(SANFLAGS) $(WARN) \
              -Iruntime -Iruntime/core -Iruntime/lua -Iruntime/http -Iruntime/store -Ibindings -I$(LLHTTP_INC) \
              $(PKG_CFLAGS) $(CFLAGS)
LDFLAGS_ALL := -pthread $(SANFLAGS) $(LDFLAGS)
LIBS := $(PKG_LIBS) -lm

CORE_SRC := runtime/core/error.c runtime/core/alloc.c runtime/core/runtime.c \
            runtime/core/table.c runtime/core/worker.c runtime/core/actor.c \
            runtime/core/message.c runtime/core/signal.c runtime/core/timer.c \
            runtime/core/call.c runtime/core/pool.c \
            runtime/core/registry.c
LUA_SRC  := runtime/lua/codec.c runtime/lua/vm.c runtime/lua/budget.c runtime/lua/chunks.c runtime/lua/lactor.c runtime/lua/path.c runtime/lua/bridge.c bindings/actor.c bindings/json.c bindings/json_encode.c bindings/json_decode.c \
            bindings/html.c
HTTP_SRC := runtime/http/server.c runtime/http/conn.c runtime/http/response.c \
            runtime/http/control.c bindings/http.c
STORE_SRC := runtime/store/redis.c runtime/store/redis_conn.c runtime/store/redis_sub.c bindings/redis.c
STORE_SRC += runtime/store/pg.c runtime/store/pg_pool.c runtime/store/pg_conn.c runtime/store/pg_resolve.c \
             bindings/pg.c bindings/pg_value.c
ACTORS_SRC := actors/supervisor.c
LIB_SRC  := $(CORE_SRC) $(LUA_SRC) $(HTTP_SRC) $(STORE_SRC) $(ACTORS_SRC)
LLHTTP_OBJ := $(B)/obj/llhttp/llhttp.o $(B)/obj/llhttp/api.o $(B)/obj/llhttp/http.o
LIB_OBJ  := $(LIB_SRC:%.c=$(B)/obj/%.o) $(LLHTTP_OBJ)

UNIT_TESTS := error alloc mailbox actor scheduler call link timer supervisor runtime registry codec lua json pg
UNIT_BINS  := $(UNIT_TESTS:%=$(B)/tests/test_%)

.PHONY: all test unit check-san run run-embed bench bench-actors install clean deps embed services-test fuzz

all: $(B)/troupe $(B)/libtroupe.a $(B)/libtroupe.so $(B)/troupe.pc

$(B)/obj/%.o: %.c runtime/troupe.h $(wildcard runtime/core/*.h runtime/lua/*.h runtime/http/*.h runtime/store/*.h bindings/*.h)
	@mkdir -p $(dir $@)
	@echo "  CC $<"
	@$(CC) $(CFLAGS_ALL) -c $< -o $@

$(B)/obj/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	@echo "  CC $< (llhttp)"
	@$(CC) -std=c11 -fPIC $(OPT) $(SANFLAGS) -I$(LLHTTP_INC) -w -c $< -o $@

$(B)/libtroupe.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/libtroupe.so: $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,libtroupe.so.0 $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

$(B)/troupe: $(B)/obj/runtime/main.o $(B)/libtroupe.a
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

$(B)/troupe.pc: Makefile
	@mkdir -p $(B)
	@printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$${prefix}/lib' 'includedir=$${prefix}/include' '' \
	  'Name: troupe' 'Description: actor runtime with Lua handlers' 'Version: 0.1.0' \
	  'Requires.private: libuv lua5.4 hiredis libpq' 'Libs: -L$${libdir} -ltroupe' 'Libs.private: -pthread -lm' \
	  'Cflags: -I$${includedir}' > $@

# ---- tests -------------------------------------------------------------------

$(B)/tests/test_%: tests/unit/test_%.c tests/unit/harness.h $(B)/libtroupe.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests/unit $< -o $@ $(LDFLAGS_ALL) $(B)/libtroupe.a $(LIBS) -lcmocka

unit: $(UNIT_BINS)

deps:
	@scripts/deps.sh

test: deps
	@$(MAKE) --no-print-directory all unit
	@tests/run.sh $(B)

check-san: deps
	@$(MAKE) --no-print-directory SAN=asan all unit
	@$(MAKE) --no-print-directory SAN=tsan all unit
	@tests/run.sh --san build/asan build/tsan

# The embed example, built the way a user builds it: against an installed libtroupe,
# found through pkg-config.
embed: all
	@rm -rf $(B)/stage
	@$(MAKE) --no-print-directory install PREFIX=$(CURDIR)/$(B)/stage B=$(B) >/dev/null
	@PKG_CONFIG_PATH=$(CURDIR)/$(B)/stage/lib/pkgconfig $(MAKE) --no-print-directory -C examples/embed OUT=$(CURDIR)/$(B)/embed

# Serves the showcase app on 127.0.0.1:8080 (PORT=... to change it).
PORT ?= 8080
run: deps all
	@echo "troupe: the showcase app at http://127.0.0.1:$(PORT)/ (Ctrl-C stops it)"
	@$(B)/troupe run examples/showcase/app.lua --listen 127.0.0.1:$(PORT) --env development

# The C embedding example (examples/embed), built against an installed libtroupe.
run-embed: embed
	$(B)/embed

# ---- benchmarks ----------------------------------------------------------------

$(B)/bench_actors: bench/actors.c $(B)/libtroupe.a
	$(CC) $(CFLAGS_ALL) $< -o $@ $(LDFLAGS_ALL) $(B)/libtroupe.a $(LIBS)

bench: bench-actors bench-http bench-db bench-reload

$(B)/bench_lua_bare: bench/lua_bare.c
	$(CC) $(CFLAGS_ALL) $< -o $@ $(LDFLAGS_ALL) $(LIBS)

bench-actors: all $(B)/bench_actors $(B)/bench_lua_bare
	@scripts/deps.sh bench
	@bench/actors.sh $(B)

$(B)/bench_ceiling: bench/ceiling.c
	$(CC) $(CFLAGS_ALL) $< -o $@ $(LDFLAGS_ALL)

# examples/techempower under wrk beside nginx+lua, Node.js and bench/ceiling.c, a server
# that does no HTTP work (bench/http.sh; BENCH_RUNS=5)
.PHONY: bench-http
bench-http: all $(B)/bench_ceiling
	@scripts/deps.sh bench
	@bench/http.sh $(B)

# the database routes of examples/techempower beside Node.js (fastify + pg) and pgbench
# (bench/db.sh; starts its own Postgres)
.PHONY: bench-db
bench-db: all
	@scripts/deps.sh bench
	@bench/db.sh $(B)

# hot reload: latency to every worker, throughput under a reload a second (bench/reload.sh)
.PHONY: bench-reload
bench-reload: all
	@scripts/deps.sh bench
	@bench/reload.sh $(B)

# Lua actors only (also part of bench-actors): bench/lua/actors.lua [roundtrip|oneway|spawn]
.PHONY: bench-lua
bench-lua: all
	@TROUPE_BENCH_WORKERS=2 $(B)/troupe run --workers 2 --unsafe bench/lua/actors.lua

# ---- install -------------------------------------------------------------------

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(B)/troupe $(DESTDIR)$(PREFIX)/bin/troupe
	install -m 644 $(B)/libtroupe.a $(DESTDIR)$(PREFIX)/lib/libtroupe.a
	install -m 755 $(B)/libtroupe.so $(DESTDIR)$(PREFIX)/lib/libtroupe.so.0
	ln -sf libtroupe.so.0 $(DESTDIR)$(PREFIX)/lib/libtroupe.so
	install -m 644 runtime/troupe.h $(DESTDIR)$(PREFIX)/include/troupe.h
	install -d $(DESTDIR)$(PREFIX)/share/troupe/lua/troupe
	install -m 644 scripts/troupe/*.lua $(DESTDIR)$(PREFIX)/share/troupe/lua/troupe/
	sed 's|^prefix=.*|prefix=$(PREFIX)|' $(B)/troupe.pc > $(DESTDIR)$(PREFIX)/lib/pkgconfig/troupe.pc

clean:
	rm -rf build

# ---- fuzzing -------------------------------------------------------------------
# `make fuzz`: the libFuzzer harnesses, built with clang straight from the sources
# they need (libtroupe.a is gcc-built), each run on its own corpus, the Lua actor codec's
# decoder FUZZ_CODEC_SECONDS (60, as its issue asks), the others FUZZ_SECONDS (20):
#   codec  tests/fuzz/fuzz_codec.c   build/fuzz/corpus       seeded from tests/fuzz/seeds
#   json   tests/fuzz/json_decode.c  build/fuzz/corpus_json  seeded from tests/fuzz/json_seeds
#   http   tests/fuzz/fuzz_http.c    build/fuzz/corpus_http  seeded from tests/fuzz/seeds_http
# (FUZZ_TARGETS="json" runs one). Skipped, successfully, when clang is missing. Each
# harness ends with a line `fuzz: NAME ok (N runs in S s)` or `fuzz: NAME FAILED ...`.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 20
FUZZ_CODEC_SECONDS ?= 60
FUZZ_TARGETS ?= codec json http
FUZZ_CFLAGS  := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -g -O1 \
                $(WARN) -Iruntime -Iruntime/core -Iruntime/lua -Ibindings \
                $(shell pkg-config --cflags lua5.4 2>/dev/null)
FUZZ_SRC     := tests/fuzz/fuzz_codec.c runtime/lua/codec.c runtime/core/alloc.c runtime/core/error.c
FUZZ_JSON_SRC := tests/fuzz/json_decode.c bindings/json.c bindings/json_encode.c \
                 bindings/json_decode.c runtime/lua/codec.c runtime/core/alloc.c runtime/core/error.c

build/fuzz/fuzz_codec: $(FUZZ_SRC) runtime/lua/codec.h runtime/troupe.h runtime/core/internal.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SRC) -o $@ -llua5.4 -lm

build/fuzz/json_decode: $(FUZZ_JSON_SRC) bindings/json.h bindings/json_int.h runtime/lua/codec.h \
                        runtime/troupe.h runtime/core/internal.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_JSON_SRC) -o $@ -llua5.4 -lm

# http: the connection code (conn.c, response.c) on a libuv loop, with llhttp compiled
# in as its own objects (not our code: no warning flags), instrumented the same way.
FUZZ_HTTP_SRC := tests/fuzz/fuzz_http.c runtime/http/conn.c runtime/http/response.c \
                 runtime/lua/codec.c runtime/core/alloc.c runtime/core/error.c
FUZZ_LLHTTP_OBJ := build/fuzz/llhttp/llhttp.o build/fuzz/llhttp/api.o build/fuzz/llhttp/http.o

build/fuzz/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -fsanitize=fuzzer-no-link,address,undefined -g -O1 -I$(LLHTTP_INC) -w -c $< -o $@

build/fuzz/fuzz_http: $(FUZZ_HTTP_SRC) $(FUZZ_LLHTTP_OBJ) runtime/http/http_int.h runtime/http/http.h \
                      runtime/lua/codec.h runtime/troupe.h runtime/core/internal.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Iruntime/http -I$(LLHTTP_INC) $(shell pkg-config --cflags libuv 2>/dev/null) \
	    $(FUZZ_HTTP_SRC) $(FUZZ_LLHTTP_OBJ) -o $@ -luv -llua5.4 -lm

fuzz:
	@if ! command -v $(FUZZ_CC) >/dev/null 2>&1; then \
	    echo "fuzz: skipped ($(FUZZ_CC) is not installed)"; exit 0; \
	fi; \
	failed=0; \
	for name in $(FUZZ_TARGETS); do \
	    case $$name in \
	        codec) bin=fuzz_codec; corpus=build/fuzz/corpus; seeds=tests/fuzz/seeds; extra=; \
	               secs=$(FUZZ_CODEC_SECONDS) ;; \
	        json) bin=json_decode; corpus=build/fuzz/corpus_json; seeds=tests/fuzz/json_seeds; \
	              extra=-dict=tests/fuzz/json.dict; secs=$(FUZZ_SECONDS) ;; \
	        http) bin=fuzz_http; corpus=build/fuzz/corpus_http; seeds=tests/fuzz/seeds_http; \
	              extra=-dict=tests/fuzz/http.dict; secs=$(FUZZ_SECONDS) ;; \
	        *) echo "fuzz: $$name FAILED (no such harness)"; failed=1; continue ;; \
	    esac; \
	    $(MAKE) --no-print-directory build/fuzz/$$bin || { echo "fuzz: $$name FAILED (build)"; failed=1; continue; }; \
	    mkdir -p $$corpus && cp $$seeds/* $$corpus/ || exit 1; \
	    { build/fuzz/$$bin -max_total_time=$$secs -max_len=4096 $$extra \
	          -artifact_prefix=build/fuzz/$$name- $$corpus 2>&1; echo $$? > build/fuzz/$$name.rc; } \
	      | tee build/fuzz/$$name.log; \
	    rc=$$(cat build/fuzz/$$name.rc); \
	    summary=$$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' build/fuzz/$$name.log); \
	    if [ "$$rc" = 0 ] && [ -n "$$summary" ]; then \
	        echo "fuzz: $$name ok ($$summary)"; \
	    else \
	        echo "fuzz: $$name FAILED (exit $$rc; log and crash input in build/fuzz/$$name*)"; failed=1; \
	    fi; \
	done; \
	exit $$failed
