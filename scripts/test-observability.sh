#!/usr/bin/env bash
# The observability tests (tests/observability): SLO rules with promtool,
# dashboards against Grafana's schema and Prometheus' parser, the local
# trace collector, and, on the running system, the checkout trace, a real
# Prometheus scraping every service, and trace ids in the logs.
# Installs what they need first: Debian's prometheus (server and promtool)
# and the dashboard checker (Go, pinned in its go.mod).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=versions.env
source scripts/versions.env

scripts/install-prometheus.sh

checker=tests/observability/dashboardcheck
for pin in "github.com/grafana/grafana-foundation-sdk/go $GRAFANA_FOUNDATION_SDK_GO_VERSION" \
           "github.com/prometheus/prometheus $PROMETHEUS_GO_MODULE_VERSION"; do
  if ! grep -q "$pin" "$checker/go.mod"; then
    echo "$checker/go.mod does not require $pin (versions.env)" >&2
    exit 1
  fi
done
echo "building the dashboard checker"
(cd "$checker" && CGO_ENABLED=0 go build -mod=readonly -o "$root/.cache/bin/dashboardcheck" .)

started=$(date +%s)
uv run --frozen pytest tests/observability -q "$@"
echo "observability tests: $(( $(date +%s) - started ))s"
