#!/usr/bin/env bash
# `make setup` (the first stage of `make test`): installs and builds every tool
# the tests need, so that no test ever installs or builds anything under a
# test time-out. Idempotent: a step whose pinned version is already installed
# takes a second.
#
# Steps are grouped in lanes. The lanes run at the same time (the downloads
# of one overlap the Go builds of another on a small machine); the steps of a
# lane run one after another, in the order written, so a step may rely on the
# steps above it in its lane. Each step prints a line when it starts and when
# it ends, with its seconds; its output goes to .cache/setup-logs/<step>.log,
# and the tail of that log is printed when it fails.
#
#   scripts/setup.sh            run every step
#   scripts/setup.sh --list     list the steps by lane
#
# To add a tool: write an idempotent scripts/install-<tool>.sh (pinned in
# scripts/versions.env) and add a `step "Name" command...` line under the lane
# it belongs to (the command is a bash command line, run from the
# repository root).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
logs="$root/.cache/setup-logs"

declare -a names=() commands=() lanes=() lane_order=()
current_lane=""
# lane NAME: the steps that follow join this lane.
lane() {
  current_lane=$1
  [[ " ${lane_order[*]} " == *" $1 "* ]] || lane_order+=("$1")
}
# step NAME COMMAND...: a step of the current lane.
step() { names+=("$1"); lanes+=("$current_lane"); shift; commands+=("$*"); }

# --- the steps --------------------------------------------------------------

# Python and Node downloads.
lane python
step "uv and the Python workspace"     scripts/bootstrap.sh
step "infra/ uv project"               "cd infra && uv sync --frozen --quiet"
step "checkov"                         scripts/install-checkov.sh
step "buf"                             scripts/install-buf.sh

# Debian packages (apt takes one lock, so these run in order) and what is
# built from them.
lane debian
step "PostgreSQL and Kafka"            python3 scripts/platformctl.py install
step "Chromium"                        scripts/install-browser.sh
step "Prometheus and promtool"         scripts/install-prometheus.sh
step "Debian base image and gateway image" scripts/build-test-image.sh

# Go builds (each uses every core, so they run in order).
lane go
step "helm 3, helm 4, helm-docs"       scripts/install-helm.sh
step "Kubernetes control plane (etcd, kube-apiserver, KWOK)" scripts/install-kube.sh
step "grpcurl"                         scripts/install-grpcurl.sh
step "dashboard checker"               scripts/install-dashboardcheck.sh
step "Pulumi CLI and kubernetes provider" scripts/install-pulumi.sh

# --- running them -------------------------------------------------------------

if [[ "${1:-}" == "--list" ]]; then
  for l in "${lane_order[@]}"; do
    echo "$l:"
    for i in "${!names[@]}"; do [[ "${lanes[$i]}" == "$l" ]] && echo "  ${names[$i]}"; done
  done
  exit 0
fi

mkdir -p "$logs"
rm -f "$logs"/*.failed
started=$(date +%s)
total=${#names[@]}

slug() { tr 'A-Z' 'a-z' <<<"$1" | sed -E 's/[^a-z0-9]+/-/g; s/^-|-$//g'; }

run_step() {
  local i=$1 t0 log code=0
  log="$logs/$(slug "${names[$i]}").log"
  t0=$(date +%s)
  printf 'setup [%d/%d] %-8s %s ...\n' "$((i + 1))" "$total" "${lanes[$i]}" "${names[$i]}"
  bash -c "${commands[$i]}" </dev/null >"$log" 2>&1 || code=$?
  if ((code != 0)); then
    {
      printf 'setup [%d/%d] %-8s %s FAILED (exit %d) after %ss; last lines of %s:\n' \
        "$((i + 1))" "$total" "${lanes[$i]}" "${names[$i]}" "$code" "$(($(date +%s) - t0))" "${log#"$root"/}"
      tail -n 25 "$log" | sed 's/^/  | /'
    } >&2
    return 1
  fi
  printf 'setup [%d/%d] %-8s %s done (%ss)\n' "$((i + 1))" "$total" "${lanes[$i]}" "${names[$i]}" "$(($(date +%s) - t0))"
}

run_lane() {
  local l=$1 i
  for i in "${!names[@]}"; do
    [[ "${lanes[$i]}" == "$l" ]] || continue
    if ! run_step "$i"; then
      # The rest of this lane may depend on the failed step; other lanes go on.
      echo "${names[$i]}" >"$logs/$l.failed"
      return 1
    fi
  done
}

declare -a pids=()
for l in "${lane_order[@]}"; do
  run_lane "$l" &
  pids+=("$!")
done
for pid in "${pids[@]}"; do wait "$pid" || true; done

failed=$(cat "$logs"/*.failed 2>/dev/null || true)
if [[ -n "$failed" ]]; then
  printf 'setup: FAILED after %ss; failed step(s): %s\n' "$(($(date +%s) - started))" \
    "$(paste -sd, <<<"$failed" | sed 's/,/, /g')" >&2
  exit 1
fi
printf 'setup: %d steps done in %ss\n' "$total" "$(($(date +%s) - started))"
