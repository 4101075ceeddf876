#!/usr/bin/env bash
# Installs the two Helm majors the chart is tested with, from source through
# the Go module proxy, as .cache/bin/helm3 and .cache/bin/helm4, and
# helm-docs (which writes charts/emporium/README.md from the values comments)
# as .cache/bin/helm-docs. Idempotent: a binary that already reports the
# pinned version is kept.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
source "$root/scripts/versions.env"
bin="$root/.cache/bin"
# shellcheck source=tool-cache.sh
source "$root/scripts/tool-cache.sh"
# The binaries live in the per-user tool cache under their version (a fresh
# clone links to them instead of rebuilding); .cache/bin links to them.
built="$tools_cache/helm"
mkdir -p "$bin" "$built"

install_helm() {
  local major=$1 version=$2 target="$built/helm$1-$2"
  # A binary built into .cache/bin before the cache was shared moves into it.
  if [[ -f "$bin/helm$major" && ! -L "$bin/helm$major" && ! -e "$target" ]]; then
    mv "$bin/helm$major" "$target"
  fi
  if [[ -x "$target" ]] && "$target" version --template '{{.Version}}' 2>/dev/null | grep -qx "$version"; then
    ln -sfn "$target" "$bin/helm$major"
    return 0
  fi
  command -v go >/dev/null || { echo "install-helm: Go is required to build helm $version" >&2; exit 1; }
  echo "install-helm: building helm $version (first run only; takes a few minutes)" >&2
  local gobin
  gobin=$(mktemp -d)
  # -ldflags sets the version string that 'helm version' prints; the
  # module path differs per major (helm.sh/helm/v3, helm.sh/helm/v4).
  GOBIN="$gobin" GOFLAGS=-mod=mod go install \
    -ldflags "-s -w -X helm.sh/helm/v${major}/internal/version.version=${version}" \
    "helm.sh/helm/v${major}/cmd/helm@${version}"
  mv "$gobin/helm" "$target"
  rm -rf "$gobin"
  ln -sfn "$target" "$bin/helm$major"
}

install_helm_docs() {
  local target="$bin/helm-docs"
  if [[ -x "$target" ]] && "$target" --version 2>/dev/null | grep -q "${HELM_DOCS_VERSION#v}"; then
    return 0
  fi
  echo "install-helm: building helm-docs $HELM_DOCS_VERSION" >&2
  local gobin
  gobin=$(mktemp -d)
  GOBIN="$gobin" go install \
    -ldflags "-X main.version=${HELM_DOCS_VERSION#v}" \
    "github.com/norwoodj/helm-docs/cmd/helm-docs@${HELM_DOCS_VERSION}"
  mv "$gobin/helm-docs" "$target"
  rm -rf "$gobin"
}

install_helm 3 "$HELM3_VERSION"
install_helm 4 "$HELM4_VERSION"
install_helm_docs
echo "$bin/helm3 $("$bin/helm3" version --template '{{.Version}}')"
echo "$bin/helm4 $("$bin/helm4" version --template '{{.Version}}')"
echo "$bin/helm-docs $("$bin/helm-docs" --version)"
