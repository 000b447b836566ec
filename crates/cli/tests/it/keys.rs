//! The key hierarchy end to end: the CLI's init, unsealing, rotation, root
//! rotation and crypto-shredding; the embedded database encrypted at rest;
//! no key material in a full dump; the unwrapped-key cache; a KMS outage;
//! and `strongroom` on each real key backend (SoftHSM2, OpenBao, moto).

use std::sync::{Arc, Mutex};

use domain::{NewOrganisation, OrgName, OrgSlug};
use engine::{CacheSettings, Engine, EngineError, KeyError, KeyEvent, KeyObserver};
use testkit::{Backend, TcpProxy, TestDb, backend_tests, client_trusting, spawn_app_with};

use crate::{cli, contains, strongroom};

const PASSPHRASE: &str = "correct horse battery staple";

fn new_org(slug: &str, name: &str) -> NewOrganisation {
    match (OrgSlug::parse(slug), OrgName::parse(name)) {
        (Ok(slug), Ok(name)) => NewOrganisation { slug, name },
        other => panic!("bad fixture: {other:?}"),
    }
}

fn ok(result: (i32, String, String)) -> String {
    let (code, out, err) = result;
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    out
}

/// Counts key events.
#[derive(Debug, Default)]
struct Events(Mutex<Vec<KeyEvent>>);

impl KeyObserver for Events {
    fn observe(&self, _backend: &'static str, event: &KeyEvent) {
        if let Ok(mut v) = self.0.lock() {
            v.push(event.clone());
        }
    }
}

impl Events {
    fn unwraps(&self) -> usize {
        self.0.lock().map(|v| v.iter().filter(|e| matches!(e, KeyEvent::Unwrapped { .. })).count()).unwrap_or(0)
    }
}

