#!/usr/bin/env bash
# Make sure a redis-server binary exists for the tests that use a real Redis (Debian package).
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then exit 0; fi
echo "redis-server not found: installing Debian's redis-server package for the Redis tests"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "warning: not root and no sudo; install redis-server yourself (apt-get install redis-server)." >&2
    echo "         the Redis tests will be skipped." >&2
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq redis-server >/dev/null
# The package starts a system service on 6379; tests start their own servers on free ports.
($SUDO service redis-server stop || true) >/dev/null 2>&1
command -v redis-server >/dev/null
