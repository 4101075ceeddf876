#!/usr/bin/env bash
# Installs the pinned checkov (the chart's policy scan) as .cache/bin/checkov,
# in its own virtual environment under .cache/uv-tools: its pins conflict with
# the workspace's pytest (docs/decisions/chart.md). Idempotent.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
source "$root/scripts/versions.env"
bin="$root/.cache/bin"
tools="$root/.cache/uv-tools"
# (`checkov --version` takes half a minute: its metadata says the same at once.)
if [[ -x "$bin/checkov" ]] && compgen -G "$tools/checkov/lib/python3*/site-packages/checkov-$CHECKOV_VERSION.dist-info" >/dev/null; then
  exit 0
fi
echo "installing checkov $CHECKOV_VERSION"
mkdir -p "$bin"
UV_TOOL_DIR="$tools" UV_TOOL_BIN_DIR="$bin" \
  uv tool install --force --quiet "checkov==$CHECKOV_VERSION"
echo "$bin/checkov $CHECKOV_VERSION installed"
