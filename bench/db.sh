#!/usr/bin/env bash
# make bench-db: the database routes of examples/techempower under wrk, troupe beside
# Node.js (fastify + pg, node:cluster with one process per core: bench/node/db) in the
# same run, on the same throwaway Postgres, with pgbench's prepared select-by-id as the
# database's own ceiling.
#   bench/db.sh [BUILD_DIR]
# Environment: BENCH_RUNS (5), BENCH_DURATION seconds per run (5), BENCH_WARMUP seconds
# (2), BENCH_CASES (all below), BENCH_PGBENCH_RUNS (3), BENCH_SERVERS ("troupe node"):
# each is troupe or node, optionally with a pool size, "troupe:1" or "node:2" (measured
# as db.troupe_pool1..., db.node_pool2...); without one troupe uses TROUPE_PG_POOL_MAX
# (connections per worker; its own default when unset) and node NODE_PG_POOL_MAX (the
# pg Pool's max per process, 10).
# Starts its own Postgres and Redis (tests/services.sh; stopped on exit), loads
# examples/techempower/schema.sql, runs pgbench, then each server alone on a free
# loopback port: every case gets a VACUUM of `world` (the /updates runs leave dead rows
# behind for whoever comes next), a warm-up, then BENCH_RUNS runs of `wrk -t1 -c64`;
# the figures are medians. Prints
#   BENCH db.pgbench.select <tps> tps                    (-M prepared -c 8 -j 2, median)
#   BENCH db.<server>.<case> <req/s> req/s   BENCH db.<server>.<case>.p99 <ms> ms
#   BENCH db.ratio.node.<case> <troupe/node> x
#   BENCH db.ratio.best.<case> <best troupe/best node> x   (with pool variants measured)
#   BENCH db.troupe.db_over_pgbench <troupe /db req/s / pgbench tps> x
# then a table with the CPU split of the machine (wrk, the server and Postgres share
# the same cores). Exits 1 when something could not be measured; the rest still is.
set -u

B=${1:-build}
[ -d "$B" ] && B=$(cd "$B" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1

RUNS=${BENCH_RUNS:-5}
DURATION=${BENCH_DURATION:-5}
WARMUP=${BENCH_WARMUP:-2}
PGBENCH_RUNS=${BENCH_PGBENCH_RUNS:-3}
SERVERS=${BENCH_SERVERS:-troupe node}
ALL_CASES="db queries_20 fortunes updates_20"
CASES=${BENCH_CASES:-$ALL_CASES}
CONNS=64
NODE_POOL=${NODE_PG_POOL_MAX:-10}
HZ=$(getconf CLK_TCK)
NODE_DIR=bench/node/db

case_path() {
    case $1 in
        db)         echo "/db" ;;
        queries_20) echo "/queries?queries=20" ;;
        fortunes)   echo "/fortunes" ;;
        updates_20) echo "/updates?queries=20" ;;
        *) return 1 ;;
    esac
}

work=$(mktemp -d "${TMPDIR:-/tmp}/troupe-bench-db.XXXXXX")
results=$work/results            # lines: name value unit
: > "$results"
server_pid=""
server_log=""
services_dir=""
failed=""

log() { printf '%s\n' "$*" >&2; }

# ---- processes -----------------------------------------------------------------

# The pid and every descendant of it.
tree_pids() {
    local p
    echo "$1"
    for p in $(pgrep -P "$1" 2>/dev/null); do tree_pids "$p"; done
}

# Stops the current server: SIGTERM to its main process, SIGKILL to whatever of its
# tree is left after 5 s.
stop_server() {
    [ -n "$server_pid" ] || return 0
    local pids p i
    pids=$(tree_pids "$server_pid")
    kill -TERM "$server_pid" 2>/dev/null
    for i in $(seq 50); do
        local alive=""
        for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
        [ -z "$alive" ] && break
        sleep 0.1
    done
    for p in $pids; do kill -KILL "$p" 2>/dev/null; done
    wait "$server_pid" 2>/dev/null
    server_pid=""
}

