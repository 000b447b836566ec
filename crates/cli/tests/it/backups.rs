//! Backups end to end through the CLI, the scheduler and the API, on a local
//! folder and S3 (moto): a backup taken while records are being written
//! restores to a consistent state on the other backend, record for record;
//! damaged, truncated, newer or foreign archives are refused and the target
//! store stays untouched; retention keeps exactly what its rules say;
//! scheduled drills leave reports, failed ones too; a recovery from scratch
//! serves; and crypto-shredding reaches archives made before it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use testkit::{Backend, TestApp, TestDb, UserClient, backend_tests, spawn_app_on, spawn_app_with};

use crate::cli;

const PW: &str = "correct horse battery staple";

fn peer(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name}: run scripts/test"))
}

fn other(backend: Backend) -> Backend {
    match backend {
        Backend::Sqlite => Backend::Postgres,
        Backend::Postgres => Backend::Sqlite,
    }
}

fn ok(result: (i32, String, String)) -> String {
    let (code, out, err) = result;
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    out
}

fn failed(result: (i32, String, String)) -> String {
    let (code, out, err) = result;
    assert_ne!(code, 0, "expected a failure; stdout: {out}\nstderr: {err}");
    err
}

/// A config file with the backup section given, in a temporary folder.
struct Conf {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl Conf {
    fn new(backup: &str) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("strongroom.toml");
        let text = backup.replace("@DIR@", dir.path().to_str().unwrap_or(""));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        Self { dir, path }
    }

    fn arg(&self) -> &str {
        self.path.to_str().unwrap_or("")
    }

    fn local_archives(&self) -> PathBuf {
        self.dir.path().join("local").join("backups")
    }
}

/// A bucket on moto.
async fn bucket() -> (String, String) {
    let endpoint = peer("STRONGROOM_TEST_AWS_ENDPOINT");
    let bucket = format!("sr-backup-{}", uuid::Uuid::new_v4().simple());
    let made =
        testkit::plain_http_client().put(format!("{endpoint}/{bucket}")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(made.status().is_success(), "create bucket: {}", made.status());
    (endpoint, bucket)
}

/// `[backup]` with a local target and, given a bucket, an S3 one; no
/// schedule unless `extra` adds one.
fn backup_section(s3: Option<&(String, String)>, extra: &str) -> String {
    let mut text =
        format!("[backup]\n{extra}\n[[backup.targets]]\nname = \"local\"\nkind = \"local\"\npath = \"@DIR@/local\"\n");
    if let Some((endpoint, bucket)) = s3 {
        text.push_str(&format!(
            "[[backup.targets]]\nname = \"offsite\"\nkind = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{endpoint}\"\nprefix = \"vault\"\n"
        ));
    }
    text
}

fn schema() -> Value {
    json!({ "fields": [
        { "name": "full_name", "type": "string", "required": true, "classification": "personal" },
        { "name": "email", "type": "email", "searchable": true, "classification": "personal" },
        { "name": "diagnosis", "type": "text", "classification": "sensitive" },
        { "name": "stage", "type": "enum", "values": ["applied", "hired"], "classification": "plain" }
    ]})
}

fn person(i: usize) -> Value {
    json!({ "fields": {
        "full_name": format!("Wilhelmina Backup-Person {i}"),
        "email": format!("w.person{i}@example.org"),
        "diagnosis": format!("Hypothetical-condition-{i}"),
        "stage": "applied"
    }})
}

struct Org {
    slug: String,
    editor: UserClient,
    editor_email: String,
    /// Unused recovery codes, to pass 2FA on a restored copy.
    recovery: Vec<String>,
    profiles: Vec<String>,
}

/// Signs the editor in on a restored copy, passing 2FA with a recovery
/// code (the restored account keeps its enrolment).
async fn login_again(app: &TestApp, org: &mut Org) -> UserClient {
    let c = app.login(&org.editor_email, PW).await;
    let code = org.recovery.pop().unwrap_or_else(|| panic!("no recovery code left"));
    let res = c.send(Method::POST, "/v1/auth/mfa/verify", Some(json!({ "code": code }))).await;
    assert!(res.status().is_success(), "mfa verify on the copy: {}", res.status());
    c
}

/// An organisation with an editor, a schema and `n` profiles, the first
/// with an attachment.
async fn org(app: &TestApp, slug: &str, n: usize) -> Org {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let org = app.create_org(slug).await;
    let editor_email = format!("editor-{tag}@example.com");
    let u = app.create_user(&editor_email, PW, false).await;
    app.add_member(org.id, u.id, domain::Role::Owner).await;
    let (editor, _, recovery) = app.login_with_mfa(&editor_email, PW).await;
    let base = format!("/v1/orgs/{slug}");
    assert_eq!(editor.send(Method::PUT, &format!("{base}/schema"), Some(schema())).await.status(), 200);
    let mut profiles = Vec::new();
    for i in 0..n {
        profiles.push(create(&editor, slug, i).await);
    }
    let res = editor
        .request(Method::PUT, &format!("{base}/profiles/{}/attachments/letter.txt", profiles[0]))
        .header("content-type", "text/plain")
        .body("Dear Wilhelmina, this letter is personal.".repeat(3000))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(res.status().is_success(), "attachment: {}", res.status());
    Org { slug: slug.to_owned(), editor, editor_email, recovery, profiles }
}

async fn create(c: &UserClient, slug: &str, i: usize) -> String {
    let res = c.send(Method::POST, &format!("/v1/orgs/{slug}/profiles"), Some(person(i))).await;
    let v: Value = res.json().await.unwrap_or_default();
    v["id"].as_str().unwrap_or_else(|| panic!("{v}")).to_owned()
}

/// Every profile of an organisation, decrypted, by id.
async fn all_profiles(c: &UserClient, slug: &str) -> std::collections::BTreeMap<String, Value> {
    let mut out = std::collections::BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/orgs/{slug}/profiles?limit=100");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let res = c.get(&path).await;
        let status = res.status();
        let v: Value = res.json().await.unwrap_or_default();
        assert_eq!(status, 200, "{path}: {v}");
        let items = v["profiles"].as_array().cloned().unwrap_or_default();
        for p in &items {
            out.insert(p["id"].as_str().unwrap_or_default().to_owned(), p.clone());
        }
        match v["next_cursor"].as_str() {
            Some(n) if !items.is_empty() => cursor = Some(n.to_owned()),
            _ => return out,
        }
    }
}

