//! The audit trail end to end: every profile change and read is chained in
//! the organisation's trail with identifiers and field names only;
//! `strongroom audit verify` names each kind of tampering made directly in
//! SQL; concurrent writers, in one process or two, leave one gapless chain.

use reqwest::Method;
use serde_json::{Value, json};
use testkit::{Backend, TestApp, TestDb, UserClient, backend_tests, spawn_app};

use crate::cli;

const PW: &str = "correct horse battery staple";
const ORG: &str = "/v1/orgs/acme-audit";
const NAME: &str = "Rosalind Featherstonehaugh-Ikeda";

/// An organisation with a schema and an editor; returns the editor, the
/// organisation's chain name and the owner (signed in with 2FA).
async fn setup(app: &TestApp) -> (UserClient, String, UserClient) {
    let org = app.create_org("acme-audit").await;
    let owner = app.create_user("owner@example.com", PW, false).await;
    app.add_member(org.id, owner.id, domain::Role::Owner).await;
    let editor = app.create_user("editor@example.com", PW, false).await;
    app.add_member(org.id, editor.id, domain::Role::Editor).await;
    let (owner, _, _) = app.login_with_mfa("owner@example.com", PW).await;
    let schema = json!({ "fields": [
        { "name": "full_name", "type": "string", "required": true },
        { "name": "email", "type": "email", "searchable": true },
        { "name": "stage", "type": "string", "classification": "plain" }
    ]});
    assert_eq!(owner.send(Method::PUT, &format!("{ORG}/schema"), Some(schema)).await.status(), 200);
    (app.login("editor@example.com", PW).await, engine::org_chain(org.id), owner)
}

async fn create(c: &UserClient, i: usize) -> String {
    let body = json!({ "fields": { "full_name": format!("{NAME} {i}"), "email": format!("r{i}@example.org") } });
    let res = c.send(Method::POST, &format!("{ORG}/profiles"), Some(body)).await;
    let v: Value = res.json().await.unwrap_or_default();
    v["id"].as_str().unwrap_or_else(|| panic!("{v}")).to_owned()
}

/// A sample of trail activity: create, read, patch, list, search, delete.
async fn activity(c: &UserClient) -> String {
    let id = create(c, 1).await;
    let _ = create(c, 2).await;
    assert_eq!(c.get(&format!("{ORG}/profiles/{id}")).await.status(), 200);
    let patch = c
        .request(Method::PATCH, &format!("{ORG}/profiles/{id}"))
        .header("if-match", "\"1\"")
        .json(&json!({ "fields": { "stage": "hired", "email": null } }))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    assert_eq!(patch, 200);
    assert_eq!(c.get(&format!("{ORG}/profiles?email=r2%40example.org")).await.status(), 200);
    id
}

