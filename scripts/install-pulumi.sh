#!/usr/bin/env bash
# Builds the Pulumi CLI and the pulumi-kubernetes resource provider from the Go
# module proxy and installs the provider as a plugin into the project's own
# Pulumi home (.cache/pulumi-home), so that the live infrastructure test
# (infra/tests/live) can run `pulumi up` with no download at test time.
#
#   .cache/bin/pulumi                       the CLI (PULUMI_CLI_VERSION)
#   .cache/pulumi-home/plugins/...          the kubernetes provider plugin
#
# Next to the CLI it writes pulumi-resource-pulumi-python, the launcher of
# Python dynamic providers that a Pulumi release bundles with its Python
# language host (which is not a Go module): it runs `python -m pulumi.dynamic`
# in the program's virtual environment. infra/ generates its passwords with a
# dynamic provider (docs/decisions/infra.md).
#
# Both builds are cached under .cache/pulumi-build, keyed on the pinned
# versions in scripts/versions.env; a rerun with the same pins takes a second.
#
# Why the provider's plugin version differs from its source version: the
# provider is published on the module proxy only as a pseudo-version (a
# commit); the Python SDK infra/ locks asks the engine for the plugin version
# equal to its own (PULUMI_KUBERNETES_PLUGIN_VERSION), and the engine never
# picks an older installed plugin. The build is installed under that version;
# it reports its real source release (PULUMI_KUBERNETES_PROVIDER_RELEASE) in
# its user agent. docs/infrastructure.md explains it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
source "$root/scripts/versions.env"
bin="$root/.cache/bin"
build="$root/.cache/pulumi-build"
export PULUMI_HOME="$root/.cache/pulumi-home"
export PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
mkdir -p "$bin" "$build" "$PULUMI_HOME"
command -v go >/dev/null || { echo "install-pulumi: Go is required to build the Pulumi CLI" >&2; exit 1; }

# Compiling is long; leave the CPU to anything interactive.
gonice() { nice -n 10 go "$@"; }

cli="$build/cli-$PULUMI_CLI_VERSION"
install_cli() {
  if [[ ! -x "$cli/bin/pulumi" ]]; then
    echo "install-pulumi: building the Pulumi CLI $PULUMI_CLI_VERSION (first run only; ~10 CPU-minutes)" >&2
    local t0 work
    t0=$(date +%s)
    work=$(mktemp -d "$build/cli-work.XXXXXX")
    # The CLI's own go.mod has replace directives, so `go install pkg@version`
    # refuses it; a throwaway module that requires it builds it instead.
    cat >"$work/go.mod" <<EOF
module emporium.local/pulumi-cli

go 1.24
EOF
    cat >"$work/tools.go" <<'EOF'
//go:build tools

package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
EOF
    (
      cd "$work"
      gonice get "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi@$PULUMI_CLI_VERSION"
      gonice mod tidy
      gonice build -trimpath \
        -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_CLI_VERSION" \
        -o "$work/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
    )
    mkdir -p "$cli/bin"
    mv "$work/pulumi" "$cli/bin/pulumi"
    rm -rf "$work"
    echo "install-pulumi: Pulumi CLI built in $(($(date +%s) - t0))s" >&2
  fi
  cat >"$cli/bin/pulumi-resource-pulumi-python" <<'EOF'
#!/bin/sh
# Serves the Python dynamic providers of a Pulumi program (scripts/install-pulumi.sh).
if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
  exec "$VIRTUAL_ENV/bin/python" -u -m pulumi.dynamic "$@"
fi
exec python3 -u -m pulumi.dynamic "$@"
EOF
  chmod +x "$cli/bin/pulumi-resource-pulumi-python"
  ln -sfn "$cli/bin/pulumi" "$bin/pulumi"
}

provider="$build/kubernetes-$PULUMI_KUBERNETES_PROVIDER_MODULE_VERSION"
install_provider() {
  if [[ ! -x "$provider/pulumi-resource-kubernetes" ]]; then
    echo "install-pulumi: building pulumi-resource-kubernetes $PULUMI_KUBERNETES_PROVIDER_RELEASE (first run only; ~15 CPU-minutes)" >&2
    local t0 module src work
    t0=$(date +%s)
    module=github.com/pulumi/pulumi-kubernetes/provider/v4
    src=$(cd "$build" && go mod download -json "$module@$PULUMI_KUBERNETES_PROVIDER_MODULE_VERSION" |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
    work=$(mktemp -d "$build/kubernetes-work.XXXXXX")
    cp -r "$src/." "$work/"
    chmod -R u+w "$work"
    (
      cd "$work"
      # The repository builds against its sibling ../sdk directory, which the
      # provider module does not carry; the published Go SDK takes its place.
      go mod edit -dropreplace=github.com/pulumi/pulumi-kubernetes/sdk/v4
      # That SDK needs a newer pulumi/sdk than the provider's go.mod names, and
      # pulumi/pkg must move with it. Not `go mod tidy`: the schema generator
      # in the same module imports code generators that newer pkg releases
      # moved out; only the provider's packages are resolved (-mod=mod).
      gonice get "github.com/pulumi/pulumi-kubernetes/sdk/v4@$PULUMI_KUBERNETES_SDK_GO_VERSION" \
        "github.com/pulumi/pulumi/pkg/v3@$PULUMI_KUBERNETES_PULUMI_GO_VERSION" \
        "github.com/pulumi/pulumi/sdk/v3@$PULUMI_KUBERNETES_PULUMI_GO_VERSION"
      export GOFLAGS="-mod=mod ${GOFLAGS:-}"
      # The Makefile's `make provider` minus the OpenAPI download: schema.json is
      # committed; go generate stamps the version into the embedded schema.
      VERSION="$PULUMI_KUBERNETES_PROVIDER_RELEASE" gonice generate ./cmd/pulumi-resource-kubernetes
      gonice build -trimpath \
        -ldflags "-s -w -X $module/pkg/version.Version=$PULUMI_KUBERNETES_PROVIDER_RELEASE" \
        -o "$work/pulumi-resource-kubernetes" ./cmd/pulumi-resource-kubernetes
    )
    mkdir -p "$provider"
    mv "$work/pulumi-resource-kubernetes" "$provider/pulumi-resource-kubernetes"
    rm -rf "$work"
    echo "install-pulumi: kubernetes provider built in $(($(date +%s) - t0))s" >&2
  fi
  if ! "$bin/pulumi" plugin ls --json 2>/dev/null | python3 -c '
import json, sys
want = sys.argv[1]
sys.exit(0 if any(p["name"] == "kubernetes" and p["kind"] == "resource" and p["version"] == want
                  for p in json.load(sys.stdin) or []) else 1)' "$PULUMI_KUBERNETES_PLUGIN_VERSION"; then
    "$bin/pulumi" plugin install resource kubernetes "v$PULUMI_KUBERNETES_PLUGIN_VERSION" \
      --file "$provider/pulumi-resource-kubernetes" --reinstall
  fi
}

install_cli
install_provider
echo "$bin/pulumi $("$bin/pulumi" version)"
"$bin/pulumi" plugin ls
