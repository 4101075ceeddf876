#!/usr/bin/env bash
# Generates the Python code for protos/ into services/contracts/src (the one
# place generated code lives), or with --check fails if what is committed
# there differs from what the protos generate. emporium/contracts beside it
# is written by hand (the API's limits) and left alone.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/services/contracts/src"
mode=${1:-generate}

generate() {
  local dest=$1
  mkdir -p "$dest"
  # shellcheck disable=SC2046
  (cd "$root/protos" && python -m grpc_tools.protoc -I . \
    --python_out="$dest" --grpc_python_out="$dest" \
    --mypy_out="$dest" --mypy_grpc_out="$dest" \
    $(find emporium -name '*.proto' | sort))
  # protoc writes no __init__.py; the v1 packages are regular packages so
  # that type checkers and importers agree on them.
  find "$dest/emporium" -mindepth 2 -type d -name 'v*' -exec touch {}/__init__.py \;
  find "$dest/emporium" -name 'py.typed' -delete
}

case "$mode" in
  generate)
    find "$out/emporium" -mindepth 1 -maxdepth 1 ! -name contracts -exec rm -rf {} +
    generate "$out"
    echo "generated Python code for $(find "$root/protos" -name '*.proto' | wc -l) proto files into services/contracts/src"
    ;;
  --check)
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    generate "$tmp"
    # Bytecode caches that importing the contracts leaves behind are not generated code.
    if ! diff -r -x __pycache__ -x contracts "$tmp/emporium" "$out/emporium" >"$tmp/diff.txt"; then
      cat "$tmp/diff.txt" | head -40
      echo "generated code is out of date with protos/: run 'make protos' and commit the result" >&2
      exit 1
    fi
    echo "generated code matches protos/"
    ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac
