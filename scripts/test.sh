#!/usr/bin/env bash
# `make test`: installs what is needed (scripts/setup.sh, the first stage),
# starts what is needed, runs every test. No test installs or builds anything.
# Each stage prints its duration; the first failing stage fails the run.
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

stage "setup (every tool the tests need)" scripts/setup.sh
stage "lint" scripts/lint.sh
stage "platform (PostgreSQL, Kafka)" python3 scripts/platformctl.py start
stage "provision" python3 scripts/platformctl.py provision
stage "kit and service tests (unit, integration)" pytest_run services tests/platform -q
stage "end-to-end, browser and degradation tests" pytest_run tests/e2e -q
stage "observability (traces, Prometheus, rules, dashboards)" scripts/test-observability.sh
stage "chart and images" scripts/test-chart.sh
stage "infrastructure" scripts/test-infra.sh
# make new-service in a throwaway clone of HEAD: lint, its tests on the
# platform above, chart and infrastructure with it (tests/template).
stage "new-service template" pytest_run tests/template -q --durations=10
report
