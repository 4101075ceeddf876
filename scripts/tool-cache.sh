# Sourced by the install scripts whose builds are long (the control plane,
# Pulumi, OpenTofu): their outputs live in a per-user tool cache shared by
# every clone of the repository, keyed on the pinned versions, and the
# clone's .cache/<name> is a link to it. A fresh clone then reuses a build
# instead of repeating it. EMPORIUM_TOOLS_CACHE moves the cache.
# Without a home directory (some CI runners) it stays inside the clone.
if [[ -n "${EMPORIUM_TOOLS_CACHE:-}" ]]; then
  tools_cache=$EMPORIUM_TOOLS_CACHE
elif [[ -n "${XDG_CACHE_HOME:-}" || -n "${HOME:-}" ]]; then
  tools_cache="${XDG_CACHE_HOME:-$HOME/.cache}/emporium"
else
  tools_cache="$root/.cache/tools"
fi

# share_dir LINK NAME: LINK becomes a link to $tools_cache/NAME; a directory
# already at LINK (from before the cache was shared) moves there first.
share_dir() {
  local link=$1 target="$tools_cache/$2"
  if [[ -d "$link" && ! -L "$link" ]]; then
    if [[ -e "$target" ]]; then
      rm -rf "$link"
    else
      mkdir -p "$(dirname "$target")"
      mv "$link" "$target"
    fi
  fi
  mkdir -p "$target" "$(dirname "$link")"
  ln -sfn "$target" "$link"
}
