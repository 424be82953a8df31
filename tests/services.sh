#!/usr/bin/env bash
# Throwaway Postgres and Redis on free loopback ports, for tests and benchmarks.
#   env=$(tests/services.sh start) && eval "$env"
#       prints only `export TROUPE_PG_URL=...`, `export TROUPE_REDIS_URL=...` and
#       `export TROUPE_SERVICES_DIR=...` on stdout; progress and errors go to stderr.
#       (Not `eval "$(... start)"` alone: eval of an empty string succeeds, hiding a failure.)
#   tests/services.sh stop [DIR]     stops both, waits until they are gone, removes DIR
#                                    (default $TROUPE_SERVICES_DIR); a stopped DIR is fine
#   tests/services.sh status [DIR]   exit 0 when both answer
# Everything lives in one temp dir: data, sockets, pid files and logs. Nothing is
# installed or registered with the system, and Debian's own cluster (pg_lsclusters) is
# left alone. Postgres refuses to run as root, so as root it runs as `postgres`.
set -eu

MARKER=troupe-services.marker  # written by start; stop refuses to delete a dir without it
# Bound, in seconds, for every wait on a server (TROUPE_SERVICES_WAIT overrides).
WAIT_S=${TROUPE_SERVICES_WAIT:-30}
PG_PORT=""
REDIS_PORT=""

log() { printf 'services: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Highest installed Postgres, preferring 15 (the version the project targets).
pg_bindir() {
    local d=/usr/lib/postgresql/15/bin best=""
    if [ -x "$d/pg_ctl" ]; then printf '%s\n' "$d"; return 0; fi
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/pg_ctl" ] || continue
        local v=${d#/usr/lib/postgresql/}; v=${v%/bin}
        if [ -z "$best" ] || [ "${v%%.*}" -gt "${best%%.*}" ]; then best=$v; fi
    done
    [ -n "$best" ] || return 1
    printf '%s\n' "/usr/lib/postgresql/$best/bin"
}

# Runs a Postgres server-side tool as `postgres` when we are root (the server refuses
# root), directly otherwise. The cd avoids "could not change directory" noise when the
# caller's cwd is not readable by postgres.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd "$DIR" && runuser -u postgres -- "$@")
    else
        (cd "$DIR" && "$@")
    fi
}

# A TCP port on 127.0.0.1 that nothing uses in any state. Random rather than
# sequential so that two instances started at the same moment rarely pick the same
# one; start retries on the rare collision anyway.
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$(( 20000 + ((RANDOM << 15) | RANDOM) % 40001 ))
        if [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ]; then
            printf '%s\n' "$p"; return 0
        fi
    done
    return 1
}

# True while pid is a live process; a zombie counts as gone (PID 1 in some containers
# never reaps the daemons it inherits).
alive() {
    local pid=$1 state
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
    [ "$state" != Z ]
}

# Waits up to WAIT_S seconds for pid to be gone.
wait_gone() {
    local pid=$1
    for _ in $(seq 1 $(( WAIT_S * 10 ))); do
        alive "$pid" || return 0
        sleep 0.1
    done
    return 1
}

pid_of() { if [ -f "$1" ]; then head -n 1 "$1" 2>/dev/null || true; fi; }

pg_up()    { "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$1" -U postgres -d postgres -t 2; }
# True when the redis answering on port $1 is the one running in $DIR, not another
# one that held the port first (our daemon then fails its bind, and only logs it).
# Answering `config get dir` implies it answers PING too.
redis_ours() {
    local want got
    want=$(cd "$DIR" && pwd -P)
    got=$(redis-cli -h 127.0.0.1 -p "$1" config get dir 2>/dev/null | sed -n 2p)
    [ -n "$got" ] && [ "$got" = "$want" ]
}

# Reads the ports recorded by start (DIR/ports: "PG_PORT REDIS_PORT").
read_ports() {
    PG_PORT=""; REDIS_PORT=""
    if [ -f "$DIR/ports" ]; then read -r PG_PORT REDIS_PORT < "$DIR/ports" || true; fi
}

start_pg() {
    local attempt sockdir
    # initdb: -N skips fsync of the new cluster, it is thrown away anyway.
    if ! as_pg "$PGBIN/initdb" -D "$DIR/pg" -A trust -U postgres -E UTF8 --locale=C -N \
            > "$DIR/initdb.log" 2>&1; then
        tail -n 20 "$DIR/initdb.log" >&2
        die "initdb failed (log above)"
    fi
    # The unix socket goes in DIR too, unless DIR is too long for sun_path (107 bytes).
    sockdir=$DIR
    if [ $(( ${#DIR} + 20 )) -gt 107 ]; then sockdir=""; fi
    for attempt in 1 2 3; do
        PG_PORT=$(free_port) || die "no free port for postgres"
        if as_pg "$PGBIN/pg_ctl" -D "$DIR/pg" -l "$DIR/pg.log" -w -t "$WAIT_S" \
                -o "-p $PG_PORT -k '$sockdir' -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
                start > "$DIR/pg_ctl.log" 2>&1; then
            return 0
        fi
        # Most likely another process took the port between the check and the bind.
        log "postgres did not start on port $PG_PORT (attempt $attempt)"
        as_pg "$PGBIN/pg_ctl" -D "$DIR/pg" stop -m immediate > /dev/null 2>&1 || true
    done
    tail -n 20 "$DIR/pg.log" >&2 2>/dev/null || true
    die "postgres failed to start (log above)"
}

start_redis() {
    local attempt
    for attempt in 1 2 3; do
        REDIS_PORT=$(free_port) || die "no free port for redis"
        rm -f "$DIR/redis.log"   # each attempt's log on its own, for the check below
        # --save '' and --appendonly no: nothing is ever written to disk.
        redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" \
            --dir "$DIR" < /dev/null > /dev/null 2>&1 || true
        # A failed bind shows only in the log (the daemon has detached), so poll.
        for _ in $(seq 1 $(( WAIT_S * 10 ))); do
            redis_ours "$REDIS_PORT" && return 0
            # The daemon gave up (port taken, bad option) or died: try the next port now.
            if grep -q 'Failed listening\|aborting' "$DIR/redis.log" 2>/dev/null; then break; fi
            if [ -f "$DIR/redis.pid" ] && ! alive "$(pid_of "$DIR/redis.pid")"; then break; fi
            sleep 0.1
        done
        log "redis did not answer on port $REDIS_PORT (attempt $attempt)"
        stop_redis
    done
    tail -n 20 "$DIR/redis.log" >&2 2>/dev/null || true
    die "redis failed to start (log above)"
}

stop_pg() {
    local pid
    [ -d "$DIR/pg" ] || return 0
    pid=$(pid_of "$DIR/pg/postmaster.pid")
    # Immediate: no checkpoint, the data is thrown away.
    as_pg "$PGBIN/pg_ctl" -D "$DIR/pg" stop -m immediate -w -t "$WAIT_S" > /dev/null 2>&1 || true
    if [ -n "$pid" ] && ! wait_gone "$pid"; then
        log "postgres $pid still alive after pg_ctl stop; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" || die "postgres $pid does not die"
    fi
}

# Uses $REDIS_PORT when known (set by start, or read_ports), else only the pid file.
stop_redis() {
    local pid
    pid=$(pid_of "$DIR/redis.pid")
    if [ -n "$REDIS_PORT" ] && redis_ours "$REDIS_PORT"; then
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave > /dev/null 2>&1 || true
    fi
    if [ -n "$pid" ] && ! wait_gone "$pid"; then
        log "redis $pid still alive after shutdown; killing it"
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_gone "$pid"; then
            kill -KILL "$pid" 2>/dev/null || true
            wait_gone "$pid" || die "redis $pid does not die"
        fi
    fi
    rm -f "$DIR/redis.pid"
}

# The dir to act on for stop/status: argument, else $TROUPE_SERVICES_DIR.
pick_dir() {
    DIR=${1:-${TROUPE_SERVICES_DIR:-}}
    [ -n "$DIR" ] || die "no dir: pass one or set TROUPE_SERVICES_DIR"
}

cmd_start() {
    local base=${TMPDIR:-/tmp}
    PGBIN=$(pg_bindir) || die "no Postgres under /usr/lib/postgresql (apt-get install postgresql)"
    command -v redis-server > /dev/null || die "redis-server not found (apt-get install redis-server)"
    command -v redis-cli > /dev/null || die "redis-cli not found (apt-get install redis-tools)"
    command -v ss > /dev/null || die "ss not found (apt-get install iproute2)"
    if [ "$(id -u)" -eq 0 ]; then
        id postgres > /dev/null 2>&1 || die "running as root but there is no postgres user"
    fi

    DIR=$(mktemp -d "$base/troupe-services.XXXXXX") || die "mktemp -d under $base failed"
    : > "$DIR/$MARKER"
    # From here on, any failure stops what did start and removes the dir.
    trap 'rc=$?; if [ $rc -ne 0 ]; then stop_pg || true; stop_redis || true; rm -rf "$DIR"; fi' EXIT

    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$DIR"
        runuser -u postgres -- test -w "$DIR" \
            || die "postgres cannot write $DIR (is $base traversable by other users? set TMPDIR)"
    fi

    start_pg
    start_redis
    printf '%s %s\n' "$PG_PORT" "$REDIS_PORT" > "$DIR/ports"

    for _ in $(seq 1 $(( WAIT_S * 10 ))); do
        pg_up "$PG_PORT" && break
        sleep 0.1
    done
    pg_up "$PG_PORT" || die "postgres on port $PG_PORT does not answer"
    "$PGBIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres troupe > /dev/null 2>&1 \
        || die "createdb troupe failed"

    {
        printf 'export TROUPE_PG_URL=%q\n' "postgresql://postgres@127.0.0.1:$PG_PORT/troupe"
        printf 'export TROUPE_REDIS_URL=%q\n' "redis://127.0.0.1:$REDIS_PORT/0"
        printf 'export TROUPE_SERVICES_DIR=%q\n' "$DIR"
    } > "$DIR/env"
    trap - EXIT
    log "postgres on 127.0.0.1:$PG_PORT, redis on 127.0.0.1:$REDIS_PORT, dir $DIR"
    cat "$DIR/env"
}

cmd_stop() {
    pick_dir "${1:-}"
    [ -d "$DIR" ] || return 0   # already stopped and removed
    # Never rm -rf a dir this script did not make.
    [ -f "$DIR/$MARKER" ] || die "$DIR was not made by tests/services.sh start; not touching it"
    PGBIN=$(pg_bindir) || PGBIN=""
    if [ -n "$PGBIN" ]; then stop_pg; fi
    read_ports
    stop_redis
    rm -rf "$DIR"
}

cmd_status() {
    pick_dir "${1:-}"
    [ -f "$DIR/ports" ] || { echo "not running ($DIR has no ports file)"; return 1; }
    PGBIN=$(pg_bindir) || die "no Postgres under /usr/lib/postgresql"
    read_ports
    local rc=0
    # Our postmaster must be alive too, not merely something answering on the port.
    if alive "$(pid_of "$DIR/pg/postmaster.pid")" && pg_up "$PG_PORT"; then echo "postgres up on 127.0.0.1:$PG_PORT"
    else echo "postgres down (port $PG_PORT)"; rc=1; fi
    if redis_ours "$REDIS_PORT"; then echo "redis up on 127.0.0.1:$REDIS_PORT"
    else echo "redis down (port $REDIS_PORT)"; rc=1; fi
    return "$rc"
}

case "${1:-}" in
    start)  cmd_start ;;
    stop)   cmd_stop "${2:-}" ;;
    status) cmd_status "${2:-}" ;;
    *)      echo "usage: $0 start | stop [DIR] | status [DIR]" >&2; exit 2 ;;
esac
