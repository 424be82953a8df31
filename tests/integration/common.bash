# tests/integration/common.bash: sourced by the integration scripts (not a test itself:
# tests/run.sh runs the *.sh). Sets here, root and troupe, counts the checks, and
# finds the services of tests/services.sh.
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
troupe=${TROUPE_BUILD_DIR:-$root/build}/troupe
passed=0
failed=0
own_services=""     # the services this script started (it stops them in its cleanup)

ok()     { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $1"; }
check()  { local name=$1; shift; if "$@"; then ok "$name"; else not_ok "$name"; fi; }

# Stops the script with one failure when the troupe binary is not built.
need_troupe() {
    if [ ! -x "$troupe" ]; then
        echo "no $troupe (make first)"; echo "0 passed, 1 failed"; exit 1
    fi
}

# The services named by the variables given (TROUPE_PG_URL, ...): those of the
# environment (tests/run.sh exports them) when every one is set, else a set of our own.
use_services() {
    local v env
    for v in "$@"; do
        if [ -z "${!v:-}" ]; then
            env=$("$root/tests/services.sh" start) || { echo "0 passed, 1 failed"; exit 1; }
            eval "$env"
            own_services=$TROUPE_SERVICES_DIR
            return 0
        fi
    done
}