async fn attachment(c: &UserClient, slug: &str, profile: &str) -> (u16, Vec<u8>) {
    let res = c.get(&format!("/v1/orgs/{slug}/profiles/{profile}/attachments/letter.txt")).await;
    let status = res.status().as_u16();
    (status, res.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
}

/// A new, empty deployment that shares the key backend's root key with
/// `from` (its local keystore copied, as an operator would restore it).
async fn fresh_with_keys_of(from: &TestDb, backend: Backend) -> TestDb {
    let fresh = TestDb::new(backend).await.unwrap_or_else(|e| panic!("{e:#}"));
    copy_keystore(&from.data_dir(), &fresh.data_dir());
    fresh
}

fn copy_keystore(from: &Path, to: &Path) {
    use std::os::unix::fs::DirBuilderExt;
    let dst = to.join("keystore");
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dst).unwrap_or_else(|e| panic!("{e}"));
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(to).unwrap_or_else(|e| panic!("{e}"));
    for entry in std::fs::read_dir(from.join("keystore")).unwrap_or_else(|e| panic!("{e}")).flatten() {
        if entry.file_name() != "database.key" {
            std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

fn archive_files(conf: &Conf) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(conf.local_archives()).into_iter().flatten().flatten().map(|e| e.path()).collect();
    files.sort();
    files
}

backend_tests! {
    // claim 001.9 002.6 003.4 004.13
    async fn a_backup_taken_under_writes_restores_every_record_on_the_other_backend(backend) {
        let s3 = bucket().await;
        let conf = Conf::new(&backup_section(Some(&s3), "schedules = []\ndrill_every = \"off\""));
        let app = spawn_app_with(backend, |o| o.config_file = Some(conf.path.clone())).await.unwrap_or_else(|e| panic!("{e:#}"));
        let mut acme = org(&app, "acme-backup", 20).await;

        // Writers keep creating records while the backup runs.
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            let editor = acme.editor.clone();
            tokio::spawn(async move {
                let mut i = 1000;
                while !stop.load(Ordering::Relaxed) {
                    create(&editor, "acme-backup", i).await;
                    i += 1;
                }
                i - 1000
            })
        };
        let db_dir = app.db.data_dir();
        let url = app.db.database_url.clone();
        let arg = conf.arg().to_owned();
        let out = tokio::task::spawn_blocking(move || {
            let mut env = Vec::new();
            if let Some(u) = &url {
                env.push(("STRONGROOM_DATABASE_URL", u.as_str()));
            }
            crate::strongroom(&["backup", "create", "--dev", "--config", &arg, "--data-dir", db_dir.to_str().unwrap_or("")], &env)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        stop.store(true, Ordering::Relaxed);
        let written_during = writer.await.unwrap_or_else(|e| panic!("{e}"));
        let out = ok(out);
        assert!(out.contains("Copied to and verified at: local, offsite"), "{out}");
        assert!(written_during > 0, "the writer ran during the backup");

        let list = ok(cli(&app.db, &["backup", "list", "--dev", "--config", conf.arg()], &[]));
        assert_eq!(list.lines().filter(|l| l.starts_with("local\t")).count(), 1, "{list}");
        assert_eq!(list.lines().filter(|l| l.starts_with("offsite\t")).count(), 1, "{list}");
        let verified = ok(cli(&app.db, &["backup", "verify", "--target", "offsite", "--dev", "--config", conf.arg()], &[]));
        assert!(verified.contains("every section matches its manifest"), "{verified}");
        // Nothing personal in the archive's bytes.
        for file in archive_files(&conf) {
            let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{e}"));
            for needle in ["Wilhelmina", "w.person1@example.org", "Hypothetical-condition", "Dear Wilhelmina"] {
                assert!(!crate::contains(&bytes, needle.as_bytes()), "{needle} in {}", file.display());
            }
        }
        let before = all_profiles(&acme.editor, "acme-backup").await;
        let (_, letter) = attachment(&acme.editor, "acme-backup", &acme.profiles[0]).await;

        // Restore from S3 onto the other backend, into a new deployment
        // holding only the root key.
        let fresh = fresh_with_keys_of(&app.db, other(backend)).await;
        let restored = ok(cli(&fresh, &["backup", "restore", "--target", "offsite", "--dev", "--config", conf.arg()], &[]));
        assert!(restored.contains("Restored backup"), "{restored}");
        let audit = ok(cli(&fresh, &["audit", "verify", "--dev", "--config", conf.arg()], &[]));
        assert!(!audit.to_lowercase().contains("broken"), "{audit}");
        let copy = spawn_app_on(fresh, |o| o.config_file = Some(conf.path.clone())).await.unwrap_or_else(|e| panic!("{e:#}"));
        let editor = login_again(&copy, &mut acme).await;
        let after = all_profiles(&editor, "acme-backup").await;
        // A consistent snapshot: the 20 first records and some of those
        // written meanwhile, each exactly as it was.
        assert!(after.len() >= 20 && after.len() <= before.len(), "{} of {}", after.len(), before.len());
        for id in &acme.profiles {
            assert!(after.contains_key(id), "profile {id} missing after restore");
        }
        for (id, p) in &after {
            assert_eq!(Some(p), before.get(id), "profile {id} differs after restore");
        }
        assert_eq!(attachment(&editor, "acme-backup", &acme.profiles[0]).await, (200, letter));
        // Blind-index search works on the restored copy.
        let found = editor.get("/v1/orgs/acme-backup/profiles?email=w.person3%40example.org").await;
        let v: Value = found.json().await.unwrap_or_default();
        assert_eq!(v["profiles"].as_array().map(Vec::len), Some(1), "{v}");
        copy.shutdown().await.unwrap_or_else(|e| panic!("{e:#}"));
        app.shutdown().await.unwrap_or_else(|e| panic!("{e:#}"));
    }

    // claim 001.9 004.13
    async fn damaged_newer_or_foreign_archives_are_refused_and_leave_the_store_untouched(backend) {
        let conf = Conf::new(&backup_section(None, "schedules = []\ndrill_every = \"off\""));
        let app = spawn_app_with(backend, |o| o.config_file = Some(conf.path.clone())).await.unwrap_or_else(|e| panic!("{e:#}"));
        org(&app, "acme-damage", 5).await;
        // A schedule name with a space would split into two audit fields.
        let (code, _, err) = cli(&app.db, &["backup", "create", "--dev", "--config", conf.arg(), "--schedule", "nightly full"], &[]);
        assert!(code != 0 && err.contains("schedule's name"), "{code} {err}");
        assert!(archive_files(&conf).is_empty(), "nothing is written");
        ok(cli(&app.db, &["backup", "create", "--dev", "--config", conf.arg()], &[]));
        let file = archive_files(&conf).pop().unwrap_or_else(|| panic!("no archive"));
        let good = std::fs::read(&file).unwrap_or_else(|e| panic!("{e}"));
        let id = file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();

        let fresh = fresh_with_keys_of(&app.db, backend).await;
        let mut flipped = good.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x01;
        let mut newer = good.clone();
        newer[9] = 9;
        let cases: [(&str, Vec<u8>, &str); 5] = [
            ("flipped", flipped, "failed authentication"),
            ("truncated", good[..good.len() - 100].to_vec(), "truncated"),
            ("cut inside the header", good[..20].to_vec(), "truncated"),
            ("newer format", newer, "newer than this build reads"),
            ("not an archive", b"PK\x03\x04 a zip file".to_vec(), "not a Strongroom backup archive"),
        ];
        for (what, bytes, message) in cases {
            std::fs::write(&file, &bytes).unwrap_or_else(|e| panic!("{e}"));
            let err = failed(cli(&fresh, &["backup", "restore", "--id", &id, "--dev", "--config", conf.arg()], &[]));
            assert!(err.contains(message), "{what}: {err}");
            let store = fresh.open_store().await.unwrap_or_else(|e| panic!("{e:#}"));
            assert_eq!(store.first_non_empty_table().await.unwrap_or_else(|e| panic!("{e}")), None, "{what}: the store changed");
            store.close().await;
        }
        std::fs::write(&file, &good).unwrap_or_else(|e| panic!("{e}"));

        // Another deployment's root key cannot open it.
        let stranger = TestDb::new(backend).await.unwrap_or_else(|e| panic!("{e:#}"));
        stranger.open_store().await.unwrap_or_else(|e| panic!("{e:#}")).close().await;
        let err = failed(cli(&stranger, &["backup", "restore", "--dev", "--config", conf.arg()], &[]));
        assert!(err.contains("cannot unwrap the data key"), "{err}");

        // The good archive restores; a second restore finds the store full.
        ok(cli(&fresh, &["backup", "restore", "--dev", "--config", conf.arg()], &[]));
        let err = failed(cli(&fresh, &["backup", "restore", "--dev", "--config", conf.arg()], &[]));
        assert!(err.contains("not empty") && err.contains("--force"), "{err}");
        ok(cli(&fresh, &["backup", "restore", "--force", "--dev", "--config", conf.arg()], &[]));
        let err = failed(cli(&fresh, &["backup", "restore", "--id", "nope", "--dev", "--config", conf.arg()], &[]));
        assert!(err.contains("--id") && err.contains("not a backup id"), "{err}");
        app.shutdown().await.unwrap_or_else(|e| panic!("{e:#}"));
    }

    // claim 001.9 002.6 001.15 004.14
    async fn drills_run_on_schedule_report_failures_and_recover_from_scratch(backend) {
        let conf = Conf::new(&backup_section(None, "schedules = []\ndrill_every = \"2s\"\npoll_secs = 1\n[backup.retention]\nhourly = 0\ndaily = 0\nmonthly = 0"));
        let app = spawn_app_with(backend, |o| o.config_file = Some(conf.path.clone())).await.unwrap_or_else(|e| panic!("{e:#}"));
        org(&app, "acme-drill", 8).await;
        let tag = uuid::Uuid::new_v4().simple().to_string();
        app.create_user(&format!("op-{tag}@example.com"), PW, true).await;
        let (operator, _, _) = app.login_with_mfa(&format!("op-{tag}@example.com"), PW).await;

        // With no backup yet, the scheduled drill fails, and says so.
        let first = wait_for_drill(&operator, |d| d["outcome"] == "failure").await;
        assert!(first["report"]["error"].as_str().unwrap_or_default().contains("no readable backup"), "{first}");

        // Three backups; retention that keeps only the newest prunes two.
        for _ in 0..3 {
            ok(cli(&app.db, &["backup", "create", "--dev", "--config", conf.arg()], &[]));
        }
        assert_eq!(archive_files(&conf).len(), 3);
        let dry = ok(cli(&app.db, &["backup", "prune", "--dry-run", "--dev", "--config", conf.arg()], &[]));
        assert!(dry.contains("keeps 1, would delete 2"), "{dry}");
        assert_eq!(archive_files(&conf).len(), 3, "a dry run deletes nothing");
        let pruned = ok(cli(&app.db, &["backup", "prune", "--dev", "--config", conf.arg()], &[]));
        assert!(pruned.contains("keeps 1, deleted 2"), "{pruned}");
        assert_eq!(archive_files(&conf).len(), 1);

        // The next scheduled drill restores it and checks it.
        let ok_drill = wait_for_drill(&operator, |d| d["outcome"] == "success").await;
        assert!(ok_drill["report"]["chains"].as_u64().unwrap_or(0) >= 2, "{ok_drill}");
        assert!(ok_drill["report"]["decrypted_records"].as_u64().unwrap_or(0) >= 5, "{ok_drill}");
        assert!(ok_drill["backup_id"].is_string() && ok_drill["restore_seconds"].is_number(), "{ok_drill}");

        // A full recovery rehearsal: new data directory, backup, keys.
        let out = ok(cli(&app.db, &["backup", "drill", "--from-scratch", "--dev", "--config", conf.arg()], &[]));
        assert!(out.contains("success") && out.contains("from scratch"), "{out}");

        // A damaged archive: the drill fails, exits non-zero, and is kept.
        let file = archive_files(&conf).pop().unwrap_or_else(|| panic!("no archive"));
        let mut bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{e}"));
        let at = bytes.len() - 50;
        bytes[at] ^= 0x80;
        std::fs::write(&file, &bytes).unwrap_or_else(|e| panic!("{e}"));
        let err = failed(cli(&app.db, &["backup", "drill", "--dev", "--config", conf.arg()], &[]));
        assert!(err.contains("the drill failed"), "{err}");
        let res = operator.get("/v1/platform/drills?limit=1").await;
        let v: Value = res.json().await.unwrap_or_default();
        assert_eq!(v["drills"][0]["outcome"], "failure", "{v}");
        assert!(v["drills"][0]["report"]["error"].as_str().unwrap_or_default().contains("authentication"), "{v}");

        // Only operators see drills.
        let editor = app.login(&format!("op-{tag}@example.com"), PW).await;
        assert_eq!(editor.get("/v1/platform/drills").await.status(), 403, "an operator without 2FA");
        app.shutdown().await.unwrap_or_else(|e| panic!("{e:#}"));
    }

    // claim 001.9 004.13
    async fn crypto_shredding_reaches_backups_made_before_it(backend) {
        let conf = Conf::new(&backup_section(None, "schedules = []\ndrill_every = \"off\""));
        let app = spawn_app_with(backend, |o| o.config_file = Some(conf.path.clone())).await.unwrap_or_else(|e| panic!("{e:#}"));
        let mut gone = org(&app, "acme-gone", 3).await;
        let mut kept = org(&app, "acme-kept", 3).await;
        let kept_before = all_profiles(&kept.editor, "acme-kept").await;
        ok(cli(&app.db, &["backup", "create", "--dev", "--config", conf.arg()], &[]));
        let out = ok(cli(&app.db, &["keys", "destroy", "--org", "acme-gone", "--confirm", "acme-gone", "--dev", "--config", conf.arg()], &[]));
        assert!(out.contains("escrow objects are deleted"), "{out}");
        let verified = ok(cli(&app.db, &["backup", "verify", "--dev", "--config", conf.arg()], &[]));
        assert!(verified.contains("keys were destroyed"), "{verified}");

        let fresh = fresh_with_keys_of(&app.db, backend).await;
        let restored = ok(cli(&fresh, &["backup", "restore", "--dev", "--config", conf.arg()], &[]));
        assert!(restored.contains("its records stay unreadable"), "{restored}");
        let copy = spawn_app_on(fresh, |o| o.config_file = Some(conf.path.clone())).await.unwrap_or_else(|e| panic!("{e:#}"));
        let kept_editor = login_again(&copy, &mut kept).await;
        assert_eq!(all_profiles(&kept_editor, "acme-kept").await, kept_before, "other organisations restore normally");
        let gone_editor = login_again(&copy, &mut gone).await;
        let res = gone_editor.get(&format!("/v1/orgs/{}/profiles/{}", gone.slug, gone.profiles[0])).await;
        assert!(!res.status().is_success(), "a shredded organisation's record decrypted: {}", res.status());
        let text = res.text().await.unwrap_or_default();
        assert!(!text.contains("Wilhelmina"), "{text}");
        copy.shutdown().await.unwrap_or_else(|e| panic!("{e:#}"));
        app.shutdown().await.unwrap_or_else(|e| panic!("{e:#}"));
    }
}

/// Waits (up to a minute) for the newest drill to match.
async fn wait_for_drill(operator: &UserClient, matches: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let res = operator.get("/v1/platform/drills?limit=1").await;
        assert_eq!(res.status(), 200);
        let v: Value = res.json().await.unwrap_or_default();
        if let Some(d) = v["drills"].get(0)
            && matches(d)
        {
            return d.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no matching drill: {v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `n` bytes that do not compress, in 1 MiB chunks.
fn incompressible(n: u64) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    use sha2::{Digest, Sha256};
    futures_util::stream::iter((0..n.div_ceil(1 << 20)).map(move |i| {
        let len = (n - i * (1 << 20)).min(1 << 20) as usize;
        let mut chunk = Vec::with_capacity(len);
        let mut block = Sha256::digest(i.to_be_bytes()).to_vec();
        while chunk.len() < len {
            chunk.extend_from_slice(&block[..block.len().min(len - chunk.len())]);
            block = Sha256::digest(&block).to_vec();
        }
        Ok(bytes::Bytes::from(chunk))
    }))
}

async fn blob_digest(blobs: &store::BlobStore, key: &str) -> Vec<u8> {
    use futures_util::StreamExt;
    use sha2::{Digest, Sha256};
    let key = store::BlobKey::new(key).unwrap_or_else(|e| panic!("{e}"));
    let mut s = blobs.get(&key).await.unwrap_or_else(|e| panic!("{e}"));
    let mut h = Sha256::new();
    while let Some(chunk) = s.next().await {
        h.update(chunk.unwrap_or_else(|e| panic!("{e}")));
    }
    h.finalize().to_vec()
}

// A 100 MiB attachment goes into an archive and back out of it without
// the archive ever being held in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_attachment_is_backed_up_and_restored_in_bounded_memory() {
    const SIZE: u64 = 100 * 1024 * 1024;
    let conf = Conf::new(&backup_section(None, "schedules = []\ndrill_every = \"off\""));
    let app = spawn_app_with(Backend::Sqlite, |o| o.config_file = Some(conf.path.clone()))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let acme = org(&app, "acme-big", 1).await;
    let res = acme
        .editor
        .request(Method::PUT, &format!("/v1/orgs/acme-big/profiles/{}/attachments/scan.bin", acme.profiles[0]))
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(incompressible(SIZE)))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 201);
    let config = server::config::Config::load(&{
        let mut o = app.db.overrides();
        o.config_file = Some(conf.path.clone());
        o
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let backups = server::open_backups(&config, app.engine()).await.unwrap_or_else(|e| panic!("{e:#}"));

    // The restore's target opens first: unsealing its keystore (Argon2id,
    // 64 MiB) is not the backup's memory.
    let fresh = TestDb::new(Backend::Sqlite).await.unwrap_or_else(|e| panic!("{e:#}"));
    let store = fresh.open_store().await.unwrap_or_else(|e| panic!("{e:#}"));
    let blobs = server::open_blobs(&fresh.config().unwrap_or_else(|e| panic!("{e:#}")))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let baseline = crate::rss();
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let watcher = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(crate::rss(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let created = backups.create("manual", "test", &backup::Quiet).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(created.bytes > SIZE, "the archive holds the attachment: {} bytes", created.bytes);
    let kms = app.engine().keys().kms();
    let target = &backups.targets()[0];
    let restored = backup::restore(kms, target, created.id, &store, &blobs, false, &backup::Quiet)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    watcher.abort();
    assert_eq!(restored.blobs, 2, "both attachments restored");
    let grew = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    eprintln!("backing up and restoring 100 MiB raised resident memory by {:.1} MiB", grew as f64 / 1_048_576.0);
    assert!(grew < 48 * 1024 * 1024, "memory grew by {} MiB", grew / (1024 * 1024));

    // The restored blob is the stored ciphertext, byte for byte.
    let original = app.engine().blob_store().unwrap_or_else(|| panic!("no blob store")).clone();
    let keys = original.list("orgs", 100).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in &keys {
        assert_eq!(blob_digest(&original, key).await, blob_digest(&blobs, key).await, "{key}");
    }
    store.close().await;
    app.shutdown().await.unwrap_or_else(|e| panic!("{e:#}"));
}

/// Rewrites an archive as an older Strongroom would have written it: the
/// columns later migrations added are left out of their tables.
async fn as_older_archive(
    kms: &kms::Kms,
    target: &backup::Target,
    id: uuid::Uuid,
    dropped: &[(&str, &str)],
) -> uuid::Uuid {
    use backup::format::{FORMAT_VERSION, Header, Manifest, Reader, Record, Writer};
    use base64::Engine as _;
    use futures_util::StreamExt;
    let key = store::BlobKey::new(&format!("backups/{id}")).unwrap_or_else(|e| panic!("{e}"));
    let mut stream = target.blobs.get(&key).await.unwrap_or_else(|e| panic!("{e}"));
    let mut reader = Reader::new().unwrap_or_else(|e| panic!("{e}"));
    let mut records = Vec::new();
    let mut header = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("{e}"));
        if header.is_some() {
            records.extend(reader.feed(&chunk).unwrap_or_else(|e| panic!("{e}")));
        } else if let Some(h) = reader.feed_header(&chunk).unwrap_or_else(|e| panic!("{e}")).cloned() {
            let wrapped =
                base64::engine::general_purpose::STANDARD.decode(&h.wrapped_key).unwrap_or_else(|e| panic!("{e}"));
            let data_key = kms
                .unwrap(&kms::WrappedKey(wrapped), &crypto::KeyContext::backup(id))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            records.extend(reader.unlock(&data_key).unwrap_or_else(|e| panic!("{e}")));
            header = Some(h);
        }
    }
    records.extend(reader.finish().unwrap_or_else(|e| panic!("{e}")));
    let old = header.unwrap_or_else(|| panic!("no header"));

    let new_id = uuid::Uuid::now_v7();
    let (data_key, wrapped) =
        kms.generate_data_key(&crypto::KeyContext::backup(new_id)).await.unwrap_or_else(|e| panic!("{e}"));
    let header = Header {
        format: FORMAT_VERSION,
        id: new_id,
        schema_version: 3,
        strongroom_version: "0.0.1".into(),
        wrapped_key: base64::engine::general_purpose::STANDARD.encode(&wrapped.0),
        ..old
    };
    let mut w = Writer::new(&header, &data_key, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    let mut manifest = Manifest::default();
    let (mut table, mut keep): (String, Vec<bool>) = (String::new(), Vec::new());
    for record in records {
        match record {
            Record::Table { name, columns } => {
                keep = columns.iter().map(|(c, _)| !dropped.contains(&(name.as_str(), c.as_str()))).collect();
                let kept: Vec<(&str, store::dump::ColumnKind)> =
                    columns.iter().zip(&keep).filter(|(_, k)| **k).map(|((c, kind), _)| (c.as_str(), *kind)).collect();
                w.begin_table(&name, &kept).unwrap_or_else(|e| panic!("{e}"));
                table = name;
            }
            Record::Row(values) => {
                let kept: Vec<store::dump::Value> =
                    values.into_iter().zip(&keep).filter(|(_, k)| **k).map(|(v, _)| v).collect();
                w.row(&kept).unwrap_or_else(|e| panic!("{e}"));
            }
            Record::TableEnd { .. } => manifest.sections.push(w.end_table(&table).unwrap_or_else(|e| panic!("{e}"))),
            Record::Blob { key, len } => w.begin_blob(&key, len).unwrap_or_else(|e| panic!("{e}")),
            Record::BlobPiece(piece) => w.blob_piece(&piece).unwrap_or_else(|e| panic!("{e}")),
            Record::Manifest(m) => {
                manifest.blobs = m.blobs;
                manifest.blob_bytes = m.blob_bytes;
                manifest.missing_blobs = m.missing_blobs;
                manifest.escrowed_orgs = m.escrowed_orgs;
            }
        }
    }
    manifest.blobs_sha256 = w.blobs_sha256();
    let (bytes, _, _) = w.finish(&manifest).unwrap_or_else(|e| panic!("{e}"));
    let key = store::BlobKey::new(&format!("backups/{new_id}")).unwrap_or_else(|e| panic!("{e}"));
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(bytes))]);
    target.blobs.put(&key, body).await.unwrap_or_else(|e| panic!("{e}"));
    new_id
}

backend_tests! {
    // claim 001.9
    async fn an_archive_from_an_older_schema_restores_with_defaults_for_newer_columns(backend) {
        let conf = Conf::new(&backup_section(None, "schedules = []\ndrill_every = \"off\""));
        let app = spawn_app_with(backend, |o| o.config_file = Some(conf.path.clone())).await.unwrap_or_else(|e| panic!("{e:#}"));
        let mut acme = org(&app, "acme-older", 4).await;
        let before = all_profiles(&acme.editor, "acme-older").await;
        let config = server::config::Config::load(&{
            let mut o = app.db.overrides();
            o.config_file = Some(conf.path.clone());
            o
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let backups = server::open_backups(&config, app.engine()).await.unwrap_or_else(|e| panic!("{e:#}"));
        let created = backups.create("manual", "test", &backup::Quiet).await.unwrap_or_else(|e| panic!("{e}"));
        // Columns added by migrations 4, 5 and 11, as if an old version wrote it.
        let dropped = [
            ("organisations", "require_mfa"),
            ("organisations", "encrypted_tokens"),
            ("sessions", "acting_operator"),
            ("sessions", "account_grant"),
        ];
        let older = as_older_archive(app.engine().keys().kms(), &backups.targets()[0], created.id, &dropped).await;

        let fresh = fresh_with_keys_of(&app.db, backend).await;
        let older_id = older.to_string();
        let out = ok(cli(&fresh, &["backup", "restore", "--id", &older_id, "--dev", "--config", conf.arg()], &[]));
        assert!(out.contains(&format!("Restored backup {older}")), "{out}");
        let copy = spawn_app_on(fresh, |o| o.config_file = Some(conf.path.clone())).await.unwrap_or_else(|e| panic!("{e:#}"));
        let editor = login_again(&copy, &mut acme).await;
        assert_eq!(all_profiles(&editor, "acme-older").await, before);
        let settings: Value = editor.get("/v1/orgs/acme-older/settings").await.json().await.unwrap_or_default();
        assert_eq!(settings["require_mfa"], false, "a column the archive lacks takes its default: {settings}");
        copy.shutdown().await.unwrap_or_else(|e| panic!("{e:#}"));
        app.shutdown().await.unwrap_or_else(|e| panic!("{e:#}"));
    }
}

// Every table of the store is archived or deliberately left out, so a new
// migration's table cannot silently miss the backups.
#[tokio::test]
async fn every_table_is_archived_or_deliberately_left_out() {
    use sqlx::{Connection, Row};
    let db = TestDb::new(Backend::Sqlite).await.unwrap_or_else(|e| panic!("{e:#}"));
    db.open_store().await.unwrap_or_else(|e| panic!("{e:#}")).close().await;
    let options = db.raw_sqlite_options().await.unwrap_or_else(|e| panic!("{e:#}"));
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await.unwrap_or_else(|e| panic!("{e}"));
    let rows = sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let left_out = ["schema_migrations", "audit_sink_leases", "backup_escrow", "backup_runs"];
    for row in rows {
        let name: String = row.try_get(0).unwrap_or_else(|e| panic!("{e}"));
        if left_out.contains(&name.as_str()) {
            continue;
        }
        let table = store::dump::Table::named(&name).unwrap_or_else(|| panic!("table {name} is not archived"));
        let sql = format!("SELECT name FROM pragma_table_info('{name}')");
        let columns: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|r| r.try_get::<String, _>(0).unwrap_or_default())
            .collect();
        let archived: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
        assert_eq!(columns, archived, "the columns of {name}");
    }
}
