#!/usr/bin/env bash
# The chart and image checks of `make test`: lints and renders every
# environment with Helm 3 and Helm 4 (installed by `make setup`, pinned in
# versions.env), then runs tests/chart (schema validation, contract
# assertions, checkov, the image `make setup` built, and the cluster tests
# against the local Kubernetes control plane, docs/cluster.md).
#   scripts/test-chart.sh                 everything
#   scripts/test-chart.sh --write-readme  regenerate charts/emporium/README.md
#   scripts/test-chart.sh -- <pytest args>
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
chart=charts/emporium
bin=.cache/bin
for tool in helm3 helm4 helm-docs; do
  [[ -x "$bin/$tool" ]] || { echo "test-chart: $bin/$tool is not installed: run make setup" >&2; exit 1; }
done

if [[ "${1:-}" == "--write-readme" ]]; then
  (cd "$chart" && "$root/$bin/helm-docs" --chart-search-root . --template-files README.md.gotmpl --sort-values-order file)
  exit 0
fi
[[ "${1:-}" == "--" ]] && shift

export HELM_CACHE_HOME="$root/.cache/helm" HELM_CONFIG_HOME="$root/.cache/helm-config" HELM_DATA_HOME="$root/.cache/helm-data"
kube_version=1.37.0
started=$(date +%s)
for helm in helm3 helm4; do
  for env in dev staging prod; do
    "$bin/$helm" lint --strict "$chart" -f "$chart/values-$env.yaml" --namespace "emporium-$env" \
      --kube-version "$kube_version" >/dev/null
    count=$("$bin/$helm" template emporium "$chart" -f "$chart/values-$env.yaml" --namespace "emporium-$env" \
      --kube-version "$kube_version" | grep -c '^kind:')
    echo "$helm $env: lint ok, $count objects"
  done
  for scenario in "$chart"/ci/*-values.yaml; do
    "$bin/$helm" template emporium "$chart" -f "$scenario" --namespace emporium-dev \
      --kube-version "$kube_version" >/dev/null
  done
  echo "$helm: every ci scenario renders"
done
echo "helm lint and template: $(( $(date +%s) - started ))s"

# The cluster tests need a Kubernetes API server: the local control plane
# (docs/cluster.md), started here unless KUBECONFIG names a cluster or it
# already runs, and stopped again if it was started here.
if [[ -z "${KUBECONFIG:-}" ]]; then
  if ! python3 scripts/platformctl.py cluster-kubeconfig >/dev/null 2>&1; then
    python3 scripts/platformctl.py cluster-up
    trap 'python3 scripts/platformctl.py cluster-down' EXIT
  fi
  KUBECONFIG=$(python3 scripts/platformctl.py cluster-kubeconfig)
  export KUBECONFIG
fi
uv run --frozen pytest tests/chart -q "$@"
