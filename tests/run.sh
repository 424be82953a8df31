#!/usr/bin/env bash
# The test driver behind `make test` and `make check-san`.
#   tests/run.sh BUILD_DIR            unit binaries BUILD_DIR/tests/test_*, the busted
#                                     specs (BUILD_DIR/troupe test tests/spec), every
#                                     tests/integration/*.sh, tests/integration/http.py,
#                                     then the embed example
#   tests/run.sh --san DIR1 DIR2 ...  unit binaries, the specs and http.py, for each
#                                     sanitizer build
# Every suite's output stays visible (CI logs need it). The last line is exactly
# `N passed, N failed`; the exit status is 1 when something failed or nothing ran.
#
# In the first form, throwaway Postgres and Redis are started with tests/services.sh
# (unless TROUPE_PG_URL is already set) and every suite sees TROUPE_PG_URL,
# TROUPE_REDIS_URL and TROUPE_BUILD_DIR (absolute).
set -eu

UNIT_TIMEOUT=${TROUPE_UNIT_TIMEOUT:-300}                # seconds per unit test binary
INTEGRATION_TIMEOUT=${TROUPE_INTEGRATION_TIMEOUT:-900}  # per script (they start servers)
EMBED_TIMEOUT=${TROUPE_EMBED_TIMEOUT:-120}              # seconds for the embed example
SPEC_TIMEOUT=${TROUPE_SPEC_TIMEOUT:-300}                # seconds for the whole spec suite

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

passed=0
failed=0
failures=()        # names of what failed, repeated at the end so they are easy to find
san=0
services_dir=""
logs=$(mktemp -d "${TMPDIR:-/tmp}/troupe-run.XXXXXX")

cleanup() {
    if [ -n "$services_dir" ]; then tests/services.sh stop "$services_dir" || true; fi
    rm -rf "$logs"
}
trap cleanup EXIT
trap 'exit 130' INT TERM   # run the EXIT trap (stop services) on Ctrl-C or a CI timeout

header() { printf '\n===== %s =====\n' "$*"; }

# add NAME PASSED FAILED: adds to the totals, remembers NAME when it failed.
add() {
    passed=$((passed + $2))
    failed=$((failed + $3))
    if [ "$3" -gt 0 ]; then failures+=("$1"); fi
}

# run_logged LOG TIMEOUT CMD...: runs CMD with no stdin, output shown and copied to LOG;
# returns CMD's status (124 on timeout, as timeout(1) reports it).
run_logged() {
    local log=$1 limit=$2 rc
    shift 2
    set +e
    timeout -k 10 "$limit" "$@" < /dev/null 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    return "$rc"
}

# Explains a non-zero status in words, for the log.
why() {
    case $1 in
        124|137) echo "timed out" ;;
        *) if [ "$1" -gt 128 ]; then echo "killed by signal $(( $1 - 128 ))"; else echo "exit status $1"; fi ;;
    esac
}

# count REGEX LOG: number of lines of LOG matching the extended REGEX.
count() { grep -Ec -- "$1" "$2" || true; }

# ---- (a) cmocka unit test binaries -------------------------------------------

# Counts one binary's results from cmocka's standard output: each `[       OK ] name` is a
# pass, each `[  FAILED  ] N test(s), listed below:` adds N failures, a failed group
# setup/teardown is one failure. A binary that stops in the middle of a group (crash,
# sanitizer abort, timeout), or exits non-zero or (under --san) prints a sanitizer
# report without any counted failure, gets one more failure.
run_unit_binary() {
    local bin=$1 name log rc=0 p f extra=""
    name=$(basename "$bin")
    log=$logs/$name.$RANDOM.log
    printf -- '--- %s\n' "$bin"
    # cmocka's default output format is the one parsed below; make sure nothing changed it.
    CMOCKA_MESSAGE_OUTPUT=stdout run_logged "$log" "$UNIT_TIMEOUT" "$bin" || rc=$?

    p=$(count '^\[       OK \] ' "$log")
    f=$(awk '/^\[  FAILED  \] [0-9]+ test\(s\), listed below:/ { n += $4 } END { print n + 0 }' "$log")
    f=$(( f + $(count '^\[  FAILED  \] GROUP (SETUP|TEARDOWN)' "$log") ))
    if [ "$(count '^\[==========\] Running [0-9]+ test' "$log")" -gt \
         "$(count '^\[==========\] [0-9]+ test\(s\) run\.' "$log")" ]; then
        extra="stopped in the middle of a test group ($(why "$rc"))"
    elif [ "$san" -eq 1 ] && grep -Eq 'ERROR: (Address|Leak|Memory)Sanitizer|WARNING: ThreadSanitizer|ThreadSanitizer: reported|: runtime error: ' "$log"; then
        [ "$f" -gt 0 ] || extra="sanitizer report"
    elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        extra="$(why "$rc") without a cmocka failure"
    fi
    if [ -n "$extra" ]; then
        f=$((f + 1))
        echo "!!! $bin: $extra"
    fi
    printf -- '--- %s: %d passed, %d failed\n' "$name" "$p" "$f"
    add "$bin" "$p" "$f"
}

