//! Support sessions end to end, through the API: an operator reaches
//! nothing of an organisation until its owners or admins approve a session
//! they were told about by mail (aiosmtpd sink); while it runs, every
//! member's answers carry a notice and every action is chained with the
//! session's id; revoked, expired, denied, read-only, limited or foreign
//! sessions are refused with clear problems; the end brings a summary.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use testkit::{Backend, TestApp, UserClient, backend_tests, spawn_app_with};

const PW: &str = "correct horse battery staple";
const ORG: &str = "/v1/orgs/acme-support";
const HEADER: &str = "strongroom-support-session";

struct Setup {
    app: TestApp,
    owner: UserClient,
    owner_email: String,
    admin_email: String,
    editor: UserClient,
    editor_email: String,
    editor_id: String,
    operator: UserClient,
    operator_id: String,
    profiles: Vec<String>,
    _dir: tempfile::TempDir,
}

/// An organisation with an owner, an admin and an editor, two profiles,
/// and an operator signed in with 2FA; mail goes to the SMTP sink.
async fn setup(backend: Backend) -> Setup {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let addr = std::env::var("STRONGROOM_TEST_SMTP_ADDR")
        .unwrap_or_else(|_| panic!("STRONGROOM_TEST_SMTP_ADDR: run scripts/test"));
    let (host, port) = addr.rsplit_once(':').unwrap_or_else(|| panic!("{addr}"));
    let config = dir.path().join("mail.toml");
    std::fs::write(
        &config,
        format!("[smtp]\nhost = \"{host}\"\nport = {port}\nsecurity = \"none\"\nfrom = \"vault@strongroom.test\"\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let app =
        spawn_app_with(backend, |o| o.config_file = Some(config.clone())).await.unwrap_or_else(|e| panic!("{e:#}"));
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let email = |who: &str| format!("{who}-{tag}@example.com");
    let org = app.create_org("acme-support").await;
    let mut ids = Vec::new();
    for (who, role) in
        [("owner", domain::Role::Owner), ("admin", domain::Role::Admin), ("editor", domain::Role::Editor)]
    {
        let u = app.create_user(&email(who), PW, false).await;
        app.add_member(org.id, u.id, role).await;
        ids.push(u.id);
    }
    let op = app.create_user(&email("operator"), PW, true).await;
    let (owner, _, _) = app.login_with_mfa(&email("owner"), PW).await;
    let editor = app.login(&email("editor"), PW).await;
    let (operator, _, _) = app.login_with_mfa(&email("operator"), PW).await;
    let schema = json!({ "fields": [{ "name": "full_name", "type": "string", "required": true }] });
    assert_eq!(owner.send(Method::PUT, &format!("{ORG}/schema"), Some(schema)).await.status(), 200);
    let mut profiles = Vec::new();
    for name in ["Ada Quintero-Blackwood", "Benedikt Oyelaran"] {
        let res = editor
            .send(Method::POST, &format!("{ORG}/profiles"), Some(json!({ "fields": { "full_name": name } })))
            .await;
        let v: Value = res.json().await.unwrap_or_default();
        profiles.push(v["id"].as_str().unwrap_or_else(|| panic!("{v}")).to_owned());
    }
    Setup {
        app,
        owner,
        owner_email: email("owner"),
        admin_email: email("admin"),
        editor,
        editor_email: email("editor"),
        editor_id: ids[2].to_string(),
        operator,
        operator_id: op.id.to_string(),
        profiles,
        _dir: dir,
    }
}

/// Every message in the sink to `recipient`, waiting up to `wait` for one
/// whose subject contains `subject`.
async fn mail_to(recipient: &str, subject: &str, wait: Duration) -> Option<String> {
    let dir = std::path::PathBuf::from(
        std::env::var("STRONGROOM_TEST_MAILDIR")
            .unwrap_or_else(|_| panic!("STRONGROOM_TEST_MAILDIR: run scripts/test")),
    )
    .join("new");
    let deadline = std::time::Instant::now() + wait;
    loop {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default().replace("=\n", "");
            let to_them = text.lines().any(|l| {
                l.eq_ignore_ascii_case(&format!("To: {recipient}")) || l.contains(&format!("X-RcptTo: {recipient}"))
            });
            if to_them && text.lines().any(|l| l.starts_with("Subject:") && l.contains(subject)) {
                return Some(text);
            }
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status(c: &UserClient, method: Method, path: &str, body: Option<Value>) -> u16 {
    c.send(method, path, body).await.status().as_u16()
}

/// The operator asks; returns the session id.
async fn ask(s: &Setup, scope: &str, profiles: &[&str], minutes: u64) -> String {
    let body = json!({ "reason": "ticket 4711: the export button fails", "scope": scope, "profiles": profiles, "duration_minutes": minutes });
    let res = s.operator.send(Method::POST, &format!("{ORG}/support-sessions"), Some(body)).await;
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap_or_default();
    assert_eq!(v["status"], "requested", "{v}");
    v["id"].as_str().unwrap_or_else(|| panic!("{v}")).to_owned()
}

async fn approve(s: &Setup, id: &str, minutes: Option<u64>) -> Value {
    let body = minutes.map(|m| json!({ "duration_minutes": m }));
    let res = s.owner.send(Method::POST, &format!("{ORG}/support-sessions/{id}/approve"), body).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap_or_default()
}

async fn problem(c: &UserClient, method: Method, path: &str, body: Option<Value>) -> (u16, String) {
    let res = c.send(method, path, body).await;
    let code = res.status().as_u16();
    let v: Value = res.json().await.unwrap_or_default();
    (code, format!("{} {}", v["type"].as_str().unwrap_or(""), v["detail"].as_str().unwrap_or("")))
}

backend_tests! {
    // claim 001.12
    async fn a_user_lets_support_act_as_them_until_they_end_it(backend) {
        let s = setup(backend).await;
        let res = s.editor.send(Method::POST, "/v1/me/support-grants", Some(json!({ "duration_minutes": 30 }))).await;
        assert_eq!(res.status(), 201);
        let grant: Value = res.json().await.unwrap_or_default();
        let id = grant["id"].as_str().unwrap_or_else(|| panic!("{grant}")).to_owned();
        assert_eq!(grant["active"], true);
        let told = mail_to(&s.editor_email, "You granted support access", Duration::from_secs(15)).await;
        assert!(told.is_some_and(|m| m.contains(&id)), "the user is told it started");

        // Not an operator, or an operator without 2FA: refused.
        let act = |cookie: String, grant: String| {
            s.app.client.post(s.app.url("/v1/support/act-as")).header("cookie", cookie).json(&json!({ "grant_id": grant })).send()
        };
        assert_eq!(act(s.editor.cookie.clone(), id.clone()).await.map(|r| r.status().as_u16()).unwrap_or(0), 403);
        s.app.create_user("operator-three@example.com", PW, true).await;
        let plain = s.app.login("operator-three@example.com", PW).await;
        assert_eq!(act(plain.cookie.clone(), id.clone()).await.map(|r| r.status().as_u16()).unwrap_or(0), 403, "2FA first");
        assert_eq!(act(s.operator.cookie.clone(), uuid::Uuid::new_v4().to_string()).await.map(|r| r.status().as_u16()).unwrap_or(0), 404);

        let res = act(s.operator.cookie.clone(), id.clone()).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 200);
        let cookie = res.headers().get("set-cookie").and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()).unwrap_or("").to_owned();
        assert!(cookie.starts_with("__Host-strongroom_session="), "{cookie}");
        let told = mail_to(&s.editor_email, "Support is now acting on your account", Duration::from_secs(15)).await;
        assert!(told.is_some_and(|m| m.contains("operator-")), "the user is told who");
        let acting = |method: Method, path: &str| s.app.client.request(method, s.app.url(path)).header("cookie", &cookie);

        // The operator uses the account as the user...
        let me: Value = acting(Method::GET, "/v1/me").send().await.unwrap_or_else(|e| panic!("{e}")).json().await.unwrap_or_default();
        assert_eq!(me["user"]["email"], s.editor_email.as_str(), "{me}");
        let profile = format!("{ORG}/profiles/{}", s.profiles[0]);
        assert_eq!(acting(Method::GET, &profile).send().await.map(|r| r.status().as_u16()).unwrap_or(0), 200);
        // ...but cannot take it over.
        let take = acting(Method::POST, "/v1/auth/password").json(&json!({ "current_password": PW, "new_password": "another long passphrase 42" })).send().await;
        assert_eq!(take.map(|r| r.status().as_u16()).unwrap_or(0), 403);
        let regrant = acting(Method::POST, "/v1/me/support-grants").json(&json!({ "duration_minutes": 30 })).send().await;
        assert_eq!(regrant.map(|r| r.status().as_u16()).unwrap_or(0), 403);

        // Both identities are in the trail.
        let trail: Value = s.owner.get(&format!("{ORG}/audit?action=profile.read&on_behalf_of=user:{}", s.editor_id)).await.json().await.unwrap_or_default();
        assert_eq!(trail["entries"][0]["actor"], format!("user:{}", s.operator_id), "{trail}");

        // Acting as an owner runs nothing: no approving one's own session,
        // no members, no tokens, no linking records to accounts.
        let res = s.owner.send(Method::POST, "/v1/me/support-grants", Some(json!({ "duration_minutes": 30 }))).await;
        let owner_grant: Value = res.json().await.unwrap_or_default();
        let res = act(s.operator.cookie.clone(), owner_grant["id"].as_str().unwrap_or("").to_owned()).await.unwrap_or_else(|e| panic!("{e}"));
        let as_owner = res.headers().get("set-cookie").and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()).unwrap_or("").to_owned();
        let owner_acting = |method: Method, path: &str| s.app.client.request(method, s.app.url(path)).header("cookie", &as_owner);
        let pending = ask(&s, "read-write", &[], 60).await;
        let own = owner_acting(Method::POST, &format!("{ORG}/support-sessions/{pending}/approve")).send().await;
        assert_eq!(own.map(|r| r.status().as_u16()).unwrap_or(0), 403, "no approving one's own session");
        let add = owner_acting(Method::POST, &format!("{ORG}/members")).json(&json!({ "email": "operator-three@example.com", "role": "owner" })).send().await;
        assert_eq!(add.map(|r| r.status().as_u16()).unwrap_or(0), 403, "no members");
        let sa = owner_acting(Method::POST, &format!("{ORG}/service-accounts")).json(&json!({ "name": "x", "scope": "profiles:read" })).send().await;
        assert_eq!(sa.map(|r| r.status().as_u16()).unwrap_or(0), 403, "no tokens");
        let link = owner_acting(Method::PATCH, &profile).header("if-match", "\"1\"").json(&json!({ "owner_user_id": s.operator_id })).send().await;
        assert_eq!(link.map(|r| r.status().as_u16()).unwrap_or(0), 403, "no linking records to accounts");
        let orgs: Value = owner_acting(Method::GET, "/v1/orgs").send().await.unwrap_or_else(|e| panic!("{e}")).json().await.unwrap_or_default();
        assert_eq!(orgs["orgs"].as_array().map(Vec::len), Some(1), "acting brings the user's view, not the operator's: {orgs}");

        // The user ends it: the operator is out at once, and the user is told.
        assert_eq!(status(&s.editor, Method::POST, &format!("/v1/me/support-grants/{id}/end"), None).await, 204);
        assert_eq!(acting(Method::GET, "/v1/me").send().await.map(|r| r.status().as_u16()).unwrap_or(0), 401);
        assert_eq!(status(&s.editor, Method::POST, &format!("/v1/me/support-grants/{id}/end"), None).await, 404, "once");
        assert_eq!(act(s.operator.cookie.clone(), id.clone()).await.map(|r| r.status().as_u16()).unwrap_or(0), 404, "an ended grant opens nothing");
        assert_eq!(s.app.engine().notify_ended_grants().await.unwrap_or_else(|e| panic!("{e}")), 1);
        assert_eq!(s.app.engine().notify_ended_grants().await.unwrap_or_else(|e| panic!("{e}")), 0);
        assert!(mail_to(&s.editor_email, "Support access to your account has ended", Duration::from_secs(15)).await.is_some());
        let list: Value = s.editor.get("/v1/me/support-grants").await.json().await.unwrap_or_default();
        assert_eq!(list["grants"][0]["active"], false, "{list}");
        s.app.shutdown().await.ok();
    }

    // claim 000.4
    async fn a_support_session_from_request_to_summary(backend) {
        let s = setup(backend).await;
        let profile = format!("{ORG}/profiles/{}", s.profiles[0]);
        assert_eq!(status(&s.operator, Method::GET, &profile, None).await, 404, "no standing access");
        assert_eq!(status(&s.operator, Method::GET, &format!("{ORG}/audit"), None).await, 404);

        let id = ask(&s, "read-write", &[], 60).await;
        for who in [&s.owner_email, &s.admin_email] {
            let mail = mail_to(who, "Support access requested", Duration::from_secs(15)).await.unwrap_or_else(|| panic!("no request mail to {who}"));
            assert!(mail.contains("ticket 4711") && mail.contains(&id), "{mail}");
        }
        assert!(mail_to(&s.editor_email, "Support access requested", Duration::from_millis(300)).await.is_none(), "editors are not asked");
        assert_eq!(status(&s.operator, Method::GET, &profile, None).await, 404, "nothing before approval");
        let list: Value = s.owner.get(&format!("{ORG}/support-sessions")).await.json().await.unwrap_or_default();
        assert_eq!(list["sessions"][0]["id"], id.as_str());
        assert_eq!(list["sessions"][0]["reason"], "ticket 4711: the export button fails");

        let approved = approve(&s, &id, Some(30)).await;
        assert_eq!((approved["status"].as_str(), approved["duration_minutes"].as_i64()), (Some("active"), Some(60)), "{approved}");
        assert!(approved["expires_at"].is_string(), "{approved}");

        // The operator works within the session.
        let res = s.operator.get(&profile).await;
        assert_eq!(res.status(), 200);
        assert!(res.headers().get(HEADER).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with(&id)), "the operator sees it too");
        let patch = s.operator.request(Method::PATCH, &profile).header("if-match", "\"1\"")
            .json(&json!({ "fields": { "full_name": "Ada Q. Blackwood" } })).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
        assert_eq!(patch, 200, "read-write");
        assert_eq!(status(&s.operator, Method::GET, &format!("{ORG}/profiles"), None).await, 200);
        assert_eq!(status(&s.operator, Method::GET, &format!("{ORG}/audit"), None).await, 403, "a session reaches data, not the trail");

        // Every member's answers carry the notice; nobody else's do.
        let res = s.editor.get(&format!("{ORG}/profiles")).await;
        let notice = res.headers().get(HEADER).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert!(notice.starts_with(&id) && notice.contains("expires=") && notice.contains("scope=read-write"), "{notice:?}");
        let me = s.editor.get("/v1/me").await;
        let elsewhere = me.headers().get(HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(elsewhere.starts_with(&id), "members see it on every answer, not only the organisation's: {elsewhere:?}");
        let active: Value = s.editor.get(&format!("{ORG}/support-sessions/active")).await.json().await.unwrap_or_default();
        assert_eq!(active["sessions"][0]["id"], id.as_str(), "{active}");
        s.app.create_user("stranger@example.com", PW, false).await;
        let stranger = s.app.login("stranger@example.com", PW).await;
        let res = stranger.get(&format!("{ORG}/profiles")).await;
        assert_eq!(res.status(), 404);
        assert!(res.headers().get(HEADER).is_none(), "outsiders learn nothing");

        // The trail tags every action with the session.
        let trail: Value = s.owner.get(&format!("{ORG}/audit?on_behalf_of=support_session:{id}")).await.json().await.unwrap_or_default();
        let tagged: Vec<(&str, &str)> = trail["entries"].as_array().into_iter().flatten()
            .map(|e| (e["action"].as_str().unwrap_or(""), e["actor"].as_str().unwrap_or(""))).collect();
        let actor = format!("user:{}", s.operator_id);
        assert!(tagged.contains(&("profile.read", actor.as_str())) && tagged.contains(&("profile.update", actor.as_str())), "{trail}");
        let all: Value = s.owner.get(&format!("{ORG}/audit?action=support.approve")).await.json().await.unwrap_or_default();
        assert_eq!(all["entries"].as_array().map(Vec::len), Some(1), "{all}");

        // Revoked: refused at once, no notice, and a summary goes out once.
        assert_eq!(status(&s.owner, Method::POST, &format!("{ORG}/support-sessions/{id}/revoke"), None).await, 204);
        assert_eq!(status(&s.operator, Method::GET, &profile, None).await, 404, "revocation takes effect at once");
        assert!(s.editor.get(&format!("{ORG}/profiles")).await.headers().get(HEADER).is_none());
        assert_eq!(s.app.engine().summarise_support_sessions().await.unwrap_or_else(|e| panic!("{e}")), 1);
        assert_eq!(s.app.engine().summarise_support_sessions().await.unwrap_or_else(|e| panic!("{e}")), 0, "once");
        let summary = mail_to(&s.owner_email, "Support session ended", Duration::from_secs(15)).await.unwrap_or_else(|| panic!("no summary"));
        assert!(summary.contains("revoked") && summary.contains("profile.read") && summary.contains("profile.update"), "{summary}");
        assert!(!summary.contains("Quintero") && !summary.contains("Blackwood"), "no values in the summary");
        let reports = s.app.engine().verify_audit(None).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(reports.iter().all(|r| r.result.is_ok()), "{reports:?}");
        s.app.shutdown().await.ok();
    }

    // claim 000.4
    async fn denied_expired_revoked_limited_read_only_and_foreign_sessions_are_refused(backend) {
        let s = setup(backend).await;
        let (a, b) = (format!("{ORG}/profiles/{}", s.profiles[0]), format!("{ORG}/profiles/{}", s.profiles[1]));
        let sessions = format!("{ORG}/support-sessions");

        // Bad requests, and requests by the wrong people.
        let (code, detail) = problem(&s.operator, Method::POST, &sessions, Some(json!({ "reason": "", "scope": "read", "duration_minutes": 10 }))).await;
        assert_eq!((code, detail.contains("reason")), (422, true), "{detail}");
        let (code, detail) = problem(&s.operator, Method::POST, &sessions, Some(json!({ "reason": "x", "scope": "read", "duration_minutes": 100000 }))).await;
        assert_eq!((code, detail.contains("240 minutes")), (422, true), "{detail}");
        assert_eq!(status(&s.editor, Method::POST, &sessions, Some(json!({ "reason": "x", "scope": "read", "duration_minutes": 10 }))).await, 403, "members are not operators");
        s.app.create_user("operator-two@example.com", PW, true).await;
        let no_mfa_operator = s.app.login("operator-two@example.com", PW).await;
        let (code, detail) = problem(&no_mfa_operator, Method::POST, &sessions, Some(json!({ "reason": "x", "scope": "read", "duration_minutes": 10 }))).await;
        assert_eq!((code, detail.contains("mfa")), (403, true), "{detail}");

        // Approval needs 2FA; a denied session grants nothing and stays denied.
        let id = ask(&s, "read", &[], 60).await;
        let admin = s.app.login(&s.admin_email, PW).await;
        let (code, detail) = problem(&admin, Method::POST, &format!("{sessions}/{id}/approve"), None).await;
        assert_eq!((code, detail.contains("mfa")), (403, true), "approval without 2FA: {detail}");
        assert_eq!(status(&s.editor, Method::POST, &format!("{sessions}/{id}/approve"), None).await, 403, "editors cannot approve");
        assert_eq!(status(&s.owner, Method::POST, &format!("{sessions}/{id}/deny"), None).await, 200);
        assert_eq!(status(&s.operator, Method::GET, &a, None).await, 404, "denied");
        let (code, detail) = problem(&s.owner, Method::POST, &format!("{sessions}/{id}/approve"), None).await;
        assert_eq!((code, detail.contains("denied")), (409, true), "{detail}");

        // Read-only: reads pass, writes are refused.
        let id = ask(&s, "read", &[], 60).await;
        approve(&s, &id, None).await;
        assert_eq!(status(&s.operator, Method::GET, &a, None).await, 200);
        let write = s.operator.request(Method::PATCH, &a).header("if-match", "\"1\"")
            .json(&json!({ "fields": { "full_name": "x" } })).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
        assert_eq!(write, 403, "a read-only session cannot write");
        assert_eq!(status(&s.operator, Method::DELETE, &a, None).await, 403);
        // Support never links records to accounts (the linked person reads
        // the whole record, for good).
        let id_rw = ask(&s, "read-write", &[], 60).await;
        approve(&s, &id_rw, None).await;
        let link = s.operator.request(Method::PATCH, &a).header("if-match", "\"1\"")
            .json(&json!({ "owner_user_id": s.operator_id })).send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(link.status().as_u16(), 403);
        assert!(link.text().await.unwrap_or_default().contains("link records"), "named");
        assert_eq!(status(&s.owner, Method::POST, &format!("{sessions}/{id_rw}/revoke"), None).await, 204);
        // The operator ends it themselves; a second end is a conflict.
        assert_eq!(status(&s.operator, Method::POST, &format!("{sessions}/{id}/revoke"), None).await, 204);
        assert_eq!(status(&s.operator, Method::GET, &a, None).await, 404, "revoked");
        let (code, _) = problem(&s.operator, Method::POST, &format!("{sessions}/{id}/revoke"), None).await;
        assert_eq!(code, 409);

        // Limited to one record: the other, lists and new records are out of scope.
        let id = ask(&s, "read-write", &[s.profiles[0].as_str()], 60).await;
        approve(&s, &id, None).await;
        assert_eq!(status(&s.operator, Method::GET, &a, None).await, 200);
        let (code, detail) = problem(&s.operator, Method::GET, &b, None).await;
        assert_eq!((code, detail.contains("outside this support session's scope")), (403, true), "{detail}");
        let (code, _) = problem(&s.operator, Method::GET, &format!("{ORG}/profiles"), None).await;
        assert_eq!(code, 403, "no listing beyond the named records");

        // Used against another organisation: nothing there.
        let other = s.app.create_org("beta-other").await;
        let boss = s.app.create_user("boss@example.com", PW, false).await;
        s.app.add_member(other.id, boss.id, domain::Role::Owner).await;
        assert_eq!(status(&s.operator, Method::GET, "/v1/orgs/beta-other/profiles", None).await, 404, "a session for A opens nothing in B");

        // Expired (its end moved into the past): refused at once.
        s.app.db.raw_sql(&format!("UPDATE support_sessions SET expires_at = 1 WHERE id = {}", s.app.db.uuid_literal(&id))).await;
        assert_eq!(status(&s.operator, Method::GET, &a, None).await, 404, "expired");
        let list: Value = s.owner.get(&sessions).await.json().await.unwrap_or_default();
        assert_eq!(list["sessions"][0]["status"], "expired", "{list}");
        assert_eq!(s.app.engine().summarise_support_sessions().await.unwrap_or_else(|e| panic!("{e}")), 3, "the two revoked and the expired one; the denied one never ran");
        let trail: Value = s.owner.get(&format!("{ORG}/audit?action=support.expire")).await.json().await.unwrap_or_default();
        assert_eq!(trail["entries"].as_array().map(Vec::len), Some(1), "the expiry is chained: {trail}");
        s.app.shutdown().await.ok();
    }
}
