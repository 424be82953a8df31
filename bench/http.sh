#!/usr/bin/env bash
# make bench-http: examples/techempower under wrk, with nginx+lua (the OpenResty model)
# and Node.js node:http (cluster, one process per core) side by side in the same run,
# and "ceiling" (bench/ceiling.c): a C server that does no HTTP work at all, only the
# socket calls, so its figures are the most wrk -t1 can drive on this machine.
#   bench/http.sh [BUILD_DIR]
# Environment: BENCH_RUNS (5), BENCH_DURATION seconds per run (5), BENCH_WARMUP seconds
# (2), BENCH_SERVERS ("troupe nginx node ceiling"), BENCH_CASES (all below).
# Every server starts on a free loopback port and they stay up together; each case gets
# a warm-up of each, then BENCH_RUNS rounds in which every server gets one run of
# `wrk -t1` in turn (each round starting with the next server), so that a machine whose
# speed drifts during the minutes of a case moves every server alike. The figures are
# medians. Prints
#   BENCH http.<server>.<case> <req/s> req/s      BENCH http.<server>.<case>.p99 <ms> ms
#   BENCH http.<server>.rss <MB> MB (summed over the server's processes, after the runs)
#   BENCH http.<server>.pss <MB> MB (the same, shared pages counted once)
#   BENCH http.ratio.<peer>.<case> <troupe/peer> x     (peer: nginx, node, ceiling)
#   BENCH http.goal.<case> <req/s> req/s   (what the goals ask of troupe: the larger of
#         1.25x nginx and 2x node; above the ceiling, no server could meet them here)
# then a table with the CPU split of the machine (wrk runs on the same cores). With
# pipelining (plaintext_pipe16: 256 connections, 16 deep), wrk's latency is that of a
# whole batch of 16. Exits 1 when a server could not be measured; the others still are.
set -u

B=${1:-build}
[ -d "$B" ] && B=$(cd "$B" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1

RUNS=${BENCH_RUNS:-5}
DURATION=${BENCH_DURATION:-5}
WARMUP=${BENCH_WARMUP:-2}
SERVERS=${BENCH_SERVERS:-troupe nginx node ceiling}
ALL_CASES="json_c64 json_c256 plaintext_c64 plaintext_c256 plaintext_pipe16"
CASES=${BENCH_CASES:-$ALL_CASES}
HZ=$(getconf CLK_TCK)

# case -> "path connections pipeline-depth"
case_spec() {
    case $1 in
        json_c64)         echo "/json 64 1" ;;
        json_c256)        echo "/json 256 1" ;;
        plaintext_c64)    echo "/plaintext 64 1" ;;
        plaintext_c256)   echo "/plaintext 256 1" ;;
        plaintext_pipe16) echo "/plaintext 256 16" ;;
        *) return 1 ;;
    esac
}

work=$(mktemp -d "${TMPDIR:-/tmp}/troupe-bench-http.XXXXXX")
results=$work/results            # lines: name value unit
: > "$results"
server_pid=""
server_log=""
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

declare -A pid_of log_of base_of   # by server, while it runs
active=()                          # the servers started and still measured

# Makes server the current one (server_pid, server_log) for the functions below.
use() {
    server_pid=${pid_of[$1]}
    server_log=${log_of[$1]}
}

cleanup() {
    local s
    for s in "${!pid_of[@]}"; do
        use "$s"
        stop_server
    done
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

# Sums a field (kB) of /proc/PID/FILE over the server's processes.
sum_kb() {
    local field=$1 file=$2 total=0 p v
    for p in $(tree_pids "$server_pid"); do
        v=$(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$p/$file" 2>/dev/null)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# CPU ticks (user + system) used so far by the server's processes.
cpu_ticks() {
    local total=0 p s
    for p in $(tree_pids "$server_pid"); do
        s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        s=${s##*) }    # the fields after "(comm) "; utime and stime are the 12th and 13th
        set -- $s
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}

# ---- servers -------------------------------------------------------------------

start_troupe() {
    local port=$1
    if [ ! -x "$B/troupe" ]; then
        echo "$B/troupe not found (make first)" > "$server_log"
        return 1
    fi
    "$B/troupe" run examples/techempower/app.lua --workers 2 \
        --listen "127.0.0.1:$port" --env production > "$server_log" 2>&1 &
    server_pid=$!
}

start_nginx() {
    local port=$1 dir=$work/nginx user=""
    mkdir -p "$dir"
    # As root the master switches its workers to an unprivileged user, which then must
    # reach the temp dirs; as anyone else there is no switch (and `user` would warn).
    if [ "$(id -u)" -eq 0 ]; then
        user="user nobody nogroup;"
        chmod 755 "$work" "$dir"
    fi
    sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@USER@|$user|" \
        bench/nginx/nginx.conf.in > "$dir/nginx.conf"
    nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" -g 'daemon off;' \
        > "$server_log" 2>&1 &
    server_pid=$!
}

start_ceiling() {
    local port=$1
    if [ ! -x "$B/bench_ceiling" ]; then
        echo "$B/bench_ceiling not found (make bench-http builds it)" > "$server_log"
        return 1
    fi
    "$B/bench_ceiling" "$port" 2 > "$server_log" 2>&1 &
    server_pid=$!
}

start_node() {
    local port=$1
    node bench/node/http.js "$port" 127.0.0.1 > "$server_log" 2>&1 &
    server_pid=$!
}

server_label() {
    case $1 in
        troupe) echo "troupe (2 workers)" ;;
        nginx)  echo "nginx $(nginx -v 2>&1 | sed 's|.*/||') + lua-nginx-module, 2 workers" ;;
        node)   echo "node $(node --version 2>/dev/null) node:http cluster, $(nproc) workers" ;;
        ceiling) echo "ceiling (bench/ceiling.c: no HTTP work, 2 threads)" ;;
    esac
}

