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
#   scripts/setup.sh                  run every step
#   scripts/setup.sh --list           list the steps by lane
#   scripts/setup.sh --only helm      only the steps whose name contains "helm"
#   scripts/setup.sh --skip image     every step but those whose name contains "image"
#                                     (both repeatable, case-insensitive)
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
step "OpenTofu and providers"          scripts/install-tofu.sh

# --- running them -------------------------------------------------------------
# (In a function called on the last line, so bash has read the whole file
# before any step runs: editing this file during a run cannot derail it.)

usage() { sed -n '14,19p' "$0" | sed 's/^# \{0,1\}//'; }

main() {
  local -a only=() skip=()
  while (($#)); do
    case "$1" in
      --list) list_steps; return 0 ;;
      --only) only+=("$2"); shift 2 ;;
      --skip) skip+=("$2"); shift 2 ;;
      -h|--help) usage; return 0 ;;
      *) echo "setup: unknown argument $1" >&2; usage >&2; return 2 ;;
    esac
  done
  selected=()
  local i p keep
  for i in "${!names[@]}"; do
    keep=$(( ${#only[@]} == 0 ))
    for p in "${only[@]}"; do if [[ "${names[$i],,}" == *"${p,,}"* ]]; then keep=1; fi; done
    for p in "${skip[@]}"; do if [[ "${names[$i],,}" == *"${p,,}"* ]]; then keep=0; fi; done
    if ((keep)); then selected+=("$i"); fi
  done
  ((${#selected[@]})) || { echo "setup: no step matches" >&2; return 2; }

  mkdir -p "$logs"
  marks=$(mktemp -d)
  trap 'rm -rf "$marks"' EXIT
  started=$(date +%s)
  total=${#names[@]}
  local l
  local -a pids=()
  for l in "${lane_order[@]}"; do
    run_lane "$l" &
    pids+=("$!")
  done
  for p in "${pids[@]}"; do wait "$p" || true; done

  local failed
  failed=$(cat "$marks"/* 2>/dev/null || true)
  if [[ -n "$failed" ]]; then
    printf 'setup: FAILED after %ss; failed step(s): %s\n' "$(($(date +%s) - started))" \
      "$(paste -sd, <<<"$failed" | sed 's/,/, /g')" >&2
    return 1
  fi
  printf 'setup: %d steps done in %ss\n' "${#selected[@]}" "$(($(date +%s) - started))"
}

list_steps() {
  local l i
  for l in "${lane_order[@]}"; do
    echo "$l:"
    for i in "${!names[@]}"; do if [[ "${lanes[$i]}" == "$l" ]]; then echo "  ${names[$i]}"; fi; done
  done
}

slug() { tr 'A-Z' 'a-z' <<<"$1" | sed -E 's/[^a-z0-9]+/-/g; s/^-|-$//g'; }

# One line when a step starts, one when it ends (with its seconds); on failure
# the tail of its log.
run_step() {
  local i=$1 t0 log code=0 tag
  log="$logs/$(slug "${names[$i]}").log"
  tag=$(printf 'setup [%2d/%d] %-6s %s' "$((i + 1))" "$total" "${lanes[$i]}" "${names[$i]}")
  t0=$(date +%s)
  echo "$tag ..."
  bash -c "${commands[$i]}" </dev/null >"$log" 2>&1 || code=$?
  if ((code != 0)); then
    {
      echo "$tag FAILED (exit $code) after $(($(date +%s) - t0))s; last lines of ${log#"$root"/}:"
      tail -n 25 "$log" | sed 's/^/  | /'
    } >&2
    return 1
  fi
  echo "$tag done ($(($(date +%s) - t0))s)"
}

# The selected steps of one lane, in order; a failure ends the lane (later
# steps may depend on it) while the other lanes go on.
run_lane() {
  local l=$1 i
  for i in "${selected[@]}"; do
    if [[ "${lanes[$i]}" != "$l" ]]; then continue; fi
    run_step "$i" || { echo "${names[$i]}" >"$marks/$l"; return 1; }
  done
}

main "$@"; exit $?
