#!/usr/bin/env bash
# The browser tests drive Debian's Chromium through Playwright (its own browser
# download cannot work here). Install it when missing.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  echo "browser: $(chromium --version 2>/dev/null | head -n1)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "browser: chromium is missing; install Debian's chromium package (apt-get install chromium)" >&2
  exit 1
fi
echo "browser: installing chromium"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq chromium >/dev/null
chromium --version | head -n1
