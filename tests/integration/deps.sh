#!/bin/bash
# scripts/deps.sh: silent and successful when everything is installed; as a non-root
# user with a package missing, it fails and prints the exact command to run.
set -u
cd "$(dirname "$0")/../.."
passed=0 failed=0
check() { if "$@"; then echo "ok - $name"; passed=$((passed + 1)); else echo "not ok - $name"; failed=$((failed + 1)); fi; }

name="all present: exit 0, nothing printed"
out=$(scripts/deps.sh 2>&1); rc=$?
check test "$rc" = 0 -a -z "$out"

user=nobody
if [ "$(id -u)" = 0 ] && id "$user" >/dev/null 2>&1; then
    name="non-root with a missing package: exit 1"
    out=$(runuser -u "$user" -- sh scripts/deps.sh troupe-no-such-package 2>&1); rc=$?
    check test "$rc" = 1
    name="non-root: prints the apt-get command with the missing package"
    check grep -q "apt-get update && apt-get install -y --no-install-recommends troupe-no-such-package" <<<"$out"
    name="non-root: all present still exits 0"
    check runuser -u "$user" -- sh scripts/deps.sh
else
    echo "ok - non-root checks skipped (not root, or no user $user) # SKIP"
    passed=$((passed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
