#!/bin/sh
# Erlang peer for the actor benchmarks: compiles actors_bench.erl into a temp dir and runs
# it on 2 schedulers, printing only its `BENCH erlang.* <value> <unit>` lines on stdout.
# Skips (exit 0) when Erlang is not installed.
set -eu

if ! command -v erl >/dev/null 2>&1 || ! command -v erlc >/dev/null 2>&1; then
    echo "# erlang not installed; skipping peer" >&2
    exit 0
fi

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
trap 'exit 1' INT TERM
export ERL_CRASH_DUMP="$dir/erl_crash.dump"   # keep a crash dump out of the caller's cwd
erlc -o "$dir" "$(dirname "$0")/actors_bench.erl"
erl +S 2:2 +P 2000000 -noshell -pa "$dir" -s actors_bench main -s init stop >"$dir/out"
grep '^BENCH ' "$dir/out"