# Waits until the server answers /plaintext, then checks both bodies and types.
check_server() {
    local base=$1 i body
    for i in $(seq 100); do
        kill -0 "$server_pid" 2>/dev/null || { echo "exited"; return 1; }
        curl -sf -o /dev/null --max-time 1 "$base/plaintext" && break
        [ "$i" = 100 ] && { echo "no answer on $base/plaintext within 10 s"; return 1; }
        sleep 0.1
    done
    body=$(curl -s --max-time 2 -D "$work/headers" "$base/json" | tr -d ' \r\n')
    [ "$body" = '{"message":"Hello,World!"}' ] || { echo "/json answered '$body'"; return 1; }
    grep -qi '^content-type: *application/json' "$work/headers" \
        || { echo "/json: no Content-Type: application/json"; return 1; }
    body=$(curl -s --max-time 2 -D "$work/headers" "$base/plaintext")
    [ "$body" = "Hello, World!" ] || { echo "/plaintext answered '$body'"; return 1; }
    grep -qi '^content-type: *text/plain' "$work/headers" \
        || { echo "/plaintext: no Content-Type: text/plain"; return 1; }
    for h in server date content-length; do
        grep -qi "^$h:" "$work/headers" || { echo "/plaintext: no $h header"; return 1; }
    done
}

# ---- measuring -----------------------------------------------------------------

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) exit 1
    if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# One wrk run; prints "rps p99_us non2xx errors wrk% server% softirq% other% idle%", CPU
