# packages.sh: sourced helper that installs missing Debian packages, with one apt-get update at most.
# Usage: source scripts/lib/packages.sh; ensure_commands openssl:openssl curl:curl

_APT_UPDATED=""

# ensure_commands CMD:PACKAGE...: installs PACKAGE for each CMD not on PATH.
ensure_commands() {
  local pair cmd pkg missing=()
  for pair in "$@"; do
    cmd="${pair%%:*}"; pkg="${pair#*:}"
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  echo "packages: installing ${missing[*]}"
  if [[ -z $_APT_UPDATED ]]; then apt-get update -qq >/dev/null; _APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}
