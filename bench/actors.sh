#!/bin/sh
# make bench-actors: troupe's C actors and, side by side in the same run, Erlang/OTP.
# Prints `BENCH <name> <value> <unit>` lines, then the ratios against Erlang.
set -eu
B=${1:-build}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$B/bench_actors" | tee "$out"
bench/erlang/run.sh | tee -a "$out"
awk '
    { v[$2] = $3 }
    END {
        if (v["erlang.oneway"] > 0) {
            printf "BENCH actors.c.oneway_vs_erlang %.2f x\n", v["actors.c.oneway"] / v["erlang.oneway"]
            printf "BENCH actors.c.roundtrip_vs_erlang %.2f x\n", v["actors.c.roundtrip"] / v["erlang.roundtrip"]
            printf "BENCH actors.c.spawn_vs_erlang %.2f x\n", v["erlang.spawn_1m"] / v["actors.c.spawn_1m"]
        }
    }' "$out"
