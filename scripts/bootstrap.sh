#!/usr/bin/env bash
# Installs the Python toolchain the project needs (uv, then the locked
# workspace) on a fresh machine. Idempotent and quiet when nothing is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
. "$root/scripts/versions.env"
if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  echo "installing uv $UV_VERSION"
  python3 -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
cd "$root"
uv sync --frozen --all-groups --quiet
