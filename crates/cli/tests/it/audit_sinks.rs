//! Off-host audit sinks end to end: a real server ships its trail, entries
//! and checkpoints, to a JSON-lines file, rsyslog (plain TCP and TLS), a
//! webhook receiver and S3 (moto) at once; a webhook that refuses for a
//! while, and one that loses an answer, still ends up with every entry
//! exactly once after de-duplication, also across a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use testkit::{Backend, TestApp, backend_tests, spawn_app_with};

const PW: &str = "correct horse battery staple";
const NAME: &str = "Philippa Quarrendon-Vasquez";
const HOOK_SECRET: &str = "a webhook secret of at least thirty-two bytes";

fn peer(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var}: run scripts/test, which starts the peers"))
}

/// What the webhook receiver does with each request, in turn.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Answer {
    /// 503, nothing kept.
    Refuse,
    /// Kept, but answered 500: the sender must send it again.
    KeepButFail,
    /// Kept, 200.
    Take,
}

#[derive(Default)]
struct Received {
    /// Answers for the next requests; `Take` once empty.
    script: Vec<Answer>,
    /// While set, every request is refused.
    down: bool,
    refused: usize,
    /// Bodies kept, each with its signature header.
    bodies: Vec<(String, bytes::Bytes)>,
}

#[derive(Clone)]
struct Receiver {
    url: String,
    state: Arc<Mutex<Received>>,
}

impl Receiver {
    async fn start() -> Self {
        let state = Arc::new(Mutex::new(Received::default()));
        let shared = state.clone();
        let handler = move |headers: axum::http::HeaderMap, body: bytes::Bytes| {
            let state = shared.clone();
            async move {
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                let answer = if s.down {
                    Answer::Refuse
                } else if s.script.is_empty() {
                    Answer::Take
                } else {
                    s.script.remove(0)
                };
                if answer == Answer::Refuse {
                    s.refused += 1;
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                let signature =
                    headers.get("strongroom-signature").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                s.bodies.push((signature, body));
                if answer == Answer::KeepButFail {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::OK
                }
            }
        };
        let app = axum::Router::new().route("/hook", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url: format!("http://127.0.0.1:{}/hook?token=t0p", addr.port()), state }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Received) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Every record received, in order, repeats included; each body's
    /// signature checked first.
    fn records(&self) -> Vec<Value> {
        self.with(|s| {
            s.bodies
                .iter()
                .flat_map(|(signature, body)| {
                    let mac = hex::encode(crypto::hmac_sha256(HOOK_SECRET.as_bytes(), body));
                    assert_eq!(signature, &format!("sha256={mac}"), "every batch is signed");
                    let v: Value = serde_json::from_slice(body).unwrap_or_default();
                    v["records"].as_array().cloned().unwrap_or_default()
                })
                .collect()
        })
    }
}

fn secret_file(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("hook.key");
    std::fs::write(&path, HOOK_SECRET).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap_or_else(|e| panic!("{e}"));
    path
}

fn hook_sink(hook: &Receiver, dir: &Path) -> String {
    format!(
        "[[audit.sinks]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\nsecret_file = \"{}\"\nbatch = 3\npoll_millis = 100\nretry_max_secs = 1\n",
        hook.url,
        secret_file(dir).display()
    )
}

async fn start(backend: Backend, dir: &Path, sinks: &str) -> TestApp {
    let config = dir.join("strongroom.toml");
    std::fs::write(&config, sinks).unwrap_or_else(|e| panic!("{e}"));
    spawn_app_with(backend, |o| o.config_file = Some(config.clone())).await.unwrap_or_else(|e| panic!("{e:#}"))
}

/// An organisation with a schema, an editor, and some records read and
/// changed; returns the organisation's chain and id.
async fn activity(app: &TestApp, slug: &str) -> (String, domain::OrgId) {
    let org = app.create_org(slug).await;
    let editor = app.create_user(&format!("editor@{slug}.example.com"), PW, false).await;
    app.add_member(org.id, editor.id, domain::Role::Owner).await;
    let (owner, _, _) = app.login_with_mfa(&format!("editor@{slug}.example.com"), PW).await;
    let base = format!("/v1/orgs/{slug}");
    let schema = json!({ "fields": [{ "name": "full_name", "type": "string", "required": true }] });
    assert_eq!(owner.send(reqwest::Method::PUT, &format!("{base}/schema"), Some(schema)).await.status(), 200);
    for i in 0..3 {
        let body = json!({ "fields": { "full_name": format!("{NAME} {i}") } });
        let res = owner.send(reqwest::Method::POST, &format!("{base}/profiles"), Some(body)).await;
        assert_eq!(res.status(), 201);
        let v: Value = res.json().await.unwrap_or_default();
        let id = v["id"].as_str().unwrap_or_default().to_owned();
        assert_eq!(owner.get(&format!("{base}/profiles/{id}")).await.status(), 200);
    }
    (engine::org_chain(org.id), org.id)
}

/// The chain's entries (`id` → hash) and checkpoint ids as stored now.
async fn stored(app: &TestApp, chain: &str) -> (BTreeMap<String, String>, BTreeSet<String>) {
    let store = app.db.open_store().await.unwrap_or_else(|e| panic!("{e:#}"));
    let entries = store.audit_entries(chain, 0, 10_000).await.unwrap_or_else(|e| panic!("{e}"));
    let checkpoints = store.checkpoints(chain).await.unwrap_or_else(|e| panic!("{e}"));
    store.close().await;
    (
        entries.iter().map(|r| (format!("{chain}/{}", r.seq), hex::encode(&r.hash))).collect(),
        checkpoints.iter().map(|c| format!("{chain}/checkpoint/{}", c.size)).collect(),
    )
}

/// Records of one chain, by id, with the number of times each came.
fn tally<'a>(records: impl IntoIterator<Item = &'a Value>, chain: &str) -> BTreeMap<String, (usize, Value)> {
    let mut out: BTreeMap<String, (usize, Value)> = BTreeMap::new();
    for r in records.into_iter().filter(|r| r["chain"] == chain) {
        let id = r["id"].as_str().unwrap_or_default().to_owned();
        out.entry(id).and_modify(|(n, _)| *n += 1).or_insert((1, r.clone()));
    }
    out
}

