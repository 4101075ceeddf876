#!/usr/bin/env bash
# Installs grpcurl (a gRPC client that is not part of the project) as
# .cache/bin/grpcurl, from the Go module proxy, at the pinned version.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
source "$root/scripts/versions.env"
bin="$root/.cache/bin"
mkdir -p "$bin"
if [[ -x "$bin/grpcurl" ]] && "$bin/grpcurl" -version 2>&1 | grep -q "${GRPCURL_VERSION#v}"; then
  exit 0
fi
echo "install-grpcurl: building grpcurl $GRPCURL_VERSION" >&2
gobin=$(mktemp -d)
GOBIN="$gobin" go install -ldflags "-X main.version=${GRPCURL_VERSION}" \
  "github.com/fullstorydev/grpcurl/cmd/grpcurl@${GRPCURL_VERSION}"
mv "$gobin/grpcurl" "$bin/grpcurl"
rm -rf "$gobin"