backend_tests! {
    // claim 003.6 003.9
    async fn key_lifecycle_through_the_cli(backend) {
        let db = TestDb::new(backend).await.unwrap_or_else(|e| panic!("{e:#}"));
        let env = [("STRONGROOM_UNSEAL_PASSPHRASE", PASSPHRASE)];
        let out = ok(cli(&db, &["init"], &env));
        assert!(out.contains("Key backend: local (local root key v1)"), "{out}");
        let (code, _, err) = cli(&db, &["init"], &env);
        assert!(code != 0 && err.contains("already initialised"), "{err}");

        ok(cli(&db, &["org", "create", "--slug", "acme-care", "--name", "Acme Care"], &env));
        let status = ok(cli(&db, &["keys", "status"], &env));
        assert!(status.contains("acme-care\tv1\tactive"), "{status}");

        let out = ok(cli(&db, &["keys", "rotate", "--org", "acme-care"], &env));
        assert!(out.contains("key version 2") && out.contains("Re-wrapped 0 record keys"), "{out}");
        let status = ok(cli(&db, &["keys", "status"], &env));
        assert!(status.contains("acme-care\tv1\tretired") && status.contains("acme-care\tv2\tactive"), "{status}");

        let out = ok(cli(&db, &["keys", "rotate-root"], &env));
        assert!(out.contains("Re-wrapped 2 organisation key versions"), "{out}");
        assert_eq!(out.contains("and the database key"), backend == Backend::Sqlite, "{out}");
        let status = ok(cli(&db, &["keys", "status"], &env));
        assert!(status.contains("local root key v2") && status.contains("0 of 2 live key versions"), "{status}");
        // After the root rotation the deployment still opens: the database
        // key and both org key versions unwrap under the new root.
        ok(cli(&db, &["keys", "rotate", "--org", "acme-care"], &env));

        let (code, _, err) = cli(&db, &["keys", "destroy", "--org", "acme-care"], &env);
        assert!(code != 0 && err.contains("--confirm acme-care"), "{err}");
        assert!(ok(cli(&db, &["keys", "status"], &env)).contains("acme-care\tv3\tactive"), "nothing destroyed without confirmation");

        let out = ok(cli(&db, &["keys", "destroy", "--org", "acme-care", "--confirm", "acme-care"], &env));
        assert!(out.contains("Destroyed 3 key versions") && out.contains("Verified"), "{out}");
        let status = ok(cli(&db, &["keys", "status"], &env));
        assert!(status.contains("acme-care\tv1\tdestroyed") && status.contains("acme-care\tv3\tdestroyed"), "{status}");
        let (code, _, err) = cli(&db, &["keys", "rotate", "--org", "acme-care"], &env);
        assert!(code != 0 && err.contains("destroyed"), "{err}");
    }

    async fn unseal_failures_are_clear(backend) {
        let db = TestDb::new(backend).await.unwrap_or_else(|e| panic!("{e:#}"));
        let (code, _, err) = cli(&db, &["keys", "status"], &[("STRONGROOM_UNSEAL_PASSPHRASE", PASSPHRASE)]);
        assert!(code != 0 && err.contains("run `strongroom init` first"), "{err}");
        ok(cli(&db, &["init"], &[("STRONGROOM_UNSEAL_PASSPHRASE", PASSPHRASE)]));

        let (code, _, err) = cli(&db, &["keys", "status"], &[("STRONGROOM_UNSEAL_PASSPHRASE", "wrong passphrase here")]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("wrong unseal passphrase or key file"), "{err}");
        assert!(!err.contains("wrong passphrase here"), "the passphrase is never echoed: {err}");

        let (code, _, err) = cli(&db, &["keys", "status"], &[]);
        assert!(code != 0 && err.contains("keystore is sealed") && err.contains("STRONGROOM_UNSEAL_KEY_FILE"), "{err}");

        let (code, _, err) = cli(&db, &["keys", "status", "--unseal-key-file", "/nonexistent/unseal.key"], &[]);
        assert!(code != 0 && err.contains("/nonexistent/unseal.key"), "{err}");
    }

    // claim 000.5 003.9
    async fn no_key_material_in_a_full_dump(backend) {
        let db = TestDb::new(backend).await.unwrap_or_else(|e| panic!("{e:#}"));
        let engine = db.open_engine().await.unwrap_or_else(|e| panic!("{e:#}"));
        let org = engine.create_org(&new_org("zanzibar-candidates", "Zanzibar Candidates Ltd")).await.unwrap_or_else(|e| panic!("{e:#}"));
        engine.keys().rotate_org(org.id).await.unwrap_or_else(|e| panic!("{e:#}"));
        let mut secrets: Vec<Vec<u8>> = Vec::new();
        for v in [1, 2] {
            let key = engine.keys().org_key(org.id, v).await.unwrap_or_else(|e| panic!("{e:#}"));
            secrets.push(key.expose_for_cipher().to_vec());
        }
        engine.shutdown().await;
        let config = db.config().unwrap_or_else(|e| panic!("{e:#}"));
        if backend == Backend::Sqlite {
            let kms = server::keys::open_kms(&config, false).await.unwrap_or_else(|e| panic!("{e:#}"));
            let db_key = server::keys::database_key(&config, &kms).await.unwrap_or_else(|e| panic!("{e:#}"));
            secrets.push(db_key.to_vec());
        }
        let hex_secrets: Vec<Vec<u8>> = secrets.iter().map(|s| hex::encode(s).into_bytes()).collect();

        let mut dumps = testkit::files_under(&db.data_dir());
        if backend == Backend::Postgres {
            let pg_dump = format!("{}/pg_dump", std::env::var("PG_TEST_BIN").unwrap_or_else(|_| panic!("PG_TEST_BIN: run scripts/test")));
            let out = std::process::Command::new(pg_dump)
                .arg(db.database_url.clone().unwrap_or_default())
                .output()
                .unwrap_or_else(|e| panic!("pg_dump: {e}"));
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert!(contains(&out.stdout, b"org_keys"), "the dump holds the key table");
            dumps.push(("pg_dump".into(), out.stdout));
        }
        for (name, bytes) in &dumps {
            for s in secrets.iter().chain(&hex_secrets) {
                assert!(!contains(bytes, s), "{name} holds key material");
            }
        }
        if backend == Backend::Sqlite {
            // Page encryption: not even the organisation's name is readable.
            for (name, bytes) in &dumps {
                for plain in [&b"Zanzibar Candidates Ltd"[..], b"zanzibar-candidates", b"CREATE TABLE"] {
                    assert!(!contains(bytes, plain), "{name} holds {:?} in clear", String::from_utf8_lossy(plain));
                }
            }
        }
    }

    async fn the_key_cache_is_bounded_expires_and_forgets_destroyed_keys(backend) {
        let db = TestDb::new(backend).await.unwrap_or_else(|e| panic!("{e:#}"));
        let config = db.config().unwrap_or_else(|e| panic!("{e:#}"));
        let store = db.open_store().await.unwrap_or_else(|e| panic!("{e:#}"));
        let kms = Arc::new(server::keys::open_kms(&config, false).await.unwrap_or_else(|e| panic!("{e:#}")));
        let events = Arc::new(Events::default());
        let settings = CacheSettings { ttl: std::time::Duration::from_millis(400), max_entries: 2 };
        let engine = Engine::with_observer(store, kms, settings, events.clone());
        let mut orgs = Vec::new();
        for slug in ["org-one", "org-two", "org-three"] {
            orgs.push(engine.create_org(&new_org(slug, slug)).await.unwrap_or_else(|e| panic!("{e:#}")));
        }
        assert!(engine.keys().cached_count() <= 2, "bounded: {}", engine.keys().cached_count());
        let last = orgs[2].id;
        engine.keys().org_key(last, 1).await.unwrap_or_else(|e| panic!("{e:#}"));
        engine.keys().org_key(last, 1).await.unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(events.unwraps(), 0, "a fresh key is served from the cache");
        engine.keys().org_key(orgs[0].id, 1).await.unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(events.unwraps(), 1, "an evicted key is unwrapped through the KMS, and the unwrap reported");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        engine.keys().org_key(last, 1).await.unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(events.unwraps(), 2, "an expired key is unwrapped again");

        let report = engine.keys().destroy_org(last).await.unwrap_or_else(|e| panic!("{e:#}"));
        assert!(report.verified_unreadable && report.versions_destroyed == 1, "{report:?}");
        assert!(matches!(engine.keys().org_key(last, 1).await, Err(KeyError::Destroyed)), "no cached copy outlives destruction");
        assert!(matches!(engine.keys().current_org_key(orgs[1].id).await, Ok((1, _))), "other organisations are untouched");
        engine.shutdown().await;
    }

    // claim 000.6
    async fn a_kms_outage_fails_readiness_and_writes_then_recovers(backend) {
        let db = TestDb::new(backend).await.unwrap_or_else(|e| panic!("{e:#}"));
        let target: std::net::SocketAddr = std::env::var("STRONGROOM_TEST_TRANSIT_ADDR")
            .unwrap_or_else(|_| panic!("STRONGROOM_TEST_TRANSIT_ADDR: run scripts/test"))
            .trim_start_matches("http://")
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut proxy = TcpProxy::start(target).await.unwrap_or_else(|e| panic!("{e:#}"));
        let token_file = db.dir.path().join("transit.token");
        std::fs::write(&token_file, std::env::var("STRONGROOM_TEST_TRANSIT_TOKEN").unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
        let config_file = db.dir.path().join("strongroom.toml");
        std::fs::write(&config_file, format!(
            "[kms]\nbackend = \"transit\"\n[kms.transit]\naddress = \"http://{}\"\nkey = \"{}\"\ntoken_file = \"{}\"\n",
            proxy.addr,
            std::env::var("STRONGROOM_TEST_TRANSIT_KEY").unwrap_or_default(),
            token_file.display()
        )).unwrap_or_else(|e| panic!("{e}"));
        let mut overrides = db.overrides();
        overrides.dev = false;
        overrides.config_file = Some(config_file);
        let config = server::config::Config::load(&overrides).unwrap_or_else(|e| panic!("{e}"));

        let engine = server::open_engine(&config, true).await.unwrap_or_else(|e| panic!("{e:#}"));
        let running = server::start(&config).await.unwrap_or_else(|e| panic!("{e:#}"));
        let client = client_trusting(&db.data_dir().join("tls/ca.pem")).unwrap_or_else(|e| panic!("{e:#}"));
        let readyz = format!("https://localhost:{}/readyz", running.local_addr().port());
        let status = |r: Result<reqwest::Response, reqwest::Error>| r.map(|r| r.status().as_u16()).unwrap_or(0);
        assert_eq!(status(client.get(&readyz).send().await), 200);
        engine.create_org(&new_org("before-outage", "Before")).await.unwrap_or_else(|e| panic!("{e:#}"));

        proxy.stop();
        let res = client.get(&readyz).send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status().as_u16(), 503);
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        assert_eq!(body["type"], "urn:strongroom:problem:kms-unavailable", "{body}");
        let during = engine.create_org(&new_org("during-outage", "During")).await;
        assert!(matches!(during, Err(EngineError::Key(KeyError::KmsUnavailable(_)))), "{during:?}");
        assert_eq!(engine.list_orgs().await.map(|o| o.len()).ok(), Some(1), "nothing written without a key");

        proxy.restart().await.unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(status(client.get(&readyz).send().await), 200, "service resumes when the KMS returns");
        engine.create_org(&new_org("after-outage", "After")).await.unwrap_or_else(|e| panic!("{e:#}"));
        running.shutdown().await.ok();
        engine.shutdown().await;
    }

    // claim 000.6
    async fn strongroom_runs_on_softhsm(backend) {
        let db = TestDb::new(backend).await.unwrap_or_else(|e| panic!("{e:#}"));
        let label = format!("sr-e2e-{}", uuid::Uuid::new_v4().simple());
        let config_file = db.dir.path().join("strongroom.toml");
        std::fs::write(&config_file, format!(
            "[kms]\nbackend = \"pkcs11\"\n[kms.pkcs11]\nmodule = \"{}\"\ntoken_label = \"{}\"\nkey_label = \"{label}\"\n",
            std::env::var("STRONGROOM_TEST_PKCS11_MODULE").unwrap_or_else(|_| panic!("STRONGROOM_TEST_PKCS11_MODULE: run scripts/test")),
            std::env::var("STRONGROOM_TEST_PKCS11_TOKEN").unwrap_or_default(),
        )).unwrap_or_else(|e| panic!("{e}"));
        let pin = std::env::var("STRONGROOM_TEST_PKCS11_PIN").unwrap_or_default();
        let cfg = config_file.to_str().unwrap_or("");
        let env = [("STRONGROOM_PKCS11_PIN", pin.as_str())];
        let out = ok(cli(&db, &["init", "--config", cfg], &env));
        assert!(out.contains("Key backend: pkcs11") && out.contains(&format!("{label}-v1")), "{out}");
        ok(cli(&db, &["org", "create", "--slug", "hsm-org", "--name", "HSM Org", "--config", cfg], &env));
        let out = ok(cli(&db, &["keys", "rotate-root", "--config", cfg], &env));
        assert!(out.contains(&format!("{label}-v2")) && out.contains("Re-wrapped 1 organisation key versions"), "{out}");
        let status = ok(cli(&db, &["keys", "status", "--config", cfg], &env));
        assert!(status.contains("hsm-org\tv1\tactive") && status.contains("0 of 1"), "{status}");
        let (code, _, err) = cli(&db, &["keys", "status", "--config", cfg], &[("STRONGROOM_PKCS11_PIN", "0000")]);
        assert!(code != 0 && err.contains("kms.pkcs11.pin"), "{err}");
    }
}

