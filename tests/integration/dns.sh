#!/usr/bin/env bash
# Host names in the Postgres and Redis URLs are looked up off the worker thread. With
# slowdns.c preloaded, every lookup of a *.slow.test name takes 1.5 s, as one does
# when the resolver does not answer; libpq and hiredis would make that lookup on the
# worker's own thread, and every request on that worker would wait for it. Checks,
# on one worker: a plain request answers at once while the /pg or /redis request
# waits for its lookup; both then connect; a name that does not resolve gives a clear
# error; SIGTERM during a lookup still stops the process cleanly.
#
# Uses the services of tests/services.sh (TROUPE_PG_URL, TROUPE_REDIS_URL), or starts
# its own. One line per check, then `N passed, N failed`. Takes about 15 s.
set -u

. "$(dirname "$0")/common.bash"
pid=""
logs=$(mktemp -d "${TMPDIR:-/tmp}/troupe-dns.XXXXXX")

cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    if [ -n "$own_services" ]; then "$root/tests/services.sh" stop "$own_services" || true; fi
    rm -rf "$logs"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit $?; }

need_troupe
use_services TROUPE_PG_URL TROUPE_REDIS_URL
if ! cc -shared -fPIC -O1 -o "$logs/slowdns.so" "$here/slowdns.c" -ldl 2> "$logs/cc.log"; then
    cat "$logs/cc.log"; not_ok "build the slowdns.c shim"; finish
fi

# The services' URLs with their host replaced by a name.
pg_port=$(echo "$TROUPE_PG_URL" | sed -E 's|.*@[^:/]+:([0-9]+)/.*|\1|')
redis_port=$(echo "$TROUPE_REDIS_URL" | sed -E 's|redis://[^:/]+:([0-9]+).*|\1|')
slow_pg="postgresql://postgres@db.slow.test:$pg_port/troupe?application_name=troupe_dns"
slow_redis="redis://cache.slow.test:$redis_port/0"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
LD_PRELOAD="$logs/slowdns.so" SLOWDNS_MS=1500 TROUPE_PG_URL="$slow_pg" \
    TROUPE_REDIS_URL="$slow_redis" \
    "$troupe" run "$here/dns_app.lua" --workers 1 --listen "127.0.0.1:$port" \
    > "$logs/server.log" 2>&1 &
pid=$!
for i in $(seq 100); do
    curl -sf -o /dev/null --max-time 1 "$base/plain" && break
    sleep 0.1
done

# Starts a slow request in the background, then times a plain one during it.
#   during PATH -> prints "plain_seconds slow_seconds slow_body"
during() {
    curl -s --max-time 10 -o "$logs/slow.body" -w '%{time_total}' "$base$1" > "$logs/slow.time" &
    local cp=$!
    sleep 0.3
    local plain
    plain=$(curl -s --max-time 10 -o /dev/null -w '%{time_total}' "$base/plain")
    wait "$cp"
    echo "$plain $(cat "$logs/slow.time") $(cat "$logs/slow.body")"
}
faster() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

for what in pg redis; do
    read -r plain slow body <<< "$(during "/$what")"
    echo "# /$what took ${slow}s (its lookup 1.5 s); /plain during it ${plain}s: $body"
    want='"x":42'; [ "$what" = redis ] && want='"pong":"PONG"'
    if faster "$plain" 0.8 && ! faster "$slow" 1.4 && [[ $body == *"$want"* ]]; then
        ok "$what: the host name is looked up off the worker thread, then the query runs"
    else
        not_ok "$what: the host name is looked up off the worker thread, then the query runs"
    fi
done

# Names that do not resolve: a clear error, and the worker serves meanwhile.
curl -s -o /dev/null -G --data-urlencode "pg=postgresql://postgres@db.fail.test:$pg_port/troupe" \
    --data-urlencode "redis=redis://cache.fail.test:$redis_port/0" "$base/reconfigure"
