#!/usr/bin/env bash
# Tests tests/services.sh: a started pair answers, stop leaves no process, port or
# directory behind, and two instances started at once get different ports.
# One line per check (`ok - name` / `not ok - name`), then `N passed, N failed`.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
services=$here/services.sh
passed=0
failed=0
started=()   # every dir start returned, so the trap can stop them if a check fails

ok()     { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $1"; }
# check NAME CMD...: runs CMD, ok when it exits 0.
check()  { local name=$1; shift; if "$@"; then ok "$name"; else not_ok "$name"; fi; }

cleanup() {
    local d
    for d in "${started[@]+"${started[@]}"}"; do
        if [ -d "$d" ]; then "$services" stop "$d" > /dev/null 2>&1 || true; fi
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM   # so that the EXIT trap runs on Ctrl-C or a CI timeout too

# Same rule as services.sh: a zombie (never reaped by some container inits) is gone.
gone() {
    local pid=$1 state
    [ -n "$pid" ] || return 1
    kill -0 "$pid" 2>/dev/null || return 0
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
    [ "$state" = Z ]
}
not_listening() { [ -z "$(ss -Hltn "sport = :$1")" ]; }
port_of()       { local u=${1##*:}; u=${u%%/*}; printf '%s\n' "$u"; }
first_line()    { head -n 1 "$1" 2>/dev/null || true; }
quiet()         { "$@" > /dev/null 2>&1; }
not()           { ! "$@"; }
nonempty()      { local a; for a in "$@"; do [ -n "$a" ] || return 1; done; }
absent()        { local a; for a in "$@"; do [ ! -e "$a" ] || return 1; done; }

# Parses start's output into the TROUPE_* variables without leaking them between
# instances; succeeds only when stdout is exactly the three export lines.
load_env() {
    TROUPE_PG_URL=""; TROUPE_REDIS_URL=""; TROUPE_SERVICES_DIR=""
    [ "$(printf '%s\n' "$1" | grep -c .)" -eq 3 ] || return 1
    printf '%s\n' "$1" | grep -qv '^export TROUPE_\(PG_URL\|REDIS_URL\|SERVICES_DIR\)=' && return 1
    eval "$1"
    [ -n "$TROUPE_PG_URL" ] && [ -n "$TROUPE_REDIS_URL" ] && [ -d "$TROUPE_SERVICES_DIR" ]
}

# ---- one instance: start, use, stop --------------------------------------------

if out=$("$services" start < /dev/null); then ok "start exits 0"; else not_ok "start exits 0"; fi
if load_env "${out:-}"; then
    ok "start prints only the three export lines"
    started+=("$TROUPE_SERVICES_DIR")
    dir=$TROUPE_SERVICES_DIR
    pg_port=$(port_of "$TROUPE_PG_URL")
    redis_port=$(port_of "$TROUPE_REDIS_URL")
    pg_pid=$(first_line "$dir/pg/postmaster.pid")
    redis_pid=$(first_line "$dir/redis.pid")

    check "status exits 0 while running" quiet "$services" status "$dir"
    check "psql select 1 prints 1" \
        test "$(psql -X "$TROUPE_PG_URL" -Atc 'select 1' 2>&1)" = 1
    check "redis ping prints PONG" \
        test "$(redis-cli -u "$TROUPE_REDIS_URL" ping 2>&1)" = PONG
    value="v-$$-$RANDOM"
    redis-cli -u "$TROUPE_REDIS_URL" set troupe:services:test "$value" > /dev/null 2>&1 || true
    check "redis SET/GET round trip" \
        test "$(redis-cli -u "$TROUPE_REDIS_URL" get troupe:services:test 2>&1)" = "$value"
    check "postgres and redis pids recorded" nonempty "$pg_pid" "$redis_pid"

    check "stop exits 0" "$services" stop "$dir"
    check "stop removes the directory" test ! -e "$dir"
    check "postgres process is gone" gone "$pg_pid"
    check "redis process is gone" gone "$redis_pid"
    check "postgres port is closed" not_listening "$pg_port"
    check "redis port is closed" not_listening "$redis_port"
    check "stop on a stopped dir exits 0" "$services" stop "$dir"
    check "status fails after stop" not quiet "$services" status "$dir"
else
    not_ok "start prints only the three export lines"
fi

# ---- two instances started at the same moment ----------------------------------

tmp=$(mktemp -d "${TMPDIR:-/tmp}/troupe-services-test.XXXXXX")
trap 'cleanup; rm -rf "$tmp"' EXIT
"$services" start < /dev/null > "$tmp/a" 2> "$tmp/a.err" & a_pid=$!
"$services" start < /dev/null > "$tmp/b" 2> "$tmp/b.err" & b_pid=$!
a_rc=0; wait "$a_pid" || a_rc=$?
b_rc=0; wait "$b_pid" || b_rc=$?
if load_env "$(cat "$tmp/a")"; then
    started+=("$TROUPE_SERVICES_DIR"); a_dir=$TROUPE_SERVICES_DIR
    a_pg=$TROUPE_PG_URL; a_redis=$TROUPE_REDIS_URL
else a_dir=""; fi
if load_env "$(cat "$tmp/b")"; then
    started+=("$TROUPE_SERVICES_DIR"); b_dir=$TROUPE_SERVICES_DIR
    b_pg=$TROUPE_PG_URL; b_redis=$TROUPE_REDIS_URL
else b_dir=""; fi
both_started() { [ "$a_rc" = 0 ] && [ "$b_rc" = 0 ] && nonempty "$a_dir" "$b_dir"; }
check "two concurrent starts both succeed" both_started
if [ "$a_rc" != 0 ] || [ "$b_rc" != 0 ]; then cat "$tmp/a.err" "$tmp/b.err" >&2; fi

if [ -n "$a_dir" ] && [ -n "$b_dir" ]; then
    ports=$(printf '%s\n' "$(port_of "$a_pg")" "$(port_of "$a_redis")" \
        "$(port_of "$b_pg")" "$(port_of "$b_redis")" | sort -u | wc -l)
    check "the two instances use four different ports" test "$ports" -eq 4
    check "the two instances use different dirs" test "$a_dir" != "$b_dir"
    check "both postgres answer" test "$(psql -X "$a_pg" -Atc 'select 1' 2>&1)$(psql -X "$b_pg" -Atc 'select 1' 2>&1)" = 11
    check "both redis answer" test "$(redis-cli -u "$a_redis" ping 2>&1)$(redis-cli -u "$b_redis" ping 2>&1)" = PONGPONG
    a_pids="$(first_line "$a_dir/pg/postmaster.pid") $(first_line "$a_dir/redis.pid")"
    b_pids="$(first_line "$b_dir/pg/postmaster.pid") $(first_line "$b_dir/redis.pid")"
    check "stop first instance" "$services" stop "$a_dir"
    check "second instance still answers after the first stopped" quiet "$services" status "$b_dir"
    check "stop second instance" "$services" stop "$b_dir"
    check "both directories removed" absent "$a_dir" "$b_dir"
    all_gone=1
    for p in $a_pids $b_pids; do gone "$p" || all_gone=0; done
    check "all four server processes gone" test "$all_gone" = 1
    all_closed=1
    for u in "$a_pg" "$a_redis" "$b_pg" "$b_redis"; do
        not_listening "$(port_of "$u")" || all_closed=0
    done
    check "all four ports closed" test "$all_closed" = 1
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