async fn trail(app: &TestApp, chain: &str) -> Vec<store::AuditRow> {
    let store = app.db.open_store().await.unwrap_or_else(|e| panic!("{e:#}"));
    let rows = store.audit_entries(chain, 0, 1000).await.unwrap_or_else(|e| panic!("{e}"));
    store.close().await;
    rows
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn blob(db: &TestDb, b: &[u8]) -> String {
    match db.backend {
        Backend::Sqlite => format!("X'{}'", hex(b)),
        Backend::Postgres => format!("'\\x{}'::bytea", hex(b)),
    }
}

/// Runs `audit verify` after some SQL was run against a fresh trail;
/// returns (exit code, stdout + stderr).
async fn verify_after(backend: Backend, tamper: impl AsyncFnOnce(&TestApp, &str, &[store::AuditRow])) -> (i32, String) {
    let app = spawn_app(backend).await;
    let (editor, chain, _) = setup(&app).await;
    activity(&editor).await;
    let signed = app.engine().checkpoint_chains().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(signed >= 1);
    let rows = trail(&app, &chain).await;
    assert!(rows.len() >= 6, "{}", rows.len());
    let (code, out, err) = cli(&app.db, &["audit", "verify", "--org", "acme-audit", "--dev"], &[]);
    assert_eq!(code, 0, "untouched, it verifies: {out}{err}");
    tamper(&app, &chain, &rows).await;
    let (code, out, err) = cli(&app.db, &["audit", "verify", "--dev"], &[]);
    app.shutdown().await.ok();
    (code, format!("{out}{err}"))
}

backend_tests! {
    // claim 001.10 002.10
    async fn request_ids_memberships_settings_and_service_accounts_are_chained(backend) {
        let app = spawn_app(backend).await;
        let (editor, chain, owner) = setup(&app).await;
        let body = json!({ "fields": { "full_name": NAME } });
        let res = editor.send(Method::POST, &format!("{ORG}/profiles"), Some(body)).await;
        let request_id = res.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert_eq!(res.status(), 201);
        let page: Value = owner.get(&format!("{ORG}/audit?action=profile.create")).await.json().await.unwrap_or_default();
        assert_eq!(page["entries"][0]["request_id"], request_id.as_str(), "the entry names the request: {page}");

        // A service account, a token for it, a refused secret, a revocation.
        let res = owner.send(Method::POST, &format!("{ORG}/service-accounts"), Some(json!({"name": "sync", "scope": "profiles:read"}))).await;
        assert_eq!(res.status(), 201);
        let sa: Value = res.json().await.unwrap_or_default();
        let (client_id, secret) = (sa["client_id"].as_str().unwrap_or(""), sa["client_secret"].as_str().unwrap_or(""));
        let grant = |secret: &str| app.client.post(app.url("/v1/oauth/token"))
            .form(&[("grant_type", "client_credentials"), ("client_id", client_id), ("client_secret", secret)]).send();
        assert_eq!(grant(secret).await.map(|r| r.status().as_u16()).unwrap_or(0), 200);
        assert_eq!(grant("not the secret").await.map(|r| r.status().as_u16()).unwrap_or(0), 401);
        let sa_id = sa["id"].as_str().unwrap_or("").to_owned();
        assert_eq!(owner.send(Method::DELETE, &format!("{ORG}/service-accounts/{sa_id}"), None).await.status(), 204);
        // Membership changes, the last-owner refusal (nothing chained), settings.
        let viewer = app.create_user("viewer@example.com", PW, false).await;
        assert_eq!(owner.send(Method::POST, &format!("{ORG}/members"), Some(json!({"email": "viewer@example.com", "role": "viewer"}))).await.status(), 201);
        assert_eq!(owner.send(Method::DELETE, &format!("{ORG}/members/{}", viewer.id), None).await.status(), 204);
        let me = app.engine().user_by_email(&domain::Email::parse("owner@example.com").unwrap_or_else(|e| panic!("{e}"))).await.ok().flatten().map(|u| u.id.to_string()).unwrap_or_default();
        assert_eq!(owner.send(Method::DELETE, &format!("{ORG}/members/{me}"), None).await.status(), 409);
        assert_eq!(owner.send(Method::PUT, &format!("{ORG}/settings"), Some(json!({"require_mfa": true}))).await.status(), 200);

        let rows = trail(&app, &chain).await;
        let seen: Vec<(&str, &str, &str)> = rows.iter().map(|r| (r.action.as_str(), r.actor.as_str(), r.fields.as_str())).collect();
        let sa_actor = format!("service_account:{sa_id}");
        for (action, actor_prefix, fields) in [
            ("service_account.create", "user:", "scope:profiles:read"),
            ("token.issue", sa_actor.as_str(), "scope:profiles:read"),
            ("service_account.revoke", "user:", ""),
            ("member.put", "user:", "role:viewer"),
            ("member.remove", "user:", ""),
            ("org.settings", "user:", "require_mfa:on"),
        ] {
            assert!(seen.iter().any(|(a, who, f)| *a == action && who.starts_with(actor_prefix) && *f == fields), "{action} by {actor_prefix}: {seen:?}");
        }
        assert_eq!(seen.iter().filter(|(a, _, _)| *a == "member.remove").count(), 1, "the refused removal chained nothing");
        // The trail's filters, applied by the store, and paging under a filter.
        let by_sa: Value = owner.get(&format!("{ORG}/audit?actor={sa_actor}")).await.json().await.unwrap_or_default();
        let actions: Vec<&str> = by_sa["entries"].as_array().into_iter().flatten().filter_map(|e| e["action"].as_str()).collect();
        assert_eq!(actions, ["token.issue"], "{by_sa}");
        let first: Value = owner.get(&format!("{ORG}/audit?action=member.put&limit=1")).await.json().await.unwrap_or_default();
        let next = first["next_after"].as_u64().unwrap_or_else(|| panic!("a full page names the next: {first}"));
        let rest: Value = owner.get(&format!("{ORG}/audit?action=member.put&after={next}")).await.json().await.unwrap_or_default();
        let roles: Vec<&str> = first["entries"].as_array().into_iter().chain(rest["entries"].as_array()).flatten()
            .filter_map(|e| e["fields"][0].as_str()).collect();
        assert_eq!(roles, ["role:owner", "role:editor", "role:viewer"], "{first} {rest}");
        let nul = owner.get(&format!("{ORG}/audit?actor=user%3A%00x")).await;
        assert_eq!(nul.status(), 200, "a NUL byte matches nothing, on either store");
        let nul: Value = nul.json().await.unwrap_or_default();
        assert_eq!(nul["entries"].as_array().map(Vec::len), Some(0), "{nul}");
        let past: Value = owner.get(&format!("{ORG}/audit?until=2001-01-01T00:00:00Z")).await.json().await.unwrap_or_default();
        assert_eq!(past["entries"].as_array().map(Vec::len), Some(0), "{past}");
        let since: Value = owner.get(&format!("{ORG}/audit?from=2001-01-01T00:00:00Z&action=org.settings")).await.json().await.unwrap_or_default();
        assert_eq!(since["entries"].as_array().map(Vec::len), Some(1), "{since}");

        let platform = trail(&app, engine::PLATFORM_CHAIN).await;
        let refused = platform.iter().find(|r| r.action == "token.issue").map(|r| (r.target.as_str(), r.outcome.as_str()));
        assert_eq!(refused, Some((format!("service_account:{sa_id}").as_str(), "failure")));
        assert!(!format!("{rows:?}{platform:?}").contains(secret), "no secret");
        let reports = app.engine().verify_audit(None).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(reports.iter().all(|r| r.result.is_ok()), "{reports:?}");
        app.shutdown().await.ok();
    }

    // claim 000.7 001.7 002.10
    async fn every_change_and_read_is_chained_without_personal_values(backend) {
        let app = spawn_app(backend).await;
        let (editor, chain, _) = setup(&app).await;
        let id = activity(&editor).await;
        let all = trail(&app, &chain).await;
        // Key events (the organisation key's creation, unwraps) are chained too, by the key backend.
        assert!(all.iter().any(|r| r.action == "key.create" && r.actor.starts_with("kms:") && r.target == "org_key:1"), "{all:?}");
        let seqs: Vec<i64> = all.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=all.len() as i64).collect::<Vec<_>>(), "gapless");
        // The organisation's first members were added by the operator (`cli`).
        assert!(all.iter().any(|r| r.action == "member.put" && r.actor == "cli" && r.fields == "role:owner"), "{all:?}");
        let rows: Vec<store::AuditRow> =
            all.into_iter().filter(|r| !r.action.starts_with("key.") && !r.action.starts_with("member.")).collect();
        let actions: Vec<(&str, &str, &str)> =
            rows.iter().map(|r| (r.action.as_str(), r.target.as_str(), r.fields.as_str())).collect();
        let target = format!("profile:{id}");
        assert_eq!(actions[0].0, "schema.update");
        assert!(actions.contains(&("profile.create", target.as_str(), "email full_name")), "{actions:?}");
        assert!(actions.contains(&("profile.read", target.as_str(), "email full_name")), "{actions:?}");
        assert!(actions.contains(&("profile.update", target.as_str(), "email stage")), "changed names only: {actions:?}");
        assert_eq!(
            rows.iter().filter(|r| r.action == "profile.read").count(),
            3,
            "a read, the update's answer and a search hit"
        );
        assert!(rows.iter().all(|r| r.actor.starts_with("user:") && r.outcome == "success"));
        let dump = format!("{rows:?}");
        assert!(!dump.contains("Rosalind") && !dump.contains("example.org") && !dump.contains("hired"), "no values");
        // Sign-ins and 2FA enrolment are on the platform chain, without addresses.
        let platform = trail(&app, engine::PLATFORM_CHAIN).await;
        let kinds: Vec<&str> = platform.iter().map(|r| r.action.as_str()).collect();
        assert!(kinds.contains(&"signin") && kinds.contains(&"mfa.enable"), "{kinds:?}");
        // Each start chains the fingerprint of the effective configuration.
        let config = platform.iter().find(|r| r.action == "config.apply").map(|r| r.target.clone()).unwrap_or_default();
        assert!(config.len() == "config:".len() + 16 && config.starts_with("config:"), "{config}");
        assert!(!format!("{platform:?}").contains("example.com"), "no addresses");
        let failed = app.client.post(app.url("/v1/auth/login")).json(&json!({"email": "nobody@example.com", "password": "wrong password here"})).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
        assert_eq!(failed, 401);
        let platform = trail(&app, engine::PLATFORM_CHAIN).await;
        let last = platform.last().map(|r| (r.action.as_str(), r.target.as_str(), r.outcome.as_str()));
        assert_eq!(last, Some(("signin", "user:unknown", "failure")), "a failed sign-in, without the address tried");
        let reports = app.engine().verify_audit(None).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(reports.iter().all(|r| r.result.is_ok()), "{reports:?}");
        app.shutdown().await.ok();
    }

    // claim 001.10 002.10
    async fn audit_verify_names_each_kind_of_tampering(backend) {
        let (code, out) = verify_after(backend, async |app, chain, _| {
            app.db.raw_sql(&format!("UPDATE audit_entries SET actor = 'user:mallory' WHERE chain = '{chain}' AND seq = 3")).await;
        }).await;
        assert!(code != 0 && out.contains("entry 3 was edited"), "{out}");

        let (code, out) = verify_after(backend, async |app, chain, _| {
            app.db.raw_sql(&format!("DELETE FROM audit_entries WHERE chain = '{chain}' AND seq = 4")).await;
        }).await;
        assert!(code != 0 && out.contains("entries 4 to 4 were removed"), "{out}");

        let (code, out) = verify_after(backend, async |app, chain, _| {
            app.db.raw_sql(&format!("UPDATE audit_entries SET seq = -seq WHERE chain = '{chain}' AND seq IN (3, 4)")).await;
            app.db.raw_sql(&format!("UPDATE audit_entries SET seq = 7 + seq WHERE chain = '{chain}' AND seq < 0")).await;
        }).await;
        // -3 becomes 4 and -4 becomes 3: entries 3 and 4 swapped places.
        assert!(code != 0 && out.contains("entry 3 was moved: it was sealed as entry 4"), "{out}");

        let (code, out) = verify_after(backend, async |app, chain, rows| {
            app.db.raw_sql(&format!("UPDATE audit_entries SET seq = seq + 1000 WHERE chain = '{chain}' AND seq >= 4")).await;
            app.db.raw_sql(&format!("UPDATE audit_entries SET seq = seq - 999 WHERE chain = '{chain}' AND seq >= 1000")).await;
            let prev: [u8; 32] = rows[2].hash.clone().try_into().unwrap_or([0; 32]);
            let forged = audit::Draft {
                at_micros: rows[2].at_micros + 1,
                actor: "user:mallory".into(),
                on_behalf_of: None,
                action: "profile.read".into(),
                target: rows[2].target.clone(),
                outcome: "success".into(),
                fields: vec![],
                request_id: None,
            }
            .seal(chain, 4, prev);
            app.db.raw_sql(&format!(
                "INSERT INTO audit_entries (chain, seq, at_micros, actor, action, target, outcome, fields, prev_hash, hash)
                 VALUES ('{chain}', 4, {}, '{}', '{}', '{}', 'success', '', {}, {})",
                forged.at_micros, forged.actor, forged.action, forged.target, blob(&app.db, &forged.prev_hash), blob(&app.db, &forged.hash)
            )).await;
        }).await;
        assert!(code != 0 && out.contains("entry 4 was inserted"), "{out}");

        let (code, out) = verify_after(backend, async |app, chain, rows| {
            app.db.raw_sql(&format!(
                "UPDATE audit_checkpoints SET size = 2, head = {} WHERE chain = '{chain}'
                 AND size = (SELECT max(size) FROM audit_checkpoints WHERE chain = '{chain}')",
                blob(&app.db, &rows[1].hash)
            )).await;
        }).await;
        assert!(code != 0 && out.contains("checkpoint at size 2 does not match"), "{out}");
    }

    // claim 000.7 001.7 003.3
    async fn the_record_owner_sees_every_read_and_change_of_their_record_only(backend) {
        let app = spawn_app(backend).await;
        let (editor, _, owner) = setup(&app).await;
        let pat = app.create_user("pat@example.com", PW, false).await;
        let body = json!({ "fields": { "full_name": NAME }, "owner_user_id": pat.id });
        let v: Value = editor.send(Method::POST, &format!("{ORG}/profiles"), Some(body)).await.json().await.unwrap_or_default();
        let id = v["id"].as_str().unwrap_or_else(|| panic!("{v}")).to_owned();
        let other = create(&editor, 9).await;
        assert_eq!(editor.get(&format!("{ORG}/profiles/{id}")).await.status(), 200);
        let patch = editor.request(Method::PATCH, &format!("{ORG}/profiles/{id}")).header("if-match", "\"1\"")
            .json(&json!({ "fields": { "stage": "hired" } })).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
        assert_eq!(patch, 200);
        let pat_client = app.login("pat@example.com", PW).await;
        assert_eq!(pat_client.get(&format!("{ORG}/profiles/{id}")).await.status(), 200);

        let history: Value = pat_client.get(&format!("{ORG}/profiles/{id}/history")).await.json().await.unwrap_or_default();
        let seen: Vec<(String, String)> = history["entries"].as_array().into_iter().flatten()
            .map(|e| (e["action"].as_str().unwrap_or("").to_owned(), e["actor"].as_str().unwrap_or("").to_owned())).collect();
        let editor_id = format!("user:{}", app.engine().user_by_email(&domain::Email::parse("editor@example.com").unwrap_or_else(|e| panic!("{e}"))).await.ok().flatten().map(|u| u.id.to_string()).unwrap_or_default());
        let pat_actor = format!("user:{}", pat.id);
        assert_eq!(seen, [
            ("profile.create".to_owned(), editor_id.clone()),
            ("profile.read".to_owned(), editor_id.clone()),
            ("profile.update".to_owned(), editor_id.clone()),
            // The update's answer shows the record: a read, in the same transaction.
            ("profile.read".to_owned(), editor_id),
            ("profile.read".to_owned(), pat_actor),
        ], "{history}");
        assert!(history["entries"][2]["fields"] == json!(["stage"]), "{history}");
        let res = pat_client.get(&format!("{ORG}/profiles/{other}/history")).await;
        assert_eq!(res.status(), 404, "another's history looks like none");
        assert_eq!(pat_client.get(&format!("{ORG}/audit")).await.status(), 404, "not a member");
        assert_eq!(editor.get(&format!("{ORG}/audit")).await.status(), 403, "editors do not read the whole trail");
        let trail: Value = owner.get(&format!("{ORG}/audit?action=profile.update")).await.json().await.unwrap_or_default();
        assert_eq!(trail["entries"].as_array().map(Vec::len), Some(1), "{trail}");
        let bad = owner.get(&format!("{ORG}/audit?from=yesterday")).await;
        assert_eq!(bad.status(), 422);
        app.shutdown().await.ok();
    }

    // claim 001.10
    async fn concurrent_writers_leave_one_gapless_chain(backend) {
        let app = spawn_app(backend).await;
        let (editor, chain, _) = setup(&app).await;
        // A second server process on the same store, as a second instance
        // would be: the real binary, same data directory and database.
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_strongroom"));
        cmd.args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"]).arg(app.db.data_dir());
        if let Some(url) = &app.db.database_url {
            cmd.env("STRONGROOM_DATABASE_URL", url);
        }
        let mut second = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let stdout = second.stdout.take().unwrap_or_else(|| panic!("stdout"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut lines = std::io::BufReader::new(stdout).lines().map_while(Result::ok);
            let _ = tx.send(lines.next().unwrap_or_default());
            lines.for_each(drop);
        });
        let banner = tokio::task::spawn_blocking(move || rx.recv().unwrap_or_default()).await.unwrap_or_default();
        let port: u16 = banner.split("127.0.0.1:").nth(1).and_then(|s| s.split_whitespace().next())
            .and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in banner {banner:?}"));
        let client = testkit::client_trusting(&app.db.data_dir().join("tls/ca.pem")).unwrap_or_else(|e| panic!("{e:#}"));
        let base2 = format!("https://localhost:{port}");
        let mut tasks = Vec::new();
        for w in 0..16 {
            let editor = editor.clone();
            let client = client.clone();
            let base2 = base2.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..4 {
                    let body = json!({ "fields": { "full_name": format!("writer {w} record {i}") } });
                    let status = if w % 2 == 0 {
                        editor.send(Method::POST, &format!("{ORG}/profiles"), Some(body)).await.status().as_u16()
                    } else {
                        client.post(format!("{base2}{ORG}/profiles")).header("cookie", &editor.cookie).json(&body).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
                    };
                    assert_eq!(status, 201, "writer {w}");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap_or_else(|e| panic!("{e}"));
        }
        let rows = trail(&app, &chain).await;
        let creates = rows.iter().filter(|r| r.action == "profile.create").count();
        assert_eq!(creates, 64);
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=rows.len() as i64).collect::<Vec<_>>(), "gapless");
        let reports = app.engine().verify_audit(None).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(reports.iter().all(|r| r.result.is_ok()), "{reports:?}");
        let _ = std::process::Command::new("kill").args(["-TERM", &second.id().to_string()]).status();
        let status = tokio::task::spawn_blocking(move || second.wait()).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status.ok().and_then(|s| s.code()), Some(0), "the second process stops cleanly");
        app.shutdown().await.ok();
    }
}
