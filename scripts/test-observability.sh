#!/usr/bin/env bash
# The observability tests (tests/observability): SLO rules with promtool,
# dashboards against Grafana's schema and Prometheus' parser, the local
# trace collector, and, on the running system, the checkout trace, a real
# Prometheus scraping every service, and trace ids in the logs.
# Needs what `make setup` installs: Debian's prometheus (server and promtool)
# and the dashboard checker; the tests fail with "run make setup" without them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

started=$(date +%s)
uv run --frozen pytest tests/observability -q "$@"
echo "observability tests: $(( $(date +%s) - started ))s"
