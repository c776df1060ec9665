# Shared by the install scripts: pinned versions and the cache outside the repo.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
. "$here/versions.env"
TALONFLOW_CACHE="${TALONFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/talonflow}"
mkdir -p "$TALONFLOW_CACHE"

# cached_install NAME VERSION MARKER BUILD: install one pinned tool into "$TALONFLOW_CACHE/NAME-VERSION"
# (set as $dest) unless "$dest/MARKER" is there. BUILD is a function that fills the empty folder it is
# given; that folder is renamed into place only when BUILD succeeded, so a killed run never leaves a
# half-installed $dest behind, and a second run costs nothing.
cached_install() {
  local name="$1" version="$2" marker="$3" build="$4"
  dest="$TALONFLOW_CACHE/$name-$version"
  if [ -e "$dest/$marker" ]; then
    echo "$name $version: already installed in $dest"
    return 0
  fi
  rm -rf "$dest.tmp"
  mkdir -p "$dest.tmp"
  "$build" "$dest.tmp"
  rm -rf "$dest"
  mv "$dest.tmp" "$dest"
  echo "$name $version: installed in $dest"
}

# require COMMAND WHY: stop with a clear message when a tool the build needs is missing.
require() {
  command -v "$1" >/dev/null || { echo "$(basename "$0"): $1 is required ($2)" >&2; exit 1; }
}
