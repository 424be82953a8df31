#!/bin/sh
# Installs the Debian packages troupe needs (shared/DESIGN.md, "Dependencies").
#   scripts/deps.sh          build + test dependencies
#   scripts/deps.sh bench    also the peers the benchmarks compare against
#   scripts/deps.sh PKG...   also these packages
# Silent and fast when everything is present. As root it runs apt-get update and
# apt-get install; otherwise it prints the exact command and fails.
set -eu

packages="build-essential pkg-config liblua5.4-dev libuv1-dev node-llhttp libpq-dev
libhiredis-dev libjansson-dev libssl-dev libsodium-dev libcmocka-dev lua-busted
postgresql redis-server redis-tools procps clang libclang-rt-14-dev python3 curl"
for arg in "$@"; do
    case $arg in
        # The peers of make bench: Erlang/OTP (bench-actors); wrk, curl, and nginx with
        # lua-nginx-module (LuaJIT) and cjson for LuaJIT/5.1 (bench-http). Node.js 20 is on
        # the machine; where node is missing, Debian 12's nodejs (18) stands in for it.
        # bench-db: pgbench comes with postgresql; npm fetches bench/node/db's fastify and
        # pg (bench/db.sh runs `npm ci` there when node_modules is missing).
        bench)
            packages="$packages erlang-base wrk curl nginx libnginx-mod-http-lua lua-cjson"
            command -v node > /dev/null 2>&1 || packages="$packages nodejs"
            command -v npm > /dev/null 2>&1 || packages="$packages npm"
            ;;
        *) packages="$packages $arg" ;;
    esac
done

missing=""
for p in $packages; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = installed ] || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "troupe: missing Debian packages:$missing" >&2
    echo "run as root: apt-get update && apt-get install -y --no-install-recommends$missing" >&2
    exit 1
fi

echo "troupe: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >&2