# in percent of one core: wrk's and the server's own time, then from the machine's
# counters its softirq time (mostly loopback TCP), the busy time of everything else
# (other processes on a shared machine: noise), and idle time.
wrk_once() {
    local url=$1 conns=$2 depth=$3 seconds=$4 out=$work/wrk.out t0 t1 c0 c1 s0 s1 line
    local -a cmd=(wrk -t1 -c"$conns" -d"${seconds}s" --timeout 5s)
    if [ "$depth" -gt 1 ]; then
        cmd+=(-s bench/wrk/pipeline.lua "$url" -- "$depth")
    else
        cmd+=(-s bench/wrk/report.lua "$url")
    fi
    c0=$(cpu_ticks); t0=$(date +%s%N); s0=$(head -n 1 /proc/stat)
    local TIMEFORMAT='%U %S'
    { time "${cmd[@]}" > "$out" 2>&1; } 2> "$work/time"
    t1=$(date +%s%N); c1=$(cpu_ticks); s1=$(head -n 1 /proc/stat)
    line=$(grep '^WRK ' "$out") || { cat "$out" >&2; return 1; }
    awk -v line="$line" -v wall="$(( (t1 - t0) / 1000 ))" -v dticks="$((c1 - c0))" \
        -v hz="$HZ" -v t="$(cat "$work/time")" -v s0="$s0" -v s1="$s1" 'BEGIN {
            n = split(line, f, /[ =]/)
            for (i = 2; i < n; i += 2) v[f[i]] = f[i + 1]
            split(t, u, " ")
            # the whole machine (/proc/stat "cpu" line): softirq is mostly loopback TCP
            split(s0, a, " "); split(s1, b, " ")
            for (i = 2; i <= 9; i++) total += b[i] - a[i]
            cores = total / hz * 1e6 / wall
            w = 100 * (u[1] + u[2]) * 1e6 / wall; sv = 100 * dticks / hz * 1e6 / wall
            si = 100 * cores * (b[8] - a[8]) / total
            idle = 100 * cores * (b[5] - a[5] + b[6] - a[6]) / total
            other = 100 * cores - idle - w - sv - si
            printf "%s %s %s %s %.0f %.0f %.0f %.0f %.0f\n", v["rps"], v["p99_us"], v["non2xx"],
                v["errors"], w, sv, si, other < 0 ? 0 : other, idle
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

# Drops server from the measured ones after a failure (why) in case name.
drop() {
    local server=$1 name=$2 why=$3 s keep=()
    echo "# http.$server.$name: $why"
    if [ "$why" = exited ]; then
        echo "# http.$server: the server exited during $name; its output:"
        sed 's/^/#   /' "${log_of[$server]}" | tail -n 20
    fi
    for s in "${active[@]}"; do [ "$s" = "$server" ] || keep+=("$s"); done
    active=("${keep[@]}")
    failed="$failed $server"
}

# One case for every active server: a warm-up each, then RUNS rounds of one run each,
# every round starting with the next server. Records each server's medians.
run_case() {
    local name=$1 path conns depth r i n s out
    read -r path conns depth <<< "$(case_spec "$name")"
    wait_quiet
    for s in "${active[@]}"; do
        use "$s"
        : > "$work/runs.$s"
        wrk_once "${base_of[$s]}$path" "$conns" "$depth" "$WARMUP" > /dev/null ||
            drop "$s" "$name" "wrk failed"
    done
    for r in $(seq "$RUNS"); do
        local order=("${active[@]}")
        n=${#order[@]}
        for i in $(seq 0 $((n - 1))); do
            s=${order[$(( (i + r - 1) % n ))]}
            use "$s"
            if ! out=$(wrk_once "${base_of[$s]}$path" "$conns" "$depth" "$DURATION"); then
                drop "$s" "$name" "wrk failed"
                continue
            fi
            set -- $out
            log "  $s $name run $r/$RUNS: $1 req/s, p99 $(( $2 / 1000 )) ms, non-2xx $3, socket errors $4, CPU wrk $5% server $6% softirq $7% other $8% idle $9%"
            if ! kill -0 "$server_pid" 2> /dev/null; then
                drop "$s" "$name" exited
                continue
            fi
            if [ "$3" -gt 0 ]; then
                drop "$s" "$name" "$3 non-2xx answers; not recorded"
                continue
            fi
            echo "$out" >> "$work/runs.$s"
        done
    done
    for s in "${active[@]}"; do summarize "$s" "$name"; done
}

# The median of column c of file f.
col_median() { awk -v c="$2" '{ print $c }' "$1" | median; }

# Records server's medians for case name from its runs ($work/runs.SERVER: the lines
# of wrk_once).
summarize() {
    local server=$1 name=$2 runs=$work/runs.$1 v m errors r
    errors=$(awk '{ e += $4 } END { print e + 0 }' "$runs")
    [ "$errors" -gt 0 ] && echo "# http.$server.$name: $errors socket errors over $RUNS runs"
    record "http.$server.$name" "$(col_median "$runs" 1 | awk '{ printf "%.0f", $1 }')" req/s
    record "http.$server.$name.p99" "$(col_median "$runs" 2 | awk '{ printf "%.2f", $1 / 1000 }')" ms
    m="cpu.$server.$name"
    for v in 5 6 7 8 9; do m="$m $(col_median "$runs" "$v")"; done
    echo "$m" >> "$work/cpu"
    r=$(col_median "$runs" 8)
    if awk -v r="$r" 'BEGIN { exit !(r > 15) }'; then
        echo "# http.$server.$name: other processes took $r% of a core during the runs: noisy"
    fi
}

# Starts server and checks its answers; on success it joins the active ones.
start_server() {
    local server=$1 port base why
    server_log=$work/$server.log
    : > "$server_log"
    server_pid=""
    port=$(free_port) || { log "no free port"; return 1; }
    base=http://127.0.0.1:$port
    log "== $(server_label "$server") on $base"
    if ! "start_$server" "$port" || ! why=$(check_server "$base"); then
        echo "# http.$server: not measured: ${why:-did not start}; its output:"
        sed 's/^/#   /' "$server_log" | tail -n 20
        stop_server
        return 1
    fi
    pid_of[$server]=$server_pid
    log_of[$server]=$server_log
    base_of[$server]=$base
    active+=("$server")
}

# ---- main ----------------------------------------------------------------------

for tool in wrk curl pgrep; do
    command -v "$tool" > /dev/null || { log "bench-http: $tool is missing (scripts/deps.sh bench)"; exit 1; }
done
for c in $CASES; do case_spec "$c" > /dev/null || { log "unknown case $c"; exit 1; }; done

log "bench-http: wrk -t1, ${RUNS} rounds of ${DURATION}s runs after ${WARMUP}s warm-up, $(nproc) cores"
for server in $SERVERS; do
    case $server in
        nginx) command -v nginx > /dev/null || { echo "# http.nginx: not measured: nginx missing"; failed="$failed nginx"; continue; } ;;
        node)  command -v node > /dev/null || { echo "# http.node: not measured: node missing"; failed="$failed node"; continue; } ;;
        troupe|ceiling) ;;
        *) log "unknown server $server"; exit 1 ;;
    esac
    start_server "$server" || failed="$failed $server"
