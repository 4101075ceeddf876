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

# `make new-service` adds a workspace member and locks offline
# (docs/decisions/shared-code.md). That lock needs the package index data in
# uv's cache, which `uv sync --frozen` never fetches (it installs what the lock
# names): one resolution with the network fetches it, again only when uv.lock
# or uv's cache directory changes.
stamp=".cache/uv-index-$( (cat uv.lock; uv cache dir) | sha256sum | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  uv lock --dry-run --refresh --quiet
  mkdir -p .cache
  rm -f .cache/uv-index-*
  touch "$stamp"
fi
