#!/usr/bin/env bash
# Builds OpenTofu and the kubernetes, helm and random providers from the Go
# module proxy at the versions pinned in versions.env, so that the CDK Terrain
# path is checked by a real engine (`tofu init` + `tofu validate`) offline:
#
#   .cache/bin/tofu                   the OpenTofu CLI
#   .cache/tofu-mirror/registry.opentofu.org/hashicorp/<name>/<version>/linux_amd64/
#                                     a filesystem mirror holding each provider
#                                     (registry.terraform.io links to it, for Terraform)
#   .cache/tofu.tofurc                CLI configuration that installs providers
#                                     only from that mirror (no direct downloads)
#
# The providers are not published with a major-version module path, so the
# proxy serves each release tag under a pseudo-version of its commit; both the
# release version and that module version are pinned. A wrapper module (its own
# go.mod) builds each program with the replace directives of the upstream
# go.mod, which `go install module@version` refuses. Idempotent: a binary whose
# pinned version is already in place is kept.
#
#   scripts/install-tofu.sh              OpenTofu and the providers
#   scripts/install-tofu.sh tofu         OpenTofu only
#   scripts/install-tofu.sh providers    the providers and the CLI configuration only
set -euo pipefail
what=${1:-all}
case "$what" in all | tofu | providers) ;; *) echo "usage: $0 [tofu|providers]" >&2; exit 2 ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
source "$root/scripts/versions.env"
cache="$root/.cache"
bin="$cache/bin"
mirror="$cache/tofu-mirror"
build="$cache/tofu-build"
mkdir -p "$bin" "$mirror" "$build"
platform=linux_amd64

# build_program NAME MODULE MODULE_VERSION PACKAGE OUTPUT [LDFLAGS]
build_program() {
  local name=$1 module=$2 module_version=$3 package=$4 output=$5 ldflags=${6:-}
  local dir="$build/$name-$module_version"
  mkdir -p "$dir"
  (
    cd "$dir"
    if [[ ! -f .resolved ]]; then
      rm -f go.mod go.sum
      go mod init "emporium.build/$name" >/dev/null 2>&1
      local upstream_mod
      upstream_mod=$(go mod download -json "$module@$module_version" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')
      # The upstream replace directives (module paths only, never local paths).
      go mod edit -json "$upstream_mod" | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    old, new = r["Old"], r["New"]
    if not new.get("Version"):
        continue
    lhs = old["Path"] + ("@" + old["Version"] if old.get("Version") else "")
    print(f"-replace={lhs}={new['"'"'Path'"'"']}@{new['"'"'Version'"'"']}")
' | xargs -r go mod edit
      # A `tool` line keeps the program's requirements in the wrapper's go.mod.
      go get -tool "$package@$module_version" 2>&1 | { grep -v '^go: added ' || true; } >&2
      touch .resolved
    fi
    local tmp="$dir/$name.bin.$$"  # outside the mirror until complete
    # Wall and CPU time of the build (the machine may be shared).
    local TIMEFORMAT="install-tofu: $name compiled in %0Rs (CPU %0Us user, %0Ss system)"
    time go build -trimpath -ldflags "-s -w $ldflags" -o "$tmp" "$package"
    mv "$tmp" "$output"
  )
}

# A stamp per program records the pinned version its binary was built from
# (kept outside the mirror: tofu takes every file there for the provider's).
stamps="$build/stamps"
mkdir -p "$stamps"
stamp_ok() { [[ -x "$1" && -f "$stamps/$2" && "$(cat "$stamps/$2")" == "$3" ]]; }

# OpenTofu
tofu_want="$OPENTOFU_VERSION"
if [[ "$what" != providers ]] && ! stamp_ok "$bin/tofu" tofu "$tofu_want"; then
  echo "install-tofu: building OpenTofu $OPENTOFU_VERSION" >&2
  t0=$(date +%s)
  build_program tofu github.com/opentofu/opentofu "$OPENTOFU_VERSION" \
    github.com/opentofu/opentofu/cmd/tofu "$bin/tofu" \
    "-X github.com/opentofu/opentofu/version.dev=no"
  echo "$tofu_want" >"$stamps/tofu"
  echo "install-tofu: OpenTofu built in $(($(date +%s) - t0))s" >&2
fi

[[ "$what" != tofu ]] || exit 0

# Providers: NAME RELEASE_VERSION MODULE MODULE_VERSION
while read -r name version module module_version; do
  [[ -n "$name" ]] || continue
  dest="$mirror/registry.opentofu.org/hashicorp/$name/$version/$platform"
  exe="$dest/terraform-provider-${name}_v$version"
  want="$version $module_version"
  if stamp_ok "$exe" "provider-$name" "$want"; then
    continue
  fi
  echo "install-tofu: building provider $name $version ($module@$module_version)" >&2
  t0=$(date +%s)
  mkdir -p "$dest"
  build_program "provider-$name" "$module" "$module_version" "$module" "$exe" \
    "-X main.version=$version"
  echo "$want" >"$stamps/provider-$name"
  echo "install-tofu: provider $name built in $(($(date +%s) - t0))s" >&2
done <<EOF
kubernetes $TOFU_PROVIDER_KUBERNETES_VERSION github.com/hashicorp/terraform-provider-kubernetes $TOFU_PROVIDER_KUBERNETES_MODULE
helm $TOFU_PROVIDER_HELM_VERSION github.com/hashicorp/terraform-provider-helm $TOFU_PROVIDER_HELM_MODULE
random $TOFU_PROVIDER_RANDOM_VERSION github.com/terraform-providers/terraform-provider-random $TOFU_PROVIDER_RANDOM_MODULE
EOF

# `hashicorp/<name>` means registry.opentofu.org to OpenTofu and
# registry.terraform.io to Terraform: the mirror answers for both.
ln -sfn registry.opentofu.org "$mirror/registry.terraform.io"
# Providers only from the mirror; nothing is downloaded.
cat >"$cache/tofu.tofurc" <<EOF
provider_installation {
  filesystem_mirror {
    path    = "$mirror"
    include = ["registry.opentofu.org/hashicorp/*", "registry.terraform.io/hashicorp/*"]
  }
}
EOF
