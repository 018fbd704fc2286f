#!/usr/bin/env bash
# The metrics tests validate the exposition (and the shipped alert rules) with promtool,
# from Debian's prometheus package. Install it when missing, without starting the server.
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then
  echo "promtool: $(promtool --version 2>&1 | head -n1)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "promtool: missing; install Debian's prometheus package (apt-get install prometheus)" >&2
  exit 1
fi
echo "promtool: installing Debian's prometheus package"
export DEBIAN_FRONTEND=noninteractive
# Exit code 101 tells invoke-rc.d not to start the package's server.
policy=/usr/sbin/policy-rc.d
created=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
fi
trap '[ "$created" = 1 ] && rm -f "$policy"' EXIT
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
promtool --version 2>&1 | head -n1
