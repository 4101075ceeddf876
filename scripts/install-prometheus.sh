#!/usr/bin/env bash
# Installs Debian's `prometheus` package (the server and promtool) for the
# observability tests, pinned in versions.env. The package's own service is
# never left running: the tests start their own server on a private port
# with a generated configuration (tests/observability/prometheus.py).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
source "$root/scripts/versions.env"

installed=$(dpkg-query -W -f='${Version}' prometheus 2>/dev/null || true)
if [ "$installed" != "$PROMETHEUS_DEB_VERSION" ]; then
  echo "installing prometheus $PROMETHEUS_DEB_VERSION from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  # Keep the package's service from starting during the install, unless a
  # policy already says so (containers usually have one).
  policy=/usr/sbin/policy-rc.d
  created_policy=false
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=true
  fi
  trap '[ "$created_policy" = true ] && rm -f "$policy"' EXIT
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "prometheus=$PROMETHEUS_DEB_VERSION" >/dev/null
fi

# Whatever happened before, the distribution's instance must not hold :9090.
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus
  systemctl disable --quiet prometheus 2>/dev/null || true
elif [ -x /etc/init.d/prometheus ] && /etc/init.d/prometheus status >/dev/null 2>&1; then
  /etc/init.d/prometheus stop >/dev/null
fi

prometheus --version 2>&1 | head -1
promtool --version 2>&1 | head -1
