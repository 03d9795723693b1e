#!/usr/bin/env bash
# Installs Debian's chromium for the headless-browser report test (test/report/html.test.ts).
# Idempotent: does nothing when chromium is already on PATH. Needs root (apt-get); touches no
# network besides the configured apt mirrors.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  echo "install-browser: chromium already installed: $(command -v chromium)"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-browser: chromium is missing and installing it needs root; run: sudo $0" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends chromium
echo "install-browser: installed $(command -v chromium) ($(chromium --version 2>/dev/null || echo 'version unknown'))"