cleanup() {
    stop_server
    if [ -n "$services_dir" ]; then
        tests/services.sh stop "$services_dir" || log "bench-db: tests/services.sh stop failed"
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# A TCP port nobody listens on, below the ephemeral range (32768+) so that wrk's own
# connections never hold it.
free_port() {
    local used p i
    used=" $(for f in /proc/net/tcp /proc/net/tcp6; do
                 [ -r "$f" ] && awk 'NR > 1 { n = split($2, a, ":"); print a[n] }' "$f"
             done | while read -r h; do echo $((16#$h)); done | tr '\n' ' ') "
    for i in $(seq 100); do
        p=$((20000 + RANDOM % 12000))
        case $used in *" $p "*) continue ;; esac
        echo "$p"
        return 0
    done
    return 1
}

# CPU ticks (user + system) used so far by the processes of the tree under pid $1,
# with those of their children that exited (Postgres backends come and go: pgbench's
# close at the end of each run; the postmaster reaps them).
cpu_ticks() {
    local total=0 p s
    [ -n "$1" ] || { echo 0; return; }
    for p in $(tree_pids "$1"); do
        s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        s=${s##*) }    # the fields after "(comm) ": utime, stime, cutime, cstime are 12th-15th
        set -- $s
        total=$((total + ${12} + ${13} + ${14} + ${15}))
    done
    echo "$total"
}

# The postmaster of our Postgres (its backends are its children).
pg_pid() { head -n 1 "$services_dir/pg/postmaster.pid" 2>/dev/null; }

# ---- the database --------------------------------------------------------------

PSQL=psql
command -v psql > /dev/null || PSQL=/usr/lib/postgresql/15/bin/psql
PGBENCH=pgbench
command -v pgbench > /dev/null || PGBENCH=/usr/lib/postgresql/15/bin/pgbench

start_services() {
    local env
    env=$(tests/services.sh start < /dev/null) || return 1
    eval "$env"
    services_dir=$TROUPE_SERVICES_DIR
    export TROUPE_PG_URL TROUPE_REDIS_URL
    "$PSQL" "$TROUPE_PG_URL" -q -v ON_ERROR_STOP=1 -f examples/techempower/schema.sql \
        > "$work/schema.log" 2>&1 || { cat "$work/schema.log" >&2; return 1; }
}

vacuum_world() {
    "$PSQL" "$TROUPE_PG_URL" -q -c "VACUUM ANALYZE world" > /dev/null 2>&1
}

# pgbench's prepared select-by-id, 8 clients on 2 threads: PGBENCH_RUNS runs, median tps.
run_pgbench() {
    local script=$work/select.sql r tps all=() busy
    printf '%s\n' '\set id random(1, 10000)' \
        'SELECT id, randomnumber FROM world WHERE id = :id;' > "$script"
    wait_quiet
    for r in $(seq "$PGBENCH_RUNS"); do
        local p0 p1 t0 t1
        p0=$(cpu_ticks "$(pg_pid)"); t0=$(date +%s%N)
        if ! "$PGBENCH" -n -M prepared -c 8 -j 2 -T "$DURATION" -f "$script" "$TROUPE_PG_URL" \
                > "$work/pgbench.out" 2>&1; then
            sed 's/^/#   /' "$work/pgbench.out" | tail -n 10
            return 1
        fi
        sleep 0.3      # the backends exit with their clients: let the postmaster reap them
        p1=$(cpu_ticks "$(pg_pid)"); t1=$(( t0 + DURATION * 1000000000 ))
        tps=$(awk '/^tps = / { print $3; exit }' "$work/pgbench.out")
        [ -n "$tps" ] || { sed 's/^/#   /' "$work/pgbench.out" | tail -n 10; return 1; }
        busy=$(awk -v d="$((p1 - p0))" -v hz="$HZ" -v w="$(( (t1 - t0) / 1000 ))" \
                   'BEGIN { printf "%.0f", 100 * d / hz * 1e6 / w }')
        log "  pgbench select run $r/$PGBENCH_RUNS: $tps tps, CPU postgres $busy%"
        all+=("$tps")
    done
    record db.pgbench.select "$(printf '%s\n' "${all[@]}" | median | awk '{ printf "%.0f", $1 }')" tps
}

# ---- servers -------------------------------------------------------------------

# start_KIND PORT [POOL]: POOL empty for the configuration of the environment.
start_troupe() {
    local port=$1 pool=${2:-${TROUPE_PG_POOL_MAX:-}}
    if [ ! -x "$B/troupe" ]; then
        echo "$B/troupe not found (make first)" > "$server_log"
        return 1
    fi
    if [ -n "$pool" ]; then
        TROUPE_PG_POOL_MAX=$pool "$B/troupe" run examples/techempower/app.lua --workers 2 \
            --listen "127.0.0.1:$port" --env production > "$server_log" 2>&1 &
    else
        env -u TROUPE_PG_POOL_MAX "$B/troupe" run examples/techempower/app.lua --workers 2 \
            --listen "127.0.0.1:$port" --env production > "$server_log" 2>&1 &
    fi
    server_pid=$!
}

# Installs the pinned fastify and pg (package-lock.json) when node_modules is missing
# or older than the lock file.
node_deps() {
    if [ -f "$NODE_DIR/node_modules/.package-lock.json" ] &&
       [ ! "$NODE_DIR/package-lock.json" -nt "$NODE_DIR/node_modules/.package-lock.json" ]; then
        return 0
    fi
    command -v npm > /dev/null || { echo "npm missing (scripts/deps.sh bench)"; return 1; }
    log "  npm ci in $NODE_DIR"
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error) > "$work/npm.log" 2>&1 \
        || { tail -n 10 "$work/npm.log"; return 1; }
}

start_node() {
    local port=$1
    NODE_PG_POOL_MAX=${2:-$NODE_POOL} node "$NODE_DIR/app.js" "$port" 127.0.0.1 > "$server_log" 2>&1 &
    server_pid=$!
}

# server_label KIND [POOL]
server_label() {
    case $1 in
        troupe) echo "troupe (2 workers, TROUPE_PG_POOL_MAX=${2:-${TROUPE_PG_POOL_MAX:-default (unset)}} per worker)" ;;
        node)   echo "node $(node --version 2>/dev/null) fastify $(node -p "require('./$NODE_DIR/node_modules/fastify/package.json').version" 2>/dev/null) + pg $(node -p "require('./$NODE_DIR/node_modules/pg/package.json').version" 2>/dev/null), cluster of $(nproc), pool max ${2:-$NODE_POOL} per process" ;;
    esac
}

