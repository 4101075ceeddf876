#!/usr/bin/env bash
# Builds a Python base image from Debian's own packages, for machines that
# cannot pull the public Python image (no container registry reachable):
# debootstrap a minimal Debian root filesystem with python3, import it into
# podman, and print its name. Installs podman and debootstrap with apt when
# they are missing. Cached: the root filesystem tarball lives under
# .cache/images and the podman image is reused while it exists.
#   scripts/debian-base-image.sh          print the image name (building it if needed)
#   scripts/debian-base-image.sh --check  exit 0 only if podman can build here
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
source "$root/scripts/versions.env"
suite=$DEBIAN_SUITE
image="localhost/emporium-base:${suite}-python3"
cache="$root/.cache/images"
rootfs_tar="$cache/${suite}-python3-rootfs.tar"

ensure_tools() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  ((${#missing[@]} == 0)) && return 0
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "debian-base-image: ${missing[*]} missing and cannot be installed here (needs root and apt)" >&2
    return 1
  fi
  echo "debian-base-image: installing ${missing[*]} with apt" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

# The Debian mirror this machine's apt already uses (no host is written here).
debian_mirror() {
  local uri
  uri=$( (cat /etc/apt/sources.list.d/*.sources 2>/dev/null || true) | awk '/^URIs:/ {print $2; exit}')
  if [[ -z "$uri" ]]; then
    uri=$( (cat /etc/apt/sources.list 2>/dev/null || true) | awk '$1 == "deb" {print $2; exit}')
  fi
  [[ -n "$uri" ]] || { echo "debian-base-image: no Debian mirror in the apt sources" >&2; return 1; }
  echo "$uri"
}

if [[ "${1:-}" == "--check" ]]; then
  ensure_tools >/dev/null && podman info >/dev/null 2>&1
  exit $?
fi

ensure_tools
if podman image exists "$image"; then
  echo "$image"
  exit 0
fi
mkdir -p "$cache"
if [[ ! -s "$rootfs_tar" ]]; then
  work=$(mktemp -d "$cache/rootfs.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  echo "debian-base-image: debootstrap $suite with python3 (first run only, about two minutes)" >&2
  # python3-venv: the image build creates a virtual environment. No
  # compiler, no pip outside that build stage.
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$suite" "$work/rootfs" "$(debian_mirror)" >&2
  # Drop what only a running Debian system needs: package lists, caches, docs.
  rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/cache/apt/"* \
    "$work/rootfs/usr/share/doc/"* "$work/rootfs/usr/share/man/"* "$work/rootfs/usr/share/locale/"*
  tar -C "$work/rootfs" -cf "$rootfs_tar.partial" .
  mv "$rootfs_tar.partial" "$rootfs_tar"
fi
podman import --change 'CMD ["/usr/bin/python3"]' "$rootfs_tar" "$image" >&2
echo "$image"
