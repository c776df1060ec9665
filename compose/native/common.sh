# Shared by the install scripts: pinned versions and the cache outside the repo.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
. "$here/versions.env"
TALONFLOW_CACHE="${TALONFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/talonflow}"
mkdir -p "$TALONFLOW_CACHE"
