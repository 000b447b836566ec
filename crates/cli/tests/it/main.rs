//! End-to-end tests of Strongroom through the interfaces a user touches:
//! HTTPS on a real listener and the `strongroom` binary, on SQLite and on
//! PostgreSQL. Each module says what belongs in it.

mod attachments;
mod audit;
mod audit_sinks;
mod backups;
mod binary;
mod errors;
mod exports;
mod identity;
mod keys;
mod lifecycle;
mod mfa;
mod migrations;
mod openapi;
mod ops;
mod organisations;
mod profiles;
mod reset;
mod service_accounts;
mod shutdown;
mod support;
mod tidy;
mod tls;

/// Runs the built `strongroom` binary with the given arguments and extra
/// environment, returning (exit code, stdout, stderr).
pub fn strongroom(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_strongroom"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    match cmd.output() {
        Ok(out) => (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Err(e) => panic!("cannot run strongroom: {e}"),
    }
}

/// Runs `strongroom ARGS --data-dir D` against a test deployment, with the
/// database URL for PostgreSQL and the given environment.
pub fn cli(db: &testkit::TestDb, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let data_dir = db.data_dir();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--data-dir", data_dir.to_str().unwrap_or("")]);
    let mut env: Vec<(&str, &str)> = env.to_vec();
    if let Some(url) = &db.database_url {
        env.push(("STRONGROOM_DATABASE_URL", url.as_str()));
    }
    strongroom(&all, &env)
}

/// Whether `needle` occurs in `haystack`, byte for byte.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The resident memory of this process, in bytes (servers and backups in tests run in it).
pub fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
