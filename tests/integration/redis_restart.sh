#!/usr/bin/env bash
# troupe.redis across a Redis restart, under load: calls fail fast while the server is
# down, succeed again once it is back (troupe is not restarted), pub/sub subscriptions
# are restored, and an HTTP handler answers 503 during the outage.
#
# It restarts a Redis of its own, started the way tests/services.sh starts one (same
# flags, a temp dir, a free port) and restarted on the same port: the shared test
# server keeps serving the other suites whatever happens here.
# One line per check (`ok - name` / `not ok - name`), then `N passed, N failed`.
set -eu

. "$(dirname "$0")/common.bash"
dir=""
main_pid=""
app_pid=""

if ! command -v redis-server > /dev/null || ! command -v redis-cli > /dev/null; then
    echo "skipped: redis-server or redis-cli is not installed"
    exit 0
fi
[ -x "$troupe" ] || { echo "not ok - no executable $troupe"; echo "0 passed, 1 failed"; exit 1; }

cleanup() {
    if [ -n "$main_pid" ]; then kill "$main_pid" 2>/dev/null || true; fi
    if [ -n "$app_pid" ]; then kill "$app_pid" 2>/dev/null || true; fi
    if [ -n "$dir" ]; then
        redis-cli -p "$port" shutdown nosave > /dev/null 2>&1 || true
        rm -rf "$dir"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$(( 20000 + ((RANDOM << 15) | RANDOM) % 40001 ))
        if [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ]; then echo "$p"; return 0; fi
    done
    return 1
}

redis_up() { [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; }

start_redis() {
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
        --dir "$dir" < /dev/null > /dev/null 2>&1 || true
    for _ in $(seq 1 100); do redis_up && return 0; sleep 0.05; done
    return 1
}

stop_redis() {
    redis-cli -p "$port" shutdown nosave > /dev/null 2>&1 || true
    for _ in $(seq 1 100); do redis_up || return 0; sleep 0.05; done
    return 1
}

# GET path on the app: prints "STATUS BODY" (bash's /dev/tcp: no client needed).
http_get() {
    local resp
    exec 3<> "/dev/tcp/127.0.0.1/$hport" || return 1
    printf 'GET %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n' "$1" >&3
    resp=$(timeout 5 cat <&3 | tr -d '\r')
    exec 3<&-
    printf '%s %s\n' "$(printf '%s\n' "$resp" | head -n 1 | cut -d' ' -f2)" \
        "$(printf '%s\n' "$resp" | tail -n 1)"
}

dir=$(mktemp -d "${TMPDIR:-/tmp}/troupe-redis-restart.XXXXXX")
port=$(free_port)
hport=$(free_port)
start_redis || { echo "not ok - redis-server did not start"; tail "$dir/redis.log"; echo "0 passed, 1 failed"; exit 1; }
export TROUPE_REDIS_URL="redis://127.0.0.1:$port/0"

"$troupe" run --workers 2 "$here/redis_restart_app.lua" --listen "127.0.0.1:$hport" \
    > "$dir/app.log" 2>&1 &
app_pid=$!
"$troupe" run --unsafe --workers 2 "$here/redis_restart.lua" 8 > "$dir/main.log" 2>&1 &
main_pid=$!

for _ in $(seq 1 200); do grep -q '^READY' "$dir/main.log" && break; sleep 0.05; done
grep -q '^READY' "$dir/main.log" && ok "the load script started" || not_ok "the load script started"
for _ in $(seq 1 100); do http_get /incr 2>/dev/null | grep -q '^200' && break; sleep 0.05; done
r=$(http_get /incr || true)
case $r in 200*) ok "GET /incr answers 200 while Redis is up" ;;
           *) not_ok "GET /incr answers 200 while Redis is up (got: $r)" ;; esac

sleep 2
stop_redis && ok "redis stopped" || not_ok "redis stopped"
sleep 0.3
t0=$(date +%s%N)
r=$(http_get /incr || true)
dt=$(( ($(date +%s%N) - t0) / 1000000 ))
case $r in
    503*"redis unavailable"*) ok "GET /incr answers 503 while Redis is down, in $dt ms" ;;
    *) not_ok "GET /incr answers 503 while Redis is down (got: $r)" ;;
esac
sleep 1.2
start_redis && ok "redis restarted on the same port" || not_ok "redis restarted on the same port"

# Each worker's connection comes back on its own (backoff up to 2 s): wait for a
# run of 200s, the kernel spreading the connections over both workers.
run=0
for _ in $(seq 1 200); do
    r=$(http_get /incr || true)
    case $r in 200*) run=$((run + 1)) ;; *) run=0 ;; esac
    [ "$run" -ge 8 ] && break
    sleep 0.03
done
if [ "$run" -ge 8 ]; then ok "GET /incr answers 200 again, the server not restarted"
else not_ok "GET /incr answers 200 again (last: $r)"; fi

rc=0
wait "$main_pid" || rc=$?
main_pid=""
grep -E '^(ok|not ok) - |^# ' "$dir/main.log" || true
lp=0; lf=0
if last=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$dir/main.log" | tail -n 1); then
    lp=${last%% *}; lf=${last#*, }; lf=${lf%% *}
fi
if [ "$rc" -ne 0 ] || [ $((lp + lf)) -eq 0 ]; then
    echo "# the load script ended with status $rc; its log:"
    sed 's/^/#   /' "$dir/main.log" | tail -n 30
    [ "$lf" -gt 0 ] || lf=1
fi
passed=$((passed + lp))
failed=$((failed + lf))

kill "$app_pid" 2>/dev/null || true
wait "$app_pid" 2>/dev/null || true
app_pid=""
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
