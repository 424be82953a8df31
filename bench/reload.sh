#!/usr/bin/env bash
# make bench-reload: how long a hot reload takes to reach every worker, and what a
# reload a second costs a loaded server.
#   bench/reload.sh [BUILD_DIR]
# Environment: BENCH_RELOADS (11) reloads timed per trigger, BENCH_RUNS (3) wrk runs
# with and without reloads, BENCH_DURATION (10) seconds per wrk run, BENCH_WORKERS (2).
#
# The app: 50 routes through the framework (troupe.app), each answering "vN /rK", and
# "/" answering "vN" (generated in a temp dir; each reload writes the next N first).
#
# Latency: from the trigger (SIGHUP to the server, or the start of `troupe reload
# --control SOCK`) until the new version answers on every worker, i.e. until 20
# consecutive requests, each on a new connection (SO_REUSEPORT spreads them over the
# workers) to a random one of the 50 routes, all answer the new version; the time is
# that of the first answer of that run. Medians over BENCH_RELOADS reloads:
#   BENCH reload.latency_ms <ms> ms            SIGHUP
#   BENCH reload.latency_ctl_ms <ms> ms        troupe reload (its process start included)
#   BENCH reload.command_ms <ms> ms            troupe reload's own run time (start to exit)
# Storm: wrk -t1 -c64 against "/" for BENCH_DURATION s, alone and with a loop running
# `troupe reload` once a second beside it, runs interleaved; medians:
#   BENCH reload.steady_rps <req/s> req/s
#   BENCH reload.storm_rps <req/s> req/s
#   BENCH reload.storm_ratio <storm/steady> x  (goal >= 0.9)
#   BENCH reload.storm_ratio_paired <x> x      median of storm run i / steady run i
#   BENCH reload.storm_errors <n> errors       (wrk socket errors + non-2xx, all storm runs)
# The machine's load average is printed before and after (lines starting with #): on a
# shared machine the figures move with it. Exits 1 when something could not be measured.
set -u

