#!/usr/bin/env bash
# Infrastructure tests, no cloud account needed: the Pulumi program per stack
# and per component under Pulumi's mocks, the policy pack's validators, the
# contract with docs/configuration.md and the chart, and the CDK Terrain
# synthesis (which runs its constructs on Node); then with the engines `make
# setup` builds, tests/live: `pulumi up` of the dev stack on the local
# Kubernetes control plane, the chart installed on it, `pulumi destroy`.
# infra/ is its own uv project (docs/decisions/infra.md). Extra arguments go to pytest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
. "$root/scripts/versions.env"
if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  echo "test-infra: uv $UV_VERSION is not installed: run make setup" >&2
  exit 1
fi
node_major=$(node --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/' || true)
if [ -z "$node_major" ] || [ "$node_major" -lt 20 ]; then
  echo "test-infra: CDK Terrain needs Node.js 20 or newer on PATH" >&2
  exit 1
fi
cd "$root/infra"
[[ -d .venv ]] || { echo "test-infra: the infra/ environment is not installed: run make setup" >&2; exit 1; }
# jsii warns on every start that Node 20 is past its end of life; the tests do not care.
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION=1
exec uv run --frozen pytest -p no:cacheprovider "$@"