# Waits until the server answers /db, then checks the shape of every route's answer.
check_server() {
    local base=$1 i body
    for i in $(seq 100); do
        kill -0 "$server_pid" 2>/dev/null || { echo "exited"; return 1; }
        curl -sf -o /dev/null --max-time 1 "$base/db" && break
        [ "$i" = 100 ] && { echo "no answer on $base/db within 10 s"; return 1; }
        sleep 0.1
    done
    body=$(curl -s --max-time 2 -D "$work/headers" "$base/db" | tr -d ' \r\n')
    echo "$body" | grep -Eq '^\{("id":[0-9]+,"randomNumber":[0-9]+|"randomNumber":[0-9]+,"id":[0-9]+)\}$' \
        || { echo "/db answered '$body'"; return 1; }
    grep -qi '^content-type: *application/json' "$work/headers" \
        || { echo "/db: no Content-Type: application/json"; return 1; }
    for h in server date content-length; do
        grep -qi "^$h:" "$work/headers" || { echo "/db: no $h header"; return 1; }
    done
    for i in queries updates; do
        body=$(curl -s --max-time 2 "$base/$i?queries=20" | grep -o '"randomNumber"' | wc -l)
        [ "$body" = 20 ] || { echo "/$i?queries=20 answered $body objects"; return 1; }
    done
    body=$(curl -s --max-time 2 -D "$work/headers" "$base/fortunes" | grep -o '<tr>' | wc -l)
    [ "$body" = 14 ] || { echo "/fortunes answered $body table rows, want 14"; return 1; }
    grep -qi '^content-type: *text/html; *charset=utf-8' "$work/headers" \
        || { echo "/fortunes: no Content-Type: text/html; charset=utf-8"; return 1; }
}

