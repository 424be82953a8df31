# troupe — the one build entry point.
#   make                 build/troupe, build/libtroupe.{a,so}, build/troupe.pc
#   make test            deps, build, every suite; ends with "N passed, N failed"
#   make check-san       C unit tests under SAN=asan and SAN=tsan
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

PKGS     := libuv lua5.4
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS_ALL := -std=c11 -D_GNU_SOURCE -fPIC -pthread $(OPT) $(SANFLAGS) $(WARN) \
              -Iruntime -Iruntime/core -Iruntime/lua $(PKG_CFLAGS) $(CFLAGS)
LDFLAGS_ALL := -pthread $(SANFLAGS) $(LDFLAGS)
LIBS := $(PKG_LIBS) -lm

CORE_SRC := runtime/core/error.c runtime/core/alloc.c runtime/core/runtime.c \
            runtime/core/table.c runtime/core/worker.c runtime/core/actor.c \
            runtime/core/message.c runtime/core/signal.c runtime/core/timer.c \
            runtime/core/call.c runtime/core/pool.c \
            runtime/core/registry.c
LUA_SRC  := runtime/lua/codec.c runtime/lua/vm.c runtime/lua/lactor.c bindings/actor.c
ACTORS_SRC := actors/supervisor.c
LIB_SRC  := $(CORE_SRC) $(LUA_SRC) $(ACTORS_SRC)
LIB_OBJ  := $(LIB_SRC:%.c=$(B)/obj/%.o)

UNIT_TESTS := error alloc mailbox actor scheduler call link timer supervisor runtime registry codec lua
UNIT_BINS  := $(UNIT_TESTS:%=$(B)/tests/test_%)

.PHONY: all test unit check-san run bench bench-actors install clean deps embed services-test fuzz

all: $(B)/troupe $(B)/libtroupe.a $(B)/libtroupe.so $(B)/troupe.pc

$(B)/obj/%.o: %.c runtime/troupe.h $(wildcard runtime/core/*.h runtime/lua/*.h)
	@mkdir -p $(dir $@)
	@echo "  CC $<"
	@$(CC) $(CFLAGS_ALL) -c $< -o $@

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
	  'Requires.private: libuv lua5.4' 'Libs: -L$${libdir} -ltroupe' 'Libs.private: -pthread -lm' \
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

check-san:
	@$(MAKE) --no-print-directory SAN=asan all unit
	@$(MAKE) --no-print-directory SAN=tsan all unit
	@tests/run.sh --san build/asan build/tsan

# The embed example, built the way a user builds it: against an installed libtroupe,
# found through pkg-config.
embed: all
	@rm -rf $(B)/stage
	@$(MAKE) --no-print-directory install PREFIX=$(CURDIR)/$(B)/stage B=$(B) >/dev/null
	@PKG_CONFIG_PATH=$(CURDIR)/$(B)/stage/lib/pkgconfig $(MAKE) --no-print-directory -C examples/embed OUT=$(CURDIR)/$(B)/embed

run: deps all
	@$(MAKE) --no-print-directory embed
	$(B)/embed

# ---- benchmarks ----------------------------------------------------------------

$(B)/bench_actors: bench/actors.c $(B)/libtroupe.a
	$(CC) $(CFLAGS_ALL) $< -o $@ $(LDFLAGS_ALL) $(B)/libtroupe.a $(LIBS)

bench: bench-actors

bench-actors: all $(B)/bench_actors
	@scripts/deps.sh bench
	@bench/actors.sh $(B)

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
# `make fuzz`: the codec's libFuzzer harness, built with clang straight from the
# sources it needs (libtroupe.a is gcc-built), run FUZZ_SECONDS on build/fuzz/corpus
# (seeded from tests/fuzz/seeds). Skipped, successfully, when clang is missing. The
# last line says `fuzz: codec ok (N runs in S s)` or `fuzz: codec FAILED ...`.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS  := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -g -O1 \
                $(WARN) -Iruntime -Iruntime/core -Iruntime/lua \
                $(shell pkg-config --cflags lua5.4 2>/dev/null)
FUZZ_SRC     := tests/fuzz/fuzz_codec.c runtime/lua/codec.c runtime/core/alloc.c runtime/core/error.c

build/fuzz/fuzz_codec: $(FUZZ_SRC) runtime/lua/codec.h runtime/troupe.h runtime/core/internal.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SRC) -o $@ -llua5.4 -lm

fuzz:
	@if ! command -v $(FUZZ_CC) >/dev/null 2>&1; then \
	    echo "fuzz: skipped ($(FUZZ_CC) is not installed)"; exit 0; \
	fi; \
	$(MAKE) --no-print-directory build/fuzz/fuzz_codec || exit 1; \
	mkdir -p build/fuzz/corpus && cp tests/fuzz/seeds/* build/fuzz/corpus/ || exit 1; \
	{ build/fuzz/fuzz_codec -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	      -artifact_prefix=build/fuzz/ build/fuzz/corpus 2>&1; echo $$? > build/fuzz/rc; } \
	  | tee build/fuzz/fuzz.log; \
	rc=$$(cat build/fuzz/rc); \
	summary=$$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' build/fuzz/fuzz.log); \
	if [ "$$rc" = 0 ] && [ -n "$$summary" ]; then \
	    echo "fuzz: codec ok ($$summary)"; \
	else \
	    echo "fuzz: codec FAILED (exit $$rc; log and crash input in build/fuzz/)"; exit 1; \
	fi
