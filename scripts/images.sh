#!/usr/bin/env bash
# `make images`: builds the image of every service from images/Dockerfile
# with podman (chroot isolation, so it works without a container runtime
# daemon) or docker, whichever is installed, and prints each image's size.
#   scripts/images.sh [--base IMAGE] [--tag TAG] [--registry PREFIX] [--list] [SERVICE...]
# --base       base image (default: $BASE_IMAGE, else the Dockerfile's public
#              Python image; where no registry is reachable,
#              BASE_IMAGE=$(scripts/debian-base-image.sh) make images)
# --tag        image tag (default: the chart's appVersion)
# --registry   image name prefix (default: emporium), giving <prefix>/<service>:<tag>
# --list       print the name of each image it would build, build nothing
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=versions.env
source scripts/versions.env

base="${BASE_IMAGE:-}" tag="" registry="emporium" list=0
services=()
while (($#)); do
  case "$1" in
    --base) base=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --registry) registry=$2; shift 2 ;;
    --list) list=1; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    -*) echo "images: unknown option $1" >&2; exit 2 ;;
    *) services+=("$1"); shift ;;
  esac
done
# Default: every service of the system manifest (docs/manifest.md).
((${#services[@]})) || read -r -a services <<<"$(python3 -c '
import tomllib
with open("services/contracts/src/emporium/contracts/system.toml", "rb") as f:
    print(*tomllib.load(f)["services"])')"
[[ -n "$tag" ]] || tag=$(awk -F'"' '/^appVersion:/ {print $2}' charts/emporium/Chart.yaml)
if ((list)); then
  for service in "${services[@]}"; do echo "$registry/$service:$tag"; done
  exit 0
fi

if command -v podman >/dev/null; then
  engine=(podman build --isolation=chroot --layers)
  inspect=(podman image inspect --format '{{.Size}}')
elif command -v docker >/dev/null; then
  engine=(docker build)
  inspect=(docker image inspect --format '{{.Size}}')
else
  echo "images: neither podman nor docker is installed (apt-get install podman)" >&2
  exit 1
fi

revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for service in "${services[@]}"; do
  [[ -f "services/$service/pyproject.toml" ]] || { echo "images: no service $service" >&2; exit 2; }
  name="$registry/$service:$tag"
  args=(-f images/Dockerfile -t "$name" --build-arg "SERVICE=$service"
        --build-arg "UV_VERSION=$UV_VERSION" --build-arg "VERSION=$tag"
        --build-arg "REVISION=$revision" --build-arg "CREATED=$created")
  [[ -n "$base" ]] && args+=(--build-arg "BASE_IMAGE=$base")
  # A CA bundle this machine trusts (for a TLS-inspecting proxy) is lent to
  # the build's download steps as a secret, never written into the image.
  [[ -r "${SSL_CERT_FILE:-}" ]] && args+=(--secret "id=ca-bundle,src=$SSL_CERT_FILE")
  started=$(date +%s)
  "${engine[@]}" "${args[@]}" . >&2
  size=$("${inspect[@]}" "$name")
  printf '%-40s %6.1f MB  (%ss)\n' "$name" "$(awk -v s="$size" 'BEGIN {print s / 1e6}')" "$(( $(date +%s) - started ))"
done