# ---- measuring -----------------------------------------------------------------

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) exit 1
    if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# One wrk run; prints "rps p99_us non2xx errors wrk% server% postgres% softirq% other%
# idle%", CPU in percent of one core: wrk's, the server's and Postgres's own time, then
# from the machine's counters its softirq time (mostly loopback TCP), the busy time of
# everything else (other processes on a shared machine: noise), and idle time.
wrk_once() {
    local url=$1 seconds=$2 out=$work/wrk.out t0 t1 c0 c1 p0 p1 s0 s1 line pgp
    local -a cmd=(wrk -t1 -c"$CONNS" -d"${seconds}s" --timeout 5s -s bench/wrk/report.lua "$url")
    pgp=$(pg_pid)
    c0=$(cpu_ticks "$server_pid"); p0=$(cpu_ticks "$pgp"); t0=$(date +%s%N); s0=$(head -n 1 /proc/stat)
    local TIMEFORMAT='%U %S'
    { time "${cmd[@]}" > "$out" 2>&1; } 2> "$work/time"
    t1=$(date +%s%N); c1=$(cpu_ticks "$server_pid"); p1=$(cpu_ticks "$pgp"); s1=$(head -n 1 /proc/stat)
    line=$(grep '^WRK ' "$out") || { cat "$out" >&2; return 1; }
    awk -v line="$line" -v wall="$(( (t1 - t0) / 1000 ))" -v dticks="$((c1 - c0))" \
        -v pticks="$((p1 - p0))" -v hz="$HZ" -v t="$(cat "$work/time")" -v s0="$s0" -v s1="$s1" 'BEGIN {
            n = split(line, f, /[ =]/)
            for (i = 2; i < n; i += 2) v[f[i]] = f[i + 1]
            split(t, u, " ")
            split(s0, a, " "); split(s1, b, " ")
            for (i = 2; i <= 9; i++) total += b[i] - a[i]
            cores = total / hz * 1e6 / wall
            w = 100 * (u[1] + u[2]) * 1e6 / wall
            sv = 100 * dticks / hz * 1e6 / wall; pg = 100 * pticks / hz * 1e6 / wall
            si = 100 * cores * (b[8] - a[8]) / total
            idle = 100 * cores * (b[5] - a[5] + b[6] - a[6]) / total
            other = 100 * cores - idle - w - sv - pg - si
            printf "%s %s %s %s %.0f %.0f %.0f %.0f %.0f %.0f\n", v["rps"], v["p99_us"], v["non2xx"],
                v["errors"], w, sv, pg, si, other < 0 ? 0 : other, idle
        }'
}

record() { echo "$1 $2 $3" >> "$results"; echo "BENCH $1 $2 $3"; }

# Busy time of the whole machine over one second, in percent of one core.
machine_busy() {
    local a b
    a=$(head -n 1 /proc/stat); sleep 1; b=$(head -n 1 /proc/stat)
    awk -v a="$a" -v b="$b" -v hz="$HZ" 'BEGIN { split(a, x, " "); split(b, y, " ")
        for (i = 2; i <= 9; i++) t += y[i] - x[i]
        printf "%.0f", 100 * (t - (y[5] - x[5]) - (y[6] - x[6])) / hz }'
}

# On a shared machine, waits up to BENCH_QUIET_WAIT seconds (60) for other processes
# to leave the cores alone (under 25% of one core busy) before a case.
wait_quiet() {
    local busy waited=0 limit=${BENCH_QUIET_WAIT:-60}
    while busy=$(machine_busy) && [ "$busy" -gt 25 ] && [ "$waited" -lt "$limit" ]; do
        [ "$waited" = 0 ] && log "  waiting up to ${limit}s for a quiet machine ($busy% of a core busy)"
        sleep 4; waited=$((waited + 5))
    done
    [ "$waited" -ge "$limit" ] && log "  still $busy% busy; measuring anyway"
    return 0
}