done
for name in $CASES; do
    [ "${#active[@]}" -gt 0 ] && run_case "$name"
done
for server in "${active[@]}"; do
    use "$server"
    record "http.$server.rss" "$(awk -v k="$(sum_kb VmRSS status)" 'BEGIN { printf "%.1f", k / 1024 }')" MB
    record "http.$server.pss" "$(awk -v k="$(sum_kb Pss smaps_rollup)" 'BEGIN { printf "%.1f", k / 1024 }')" MB
done

# Ratios, then the table.
awk -v cases="$CASES" '
    { v[$1] = $2 }
    END {
        n = split(cases, c, " ")
        split("nginx node ceiling", peers, " ")
        for (i = 1; i <= n; i++) {
            for (p = 1; p <= 3; p++) {
                t = v["http.troupe." c[i]]; o = v["http." peers[p] "." c[i]]
                if (t > 0 && o > 0) printf "http.ratio.%s.%s %.2f x\n", peers[p], c[i], t / o
            }
            g = 1.25 * v["http.nginx." c[i]]
            if (2 * v["http.node." c[i]] > g) g = 2 * v["http.node." c[i]]
            if (g > 0) printf "http.goal.%s %.0f req/s\n", c[i], g
        }
    }' "$results" > "$work/ratios"
while read -r name value unit; do record "$name" "$value" "$unit"; done < "$work/ratios"

[ -f "$work/cpu" ] || : > "$work/cpu"
awk -v cases="$CASES" -v servers="$SERVERS" '
    FILENAME == ARGV[1] { v[$1] = $2; next }
    FILENAME == ARGV[2] { cpu[$1] = sprintf("%.0f/%.0f/%.0f/%.0f/%.0f", $2, $3, $4, $5, $6); next }
    function num(x, fmt) { return x == "" ? "-" : sprintf(fmt, x) }
    END {
        ns = split(servers, sv, " "); nc = split(cases, c, " ")
        printf "\n%-17s", "req/s | p99 ms"
        for (j = 1; j <= ns; j++) printf " | %-22s", sv[j]
        printf " | %-8s | %-8s | %-8s | %-9s\n", "/nginx", "/node", "/ceiling", "goal"
        for (i = 1; i <= nc; i++) {
            printf "%-17s", c[i]
            for (j = 1; j <= ns; j++) {
                k = "http." sv[j] "." c[i]
                printf " | %9s %12s", num(v[k], "%.0f"), num(v[k ".p99"], "%.2f ms")
            }
            printf " | %8s | %8s | %8s | %9s\n", num(v["http.ratio.nginx." c[i]], "%.2fx"),
                num(v["http.ratio.node." c[i]], "%.2fx"), num(v["http.ratio.ceiling." c[i]], "%.2fx"),
                num(v["http.goal." c[i]], "%.0f")
        }
        printf "%-17s", "RSS (PSS) MB"
        for (j = 1; j <= ns; j++)
            printf " | %22s", num(v["http." sv[j] ".rss"], "%.1f") " (" num(v["http." sv[j] ".pss"], "%.1f") ")"
        printf "\nCPU, %% of one core (medians): wrk/server/softirq/other processes/idle\n"
        for (i = 1; i <= nc; i++) {
            printf "%-17s", c[i]
            for (j = 1; j <= ns; j++) {
                k = "cpu." sv[j] "." c[i]
                printf " | %22s", (k in cpu) ? cpu[k] : "-"
            }
            printf "\n"
        }
        printf "goals: troupe >= 1.25x nginx+lua and >= 2x node:http (goal: the req/s that asks);\n"
        printf "ceiling: a server doing no HTTP work; a goal above it is out of reach of any server here\n"
    }' "$results" "$work/cpu"

if [ -n "$failed" ]; then
    echo "bench-http: not measured:$failed"
    exit 1
fi
