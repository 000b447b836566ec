#!/usr/bin/env python3
"""bench/harness.py: the request workloads of the benchmark plan and the report.

`requests` runs W1-W3 and W7 at 2 and 16 connections with wrk against
Strongroom (SQLite, then PostgreSQL), then the peers: an OpenBao dev server
(transit encrypt/decrypt, KV v2 write/read, over TLS like Strongroom),
pgbench on the same PostgreSQL, and a loop of single-row SQLite
transactions in WAL mode. One server at a time. For each run it records
requests/s, p50/p90/p99 latency, the server's CPU time per request (from
/proc/PID/stat) and its peak RSS during the run (VmHWM after a reset), and
checks that no request failed. It also times Strongroom's start-up on an
existing data directory and reads its idle RSS.

`report` merges that with the W4-W6 scripts' JSON into one results file
with a `goals` array, and regenerates the generated part of
docs/benchmarks.md and the chart. Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import struct
import http.client
import json
import multiprocessing
import os
import platform
import random
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRK_LUA = ROOT / "bench" / "wrk.lua"
CONNECTIONS = (2, 16)
ORG = "bench-w5"
TICK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------- /proc


def cpu_seconds(pids: list[int], children: bool = False) -> float:
    """User + system CPU time of the processes (with their reaped children's)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the command: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
        total += int(fields[11]) + int(fields[12])
        if children:
            total += int(fields[13]) + int(fields[14])
    return total / TICK


def child_pids(parent: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent:
            out.append(int(entry.name))
    return out


def status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak(pid: int) -> bool:
    """Resets VmHWM to the current RSS (Linux 4.0+, clear_refs 5)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- HTTP


class Http:
    """A small HTTPS client for setting up, verifying the server's CA."""

    def __init__(self, port: int, cafile: str | None):
        self.port = port
        self.ctx = ssl.create_default_context(cafile=cafile)

    def call(self, method: str, path: str, body=None, headers=None, form=False):
        headers = dict(headers or {})
        data = None
        if body is not None:
            if form:
                data = urllib.parse.urlencode(body).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=30)
        try:
            conn.request(method, path, body=data, headers=headers)
            res = conn.getresponse()
            raw = res.read()
            return res.status, res.headers, raw
        finally:
            conn.close()

    def json(self, method: str, path: str, body=None, headers=None, form=False, expect=(200, 201)):
        status, _, raw = self.call(method, path, body, headers, form)
        if status not in expect:
            raise RuntimeError(f"{method} {path}: HTTP {status}: {raw[:300]!r}")
        return json.loads(raw) if raw else None


def totp(secret_b32: str) -> str:
    """The current RFC 6238 code (SHA-1, 6 digits, 30 s), as Strongroom enrols."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    mac = hmac.new(key, struct.pack(">Q", int(time.time()) // 30), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    return f"{(struct.unpack('>I', mac[off:off + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


# ---------------------------------------------------------------- wrk


def run_wrk(url: str, workload: str, connections: int, duration: int, headers: dict,
            lines_file: str | None = None, body: str | None = None, work: Path | None = None) -> dict:
    parts = urllib.parse.urlsplit(url)
    path_and_query = parts.path + (f"?{parts.query}" if parts.query else "")
    origin = f"{parts.scheme}://{parts.netloc}"
    prelude = [
        f"WORKLOAD = {json.dumps(workload)}",
        f"HOST_PATH = {json.dumps(path_and_query)}",
        "HEADERS = {" + ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()) + "}",
        f"LINES_FILE = {json.dumps(lines_file) if lines_file else 'nil'}",
        f"BODY = {json.dumps(body) if body is not None else 'nil'}",
    ]
    fd, script = tempfile.mkstemp(suffix=".lua", dir=work)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(prelude) + "\n" + WRK_LUA.read_text())
    threads = min(connections, 2)
    try:
        proc = subprocess.run(
            ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--timeout", "10s",
             "-s", script, origin],
            capture_output=True, text=True, check=False)
    finally:
        os.unlink(script)
    m = re.search(r"^WRK_JSON (.*)$", proc.stdout, re.M)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout[-800:]} {proc.stderr[-800:]}")
    r = json.loads(m.group(1))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["failed"] = sum(r["errors"].values())
    return r


def measure(label: str, pids: list[int], run, children: bool = False, peak_pid: int | None = None) -> dict:
    """Runs `run()` (a wrk run) and adds the server's CPU per request and peak RSS."""
    hwm_reset = reset_peak(peak_pid) if peak_pid else False
    before = cpu_seconds(pids + ([c for p in pids for c in child_pids(p)] if children else []), children)
    r = run()
    time.sleep(0.3)
    after = cpu_seconds(pids + ([c for p in pids for c in child_pids(p)] if children else []), children)
    r["cpu_s"] = round(after - before, 3)
    r["cpu_us_per_req"] = round((after - before) * 1e6 / max(r["requests"], 1), 1)
    if peak_pid:
        r["peak_rss_kb"] = status_kb(peak_pid, "VmHWM")
        r["peak_is_this_run"] = hwm_reset
    flag = f"  !! {r['failed']} failed" if r["failed"] else ""
    log(f"  {label:<44} {r['rps']:>9.0f} req/s  p50 {r['p50_us'] / 1000:6.2f} ms  p99 {r['p99_us'] / 1000:7.2f} ms"
        f"  cpu {r['cpu_us_per_req']:7.1f} us/req"
        + (f"  peak {r['peak_rss_kb'] / 1024:.0f} MB" if peak_pid and r.get("peak_rss_kb") else "") + flag)
    return r


# ---------------------------------------------------------------- Strongroom


class Strongroom:
    def __init__(self, args, backend: str, work: Path, database_url: str | None):
        self.bin = args.strongroom
        self.backend = backend
        self.dir = work / f"strongroom-{backend}"
        self.config = work / f"strongroom-{backend}.toml"
        # No scheduled work while it is measured: no backups, drills or sweeps.
        self.config.write_text('[backup]\nschedules = []\ndrill_every = "off"\n\n[retention]\nsweep_every = "off"\n')
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("STRONGROOM_")}
        self.env["STRONGROOM_LOG"] = "warn"
        if database_url:
            self.env["STRONGROOM_DATABASE_URL"] = database_url
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.work = work

    def cli(self, *argv: str, stdin: str | None = None) -> str:
        proc = subprocess.run([self.bin, *argv, "--data-dir", str(self.dir), "--config", str(self.config), "--dev"],
                              input=stdin, capture_output=True, text=True, env=self.env, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"strongroom {' '.join(argv)}: {proc.stderr[-600:]}")
        return proc.stdout

    def start(self) -> float:
        """Starts `serve`; returns seconds from spawn until /readyz answers 200."""
        self.port = free_port()
        out = open(self.work / f"serve-{self.backend}.log", "ab")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [self.bin, "serve", "--data-dir", str(self.dir), "--config", str(self.config), "--dev",
             "--listen", f"127.0.0.1:{self.port}"],
            stdout=out, stderr=out, env=self.env, start_new_session=True)
        out.close()
        ca = self.dir / "tls" / "ca.pem"
        ctx = None
        deadline = started + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"strongroom serve ({self.backend}) exited; see {self.work}/serve-{self.backend}.log")
            try:
                # The first start on a data directory makes its TLS material.
                ctx = ctx or ssl.create_default_context(cafile=str(ca))
                conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=2)
                conn.request("GET", "/readyz")
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    return time.monotonic() - started
            except (OSError, http.client.HTTPException, ssl.SSLError):
                pass
            time.sleep(0.005)
        raise RuntimeError(f"strongroom serve ({self.backend}) not ready within 60 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def http(self) -> Http:
        return Http(self.port, str(self.dir / "tls" / "ca.pem"))


def strongroom_suite(args, backend: str, work: Path, database_url: str | None, pg_pids) -> dict:
    log(f"\n== Strongroom on {backend}")
    sr = Strongroom(args, backend, work, database_url)
    env = dict(sr.env)
    t = time.monotonic()
    seeded = subprocess.run([args.seed, "--data-dir", str(sr.dir), "--profiles", str(args.profiles)],
                            capture_output=True, text=True, env=env, check=False)
    if seeded.returncode != 0:
        raise RuntimeError(f"seed_profiles: {seeded.stderr[-600:]}")
    log(f"  seeded {args.profiles} profiles in {time.monotonic() - t:.1f} s")

    # Accounts: an admin (service accounts), and the storm's users.
    password = base64.urlsafe_b64encode(os.urandom(18)).decode()
    sr.cli("user", "create", "--email", "admin@bench.example", "--name", "Bench Admin", "--password-stdin",
           stdin=password + "\n")
    sr.cli("member", "add", "--org", ORG, "--email", "admin@bench.example", "--role", "admin")
    storm_users = [f"storm{i}@bench.example" for i in range(4)]
    for email in storm_users:
        sr.cli("user", "create", "--email", email, "--name", "Storm User", "--password-stdin", stdin=password + "\n")

    # Start-up on an existing data directory, three times (after a first start
    # that makes the TLS material); idle RSS after the last.
    sr.start()
    sr.stop()
    startups = []
    for _ in range(2):
        startups.append(sr.start())
        sr.stop()
    startups.append(sr.start())
    time.sleep(2)
    pid = sr.proc.pid
    idle_kb = status_kb(pid, "VmRSS")
    log(f"  start-up to ready: {', '.join(f'{s:.3f}' for s in startups)} s; idle RSS {idle_kb / 1024:.1f} MB")
    result = {"backend": backend, "startup_secs": [round(s, 3) for s in startups], "idle_rss_kb": idle_kb,
              "runs": {}}

    try:
        h = sr.http()
        # A service account with a bearer token, as an integration would call.
        status, headers, raw = h.call("POST", "/v1/auth/login",
                                      {"email": "admin@bench.example", "password": password})
        if status != 200:
            raise RuntimeError(f"admin sign-in: HTTP {status}: {raw[:200]!r}")
        cookie = headers.get("Set-Cookie", "").split(";", 1)[0]
        # Managing service accounts takes a second factor: enrol TOTP.
        enrolment = h.json("POST", "/v1/auth/mfa/totp", headers={"Cookie": cookie})
        h.json("POST", "/v1/auth/mfa/totp/confirm", {"code": totp(enrolment["secret"])}, headers={"Cookie": cookie})
        account = h.json("POST", f"/v1/orgs/{ORG}/service-accounts",
                         {"name": "bench", "scope": "profiles:read profiles:read-sensitive profiles:write"},
                         headers={"Cookie": cookie})
        client = (account["client_id"], account["client_secret"])

        def bearer() -> dict:
            tok = h.json("POST", "/v1/oauth/token",
                          {"grant_type": "client_credentials", "client_id": client[0], "client_secret": client[1]},
                          form=True)
            return {"Authorization": f"Bearer {tok['access_token']}"}

        # Ids and e-mail addresses of seeded profiles, read through the API.
        auth = bearer()
        ids, emails, cursor = [], [], None
        while len(ids) < 2000:
            q = f"/v1/orgs/{ORG}/profiles?limit=200" + (f"&cursor={cursor}" if cursor else "")
            page = h.json("GET", q, headers=auth)
            for p in page["profiles"]:
                ids.append(p["id"])
                emails.append(p["fields"]["email"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        ids_file, emails_file = work / f"ids-{backend}.txt", work / f"emails-{backend}.txt"
        ids_file.write_text("\n".join(ids) + "\n")
        emails_file.write_text("\n".join(urllib.parse.quote(e, safe="") for e in emails) + "\n")
        storm_file = work / f"storm-{backend}.txt"
        storm_file.write_text("\n".join(json.dumps({"email": e, "password": password}) for e in storm_users) + "\n")

        base = f"https://127.0.0.1:{sr.port}"
        pids = [pid]
        db_pids = pg_pids() if backend == "postgres" else []
        json_headers = {"Content-Type": "application/json"}
        for c in CONNECTIONS:
            for wid, label, kind, url, lines in (
                ("W1", "create a profile", "create", f"{base}/v1/orgs/{ORG}/profiles", None),
                ("W2", "read a profile by id", "get", f"{base}/v1/orgs/{ORG}/profiles/", str(ids_file)),
                ("W3", "find a profile by e-mail", "get", f"{base}/v1/orgs/{ORG}/profiles?email=", str(emails_file)),
            ):
                hdrs = {**bearer(), **json_headers}
                db_before = cpu_seconds(db_pids + [x for p in db_pids for x in child_pids(p)], True)
                r = measure(f"{wid} {label} ({c} conns)", pids,
                            lambda: run_wrk(url, kind, c, args.duration, hdrs, lines, work=work), peak_pid=pid)
                if db_pids:
                    db_after = cpu_seconds(db_pids + [x for p in db_pids for x in child_pids(p)], True)
                    r["db_cpu_us_per_req"] = round((db_after - db_before) * 1e6 / max(r["requests"], 1), 1)
                result["runs"][f"{wid}@{c}"] = r

        # W7 last: a storm leaves the allocator holding Argon2id's memory,
        # which would count in the other runs' peak RSS.
        for c in CONNECTIONS:
            # W2 again while a storm of correct sign-ins (argon2id each) runs beside it.
            hdrs = {**bearer(), **json_headers}
            storm: dict = {}

            def storm_run():
                storm["r"] = run_wrk(f"{base}/v1/auth/login", "post_line", 16, args.duration + 2, json_headers,
                                     str(storm_file), work=work)

            th = threading.Thread(target=storm_run)
            th.start()
            time.sleep(1)
            r = measure(f"W7 W2 during a sign-in storm ({c} conns)", pids,
                        lambda: run_wrk(f"{base}/v1/orgs/{ORG}/profiles/", "get", c, args.duration, hdrs,
                                        str(ids_file), work=work), peak_pid=pid)
            th.join()
            s = storm.get("r", {})
            r["storm"] = {k: s.get(k) for k in ("requests", "rps", "failed", "p50_us", "p99_us", "errors")}
            log(f"    storm: {s.get('rps', 0):.1f} sign-ins/s, {s.get('failed', '?')} refused or failed,"
                f" p99 {s.get('p99_us', 0) / 1000:.0f} ms")
            result["runs"][f"W7@{c}"] = r
    finally:
        sr.stop()
    return result


# ---------------------------------------------------------------- OpenBao


def openbao_suite(args, work: Path) -> dict:
    log("\n== OpenBao dev server (TLS, in memory)")
    port = free_port()
    certs = work / "bao-tls"
    certs.mkdir()
    out = open(work / "bao.log", "ab")
    proc = subprocess.Popen(
        [args.bao, "server", "-dev", "-dev-tls", f"-dev-tls-cert-dir={certs}", "-dev-root-token-id=root",
         f"-dev-listen-address=127.0.0.1:{port}"], stdout=out, stderr=out, start_new_session=True)
    out.close()
    try:
        h = None
        for _ in range(300):
            ca = certs / "vault-ca.pem"
            if ca.exists():
                try:
                    h = Http(port, str(ca))
                    status, _, _ = h.call("GET", "/v1/sys/health")
                    if status == 200:
                        break
                except (OSError, ssl.SSLError, http.client.HTTPException):
                    pass
            if proc.poll() is not None:
                raise RuntimeError(f"bao exited; see {work}/bao.log")
            time.sleep(0.1)
        else:
            raise RuntimeError("OpenBao did not answer within 30 s")
        time.sleep(2)
        auth = {"X-Vault-Token": "root"}
        idle_kb = status_kb(proc.pid, "VmRSS")
        h.json("POST", "/v1/sys/mounts/transit", {"type": "transit"}, headers=auth, expect=(200, 204))
        h.json("POST", "/v1/transit/keys/bench", {"type": "aes256-gcm96"}, headers=auth, expect=(200, 204))
        # The same kilobyte as a W1 profile.
        plaintext = base64.b64encode(os.urandom(768)).decode()
        enc = h.json("POST", "/v1/transit/encrypt/bench", {"plaintext": plaintext}, headers=auth)
        ciphertext = enc["data"]["ciphertext"]
        # KV v2 (the dev server mounts it at secret/): records to read.
        keys = []
        for i in range(1000):
            h.json("POST", f"/v1/secret/data/seed/{i}", {"data": {"notes": plaintext, "n": i}}, headers=auth)
            keys.append(str(i))
        keys_file = work / "bao-keys.txt"
        keys_file.write_text("\n".join(keys) + "\n")
        base = f"https://127.0.0.1:{port}"
        hdrs = {**auth, "Content-Type": "application/json"}
        result = {"idle_rss_kb": idle_kb, "runs": {}}
        for c in CONNECTIONS:
            for name, kind, url, lines, body in (
                ("encrypt", "fixed", f"{base}/v1/transit/encrypt/bench", None, json.dumps({"plaintext": plaintext})),
                ("decrypt", "fixed", f"{base}/v1/transit/decrypt/bench", None, json.dumps({"ciphertext": ciphertext})),
                ("kv_write", "kv_write", f"{base}/v1/secret/data/w/", None, None),
                ("kv_read", "get", f"{base}/v1/secret/data/seed/", str(keys_file), None),
            ):
                result["runs"][f"{name}@{c}"] = measure(
                    f"{name} ({c} conns)", [proc.pid],
                    lambda: run_wrk(url, kind, c, args.duration, hdrs, lines, body, work=work), peak_pid=proc.pid)
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


# ---------------------------------------------------------------- PostgreSQL (pgbench)


def pg_cli_env(url: str) -> dict:
    u = urllib.parse.urlsplit(url)
    env = dict(os.environ)
    env.update(PGHOST=u.hostname or "127.0.0.1", PGPORT=str(u.port or 5432), PGUSER=u.username or "postgres")
    if u.password:
        env["PGPASSWORD"] = urllib.parse.unquote(u.password)
    return env


def psql(env: dict, db: str, sql: str) -> str:
    proc = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql],
                          capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"psql: {proc.stderr[-400:]}")
    return proc.stdout


def pgbench_suite(args, work: Path, pg_pids) -> dict:
    log("\n== pgbench on the same PostgreSQL")
    env = pg_cli_env(args.pg_url)
    db = "strongroom_bench_pgbench"
    psql(env, "postgres", f"drop database if exists {db}")
    psql(env, "postgres", f"create database {db}")
    try:
        psql(env, db, "create table rows (id bigserial primary key, email text not null, payload text not null);"
                      f"insert into rows (email, payload) select 'p' || g || '@example.com', repeat('x', 1000)"
                      f" from generate_series(1, {args.profiles}) g;"
                      "create index on rows (email);")
        psql(env, db, "vacuum analyze rows")
        scripts = {
            "insert": "\\set n random(1, 1000000000)\n"
                      "insert into rows (email, payload) values ('w1.' || :n || '@example.com', repeat('y', 1000));\n",
            "select": f"\\set id random(1, {args.profiles})\nselect * from rows where id = :id;\n",
            "select_email": f"\\set id random(1, {args.profiles})\n"
                            "select * from rows where email = 'p' || :id || '@example.com';\n",
        }
        result = {"runs": {}}
        for c in CONNECTIONS:
            for name, script in scripts.items():
                path = work / f"pgbench-{name}.sql"
                path.write_text(script)
                logdir = work / f"pgbench-log-{name}-{c}"
                logdir.mkdir()

                def run():
                    proc = subprocess.run(
                        [args.pgbench, "-n", "-M", "prepared", "-c", str(c), "-j", str(min(c, 2)), "-T",
                         str(args.duration), "-f", str(path), "-l", "--log-prefix", str(logdir / "tx"), db],
                        capture_output=True, text=True, env=env, check=False, cwd=work)
                    if proc.returncode != 0:
                        raise RuntimeError(f"pgbench: {proc.stderr[-600:]}")
                    lat = []
                    for f in logdir.iterdir():
                        for line in f.read_text().splitlines():
                            parts = line.split()
                            if len(parts) >= 3:
                                lat.append(int(parts[2]))
                    lat.sort()
                    tps = float(re.search(r"tps = ([0-9.]+)", proc.stdout).group(1))
                    return {"requests": len(lat), "duration_us": args.duration * 1e6, "rps": tps, "failed": 0,
                            "errors": {}, "p50_us": lat[len(lat) // 2], "p90_us": lat[int(len(lat) * 0.9)],
                            "p99_us": lat[int(len(lat) * 0.99)], "mean_us": statistics.fmean(lat)}

                result["runs"][f"{name}@{c}"] = measure(f"{name} ({c} conns)", pg_pids(), run, children=True)
                shutil.rmtree(logdir)
        return result
    finally:
        psql(env, "postgres", f"drop database if exists {db}")


# ---------------------------------------------------------------- SQLite loop


def _sqlite_worker(path: str, kind: str, n_rows: int, seconds: float, seed: int, q) -> None:
    con = sqlite3.connect(path, timeout=30, isolation_level=None)
    con.execute("pragma journal_mode = wal")
    con.execute("pragma synchronous = full")
    rnd = random.Random(seed)
    payload = "y" * 1000
    lat = []
    end = time.perf_counter() + seconds
    n = 0
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            break
        n += 1
        if kind == "insert":
            con.execute("begin immediate")
            con.execute("insert into rows (email, payload) values (?, ?)", (f"w1.{seed}.{n}@example.com", payload))
            con.execute("commit")
        elif kind == "select":
            con.execute("select * from rows where id = ?", (rnd.randint(1, n_rows),)).fetchall()
        else:
            con.execute("select * from rows where email = ?", (f"p{rnd.randint(1, n_rows)}@example.com",)).fetchall()
        lat.append(time.perf_counter() - t0)
    con.close()
    q.put(lat)


def sqlite_suite(args, work: Path) -> dict:
    log("\n== SQLite: single-row transactions, WAL, synchronous=FULL (Python's sqlite3, one process a connection)")
    path = str(work / "peer.sqlite")
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("pragma journal_mode = wal")
    con.execute("create table rows (id integer primary key, email text not null, payload text not null)")
    con.execute("begin")
    con.executemany("insert into rows (email, payload) values (?, ?)",
                    ((f"p{i}@example.com", "x" * 1000) for i in range(1, args.profiles + 1)))
    con.execute("commit")
    con.execute("create index rows_email on rows (email)")
    con.close()
    result = {"sqlite_version": sqlite3.sqlite_version, "runs": {}}
    for c in CONNECTIONS:
        for name in ("insert", "select", "select_email"):
            def run():
                q = multiprocessing.Queue()
                procs = [multiprocessing.Process(target=_sqlite_worker,
                                                 args=(path, name, args.profiles, args.duration, i, q))
                         for i in range(c)]
                for p in procs:
                    p.start()
                lat = []
                for _ in procs:
                    lat.extend(q.get())
                for p in procs:
                    p.join()
                lat.sort()
                us = [x * 1e6 for x in lat]
                return {"requests": len(us), "duration_us": args.duration * 1e6, "rps": len(us) / args.duration,
                        "failed": 0, "errors": {}, "p50_us": us[len(us) // 2], "p90_us": us[int(len(us) * 0.9)],
                        "p99_us": us[int(len(us) * 0.99)], "mean_us": statistics.fmean(us)}

            result["runs"][f"{name}@{c}"] = measure(f"{name} ({c} conns)", [], run)
    return result


# ---------------------------------------------------------------- requests


def requests_main(args) -> None:
    work = Path(tempfile.mkdtemp(prefix="strongroom-bench."))
    pg_db = "strongroom_bench_store"
    env = pg_cli_env(args.pg_url)
    u = urllib.parse.urlsplit(args.pg_url)
    store_url = urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + pg_db, u.query, ""))

    def pg_pids() -> list[int]:
        return [int(Path(args.pg_pid_file).read_text().splitlines()[0])]

    out = {"duration_secs": args.duration, "profiles": args.profiles, "connections": list(CONNECTIONS)}
    try:
        out["strongroom"] = {"sqlite": strongroom_suite(args, "sqlite", work, None, pg_pids)}
        psql(env, "postgres", f"drop database if exists {pg_db}")
        psql(env, "postgres", f"create database {pg_db}")
        try:
            out["strongroom"]["postgres"] = strongroom_suite(args, "postgres", work, store_url, pg_pids)
        finally:
            psql(env, "postgres", f"drop database if exists {pg_db}")
        out["openbao"] = openbao_suite(args, work)
        out["pgbench"] = pgbench_suite(args, work, pg_pids)
        out["sqlite"] = sqlite_suite(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    log(f"\nwrote {args.out}")


# ---------------------------------------------------------------- report


def version(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)
        return (p.stdout or p.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def machine(args) -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = None
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "cpus": os.cpu_count(), "cpu_model": cpu, "memory_gib": round((mem_kb or 0) / 1048576, 1),
        "kernel": platform.release(), "os": version(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "rustc": version(["rustc", "--version"]), "postgres": version([f"{args.pg_bin}/postgres", "--version"]),
        "openbao": version([args.bao, "version"]), "wrk": version(["wrk", "--version"]),
        "sqlite_python": sqlite3.sqlite_version, "openssl": version(["openssl", "version"]),
    }


def goal(goals: list, name: str, target: str, measured, met: bool | None, **extra) -> None:
    g = {"name": name, "target": target, "measured": measured, "met": met}
    g.update(extra)
    goals.append(g)


def request_goals(req: dict, goals: list) -> None:
    bao = req.get("openbao", {}).get("runs", {})
    pgb = req.get("pgbench", {}).get("runs", {})
    for backend, sr in req.get("strongroom", {}).items():
        runs = sr["runs"]
        for c in CONNECTIONS:
            for wid, peer in (("W1", "encrypt"), ("W2", "decrypt")):
                ours, theirs = runs.get(f"{wid}@{c}"), bao.get(f"{peer}@{c}")
                if not ours or not theirs:
                    continue
                ratio = round(ours["rps"] / theirs["rps"], 2)
                goal(goals, f"{wid} req/s vs OpenBao transit {peer}", "≥ 2×", ratio, ratio >= 2,
                     backend=backend, connections=c, unit="×")
                ratio = round(ours["cpu_us_per_req"] / theirs["cpu_us_per_req"], 2)
                goal(goals, f"{wid} server CPU per request vs OpenBao {peer}", "≤ 0.5×", ratio, ratio <= 0.5,
                     backend=backend, connections=c, unit="×")
                if ours.get("peak_rss_kb") and theirs.get("peak_rss_kb"):
                    ratio = round(ours["peak_rss_kb"] / theirs["peak_rss_kb"], 2)
                    goal(goals, f"{wid} peak RSS vs OpenBao {peer}", "≤ 0.33×", ratio, ratio <= 1 / 3,
                         backend=backend, connections=c, unit="×")
            if backend == "postgres" and runs.get(f"W1@{c}") and pgb.get(f"insert@{c}"):
                ratio = round(runs[f"W1@{c}"]["rps"] / pgb[f"insert@{c}"]["rps"], 2)
                goal(goals, "W1 req/s vs pgbench insert tps", "≥ 0.5×", ratio, ratio >= 0.5,
                     backend=backend, connections=c, unit="×")
            if runs.get(f"W7@{c}") and runs.get(f"W2@{c}"):
                ratio = round(runs[f"W7@{c}"]["rps"] / runs[f"W2@{c}"]["rps"], 2)
                goal(goals, "W7 W2 throughput during a sign-in storm vs W2 alone", "≥ 0.8×", ratio, ratio >= 0.8,
                     backend=backend, connections=c, unit="×")
        idle = round(sr["idle_rss_kb"] / 1024, 1)
        goal(goals, "idle RSS", "< 40 MB", idle, idle < 40, backend=backend, unit="MB")
        slowest = max(sr["startup_secs"])
        goal(goals, "start-up to serving on an existing data directory (slowest of 3)", "< 1 s", slowest,
             slowest < 1, backend=backend, unit="s")


def script_goals(scripts: Path, goals: list, results: dict) -> None:
    for w in ("w4", "w5", "w6"):
        f = scripts / f"{w}.json"
        if not f.exists():
            continue
        data = json.loads(f.read_text())
        results[w.upper()] = data
        for g in data.get("goals", []):
            if g.get("via"):
                g = {**g, "name": f"{g['name']} ({g['via']})"}
            m = re.search(r" \((sqlite|postgres)\)$", g["name"])
            if m:
                g = {**g, "name": g["name"][: m.start()], "backend": g.get("backend") or m.group(1)}
            goals.append(g)
        if w == "w6":
            for r in data.get("results", []):
                goal(goals, "W6 audit verify throughput vs sha256sum", "≥ 0.5×", r["ratio"], r["meets_goal"],
                     backend=r["backend"], unit="×")


def fmt_rps(r: dict | None) -> str:
    return f"{r['rps']:,.0f}" if r else "–"


def svg_chart(req: dict) -> str:
    """Grouped horizontal bars: requests/s per workload and connections."""
    sr = req.get("strongroom", {})
    bao = req.get("openbao", {}).get("runs", {})
    pgb = req.get("pgbench", {}).get("runs", {})
    lite = req.get("sqlite", {}).get("runs", {})
    series = [("Strongroom, SQLite", "#1f6feb"), ("Strongroom, PostgreSQL", "#0b3d91"), ("OpenBao", "#d4a72c"),
              ("pgbench (bare PostgreSQL)", "#8c959f"), ("SQLite loop (bare)", "#c2c8ce")]
    groups = []
    for c in CONNECTIONS:
        for wid, label, bao_key, db_key in (("W1", "create", "encrypt", "insert"),
                                            ("W2", "read by id", "decrypt", "select"),
                                            ("W3", "find by e-mail", None, "select_email"),
                                            ("W7", "read during sign-in storm", None, None)):
            vals = [sr.get("sqlite", {}).get("runs", {}).get(f"{wid}@{c}"),
                    sr.get("postgres", {}).get("runs", {}).get(f"{wid}@{c}"),
                    bao.get(f"{bao_key}@{c}") if bao_key else None,
                    pgb.get(f"{db_key}@{c}") if db_key else None,
                    lite.get(f"{db_key}@{c}") if db_key else None]
            peer = {"encrypt": "transit encrypt", "decrypt": "transit decrypt"}.get(bao_key or "", "")
            groups.append((f"{wid} {label}, {c} conns" + (f" (OpenBao: {peer})" if peer else ""),
                           [v["rps"] if v else None for v in vals]))
    top = max([v for _, vals in groups for v in vals if v] + [1])
    bar_h, gap, left, width = 11, 16, 250, 560
    height = 40 + sum(len([v for v in vals if v]) * bar_h + gap + 16 for _, vals in groups) + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 90}" height="{height}" '
           'font-family="sans-serif" font-size="11">',
           f'<rect width="100%" height="100%" fill="white"/>',
           f'<text x="10" y="18" font-size="13" font-weight="bold">Requests per second (more is better), '
           f'same machine, same run, wrk over TLS</text>']
    y = 36
    for i, (name, color) in enumerate(series):
        out.append(f'<rect x="{10 + i * 160}" y="{y - 9}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{24 + i * 160}" y="{y}">{name}</text>')
    y += 16
    for label, vals in groups:
        out.append(f'<text x="10" y="{y + 10}" font-weight="bold">{label}</text>')
        y += 14
        for (name, color), v in zip(series, vals):
            if not v:
                continue
            w = max(1, int(width * v / top))
            out.append(f'<rect x="{left}" y="{y}" width="{w}" height="{bar_h - 2}" fill="{color}">'
                       f'<title>{name}: {v:,.0f} req/s</title></rect>'
                       f'<text x="{left + w + 4}" y="{y + 8}">{v:,.0f}</text>'
                       f'<text x="{left - 6}" y="{y + 8}" text-anchor="end" fill="#57606a">{name}</text>')
            y += bar_h
        y += gap
    out.append("</svg>")
    return "\n".join(out) + "\n"


def markdown(results: dict, stamp_file: str) -> str:
    m = results["machine"]
    req = results.get("requests", {})
    lines = [
        "<!-- generated by bench/run (bench/harness.py report): do not edit between these markers -->",
        f"Latest full run: `{stamp_file}`, {results['started']}. Machine: {m['cpus']} CPUs ({m['cpu_model']}), "
        f"{m['memory_gib']} GiB, Linux {m['kernel']}, {m['os']}; {m['postgres']}; {m['openbao']}; "
        f"{m['wrk']}; {m['rustc']}. The machine is shared and noisy: read the ratios, not the absolute numbers.",
        "",
        "### Goals",
        "",
        "| goal | store | connections | target | measured | met |",
        "|---|---|---|---|---|---|",
    ]
    for g in results["goals"]:
        unit = g.get("unit", "")
        measured = f"{g['measured']}{' ' + unit if unit and unit != '×' else unit}"
        met = "**met**" if g["met"] else ("not met" if g["met"] is False else "–")
        lines.append(f"| {g['name']} | {g.get('backend', '–')} | {g.get('connections', '–')} | {g['target']} | "
                     f"{measured} | {met} |")
    met = sum(1 for g in results["goals"] if g["met"])
    lines += ["", f"{met} of {len(results['goals'])} goals met.", ""]
    if req:
        lines += ["### Request workloads", "",
                  f"wrk, {req['duration_secs']} s a run, keep-alive connections over TLS 1.3 for Strongroom and "
                  f"OpenBao; pgbench (prepared statements) and the SQLite loop have no HTTP or TLS. Server CPU is the "
                  f"server process's user + system time over the run divided by its requests (for pgbench, the "
                  f"PostgreSQL processes'; for Strongroom on PostgreSQL, the database's share is shown "
                  f"after the +). Peak RSS is the server's high-water mark during that run.", "",
                  "| workload | server | conns | req/s | p50 ms | p99 ms | CPU µs/req | peak RSS MB | failed |",
                  "|---|---|---|---|---|---|---|---|---|"]

        def row(w: str, server: str, c: int, r: dict | None):
            if not r:
                return
            cpu = f"{r['cpu_us_per_req']:.0f}" if r.get("cpu_us_per_req") else "–"
            if r.get("db_cpu_us_per_req"):
                cpu += f" + {r['db_cpu_us_per_req']:.0f}"
            rss = f"{r['peak_rss_kb'] / 1024:.0f}" if r.get("peak_rss_kb") else "–"
            lines.append(f"| {w} | {server} | {c} | {r['rps']:,.0f} | {r['p50_us'] / 1000:.2f} | "
                         f"{r['p99_us'] / 1000:.2f} | {cpu} | {rss} | {r.get('failed', 0)} |")

        sr = req.get("strongroom", {})
        bao = req.get("openbao", {}).get("runs", {})
        pgb = req.get("pgbench", {}).get("runs", {})
        lite = req.get("sqlite", {}).get("runs", {})
        for wid, label, peers in (("W1", "create a profile", [("OpenBao transit encrypt", bao, "encrypt"),
                                                              ("OpenBao KV v2 write", bao, "kv_write"),
                                                              ("pgbench insert", pgb, "insert"),
                                                              ("SQLite insert", lite, "insert")]),
                                  ("W2", "read by id", [("OpenBao transit decrypt", bao, "decrypt"),
                                                        ("OpenBao KV v2 read", bao, "kv_read"),
                                                        ("pgbench select", pgb, "select"),
                                                        ("SQLite select", lite, "select")]),
                                  ("W3", "find by e-mail", [("pgbench select on email", pgb, "select_email"),
                                                            ("SQLite select on email", lite, "select_email")]),
                                  ("W7", "W2 during a sign-in storm", [])):
            for c in CONNECTIONS:
                for backend in ("sqlite", "postgres"):
                    row(f"{wid} {label}", f"Strongroom ({backend})", c, sr.get(backend, {}).get("runs", {})
                        .get(f"{wid}@{c}"))
                for name, runs, key in peers:
                    row(f"{wid} {label}", name, c, runs.get(f"{key}@{c}"))
        lines += ["", "Sign-in storms beside W7 (16 connections of correct sign-ins, argon2id each):", ""]
        for backend in ("sqlite", "postgres"):
            for c in CONNECTIONS:
                s = sr.get(backend, {}).get("runs", {}).get(f"W7@{c}", {}).get("storm")
                if s:
                    lines.append(f"- {backend}, W2 at {c} connections: {s['rps']:.1f} sign-ins/s, p99 "
                                 f"{s['p99_us'] / 1000:.0f} ms, {s['failed']} refused or failed")
        lines += [""]
        for backend in ("sqlite", "postgres"):
            s = sr.get(backend)
            if s:
                lines.append(f"- Strongroom on {backend}: start-up to a ready `/readyz` "
                             f"{', '.join(f'{x:.2f}' for x in s['startup_secs'])} s; idle RSS "
                             f"{s['idle_rss_kb'] / 1024:.1f} MB.")
        if req.get("openbao", {}).get("idle_rss_kb"):
            lines.append(f"- OpenBao idle RSS {req['openbao']['idle_rss_kb'] / 1024:.0f} MB.")
        lines += ["", "![Requests per second per workload](benchmarks.svg)", ""]
    lines.append("<!-- end of generated part -->")
    return "\n".join(lines)


def report_main(args) -> None:
    results = {"started": args.stamp, "machine": machine(args), "goals": []}
    req_path = Path(args.requests)
    if req_path.exists():
        results["requests"] = json.loads(req_path.read_text())
        request_goals(results["requests"], results["goals"])
    script_goals(Path(args.scripts), results["goals"], results)
    Path(args.out).write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    doc = Path(args.doc)
    text = doc.read_text()
    begin, end = "<!-- generated by bench/run", "<!-- end of generated part -->"
    generated = markdown(results, args.out)
    if begin in text and end in text:
        head = text[: text.index(begin)]
        tail = text[text.index(end) + len(end):]
        text = head + generated + tail
    else:
        marker = "\n## "
        at = text.find(marker)
        at = len(text) if at < 0 else at
        text = text[:at] + "\n## Latest run (`bench/run`)\n\n" + generated + "\n" + text[at:]
    doc.write_text(text)
    if "requests" in results:
        Path(args.chart).write_text(svg_chart(results["requests"]))
    met = sum(1 for g in results["goals"] if g["met"])
    log(f"\n== goals: {met} of {len(results['goals'])} met")
    for g in results["goals"]:
        log(f"  {'met    ' if g['met'] else 'NOT met'} {g['name']} ({g.get('backend', '')}"
            f"{', ' + str(g['connections']) + ' conns' if 'connections' in g else ''}): {g['measured']}"
            f" (target {g['target']})")
    log(f"wrote {args.out}, {args.doc}, {args.chart}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("requests")
    r.add_argument("--strongroom", required=True)
    r.add_argument("--seed", required=True)
    r.add_argument("--bao", required=True)
    r.add_argument("--pgbench", required=True)
    r.add_argument("--pg-url", required=True)
    r.add_argument("--pg-pid-file", required=True)
    r.add_argument("--duration", type=int, default=10)
    r.add_argument("--profiles", type=int, default=10000)
    r.add_argument("--out", required=True)
    rep = sub.add_parser("report")
    rep.add_argument("--stamp", required=True)
    rep.add_argument("--requests", required=True)
    rep.add_argument("--scripts", required=True)
    rep.add_argument("--pg-bin", required=True)
    rep.add_argument("--bao", required=True)
    rep.add_argument("--out", required=True)
    rep.add_argument("--doc", required=True)
    rep.add_argument("--chart", required=True)
    args = p.parse_args()
    try:
        requests_main(args) if args.cmd == "requests" else report_main(args)
    except RuntimeError as e:
        print(f"!! {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