run_case() {
    local server=$1 name=$2 base=$3 path r out errors=0
    local rps=() p99=() wcpu=() scpu=() pcpu=() sirq=() other=() idle=()
    path=$(case_path "$name")
    vacuum_world
    wait_quiet
    wrk_once "$base$path" "$WARMUP" > /dev/null || return 1
    for r in $(seq "$RUNS"); do
        out=$(wrk_once "$base$path" "$DURATION") || return 1
        set -- $out
        log "  $server $name run $r/$RUNS: $1 req/s, p99 $(( $2 / 1000 )) ms, non-2xx $3, socket errors $4, CPU wrk $5% server $6% postgres $7% softirq $8% other $9% idle ${10}%"
        if ! kill -0 "$server_pid" 2> /dev/null; then
            echo "# db.$server: the server exited during $name; its output:"
            sed 's/^/#   /' "$server_log" | tail -n 20
            return 2
        fi
        if [ "$3" -gt 0 ]; then
            echo "# db.$server.$name: $3 non-2xx answers; not recorded; the server's output:"
            sed 's/^/#   /' "$server_log" | tail -n 10
            return 1
        fi
        errors=$((errors + $4))
        rps+=("$1"); p99+=("$2"); wcpu+=("$5"); scpu+=("$6"); pcpu+=("$7"); sirq+=("$8")
        other+=("$9"); idle+=("${10}")
    done
    [ "$errors" -gt 0 ] && echo "# db.$server.$name: $errors socket errors over $RUNS runs"
    record "db.$server.$name" "$(printf '%s\n' "${rps[@]}" | median | awk '{ printf "%.0f", $1 }')" req/s
    record "db.$server.$name.p99" "$(printf '%s\n' "${p99[@]}" | median | awk '{ printf "%.2f", $1 / 1000 }')" ms
    local m v
    m="cpu.$server.$name"
    for v in wcpu scpu pcpu sirq other idle; do
        local -n arr=$v
        m="$m $(printf '%s\n' "${arr[@]}" | median)"
    done
    echo "$m" >> "$work/cpu"
    r=$(printf '%s\n' "${other[@]}" | median)
    if awk -v r="$r" 'BEGIN { exit !(r > 15) }'; then
        echo "# db.$server.$name: other processes took $r% of a core during the runs: noisy"
    fi
    return 0
}

# bench_server NAME KIND [POOL]: NAME is the server's name in the figures.
bench_server() {
    local server=$1 kind=$2 pool=${3:-} port base why name ok=1
    server_log=$work/$server.log
    : > "$server_log"
    port=$(free_port) || { log "no free port"; return 1; }
    base=http://127.0.0.1:$port
    log "== $(server_label "$kind" "$pool") on $base"
    if ! "start_$kind" "$port" "$pool" || ! why=$(check_server "$base"); then
        echo "# db.$server: not measured: ${why:-did not start}; its output:"
        sed 's/^/#   /' "$server_log" | tail -n 20
        stop_server
        return 1
    fi
    for name in $CASES; do
        run_case "$server" "$name" "$base"
        case $? in
            0) ;;
            2) ok=0; break ;;
            *) ok=0; echo "# db.$server.$name: failed" ;;
        esac
    done
    if ! kill -0 "$server_pid" 2> /dev/null; then
        stop_server
        return 1
    fi
    stop_server
    [ "$ok" = 1 ]
}

# ---- main ----------------------------------------------------------------------

for tool in wrk curl pgrep "$PSQL" "$PGBENCH"; do
    command -v "$tool" > /dev/null || { log "bench-db: $tool is missing (scripts/deps.sh bench)"; exit 1; }
done
for c in $CASES; do case_path "$c" > /dev/null || { log "unknown case $c"; exit 1; }; done

