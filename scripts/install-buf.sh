#!/usr/bin/env bash
# Installs the pinned buf CLI (from its npm package) into .cache/bin/buf.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
. "$root/scripts/versions.env"
prefix="$root/.cache/buf-$BUF_VERSION"
if [ ! -x "$prefix/node_modules/.bin/buf" ]; then
  echo "installing buf $BUF_VERSION"
  mkdir -p "$prefix"
  npm install --silent --no-audit --no-fund --prefix "$prefix" "@bufbuild/buf@$BUF_VERSION" >/dev/null
fi
mkdir -p "$root/.cache/bin"
ln -sf "$prefix/node_modules/.bin/buf" "$root/.cache/bin/buf"