// claim 000.6 003.8
#[cfg(feature = "aws-kms")]
mod aws {
    use super::*;

    backend_tests! {
        async fn strongroom_runs_on_aws_kms(backend) {
            let db = TestDb::new(backend).await.unwrap_or_else(|e| panic!("{e:#}"));
            let config_file = db.dir.path().join("strongroom.toml");
            std::fs::write(&config_file, format!(
                "[kms]\nbackend = \"aws-kms\"\n[kms.aws]\nkey_id = \"{}\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\n",
                std::env::var("STRONGROOM_TEST_AWS_KEY_ID").unwrap_or_else(|_| panic!("STRONGROOM_TEST_AWS_KEY_ID: run scripts/test")),
                std::env::var("STRONGROOM_TEST_AWS_ENDPOINT").unwrap_or_default(),
            )).unwrap_or_else(|e| panic!("{e}"));
            let cfg = config_file.to_str().unwrap_or("");
            let out = ok(cli(&db, &["init", "--config", cfg], &[]));
            assert!(out.contains("Key backend: aws-kms"), "{out}");
            ok(cli(&db, &["org", "create", "--slug", "aws-org", "--name", "AWS Org", "--config", cfg], &[]));
            let out = ok(cli(&db, &["keys", "rotate", "--org", "aws-org", "--config", cfg], &[]));
            assert!(out.contains("key version 2"), "{out}");
            let status = ok(cli(&db, &["keys", "status", "--config", cfg], &[]));
            assert!(status.contains("aws-org\tv2\tactive"), "{status}");
        }
    }
}