read -r plain slow body <<< "$(during /pg)"
read -r plain2 slow2 body2 <<< "$(during /redis)"
echo "# /pg: ${slow}s, /plain ${plain}s: $body; /redis: ${slow2}s, /plain ${plain2}s: $body2"
if faster "$plain" 0.8 && faster "$plain2" 0.8 && [[ $body == *'database unavailable'* ]] &&
   [[ $body2 == *'redis unavailable'* ]]; then
    ok "names that do not resolve: handlers answer 503, the worker serves meanwhile"
else
    not_ok "names that do not resolve: handlers answer 503, the worker serves meanwhile"
fi
# Outside a handler the drivers' errors say why.
cat > "$logs/fail.lua" <<LUA
local pg, redis = require "troupe.pg", require "troupe.redis"
local _, e = pg.query("SELECT 1")
print("pg", e and e.message)
print("redis", select(2, redis.call("PING")))
LUA
LD_PRELOAD="$logs/slowdns.so" SLOWDNS_MS=200 \
    TROUPE_PG_URL="postgresql://postgres@db.fail.test:$pg_port/troupe" \
    TROUPE_REDIS_URL="redis://cache.fail.test:$redis_port/0" \
    timeout 20 "$troupe" run "$logs/fail.lua" > "$logs/fail.out" 2>&1
sed 's/^/# /' "$logs/fail.out"
if grep -q '^pg.*cannot connect: could not translate host name "db.fail.test" to address' "$logs/fail.out" &&
   grep -q '^redis.*not connected (cannot resolve cache.fail.test: ' "$logs/fail.out"; then
    ok "names that do not resolve: the errors name the host and the lookup's failure"
else
    not_ok "names that do not resolve: the errors name the host and the lookup's failure"
fi

# Reconfigured while a lookup is in flight: the connection is made with the new URLs.
curl -s -o /dev/null -G --data-urlencode "pg=${slow_pg/db.slow/db3.slow}" \
    --data-urlencode "redis=${slow_redis/cache.slow/cache3.slow}" "$base/reconfigure"
curl -s --max-time 10 -o "$logs/pg3.body" "$base/pg" &
c1=$!
curl -s --max-time 10 -o "$logs/redis3.body" "$base/redis" &
c2=$!
sleep 0.3
curl -s -o /dev/null -G --data-urlencode "pg=$TROUPE_PG_URL" \
    --data-urlencode "redis=$TROUPE_REDIS_URL" "$base/reconfigure"
wait "$c1" "$c2"
echo "# during a reconfigure: /pg $(cat "$logs/pg3.body"), /redis $(cat "$logs/redis3.body")"
body=$(curl -s --max-time 5 "$base/pg")$(curl -s --max-time 5 "$base/redis")
echo "# after it: $body"
if [[ $body == *'"x":42'*'"pong":"PONG"'* ]]; then
    ok "reconfigured during a lookup: the next queries use the new URLs"
else
    not_ok "reconfigured during a lookup: the next queries use the new URLs"
fi

# SIGTERM while lookups are in flight: the drivers wait for them and free everything.
curl -s -o /dev/null -G --data-urlencode "pg=${slow_pg/db.slow/db2.slow}" \
    --data-urlencode "redis=${slow_redis/cache.slow/cache2.slow}" "$base/reconfigure"
curl -s -o /dev/null --max-time 5 "$base/pg" &
curl -s -o /dev/null --max-time 5 "$base/redis" &
sleep 0.3
t0=$(date +%s%N)
kill -TERM "$pid"
wait "$pid"
rc=$?
pid=""
t1=$(date +%s%N)
wait
echo "# exit $rc after $(( (t1 - t0) / 1000000 )) ms"
if [ "$rc" -eq 0 ] && [ $(( (t1 - t0) / 1000000 )) -lt 8000 ] && ! grep -qi "sanitizer\|leak" "$logs/server.log"; then
    ok "SIGTERM during lookups: exit 0, in time"
else
    sed 's/^/#   /' "$logs/server.log" | tail -n 20
    not_ok "SIGTERM during lookups: exit 0, in time"
fi
finish