log "bench-db: wrk -t1 -c$CONNS, ${RUNS} runs of ${DURATION}s after ${WARMUP}s warm-up, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
start_services || { log "bench-db: could not start Postgres (tests/services.sh) or load the schema"; exit 1; }
log "== pgbench $("$PGBENCH" --version | awk '{ print $3 }'): prepared select by id, -c 8 -j 2, ${PGBENCH_RUNS} runs of ${DURATION}s"
run_pgbench || { echo "# db.pgbench: not measured"; failed="$failed pgbench"; }
names=""
for spec in $SERVERS; do
    kind=${spec%%:*}
    pool=""
    [ "$kind" != "$spec" ] && pool=${spec#*:}
    case $pool in ''|*[!0-9]*) [ -z "$pool" ] || { log "bad pool size in $spec"; exit 1; } ;; esac
    server=$kind${pool:+_pool$pool}
    names="$names $server"
    case $kind in
        node)
            command -v node > /dev/null || { echo "# db.node: not measured: node missing"; failed="$failed node"; continue; }
            why=$(node_deps) || { echo "# db.node: not measured: $why"; failed="$failed node"; continue; }
            ;;
        troupe) ;;
        *) log "unknown server $spec"; exit 1 ;;
    esac
    bench_server "$server" "$kind" "$pool" || failed="$failed $server"
done

# Ratios, then the table.
variants=0
case $names in *_pool*) variants=1 ;; esac
awk -v cases="$CASES" -v variants="$variants" '
    { v[$1] = $2 }
    END {
        n = split(cases, c, " ")
        for (i = 1; i <= n; i++) {
            t = v["db.troupe." c[i]]; o = v["db.node." c[i]]
            if (t > 0 && o > 0) printf "db.ratio.node.%s %.2f x\n", c[i], t / o
            if (variants) {
                bt = 0; bo = 0
                for (k in v) {
                    if (k ~ ("^db\\.troupe(_pool[0-9]+)?\\." c[i] "$") && v[k] > bt) bt = v[k]
                    if (k ~ ("^db\\.node(_pool[0-9]+)?\\." c[i] "$") && v[k] > bo) bo = v[k]
                }
                if (bt > 0 && bo > 0) printf "db.ratio.best.%s %.2f x\n", c[i], bt / bo
            }
        }
        t = v["db.troupe.db"]; p = v["db.pgbench.select"]
        if (t > 0 && p > 0) printf "db.troupe.db_over_pgbench %.2f x\n", t / p
    }' "$results" > "$work/ratios"
while read -r name value unit; do record "$name" "$value" "$unit"; done < "$work/ratios"

[ -f "$work/cpu" ] || : > "$work/cpu"
awk -v cases="$CASES" -v servers="$names" '
    FILENAME == ARGV[1] { v[$1] = $2; next }
    FILENAME == ARGV[2] { cpu[$1] = sprintf("%.0f/%.0f/%.0f/%.0f/%.0f/%.0f", $2, $3, $4, $5, $6, $7); next }
    function num(x, fmt) { return x == "" ? "-" : sprintf(fmt, x) }
    END {
        ns = split(servers, sv, " "); nc = split(cases, c, " ")
        printf "\n%-12s", "req/s | p99"
        for (j = 1; j <= ns; j++) printf " | %-22s", sv[j]
        printf " | %-6s | %-6s\n", "/node", "best"
        for (i = 1; i <= nc; i++) {
            printf "%-12s", c[i]
            for (j = 1; j <= ns; j++) {
                k = "db." sv[j] "." c[i]
                printf " | %9s %12s", num(v[k], "%.0f"), num(v[k ".p99"], "%.2f ms")
            }
            printf " | %6s | %6s\n", num(v["db.ratio.node." c[i]], "%.2fx"),
                num(v["db.ratio.best." c[i]], "%.2fx")
        }
        printf "pgbench select (prepared, -c 8 -j 2): %s tps; troupe /db = %s of it\n",
            num(v["db.pgbench.select"], "%.0f"), num(v["db.troupe.db_over_pgbench"], "%.2f")
        printf "CPU, %% of one core (medians): wrk/server/postgres/softirq/other processes/idle\n"
        for (i = 1; i <= nc; i++) {
            printf "%-12s", c[i]
            for (j = 1; j <= ns; j++) {
                k = "cpu." sv[j] "." c[i]
                printf " | %22s", (k in cpu) ? cpu[k] : "-"
            }
            printf "\n"
        }
        printf "goals: troupe >= 2.5x node on db, fortunes, updates_20; >= 3x on queries_20\n"
    }' "$results" "$work/cpu"

if [ -n "$failed" ]; then
    echo "bench-db: not measured:$failed"
    exit 1
fi
