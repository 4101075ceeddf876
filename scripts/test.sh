#!/usr/bin/env bash
# `make test`: installs what is needed (scripts/setup.sh, the first stage),
# starts what is needed, runs every test. No test installs or builds anything.
# Each stage prints its duration; the first failing stage fails the run. The
# chart and infrastructure stages run beside the platform's (the cluster lane,
# below): a run takes the longer of the two, not their sum.
set -euo pipefail
# Integration tests that cannot reach PostgreSQL or Kafka fail instead of
# skipping (testing/src/emporium/testing/pytest_plugin.py): a run here never
# passes with them silently skipped.
export EMPORIUM_REQUIRE_PLATFORM=1
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
started=$(date +%s)
declare -a summary=()
stage() {
  local name=$1; shift
  local t0=$(date +%s)
  printf '\n======== %s ========\n' "$name"
  if "$@"; then
    summary+=("ok    $(( $(date +%s) - t0 ))s  $name")
  else
    local code=$?
    summary+=("FAIL  $(( $(date +%s) - t0 ))s  $name (exit $code)")
    join_cluster_lane || true
    report
    exit "$code"
  fi
}
report() {
  printf '\n======== summary (%ss) ========\n' "$(( $(date +%s) - started ))"
  printf '%s\n' "${summary[@]}"
}
# pytest exits 5 when it collected nothing: that is a failure here, not a pass.
pytest_run() {
  local code=0
  uv run --frozen pytest "$@" || code=$?
  ((code != 5)) || echo "pytest collected no test from $*" >&2
  return "$code"
}

# The cluster lane: the chart and infrastructure stages need the Kubernetes
# control plane (which they start and stop themselves), not PostgreSQL or
# Kafka, and spend most of their time waiting on it; so they run beside the
# platform's stages, their output in a log printed when the lane is joined.
lane_log=.cache/test-logs/cluster-lane.log
lane_summary=.cache/test-logs/cluster-lane.summary
lane_pid=""
cluster_lane() {
  local name t0 code
  for name in "chart and images" "infrastructure"; do
    t0=$(date +%s)
    printf '\n======== %s ========\n' "$name"
    code=0
    case "$name" in
      chart*) scripts/test-chart.sh || code=$? ;;
      *) scripts/test-infra.sh || code=$? ;;
    esac
    if ((code)); then
      echo "FAIL  $(( $(date +%s) - t0 ))s  $name (exit $code, cluster lane)" >>"$lane_summary"
      return "$code"
    fi
    echo "ok    $(( $(date +%s) - t0 ))s  $name (cluster lane)" >>"$lane_summary"
  done
}
start_cluster_lane() {
  mkdir -p "$(dirname "$lane_log")"
  : >"$lane_summary"
  cluster_lane >"$lane_log" 2>&1 &
  lane_pid=$!
  echo "chart and infrastructure stages started beside the next ones; log: $lane_log"
}
# Waits for the cluster lane, prints its log and adds its stages to the summary.
join_cluster_lane() {
  [[ -n "$lane_pid" ]] || return 0
  local code=0
  wait "$lane_pid" || code=$?
  lane_pid=""
  cat "$lane_log"
  mapfile -t -O "${#summary[@]}" summary <"$lane_summary"
  return "$code"
}
# A failing stage waits for the lane too (its stages stop their own cluster)
# before the run reports; so does an interrupted run.
trap 'join_cluster_lane >/dev/null 2>&1 || true' EXIT

stage "setup (every tool the tests need)" scripts/setup.sh
stage "lint" scripts/lint.sh
start_cluster_lane
stage "platform (PostgreSQL, Kafka)" python3 scripts/platformctl.py start
stage "provision" python3 scripts/platformctl.py provision
stage "kit and service tests (unit, integration)" pytest_run services tests/platform -q
stage "end-to-end, browser and degradation tests" pytest_run tests/e2e -q
stage "observability (traces, Prometheus, rules, dashboards)" scripts/test-observability.sh
stage "cluster lane (chart, infrastructure), waited for" join_cluster_lane
# make new-service in a throwaway clone of HEAD: lint, its tests on the
# platform above, chart and infrastructure with it (tests/template).
stage "new-service template" pytest_run tests/template -q --durations=10
report
