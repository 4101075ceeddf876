#!/usr/bin/env bash
# Builds the dashboard checker of the observability tests
# (tests/observability/dashboardcheck: Grafana's dashboard schema and
# Prometheus' PromQL parser, Go modules pinned in its go.mod and in
# versions.env) as .cache/bin/dashboardcheck. Go's build cache makes a
# rebuild with nothing changed take a second.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
source "$root/scripts/versions.env"
checker="$root/tests/observability/dashboardcheck"
for pin in "github.com/grafana/grafana-foundation-sdk/go $GRAFANA_FOUNDATION_SDK_GO_VERSION" \
           "github.com/prometheus/prometheus $PROMETHEUS_GO_MODULE_VERSION"; do
  if ! grep -q "$pin" "$checker/go.mod"; then
    echo "install-dashboardcheck: $checker/go.mod does not require $pin (versions.env)" >&2
    exit 1
  fi
done
command -v go >/dev/null || { echo "install-dashboardcheck: the Go toolchain is required" >&2; exit 1; }
mkdir -p "$root/.cache/bin"
(cd "$checker" && CGO_ENABLED=0 go build -mod=readonly -o "$root/.cache/bin/dashboardcheck" .)
echo "$root/.cache/bin/dashboardcheck built"
