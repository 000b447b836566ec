//! The `strongroom` command line: `check-config` shows the effective
//! configuration with secrets redacted and refuses invalid, unsafe or
//! unknown settings by name; precedence is file, environment, flag.

use std::io::Write;

use crate::strongroom;

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
    f.write_all(text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    f
}

fn path(f: &tempfile::NamedTempFile) -> &str {
    f.path().to_str().unwrap_or("")
}

// claim 002.11
#[test]
fn check_config_prints_the_effective_configuration_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data_dir = dir.path().join("data");
    let (code, out, err) = strongroom(
        &["check-config", "--data-dir", data_dir.to_str().unwrap_or("")],
        &[("STRONGROOM_DATABASE_URL", "postgres://app:s3cret-pw@127.0.0.1:5432/sr")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("listen = \"127.0.0.1:8443\""), "{out}");
    assert!(out.contains("backend = \"postgres\""), "{out}");
    assert!(out.contains("app:REDACTED@127.0.0.1"), "{out}");
    assert!(!out.contains("s3cret-pw") && !err.contains("s3cret-pw"), "{out}{err}");
}

// claim 002.11
#[test]
fn an_unknown_config_key_is_refused_by_name() {
    let file = config_file("listen = \"127.0.0.1:9000\"\n[http]\nmax_body = 10\n");
    let (code, _, err) = strongroom(&["check-config", "--config", path(&file)], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown field `max_body`"), "{err}");
}

// claim 002.11
#[test]
fn invalid_and_unsafe_values_are_refused_by_name() {
    for (args, setting) in [
        (vec!["--max-body-bytes", "5"], "http.max_body_bytes"),
        (vec!["--listen", "localhost"], "listen"),
        (vec!["--database-url", "postgres://u:pw@db.example.com/sr"], "database_url"),
        (vec!["--tls-cert-file", "/nonexistent.pem"], "tls.key_file"),
    ] {
        let mut all = vec!["check-config"];
        all.extend(args.iter().copied());
        let (code, _, err) = strongroom(&all, &[]);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(setting), "{args:?} should name {setting}: {err}");
        assert!(!err.contains(":pw@"), "no secret in errors: {err}");
    }
}

#[test]
fn a_typo_in_an_environment_variable_is_refused_by_name() {
    let (code, _, err) = strongroom(&["check-config"], &[("STRONGROOM_LISTN", "127.0.0.1:1")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("STRONGROOM_LISTN"), "{err}");
}

#[test]
fn flags_win_over_environment_which_wins_over_the_file() {
    let file = config_file("listen = \"127.0.0.1:1001\"\n");
    let (_, out, _) = strongroom(&["check-config", "--config", path(&file)], &[]);
    assert!(out.contains("127.0.0.1:1001"), "{out}");
    let env = [("STRONGROOM_LISTEN", "127.0.0.1:1002")];
    let (_, out, _) = strongroom(&["check-config", "--config", path(&file)], &env);
    assert!(out.contains("127.0.0.1:1002"), "{out}");
    let (_, out, _) = strongroom(&["check-config", "--config", path(&file), "--listen", "127.0.0.1:1003"], &env);
    assert!(out.contains("127.0.0.1:1003"), "{out}");
}

#[test]
fn serve_refuses_an_invalid_configuration_before_touching_anything() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data_dir = dir.path().join("data");
    let (code, _, err) =
        strongroom(&["serve", "--data-dir", data_dir.to_str().unwrap_or(""), "--request-timeout-secs", "0"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("http.request_timeout_secs"), "{err}");
    assert!(!data_dir.exists(), "nothing created for a refused configuration");
}

#[test]
fn serve_reports_an_unreachable_database_without_its_password() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data_dir = dir.path().join("data");
    // Port 9 (discard) on loopback: nothing listens there.
    let (code, _, err) = strongroom(
        &["serve", "--dev", "--data-dir", data_dir.to_str().unwrap_or(""), "--listen", "127.0.0.1:0"],
        &[("STRONGROOM_DATABASE_URL", "postgres://app:s3cret-pw@127.0.0.1:9/sr")],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("could not open the PostgreSQL database"), "{err}");
    assert!(!err.contains("s3cret-pw"), "{err}");
}

#[test]
fn a_data_directory_open_to_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data_dir = dir.path().join("data");
    std::fs::create_dir(&data_dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("{e}"));
    let (code, _, err) = strongroom(&["check-config", "--data-dir", data_dir.to_str().unwrap_or("")], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("data_dir") && err.contains("chmod 700"), "{err}");
}
