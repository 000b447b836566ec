# sslyze.sh: sourced helpers to install sslyze in its own venv and check a TLS endpoint against Mozilla "intermediate".
# Usage: source scripts/lib/sslyze.sh; sslyze_install; sslyze_check 127.0.0.1 8443 ca.pem
# The venv lives at ${STRONGROOM_TEST_VENV_DIR:-<repo>/target/venvs}/sslyze (kept apart: sslyze pins its own nassl/cryptography/pydantic).

_SSLYZE_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
_SSLYZE_VERSION="6.3.1"   # output parsing below was checked against this version

_sslyze_venv() { echo "${STRONGROOM_TEST_VENV_DIR:-$_SSLYZE_REPO_ROOT/target/venvs}/sslyze"; }

sslyze_install() {
  local venv log
  venv="$(_sslyze_venv)"
  "$venv/bin/sslyze" --help >/dev/null 2>&1 && return 0
  rm -rf "$venv"; mkdir -p "$(dirname "$venv")"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    # Debian's python3 lacks ensurepip until python3-venv is installed.
    rm -rf "$venv"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; } >/dev/null \
      || { echo "sslyze: apt-get install python3-venv failed" >&2; return 1; }
    python3 -m venv "$venv" || { echo "sslyze: python3 -m venv failed" >&2; return 1; }
  fi
  log="$(mktemp)"
  if ! "$venv/bin/pip" install -q --disable-pip-version-check "sslyze==$_SSLYZE_VERSION" >"$log" 2>&1; then
    echo "sslyze: pip install failed:" >&2; cat "$log" >&2; rm -f "$log" "$venv/bin/sslyze"; return 1
  fi
  rm -f "$log"
}

# sslyze_check HOST PORT CA_FILE: 0 only if sslyze reports the server compliant with Mozilla intermediate.
sslyze_check() {
  local host=$1 port=$2 ca=$3 out rc=0
  out="$("$(_sslyze_venv)/bin/sslyze" --mozilla_config intermediate --certinfo_ca_file "$ca" \
    "localhost:$port{$host}" 2>&1)" || rc=$?
  if [[ $rc -eq 0 ]] && grep -q "OK - Compliant" <<<"$out"; then
    echo "sslyze: localhost:$port compliant with Mozilla intermediate"
    return 0
  fi
  printf '%s\n' "$out" >&2
  echo "sslyze: localhost:$port NOT compliant with Mozilla intermediate (exit $rc)" >&2
  return 1
}
