#!/usr/bin/env bash
# Installs Debian's redis-server for the batch queue tests (test/batch/queue.test.ts), which start
# their own server on a free loopback port with a temporary folder and stop it after.
# Idempotent: does nothing when redis-server is already on PATH. Needs root (apt-get); touches no
# network besides the configured apt mirrors. The package's own system service is not needed.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
  echo "install-redis: redis-server already installed: $(command -v redis-server)"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-redis: redis-server is missing and installing it needs root; run: sudo $0" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends redis-server
echo "install-redis: installed $(command -v redis-server) ($(redis-server --version 2>/dev/null || echo 'version unknown'))"
