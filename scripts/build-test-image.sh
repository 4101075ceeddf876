#!/usr/bin/env bash
# Builds what tests/chart/test_image.py inspects and starts: the Python base
# image made from Debian's packages (scripts/debian-base-image.sh) and the
# gateway's image on it, named localhost/emporium-test/gateway:ci. Skipped
# with the reason where podman cannot build (not root, no apt, no storage
# driver); the test then skips with the same reason. Rebuilt only when its
# inputs (images/, the lock file, the workspace's sources) changed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
service=gateway
image="localhost/emporium-test/$service:ci"
# The image is in podman's storage, shared by every clone: so is its stamp.
# shellcheck source=tool-cache.sh
source "$root/scripts/tool-cache.sh"
stamp="$tools_cache/images/emporium-test-$service.inputs"

if [[ $(id -u) -ne 0 ]]; then
  echo "build-test-image: not root: podman cannot build here; the image test skips"
  exit 0
fi
if ! scripts/debian-base-image.sh --check; then
  echo "build-test-image: podman cannot build images on this machine; the image test skips"
  exit 0
fi
base=$(scripts/debian-base-image.sh | tail -n 1)

# What the build reads: the Dockerfile, the workspace metadata and sources
# (tracked and new files alike), and the base image.
inputs=$( {
  echo "base $(podman image inspect --format '{{.Id}}' "$base")"
  git ls-files -z --cached --others --exclude-standard -- images pyproject.toml uv.lock services \
    | xargs -0 -r sha256sum 2>/dev/null || true
} | sha256sum | cut -d' ' -f1)
if podman image exists "$image" && [[ -f "$stamp" && "$(cat "$stamp")" == "$inputs" ]]; then
  echo "$image is up to date"
  exit 0
fi
scripts/images.sh --base "$base" --registry emporium-test --tag ci "$service"
mkdir -p "$(dirname "$stamp")"
echo "$inputs" >"$stamp"