run_unit_dir() {
    local dir=$1 bin found=0
    header "unit: $dir"
    for bin in "$dir"/tests/test_*; do
        if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then continue; fi
        found=1
        run_unit_binary "$bin"
    done
    if [ "$found" -eq 0 ]; then
        # A build that produced no test binary is a broken build, not an empty pass.
        echo "!!! no executable $dir/tests/test_* (was \`make unit\` run for this build?)"
        add "unit binaries in $dir" 0 1
    fi
}

# ---- (b) busted specs, run inside the runtime by `troupe test` ------------------

# Runs BUILD_DIR/troupe test tests/spec from the repository root. busted's summary
# line (plainTerminal: "N successes / N failures / N errors / N pending : T seconds",
# singular forms for 1) gives the counts: successes pass, failures + errors fail.
# Only stdout is parsed (the actors' logs on stderr stay visible but apart, so they
# cannot split the line). No summary line (troupe crashed, timed out, busted could
# not start) is one failure; so is a non-zero exit whose summary shows no failure
# (e.g. troupe failing after the specs), and a run with no spec at all.
run_spec() {
    local abs=$1 log=$logs/spec.log rc=0 line p=0 f=0
    header "spec: tests/spec"
    if [ ! -x "$abs/troupe" ]; then
        echo "!!! no executable $abs/troupe"
        add "spec (no troupe binary)" 0 1
        return 0
    fi
    set +e
    timeout -k 10 "$SPEC_TIMEOUT" "$abs/troupe" test tests/spec < /dev/null | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    line=$(grep -Eo '[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$log" | tail -n 1 || true)
    if [ -z "$line" ]; then
        echo "!!! $abs/troupe test: $(why "$rc") without a busted summary line"
        f=1
    else
        local n_fail n_err
        read -r p _ _ n_fail _ _ n_err _ <<< "$line"
        f=$((n_fail + n_err))
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
            echo "!!! $abs/troupe test: $(why "$rc") although busted reported no failure"
            f=1
        elif [ $((p + f)) -eq 0 ]; then
            echo "!!! $abs/troupe test: no spec ran"
            f=1
        fi
    fi
    printf -- '--- spec: %d passed, %d failed\n' "$p" "$f"
    add "spec (tests/spec)" "$p" "$f"
}

# ---- (c) integration scripts -----------------------------------------------------

# Adds a suite's `N passed, N failed` line (the last in LOG) to the totals as LABEL
# and prints it as "--- SHORT: ...". A non-zero exit RC whose line shows no failure
# counts one failure. No line: exit 0 counts one pass when BARE_OK is 1, else (and on
# a non-zero exit) one failure. WHAT names the suite in those messages.
#   count_summary LOG RC WHAT SHORT LABEL BARE_OK
count_summary() {
    local log=$1 rc=$2 what=$3 short=$4 label=$5 bare_ok=$6 last p f
    last=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)
    if [ -n "$last" ]; then
        p=${last%% *}
        f=${last#*, }; f=${f%% *}
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
            echo "!!! $what: $(why "$rc") although it reported no failure"
            f=1
        fi
    elif [ "$bare_ok" = 1 ] && [ "$rc" -eq 0 ]; then
        p=1; f=0
    else
        echo "!!! $what: $(why "$rc") without a summary line"
        p=0; f=1
    fi
    printf -- '--- %s: %d passed, %d failed\n' "$short" "$p" "$f"
    add "$label" "$p" "$f"
}

# One integration script; its `N passed, N failed` line is added to the totals.
#   run_script SCRIPT [LABEL]
run_script() {
    local script=$1 label=${2:-$1} log rc=0
    log=$logs/integration.$(printf '%s' "$label" | tr -c 'a-zA-Z0-9._-' '_').log
    printf -- '--- %s\n' "$label"
    run_logged "$log" "$INTEGRATION_TIMEOUT" bash "$script" || rc=$?
    count_summary "$log" "$rc" "$label" "$(basename "$script")" "$label" 1
}

# Each script ends with its own `N passed, N failed` line, added to the totals. No such
# line: a non-zero exit is one failure, exit 0 one pass. A non-zero exit whose line
# shows no failure also counts one failure.
run_integration() {
    local script found=0
    header "integration"
    for script in tests/integration/*.sh; do
        if [ ! -f "$script" ]; then continue; fi
        found=1
        run_script "$script"
    done
    [ "$found" -eq 1 ] || echo "(no tests/integration/*.sh)"
}

# ---- (c2) the HTTP server against real clients (tests/integration/http.py) --------

HTTP_TIMEOUT=${TROUPE_HTTP_TIMEOUT:-300}   # seconds for the whole HTTP suite

# Runs tests/integration/http.py against ABS_BUILD_DIR/troupe (each test group starts
# its own server on a free port; under --san the sanitizer build's troupe, and a
# sanitizer report from a server is a failure). Counted like an integration script:
# its `N passed, N failed` line, one failure more for a non-zero exit without a
# counted failure, one failure when there is no such line.
run_http() {
    local abs=$1 log=$logs/http.$RANDOM.log rc=0
    header "http: tests/integration/http.py ($abs/troupe)"
    if ! command -v python3 > /dev/null 2>&1; then
        echo "!!! python3 is not installed (scripts/deps.sh installs it)"
        add "http ($abs)" 0 1
        return 0
    fi
    run_logged "$log" "$HTTP_TIMEOUT" python3 tests/integration/http.py "$abs" || rc=$?
    count_summary "$log" "$rc" http.py http "http ($abs)" 0
}

# ---- (c3) hot reload and graceful shutdown (tests/integration/reload.py) ----------

RELOAD_TIMEOUT=${TROUPE_RELOAD_TIMEOUT:-300}   # seconds for the whole reload suite

# Runs tests/integration/reload.py against ABS_BUILD_DIR/troupe (each test starts its
# own server and rewrites its app in a temp dir). Counted like http.py: its
# `N passed, N failed` line, one failure more for a non-zero exit without a counted
# failure, one failure when there is no such line.
run_reload() {
    local abs=$1 log=$logs/reload.$RANDOM.log rc=0
    header "reload: tests/integration/reload.py ($abs/troupe)"
    run_logged "$log" "$RELOAD_TIMEOUT" python3 tests/integration/reload.py "$abs" || rc=$?
    count_summary "$log" "$rc" reload.py reload "reload ($abs)" 0
}

# ---- (c4) examples/techempower on Postgres (tests/integration/techempower.py) ------

TECHEMPOWER_TIMEOUT=${TROUPE_TECHEMPOWER_TIMEOUT:-300}   # seconds for the whole suite

# Runs tests/integration/techempower.py against ABS_BUILD_DIR/troupe: it loads
# examples/techempower/schema.sql into $TROUPE_PG_URL and checks every route against
# the TechEmpower rules. Counted like http.py.
run_techempower() {
    local abs=$1 log=$logs/techempower.$RANDOM.log rc=0
    header "techempower: tests/integration/techempower.py ($abs/troupe)"
    run_logged "$log" "$TECHEMPOWER_TIMEOUT" python3 tests/integration/techempower.py "$abs" || rc=$?
    count_summary "$log" "$rc" techempower.py techempower "techempower ($abs)" 0
}

# ---- (d) the embed example, built against the installed library -----------------

run_embed() {
    local b=$1 abs=$2 rc=0
    header "embed example"
    if ! make --no-print-directory embed B="$b" < /dev/null 2>&1; then
        echo "!!! make embed B=$b failed"
        add "embed (build)" 0 1
        return 0
    fi
    run_logged "$logs/embed.log" "$EMBED_TIMEOUT" "$abs/embed" || rc=$?
    if [ "$rc" -eq 0 ]; then
        echo "--- embed: ok"
        add embed 1 0
    else
        echo "!!! $abs/embed: $(why "$rc")"
        add embed 0 1
    fi
}

start_services() {
    local env
    if [ -n "${TROUPE_PG_URL:-}" ]; then
        echo "using the services in the environment ($TROUPE_PG_URL, ${TROUPE_REDIS_URL:-no redis})"
        return 0
    fi
    header "services"
    if env=$(tests/services.sh start < /dev/null); then
        eval "$env"
        services_dir=$TROUPE_SERVICES_DIR
        export TROUPE_PG_URL TROUPE_REDIS_URL TROUPE_SERVICES_DIR
        echo "TROUPE_PG_URL=$TROUPE_PG_URL"
        echo "TROUPE_REDIS_URL=$TROUPE_REDIS_URL"
    else
        # Carry on: suites that do not need the servers still say something useful.
        echo "!!! tests/services.sh start failed"
        add "services start" 0 1
    fi
}

usage() {
    echo "usage: tests/run.sh BUILD_DIR | tests/run.sh --san DIR..." >&2
    exit 2
}

# ---- (e) the decoders under libFuzzer (make fuzz; skipped without clang) ----------
# Each harness's `fuzz: NAME ok` line is a pass, each `fuzz: NAME FAILED` a failure.
run_fuzz() {
    local log=$logs/fuzz.log rc ok bad
    header "fuzz: make fuzz (the codec ${FUZZ_CODEC_SECONDS:-60} s, the others ${FUZZ_SECONDS:-20} s each)"
    set +e
    make --no-print-directory fuzz < /dev/null 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    ok=$(count '^fuzz: [a-z_]+ ok' "$log")
    bad=$(count '^fuzz: [a-z_]+ FAILED' "$log")
    if [ "$rc" -eq 0 ] && grep -q '^fuzz: skipped' "$log"; then
        echo "--- fuzz: skipped (no clang)"
    elif [ "$rc" -eq 0 ] && [ "$ok" -gt 0 ] && [ "$bad" -eq 0 ]; then
        add "fuzz" "$ok" 0
    else
        echo "!!! make fuzz: $(why "$rc")"
        [ "$bad" -gt 0 ] || bad=1
        add "fuzz" "$ok" "$bad"
    fi
}

# ---- main ------------------------------------------------------------------------

[ "$#" -ge 1 ] || usage
if [ "$1" = --san ]; then
    shift
    [ "$#" -ge 1 ] || usage
    san=1
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
    export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    # Postgres and Redis for the drivers' specs and dns.sh under the sanitizers.
    start_services
    for dir in "$@"; do
        if [ -d "$dir" ]; then
            run_unit_dir "${dir%/}"
            # The Lua host and the drivers under the same sanitizer, through the specs.
            [ -x "$dir/troupe" ] && run_spec "$(cd "$dir" && pwd)"
            # The drivers' name lookups off the worker thread (the thread pool, the
            # shutdown that waits for it); ASan lets the shim be preloaded before it.
            [ -x "$dir/troupe" ] && TROUPE_BUILD_DIR=$(cd "$dir" && pwd) \
                ASAN_OPTIONS=$ASAN_OPTIONS:verify_asan_link_order=0 \
                run_script tests/integration/dns.sh "tests/integration/dns.sh ($dir)"
            # The HTTP server under the same sanitizer, against real clients.
            [ -x "$dir/troupe" ] && run_http "$(cd "$dir" && pwd)"
            # Hot reload and graceful shutdown under the same sanitizer.
            [ -x "$dir/troupe" ] && run_reload "$(cd "$dir" && pwd)"
        else
            header "unit: $dir"
            echo "!!! no build directory $dir"
            add "$dir" 0 1
        fi
    done
else
    [ "$#" -eq 1 ] || usage
    if ! abs=$(cd "$1" 2>/dev/null && pwd); then
        echo "!!! no build directory $1"
        add "$1" 0 1
    else
        # make's B must be relative to the repository (the Makefile prefixes $(CURDIR)).
        case $abs in
            "$root"/*) b=${abs#"$root"/} ;;
            *) b=$abs; echo "warning: $abs is outside $root; make embed B=... may not find it" ;;
        esac
        export TROUPE_BUILD_DIR=$abs
        start_services
        run_unit_dir "$abs"
        run_spec "$abs"
        run_integration
        run_http "$abs"
        run_reload "$abs"
        run_techempower "$abs"
        run_embed "$b" "$abs"
        run_fuzz
    fi
    if [ -n "$services_dir" ]; then
        tests/services.sh stop "$services_dir" || echo "!!! tests/services.sh stop failed"
        services_dir=""
    fi
fi

echo
if [ "${#failures[@]}" -gt 0 ]; then
    echo "failed:"
    printf '  %s\n' "${failures[@]}"
fi
if [ $((passed + failed)) -eq 0 ]; then echo "nothing ran"; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ $((passed + failed)) -gt 0 ]
