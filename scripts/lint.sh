#!/usr/bin/env bash
# Static checks: ruff (lint + format), mypy, buf lint and breaking changes,
# and drift between protos/ and the generated code.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
step() { printf '\n==> %s\n' "$*"; }

step "ruff"
uv run --frozen ruff check services testing tests scripts bench
uv run --frozen ruff format --check services testing tests scripts bench

step "mypy"
# Every member's code; of contracts only the hand-written part (the rest is generated).
members=()
for src in services/*/src; do [[ "$src" == services/contracts/src ]] || members+=("$src"); done
uv run --frozen mypy "${members[@]}" testing/src services/contracts/src/emporium/contracts

step "buf lint and breaking (FILE level, against ${BUF_AGAINST:=main})"
[[ -x .cache/bin/buf ]] || { echo "lint: buf is not installed: run make setup" >&2; exit 1; }
(cd protos && "$root/.cache/bin/buf" lint)
if git rev-parse --verify --quiet "$BUF_AGAINST" >/dev/null; then
  (cd protos && "$root/.cache/bin/buf" breaking --against "$root/.git#ref=$BUF_AGAINST,subdir=protos")
  echo "no breaking change against $BUF_AGAINST"
else
  echo "no ref $BUF_AGAINST to compare against: breaking check skipped" >&2
fi

step "generated code"
uv run --frozen scripts/protos.sh --check