B=${1:-build}
[ -d "$B" ] && B=$(cd "$B" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1

RELOADS=${BENCH_RELOADS:-11}
RUNS=${BENCH_RUNS:-3}
DURATION=${BENCH_DURATION:-10}
WORKERS=${BENCH_WORKERS:-2}
TROUPE=$B/troupe

work=$(mktemp -d "${TMPDIR:-/tmp}/troupe-bench-reload.XXXXXX")
server_pid=""
reloader_pid=""

log() { printf '%s\n' "$*" >&2; }

cleanup() {
    [ -n "$reloader_pid" ] && kill "$reloader_pid" 2>/dev/null
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) exit 1
    if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

load_avg() { cut -d' ' -f1-3 /proc/loadavg; }

# The app, version $1: 50 routes through the framework.
write_app() {
    local v=$1
    {
        echo "-- bench/reload.sh's app (generated), version $v"
        echo 'local app = require("troupe.app").new()'
        echo "local VERSION = \"$v\""
        echo 'for i = 1, 50 do'
        echo '  local body = VERSION .. " /r" .. i'
        echo '  app:get("/r" .. i, function(req, res) return res:send(body) end)'
        echo 'end'
        echo 'app:get("/", function(req, res) return res:send(VERSION) end)'
        echo 'return app'
    } > "$work/app.tmp"
    mv "$work/app.tmp" "$work/app.lua"
}

for tool in wrk python3; do
    command -v "$tool" > /dev/null || { log "bench/reload.sh: $tool is not installed"; exit 1; }
done
[ -x "$TROUPE" ] || { log "bench/reload.sh: $TROUPE not found (make first)"; exit 1; }

write_app v1
"$TROUPE" run "$work/app.lua" --workers "$WORKERS" --listen 127.0.0.1:0 \
    --control "$work/ctl.sock" 2> "$work/server.log" > /dev/null &
server_pid=$!
port=""
for _ in $(seq 100); do
    port=$(sed -n 's|.*serving http://127.0.0.1:\([0-9]*\) .*|\1|p' "$work/server.log")
    [ -n "$port" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$port" ] || [ "$(curl -s --max-time 2 "http://127.0.0.1:$port/r7")" != "v1 /r7" ]; then
    log "bench/reload.sh: the server did not start:"
    cat "$work/server.log" >&2
    exit 1
fi
log "# troupe ($WORKERS workers) on 127.0.0.1:$port; load average $(load_avg); $(nproc) cores"

# ---- latency -------------------------------------------------------------------
python3 - "$TROUPE" "$work" "$port" "$server_pid" "$RELOADS" <<'PY' || exit 1
import http.client, os, random, signal, statistics, subprocess, sys, time

troupe, work, port, pid, reloads = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
    int(sys.argv[4]), int(sys.argv[5])
app, sock = os.path.join(work, "app.lua"), os.path.join(work, "ctl.sock")
RUN = 20            # consecutive new-version answers on new connections
TIMEOUT = 10.0      # per reload

def write_app(v):
    src = ['-- bench/reload.sh\'s app (generated), version %s' % v,
           'local app = require("troupe.app").new()',
           'local VERSION = "%s"' % v,
           'for i = 1, 50 do',
           '  local body = VERSION .. " /r" .. i',
           '  app:get("/r" .. i, function(req, res) return res:send(body) end)',
           'end',
           'app:get("/", function(req, res) return res:send(VERSION) end)',
           'return app', '']
    with open(app + ".tmp", "w") as f:
        f.write("\n".join(src))
    os.replace(app + ".tmp", app)

def fetch():
    """A random route on a new connection: its body's version ("v7")."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", "/r%d" % random.randint(1, 50))
        r = c.getresponse()
        body = r.read().decode()
        if r.status != 200:
            raise RuntimeError("status %d: %r" % (r.status, body))
        return body.split(" ")[0]
    finally:
        c.close()

def until_new(version, t0):
    """Seconds from t0 to the first of RUN consecutive answers of version."""
    run, first = 0, None
    while run < RUN:
        if time.monotonic() - t0 > TIMEOUT:
            raise RuntimeError("%s not served on every worker after %.0f s" % (version, TIMEOUT))
        v = fetch()
        now = time.monotonic()
        if v == version:
            if run == 0:
                first = now
            run += 1
        else:
            run = 0
    return first - t0

n = 1
def next_version():
    global n
    n += 1
    v = "v%d" % n
    write_app(v)
    time.sleep(0.05)            # the write is not part of the figure
    return v

hup, ctl, cmd = [], [], []
for _ in range(reloads):
    v = next_version()
    t0 = time.monotonic()
    os.kill(pid, signal.SIGHUP)
    hup.append(until_new(v, t0) * 1000)
    time.sleep(0.2)

    v = next_version()
    t0 = time.monotonic()
    p = subprocess.Popen([troupe, "reload", "--control", sock], stdout=subprocess.PIPE)
    ctl.append(until_new(v, t0) * 1000)
    out = p.communicate()[0]
    if p.returncode != 0:
        raise SystemExit("troupe reload failed: %r" % out)
    time.sleep(0.2)
    # The command alone (nothing polling beside it).
    v = next_version()
    t0 = time.monotonic()
    out = subprocess.run([troupe, "reload", "--control", sock], capture_output=True)
    cmd.append((time.monotonic() - t0) * 1000)
    if out.returncode != 0 or fetch() != v:
        raise SystemExit("troupe reload: %r, then %s" % (out.stdout, fetch()))
    time.sleep(0.2)

def show(xs):
    return " ".join("%.1f" % x for x in xs)

print("# SIGHUP to every worker (ms): %s" % show(hup), file=sys.stderr)
print("# troupe reload to every worker (ms): %s" % show(ctl), file=sys.stderr)
print("# troupe reload's own time (ms): %s" % show(cmd), file=sys.stderr)
print("BENCH reload.latency_ms %.1f ms" % statistics.median(hup))
print("BENCH reload.latency_ctl_ms %.1f ms" % statistics.median(ctl))
print("BENCH reload.command_ms %.1f ms" % statistics.median(cmd))
sys.stdout.flush()
PY

# ---- storm ---------------------------------------------------------------------

# One wrk run against "/"; prints "rps errors".
wrk_once() {
    local out=$work/wrk.out
    wrk -t1 -c64 -d"${DURATION}s" --timeout 5s "http://127.0.0.1:$port/" > "$out" 2>&1 || {
        cat "$out" >&2
        return 1
    }
    awk '
        /^Requests\/sec:/ { rps = $2 }
        /Socket errors:/ { gsub(",", ""); e += $4 + $6 + $8 + $10 }
        /Non-2xx or 3xx responses:/ { e += $5 }
        END { if (rps == "") exit 1; printf "%.0f %d\n", rps, e }' "$out"
}

# Runs `troupe reload` once a second until the flag file goes; counts in $work/reloads.
reloader() {
    while [ -e "$work/storming" ]; do
        sleep 1
        [ -e "$work/storming" ] || break
        if "$TROUPE" reload --control "$work/ctl.sock" > /dev/null; then
            echo ok >> "$work/reloads"
        else
            echo failed >> "$work/reloads"
        fi
    done
}

wrk -t1 -c64 -d2s "http://127.0.0.1:$port/" > /dev/null 2>&1    # warm-up
: > "$work/steady"
: > "$work/storm"
: > "$work/reloads"
storm_errors=0
for i in $(seq "$RUNS"); do
    r=$(wrk_once) || exit 1
    echo "${r% *}" >> "$work/steady"
    log "# run $i steady: ${r% *} req/s, ${r#* } errors; load average $(load_avg)"
    touch "$work/storming"
    reloader &
    reloader_pid=$!
    r=$(wrk_once) || exit 1
    rm -f "$work/storming"
    wait "$reloader_pid"
    reloader_pid=""
    echo "${r% *}" >> "$work/storm"
    storm_errors=$((storm_errors + ${r#* }))
    log "# run $i storm:  ${r% *} req/s, ${r#* } errors, $(grep -c ok "$work/reloads") reloads so far"
done
failed_reloads=$(grep -c failed "$work/reloads")
steady=$(median < "$work/steady")
storm=$(median < "$work/storm")
echo "BENCH reload.steady_rps $steady req/s"
echo "BENCH reload.storm_rps $storm req/s"
awk -v a="$storm" -v b="$steady" 'BEGIN { printf "BENCH reload.storm_ratio %.3f x\n", a / b }'
# Each storm run against the steady run just before it: on a shared machine the load
# drifts between runs, less within a pair.
paste "$work/storm" "$work/steady" | awk '{ print $1 / $2 }' | median |
    awk '{ printf "BENCH reload.storm_ratio_paired %.3f x\n", $1 }'
echo "BENCH reload.storm_errors $storm_errors errors"
gen=$("$TROUPE" status --control "$work/ctl.sock" | sed -n 's/.*"generation":\([0-9]*\).*/\1/p')
log "# $(grep -c ok "$work/reloads") reloads during the storm runs ($failed_reloads failed); generation $gen now"
log "# load average $(load_avg)"
[ "$failed_reloads" -eq 0 ]