// claim 000.1 001.4
#[tokio::test]
async fn the_sqlite_file_is_not_a_database_without_its_key() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap_or_else(|e| panic!("{e:#}"));
    let engine = db.open_engine().await.unwrap_or_else(|e| panic!("{e:#}"));
    engine.create_org(&new_org("acme-care", "Acme Care")).await.unwrap_or_else(|e| panic!("{e:#}"));
    engine.shutdown().await;
    let out = std::process::Command::new("sqlite3")
        .arg(db.data_dir().join("strongroom.db"))
        .arg("SELECT count(*) FROM organisations;")
        .output()
        .unwrap_or_else(|e| panic!("sqlite3 is needed (scripts/test installs it): {e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("file is not a database"), "{err}");
    // With the key, the same file reads.
    let options = db.raw_sqlite_options().await.unwrap_or_else(|e| panic!("{e:#}"));
    let mut conn =
        <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options).await.unwrap_or_else(|e| panic!("{e}"));
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM organisations").fetch_one(&mut conn).await.unwrap_or(-1);
    assert_eq!(n, 1);
}

// claim 000.1 000.5
#[tokio::test]
async fn seeded_personal_values_are_nowhere_in_the_data_directory() {
    let app = testkit::spawn_app(Backend::Sqlite).await;
    let org = app.create_org("zanzibar-recruiting").await;
    let people = [
        ("Quentin Zabriskie-Oduya", "quentin.zabriskie@example.org"),
        ("Marguerite Vantongeren", "m.vantongeren@example.net"),
    ];
    for (name, email) in people {
        let new = engine::NewUser {
            email: domain::Email::parse(email).unwrap_or_else(|e| panic!("{e}")),
            display_name: domain::DisplayName::parse(name).unwrap_or_else(|e| panic!("{e}")),
            is_operator: false,
        };
        let user = app
            .engine()
            .create_user(&new, Some("correct horse battery staple"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        app.add_member(org.id, user.id, domain::Role::Viewer).await;
        let _ = app.login(email, "correct horse battery staple").await;
    }
    // Searched while running: the write-ahead log is page-encrypted too.
    let files = testkit::files_under(&app.db.data_dir());
    assert!(files.iter().any(|(n, _)| n.ends_with("strongroom.db")), "the database is among the files searched");
    for (file, bytes) in &files {
        for (name, email) in people {
            for needle in [
                name.as_bytes(),
                email.as_bytes(),
                b"zanzibar-recruiting",
                b"Zabriskie",
                b"correct horse battery staple",
            ] {
                assert!(!contains(bytes, needle), "{file} holds {:?}", String::from_utf8_lossy(needle));
            }
        }
    }
    app.shutdown().await.unwrap_or_else(|e| panic!("{e:#}"));
}

#[tokio::test]
async fn serve_on_a_data_directory_that_was_never_initialised_says_how_to_start() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data_dir = dir.path().join("data");
    let (code, _, err) =
        strongroom(&["serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir.to_str().unwrap_or("")], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("strongroom init") && err.contains("--dev"), "{err}");
}

/// `spawn_app_with` on the SoftHSM backend, in-process: readiness checks the
/// token session.
#[tokio::test]
async fn readiness_covers_the_hsm() {
    let db_probe = TestDb::new(Backend::Sqlite).await.unwrap_or_else(|e| panic!("{e:#}"));
    let pin_file = db_probe.dir.path().join("pin");
    std::fs::write(&pin_file, std::env::var("STRONGROOM_TEST_PKCS11_PIN").unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    let config_file = db_probe.dir.path().join("hsm.toml");
    std::fs::write(&config_file, format!(
        "[kms]\nbackend = \"pkcs11\"\n[kms.pkcs11]\nmodule = \"{}\"\ntoken_label = \"{}\"\nkey_label = \"sr-ready-{}\"\npin_file = \"{}\"\n",
        std::env::var("STRONGROOM_TEST_PKCS11_MODULE").unwrap_or_else(|_| panic!("STRONGROOM_TEST_PKCS11_MODULE: run scripts/test")),
        std::env::var("STRONGROOM_TEST_PKCS11_TOKEN").unwrap_or_default(),
        uuid::Uuid::new_v4().simple(),
        pin_file.display(),
    )).unwrap_or_else(|e| panic!("{e}"));
    // Create the root key first, as `strongroom init` would.
    let mut o = db_probe.overrides();
    o.dev = false;
    o.config_file = Some(config_file.clone());
    let config = server::config::Config::load(&o).unwrap_or_else(|e| panic!("{e}"));
    server::open_engine(&config, true).await.unwrap_or_else(|e| panic!("{e:#}")).shutdown().await;
    let app = spawn_app_with(Backend::Sqlite, |o| {
        o.dev = false;
        o.config_file = Some(config_file);
        o.data_dir = Some(db_probe.data_dir());
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(app.get("/readyz").await.status(), 200);
    app.shutdown().await.ok();
}