/// True once every stored entry and checkpoint is among `got`, each with
/// the stored hash.
fn complete(
    got: &BTreeMap<String, (usize, Value)>,
    entries: &BTreeMap<String, String>,
    checkpoints: &BTreeSet<String>,
) -> bool {
    entries.iter().all(|(id, hash)| got.get(id).is_some_and(|(_, r)| r["hash"] == hash.as_str()))
        && checkpoints.iter().all(|id| got.contains_key(id))
}

/// Polls `read` until it holds the whole chain (up to 30 s).
async fn wait_for(
    what: &str,
    chain: &str,
    expected: &(BTreeMap<String, String>, BTreeSet<String>),
    read: impl Fn() -> Vec<Value>,
) -> BTreeMap<String, (usize, Value)> {
    for _ in 0..300 {
        let got = tally(&read(), chain);
        if complete(&got, &expected.0, &expected.1) {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = tally(&read(), chain);
    let missing: Vec<&String> =
        expected.0.keys().chain(expected.1.iter()).filter(|id| !got.contains_key(*id)).collect();
    panic!("{what} did not receive the whole chain in 30 s; missing {missing:?}");
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

async fn s3_records(endpoint: &str, bucket: &str) -> Vec<Value> {
    let blobs = store::BlobStore::open(&store::BlobConfig::S3 {
        bucket: bucket.to_owned(),
        region: "us-east-1".into(),
        endpoint: Some(endpoint.to_owned()),
        allow_http: true,
        prefix: Some("trail".into()),
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    for key in blobs.list("audit", 10_000).await.unwrap_or_default() {
        let Ok(key) = store::BlobKey::new(&key) else { continue };
        let Ok(mut body) = blobs.get(&key).await else { continue };
        let mut text = Vec::new();
        use futures_util::StreamExt;
        while let Some(Ok(chunk)) = body.next().await {
            text.extend_from_slice(&chunk);
        }
        out.extend(json_lines(&String::from_utf8_lossy(&text)));
    }
    out
}

backend_tests! {
    // claim 002.10 001.10
    async fn the_trail_and_its_checkpoints_reach_every_sink(backend) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let hook = Receiver::start().await;
        let endpoint = peer("STRONGROOM_TEST_AWS_ENDPOINT");
        let bucket = format!("sr-audit-{}", uuid::Uuid::new_v4().simple());
        let made = testkit::plain_http_client().put(format!("{endpoint}/{bucket}")).send().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(made.status().is_success(), "create bucket: {}", made.status());
        let (tls_host, tls_port) = peer("STRONGROOM_TEST_SYSLOG_TLS_ADDR").rsplit_once(':').map(|(h, p)| (h.to_owned(), p.to_owned())).unwrap_or_default();
        assert_eq!(tls_host, "127.0.0.1");
        let file = dir.path().join("audit.jsonl");
        let sinks = format!(
            "[[audit.sinks]]\nname = \"local-file\"\nkind = \"file\"\npath = \"{}\"\npoll_millis = 100\n\
             [[audit.sinks]]\nname = \"syslog-tls\"\nkind = \"syslog\"\naddress = \"localhost:{tls_port}\"\nca_file = \"{}\"\nhostname = \"vault-tls\"\npoll_millis = 100\n\
             [[audit.sinks]]\nname = \"syslog-tcp\"\nkind = \"syslog\"\naddress = \"{}\"\ntls = false\nhostname = \"vault-tcp\"\npoll_millis = 100\n\
             [[audit.sinks]]\nname = \"archive\"\nkind = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{endpoint}\"\nprefix = \"trail\"\nbatch = 4\npoll_millis = 100\n{}",
            file.display(),
            peer("STRONGROOM_TEST_SYSLOG_CA"),
            peer("STRONGROOM_TEST_SYSLOG_ADDR"),
            hook_sink(&hook, dir.path()),
        );
        let app = start(backend, dir.path(), &sinks).await;
        let (chain, _) = activity(&app, "acme-sinks").await;
        assert!(app.engine().checkpoint_chains().await.unwrap_or_else(|e| panic!("{e}")) > 0);
        let expected = stored(&app, &chain).await;
        assert!(expected.0.len() >= 7 && expected.1.len() == 1, "{expected:?}");

        let got = wait_for("the JSON-lines file", &chain, &expected, || json_lines(&std::fs::read_to_string(&file).unwrap_or_default())).await;
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
            assert_eq!(mode, 0o600, "the file is the owner's only");
        }
        let checkpoint = got.values().map(|(_, r)| r).find(|r| r["type"] == "audit.checkpoint").cloned().unwrap_or_default();
        assert!(checkpoint["jws"].as_str().is_some_and(|j| j.split('.').count() == 3), "{checkpoint}");
        let syslog_file = peer("STRONGROOM_TEST_SYSLOG_FILE");
        for (host, what) in [("vault-tls", "rsyslog over TLS"), ("vault-tcp", "rsyslog over TCP")] {
            let path = syslog_file.clone();
            wait_for(what, &chain, &expected, move || {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                text.lines()
                    .filter(|l| l.split(' ').nth(2) == Some(host))
                    .filter_map(|l| l.find(" - {").map(|i| l[i + 3..].to_owned()))
                    .filter_map(|m| serde_json::from_str(&m).ok())
                    .collect()
            }).await;
        }
        let hook2 = hook.clone();
        wait_for("the webhook", &chain, &expected, move || hook2.records()).await;
        // S3 objects are read back through the API, not polled so often.
        let mut s3 = BTreeMap::new();
        for _ in 0..60 {
            s3 = tally(&s3_records(&endpoint, &bucket).await, &chain);
            if complete(&s3, &expected.0, &expected.1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(complete(&s3, &expected.0, &expected.1), "S3 holds the whole chain: {:?}", s3.keys().collect::<Vec<_>>());

        // Sinks get identifiers and field names, never a value.
        let everything = format!(
            "{}{}{:?}",
            std::fs::read_to_string(&file).unwrap_or_default(),
            std::fs::read_to_string(&syslog_file).unwrap_or_default(),
            hook.records()
        );
        assert!(!everything.contains("Quarrendon") && !everything.contains(PW), "no personal value leaves");
        app.shutdown().await.ok();
    }

    // claim 002.10
    async fn a_webhook_that_refuses_then_recovers_gets_every_entry_once_after_deduplication(backend) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let hook = Receiver::start().await;
        hook.with(|s| s.down = true);
        let mut app = start(backend, dir.path(), &hook_sink(&hook, dir.path())).await;

        // While the receiver is down, requests are served as usual.
        let started = std::time::Instant::now();
        let (chain, org) = activity(&app, "acme-outage").await;
        assert!(started.elapsed() < Duration::from_secs(20), "a down sink does not hold up requests");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(hook.with(|s| s.refused) >= 2, "retried while down");
        assert!(hook.records().is_empty());

        // It comes back, takes a batch, and loses its answer once: that
        // batch comes again.
        hook.with(|s| {
            s.script = vec![Answer::Refuse, Answer::Take, Answer::KeepButFail];
            s.down = false;
        });
        let expected = stored(&app, &chain).await;
        let hook2 = hook.clone();
        let got = wait_for("the webhook", &chain, &expected, move || hook2.records()).await;
        assert!(got.values().any(|(n, _)| *n > 1), "a batch whose answer was lost came twice");
        let unique: BTreeSet<&String> = got.keys().collect();
        let want: BTreeSet<&String> = expected.0.keys().chain(expected.1.iter()).collect();
        assert_eq!(unique, want, "every entry once after de-duplication, nothing else of this chain");

        // Across a restart, delivery resumes after the last batch taken.
        let taken = hook.records().len();
        let last_taken = expected.0.len() as u64;
        app.restart().await.unwrap_or_else(|e| panic!("{e:#}"));
        let viewer = app.create_user("viewer@acme-outage.example.com", PW, false).await;
        app.add_member(org, viewer.id, domain::Role::Viewer).await;
        let expected = stored(&app, &chain).await;
        assert!(expected.0.len() as u64 > last_taken, "the membership change is chained");
        let hook2 = hook.clone();
        wait_for("the webhook after a restart", &chain, &expected, move || hook2.records()).await;
        let resent: Vec<Value> = hook.records().split_off(taken).into_iter()
            .filter(|r| r["chain"] == chain.as_str() && r["type"] == "audit.entry" && r["seq"].as_u64().is_some_and(|s| s <= last_taken))
            .collect();
        assert!(resent.is_empty(), "nothing already taken is sent again: {resent:?}");
        app.shutdown().await.ok();
    }
}

// claim 002.10
#[test]
fn unsafe_or_incomplete_sinks_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cases = [
        ("kind = \"kafka\"", "audit.sinks[0].kind"),
        (
            "kind = \"webhook\"\nurl = \"http://siem.example.com/hook\"",
            "plain http is allowed only for a receiver on this host",
        ),
        ("kind = \"syslog\"\naddress = \"logs.example.com:514\"\ntls = false", "audit.sinks[0].tls"),
        ("kind = \"syslog\"\naddress = \"logs.example.com\"", "audit.sinks[0].address"),
        ("kind = \"file\"\npath = \"/nonexistent/dir/audit.jsonl\"", "its folder does not exist"),
        (
            "kind = \"file\"\npath = \"/tmp/a.jsonl\"\nurl = \"https://x.example.com\"",
            "audit.sinks[0].url: does not apply to a file sink",
        ),
        ("kind = \"s3\"\nbucket = \"NO\"", "audit.sinks[0].bucket"),
    ];
    for (body, expected) in cases {
        let text = format!("[[audit.sinks]]\nname = \"one\"\n{body}\n");
        let overrides = server::config::Overrides { data_dir: Some(dir.path().join("d")), ..Default::default() };
        let err = server::config::Config::from_toml(&text, &overrides)
            .map(|_| ())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(expected), "{body:?} gave {err:?}");
    }
    let twice = "[[audit.sinks]]\nname = \"a\"\nkind = \"file\"\npath = \"/tmp/a.jsonl\"\n[[audit.sinks]]\nname = \"a\"\nkind = \"file\"\npath = \"/tmp/b.jsonl\"\n";
    let overrides = server::config::Overrides { data_dir: Some(dir.path().join("d")), ..Default::default() };
    let err = server::config::Config::from_toml(twice, &overrides)
        .map(|_| ())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("\"a\" names another sink too"), "{err}");
    // A secret file others can read is refused, and its content never shown.
    let secret = dir.path().join("open.key");
    std::fs::write(&secret, HOOK_SECRET).unwrap_or_else(|e| panic!("{e}"));
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap_or_else(|e| panic!("{e}"));
    }
    let text = format!(
        "[[audit.sinks]]\nname = \"h\"\nkind = \"webhook\"\nurl = \"https://siem.example.com/h?token=zzz\"\nsecret_file = \"{}\"\n",
        secret.display()
    );
    let err = server::config::Config::from_toml(&text, &overrides)
        .map(|_| ())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("open to other users") && !err.contains("thirty-two"), "{err}");
    std::fs::write(dir.path().join("ok.key"), HOOK_SECRET).unwrap_or_else(|e| panic!("{e}"));
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path().join("ok.key"), std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let text = text.replace("open.key", "ok.key");
    let config = server::config::Config::from_toml(&text, &overrides).unwrap_or_else(|e| panic!("{e}"));
    let shown = config.render_redacted();
    assert!(
        shown.contains("https://siem.example.com, signed") && !shown.contains("zzz") && !shown.contains("thirty"),
        "{shown}"
    );
}
