#!/usr/bin/env bash
# `make setup` (the first stage of `make test`): installs and builds every tool
# the tests need, with a progress line per step, so that no test ever
# installs or builds anything under a test time-out. Idempotent: a step
# whose pinned version is already installed takes a second.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
started=$(date +%s)
steps_total=0
declare -a names=() commands=()
# step NAME COMMAND...: register a step; they run in order below.
step() { names+=("$1"); shift; commands+=("$*"); steps_total=$((steps_total + 1)); }

step "Python workspace (uv)"            scripts/bootstrap.sh
step "PostgreSQL and Kafka"             python3 scripts/platformctl.py install
step "buf"                              scripts/install-buf.sh
step "helm 3, helm 4, helm-docs"        scripts/install-helm.sh
step "Kubernetes control plane (etcd, kube-apiserver, KWOK)" scripts/install-kube.sh
step "grpcurl"                          scripts/install-grpcurl.sh
step "Chromium"                         scripts/install-browser.sh
step "Prometheus and promtool"          scripts/install-prometheus.sh

for i in "${!names[@]}"; do
  t0=$(date +%s)
  printf 'setup [%d/%d] %s ...\n' "$((i + 1))" "$steps_total" "${names[$i]}"
  if ! bash -c "${commands[$i]}"; then
    printf 'setup [%d/%d] %s FAILED after %ss\n' "$((i + 1))" "$steps_total" "${names[$i]}" "$(($(date +%s) - t0))" >&2
    exit 1
  fi
  printf 'setup [%d/%d] %s done (%ss)\n' "$((i + 1))" "$steps_total" "${names[$i]}" "$(($(date +%s) - t0))"
done
printf 'setup: every tool installed in %ss\n' "$(($(date +%s) - started))"
