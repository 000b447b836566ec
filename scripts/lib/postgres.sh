# postgres.sh: sourced helpers to run a throwaway PostgreSQL 15 cluster for tests (pg_start / pg_stop).
# Usage: source scripts/lib/postgres.sh; trap pg_stop EXIT; pg_start
# Exports STRONGROOM_TEST_DATABASE_URL, PG_TEST_DIR (temp dir) and PG_TEST_BIN (server bin dir).

# Print the directory holding initdb/pg_ctl: pg_config's if it has them, else the first /usr/lib/postgresql/*/bin.
_pg_bindir() {
  local d
  for d in "$(pg_config --bindir 2>/dev/null || true)" /usr/lib/postgresql/*/bin; do
    if [[ -n $d && -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]]; then echo "$d"; return 0; fi
  done
  return 1
}

# Run a command as the cluster owner (initdb/postgres refuse to run as root).
_pg_as() {
  if [[ -n ${_PG_TEST_USER:-} ]]; then (cd "$PG_TEST_DIR" && runuser -u "$_PG_TEST_USER" -- "$@"); else "$@"; fi
}

pg_start() {
  local port i
  if ! PG_TEST_BIN="$(_pg_bindir)"; then
    echo "postgres: server binaries missing, installing postgresql via apt" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
      || { echo "postgres: apt-get install postgresql failed" >&2; return 1; }
    PG_TEST_BIN="$(_pg_bindir)" || { echo "postgres: no initdb found after install" >&2; return 1; }
  fi
  _PG_TEST_USER=""
  if [[ $EUID -eq 0 ]]; then
    _PG_TEST_USER=postgres
    if ! id -u postgres >/dev/null 2>&1; then
      _PG_TEST_USER=strongroom-test
      id -u "$_PG_TEST_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$_PG_TEST_USER" \
        || { echo "postgres: cannot create user $_PG_TEST_USER" >&2; return 1; }
    fi
  fi
  # Root uses /tmp so the unprivileged owner can traverse the path; others honour TMPDIR.
  if [[ -n $_PG_TEST_USER ]]; then PG_TEST_DIR="$(mktemp -d /tmp/strongroom-pg.XXXXXX)"; chown "$_PG_TEST_USER" "$PG_TEST_DIR"
  else PG_TEST_DIR="$(mktemp -d "${TMPDIR:-/tmp}/strongroom-pg.XXXXXX")"; fi
  export PG_TEST_DIR PG_TEST_BIN
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

  if ! _pg_as "$PG_TEST_BIN/initdb" -D "$PG_TEST_DIR/data" -U postgres -A trust -E UTF8 --locale=C -N \
      >"$PG_TEST_DIR/initdb.log" 2>&1; then
    echo "postgres: initdb failed:" >&2; cat "$PG_TEST_DIR/initdb.log" >&2; pg_stop; return 1
  fi
  # Only TCP on 127.0.0.1 with trust; the unix socket lives in the private temp dir.
  echo "host all all 127.0.0.1/32 trust" >"$PG_TEST_DIR/data/pg_hba.conf"
  cat >>"$PG_TEST_DIR/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$PG_TEST_DIR'
max_connections = 200
CONF
  # pg_ctl -w returns early (non-zero) if the postmaster dies; the pg_isready loop then confirms TCP on 127.0.0.1.
  if ! _pg_as "$PG_TEST_BIN/pg_ctl" -D "$PG_TEST_DIR/data" -l "$PG_TEST_DIR/server.log" -w -t 30 start >/dev/null 2>&1; then
    echo "postgres: server did not start (pg_ctl -w, 30 s limit); server log tail:" >&2
    tail -n 30 "$PG_TEST_DIR/server.log" >&2 2>/dev/null; pg_stop; return 1
  fi
  for ((i = 0; i < 20; i++)); do
    if "$PG_TEST_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres; then
      export STRONGROOM_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
      echo "postgres: ready on 127.0.0.1:$port"
      return 0
    fi
    sleep 0.5
  done
  echo "postgres: not accepting connections on 127.0.0.1:$port; server log tail:" >&2
  tail -n 30 "$PG_TEST_DIR/server.log" >&2 2>/dev/null
  pg_stop
  return 1
}

# Stop the cluster and delete its temp dir; idempotent, safe if pg_start never ran (use in trap ... EXIT).
pg_stop() {
  local dir="${PG_TEST_DIR:-}" pid
  if [[ -n $dir && -d $dir ]]; then
    if [[ -f $dir/data/postmaster.pid ]]; then
      if ! _pg_as "${PG_TEST_BIN:-}/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1; then
        pid="$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)"
        # Fallback: kill the postmaster only if that pid still is a postgres process.
        if [[ $pid =~ ^[0-9]+$ ]] && grep -q postgres "/proc/$pid/cmdline" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
      fi
    fi
    rm -rf "$dir"
  fi
  unset PG_TEST_DIR STRONGROOM_TEST_DATABASE_URL
  return 0
}
