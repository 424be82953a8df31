#!/usr/bin/env bash
# troupe.pg when Postgres goes away, under load: pg_terminate_backend, pg_ctl restart,
# and a stop then start. In-flight queries must fail with a clear error, queries
# during the outage must fail fast (and HTTP handlers answer 503), and the same
# troupe processes must serve again afterwards, with no more connections open than
# max x workers, and none left once they exit.
#
# Uses the Postgres of tests/services.sh (TROUPE_PG_URL, TROUPE_SERVICES_DIR, as
# tests/run.sh exports them), or starts its own. One line per check, then
# `N passed, N failed`. Takes about 20 s.
set -u

. "$(dirname "$0")/common.bash"
pids=()
opts=""
DIR=""
logs=$(mktemp -d "${TMPDIR:-/tmp}/troupe-pgfail.XXXXXX")

cleanup() {
    local p
    for p in "${pids[@]+"${pids[@]}"}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]+"${pids[@]}"}"; do wait "$p" 2>/dev/null || true; done
    # Never leave the shared Postgres down for the suites that come after.
    if [ -n "$opts" ] && ! as_pg "$PGBIN/pg_ctl" -D "$DIR/pg" status > /dev/null 2>&1; then
        as_pg "$PGBIN/pg_ctl" -D "$DIR/pg" -l "$DIR/pg.log" -o "$opts" -w -t 30 start > /dev/null 2>&1 || true
    fi
    if [ -n "$own_services" ]; then "$root/tests/services.sh" stop "$own_services" || true; fi
    rm -rf "$logs"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need_troupe
use_services TROUPE_PG_URL TROUPE_SERVICES_DIR
DIR=$TROUPE_SERVICES_DIR
PGBIN=/usr/lib/postgresql/15/bin
[ -x "$PGBIN/pg_ctl" ] || PGBIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/pg_ctl | tail -n 1)")

as_pg() {
    if [ "$(id -u)" -eq 0 ]; then (cd "$DIR" && runuser -u postgres -- "$@"); else (cd "$DIR" && "$@"); fi
}
sql() { "$PGBIN/psql" "$TROUPE_PG_URL" -Atqc "$1" 2>/dev/null; }
# Connections a troupe process opened, by the application_name it was given.
conns() { sql "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$1'"; }
with_app() { case $TROUPE_PG_URL in *\?*) echo "$TROUPE_PG_URL&application_name=$1" ;; *) echo "$TROUPE_PG_URL?application_name=$1" ;; esac; }

# The load's last tick: "tick SECONDS OK FAIL MAXFAIL_MS CODE MESSAGE".
tick() { grep '^tick ' "$logs/load.out" | tail -n 1; }
ok_count()   { tick | awk '{ n = $3 } END { print n + 0 }'; }
fail_count() { tick | awk '{ n = $4 } END { print n + 0 }'; }
# The slowest failure (ms) in the ticks after line $1 of the log.
max_fail_since() { grep '^tick ' "$logs/load.out" | tail -n +"$1" | awk '{ if ($5 > m) m = $5 } END { print m + 0 }'; }
ticks() { grep -c '^tick ' "$logs/load.out"; }
last_error() { tick | cut -d' ' -f6-; }
wait_ok_above() {   # waits up to $2 s for the ok count to pass $1
    local i
    for i in $(seq 1 $(( $2 * 10 ))); do
        [ "$(ok_count)" -gt "$1" ] && return 0
        sleep 0.1
    done
    return 1
}
http() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port$1"; }
# Each worker's pool retries on its own backoff (up to 1 s plus jitter): a request may
# reach a worker whose pool has not retried yet. Up to 3 s for every worker to be back.
http_200_within_3s() {
    local i
    for i in $(seq 1 30); do
        [ "$(http "$1")" = 200 ] && [ "$(http "$1")" = 200 ] && [ "$(http "$1")" = 200 ] && return 0
        sleep 0.1
    done
    return 1
}

workers=2
max=4
opts=$(sed -e 's/^[^ ]* //' "$DIR/pg/postmaster.opts")    # to start it again after a stop

# ---- the load and the app ----
TROUPE_PG_URL=$(with_app troupe_failover) TROUPE_PG_POOL_MAX=$max \
    "$troupe" run --unsafe --workers $workers "$here/pg_load.lua" main "$here/pg_load.lua" 6 4 \
    > "$logs/load.out" 2> "$logs/load.err" < /dev/null &
load_pid=$!
pids+=("$load_pid")
TROUPE_PG_URL=$(with_app troupe_failover_http) TROUPE_PG_POOL_MAX=2 \
    "$troupe" run --workers $workers --listen 127.0.0.1:0 "$here/pg_app.lua" \
    > "$logs/app.out" 2> "$logs/app.err" < /dev/null &
app_pid=$!
pids+=("$app_pid")
port=""
for _ in $(seq 1 50); do
    port=$(sed -n 's/.*serving http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$logs/app.err" | head -n 1)
    [ -n "$port" ] && break
    sleep 0.1
done

check "queries flow under load" wait_ok_above 200 5
check "the app answers 200 from the database" test "$(http /db)" = 200
check "a transaction in a handler answers 200" test "$(http /tx)" = 200
n=$(conns troupe_failover)
check "connections open: $n (at most $max x $workers)" test "$n" -ge 1 -a "$n" -le $((max * workers))

# ---- pg_terminate_backend under load ----
fail0=$(fail_count)
killed=$(sql "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'troupe_failover'")
check "pg_terminate_backend ended $killed connections" test "${killed:-0}" -ge 1
sleep 0.5
ok1=$(ok_count)
check "queries in flight failed ($(( $(fail_count) - fail0 )) of them): $(last_error)" \
    test "$(fail_count)" -gt "$fail0"
check "... with a clear error (57P01 or 08006)" grep -Eq '^tick .* (57P01|08006) ' "$logs/load.out"
check "queries succeed again after the terminations" wait_ok_above $((ok1 + 200)) 5

# ---- pg_ctl restart under load ----
as_pg "$PGBIN/pg_ctl" -D "$DIR/pg" -l "$DIR/pg.log" -m fast -w -t 30 restart > "$logs/restart.log" 2>&1
check "pg_ctl restart" test $? -eq 0
ok2=$(ok_count)
check "queries succeed again after the restart, same process" wait_ok_above $((ok2 + 200)) 8
check "the app answers 200 again" test "$(http /db)" = 200

# ---- stop: fail fast while it is down, 503 from handlers ----
line0=$(( $(ticks) + 1 ))
as_pg "$PGBIN/pg_ctl" -D "$DIR/pg" -m fast -w -t 30 stop > "$logs/stop.log" 2>&1
sleep 1.2
ok3=$(ok_count)
fail3=$(fail_count)
t0=$(date +%s%N)
code=$(http /db)
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "while down, a handler answers 503 (got $code in $ms ms)" test "$code" = 503 -a "$ms" -lt 1000
check "while down, a transaction in a handler answers 503" test "$(http /tx)" = 503
sleep 0.6
check "while down, queries keep failing ($(( $(fail_count) - fail3 )) more): $(last_error)" \
    test "$(fail_count)" -gt $((fail3 + 50))
check "while down, nothing succeeds" test "$(ok_count)" -le $((ok3 + 0))
check "while down, the error says it cannot connect" grep -Eq '^tick .* 08001 cannot connect' "$logs/load.out"
slow=$(max_fail_since "$line0")
check "while down, failures are fast (slowest ${slow} ms)" test "$slow" -lt 1000

as_pg "$PGBIN/pg_ctl" -D "$DIR/pg" -l "$DIR/pg.log" -o "$opts" -w -t 30 start > "$logs/start.log" 2>&1
check "pg_ctl start" test $? -eq 0
check "queries succeed again once it is back, no restart of troupe" wait_ok_above $((ok3 + 200)) 8
check "the app answers 200 again after the outage (within 3 s)" http_200_within_3s /db
sleep 0.5
n=$(conns troupe_failover)
check "no leaked connection: $n open (at most $max x $workers)" test "$n" -ge 1 -a "$n" -le $((max * workers))
n=$(conns troupe_failover_http)
check "the app holds $n connections (at most 2 x $workers)" test "$n" -le $((2 * workers))

# ---- exit: every connection closed ----
kill -TERM "$load_pid" "$app_pid" 2>/dev/null
wait "$load_pid" 2>/dev/null
wait "$app_pid" 2>/dev/null
pids=()
sleep 0.3
n=$(( $(conns troupe_failover) + $(conns troupe_failover_http) ))
check "after troupe exits, no connection is left ($n)" test "$n" -eq 0
if grep -q 'ERROR: \|Sanitizer\|panic' "$logs/load.err" "$logs/app.err"; then
    not_ok "no crash or sanitizer report"; tail -n 20 "$logs/load.err" "$logs/app.err"
else
    ok "no crash or sanitizer report"
fi
[ "$failed" -eq 0 ] || { echo "--- load output (last ticks)"; grep -E '^(tick|pool) ' "$logs/load.out" | tail -n 60; tail -n 20 "$logs/load.err" "$logs/app.err"; }

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
