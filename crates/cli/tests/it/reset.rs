//! What Strongroom sends by e-mail, against a real SMTP sink (aiosmtpd,
//! Maildir): password resets (the token goes only to the stored address,
//! works once, expires; the answer is the same for unknown addresses) and
//! invitations (single use, to new or existing accounts).

use std::time::Duration;

use reqwest::Method;
use testkit::{TestApp, backend_tests, spawn_app_with};

const PW: &str = "correct horse battery staple";

/// An app whose mail goes to the test SMTP sink.
async fn app_with_mail(backend: testkit::Backend, dir: &tempfile::TempDir) -> TestApp {
    let addr = std::env::var("STRONGROOM_TEST_SMTP_ADDR")
        .unwrap_or_else(|_| panic!("STRONGROOM_TEST_SMTP_ADDR: run scripts/test"));
    let (host, port) = addr.rsplit_once(':').unwrap_or_else(|| panic!("{addr}"));
    let config = dir.path().join("mail.toml");
    std::fs::write(
        &config,
        format!("[smtp]\nhost = \"{host}\"\nport = {port}\nsecurity = \"none\"\nfrom = \"vault@strongroom.test\"\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    spawn_app_with(backend, |o| o.config_file = Some(config)).await.unwrap_or_else(|e| panic!("{e:#}"))
}

/// The message for a recipient in the sink, waiting up to `wait`.
async fn message_to(recipient: &str, wait: Duration) -> Option<String> {
    let dir = std::path::PathBuf::from(
        std::env::var("STRONGROOM_TEST_MAILDIR")
            .unwrap_or_else(|_| panic!("STRONGROOM_TEST_MAILDIR: run scripts/test")),
    )
    .join("new");
    let deadline = std::time::Instant::now() + wait;
    loop {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            // Undo quoted-printable soft line breaks.
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default().replace("=\n", "");
            if text.lines().any(|l| {
                l.eq_ignore_ascii_case(&format!("To: {recipient}")) || l.contains(&format!("X-RcptTo: {recipient}"))
            }) {
                return Some(text);
            }
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn token_in(message: &str) -> String {
    let mut lines = message.lines();
    lines.find(|l| l.contains("single-use token"));
    lines.map(str::trim).find(|l| !l.is_empty()).unwrap_or("").to_owned()
}

backend_tests! {
    // claim 001.6
    async fn invitations_go_by_mail_and_work_once(backend) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let app = app_with_mail(backend, &dir).await;
        let org = app.create_org("alpha-care").await;
        let admin = app.create_user("admin@example.com", PW, false).await;
        app.add_member(org.id, admin.id, domain::Role::Admin).await;
        let (admin, _, _) = app.login_with_mfa("admin@example.com", PW).await;

        let newcomer = format!("new-{}@example.com", uuid::Uuid::new_v4().simple());
        let res = admin.send(Method::POST, "/v1/orgs/alpha-care/invitations", Some(serde_json::json!({"email": newcomer, "role": "editor"}))).await;
        assert_eq!(res.status(), 201);
        let pending: serde_json::Value = admin.get("/v1/orgs/alpha-care/invitations").await.json().await.unwrap_or_default();
        assert_eq!(pending["invitations"][0]["email"], newcomer.as_str());
        let owner_invite = admin.send(Method::POST, "/v1/orgs/alpha-care/invitations", Some(serde_json::json!({"email": "x@example.com", "role": "owner"}))).await;
        assert_eq!(owner_invite.status(), 403, "only owners invite owners");

        let message = message_to(&newcomer, Duration::from_secs(15)).await.unwrap_or_else(|| panic!("no invitation for {newcomer}"));
        assert!(message.contains("alpha-care") && message.contains("editor"), "{message}");
        let token = token_in(&message);
        let accept = |body: serde_json::Value| app.client.post(app.url("/v1/invitations/accept")).json(&body).send();
        let bare = accept(serde_json::json!({"token": token})).await.map(|r| r.status().as_u16()).unwrap_or(0);
        assert_eq!(bare, 409, "a new address needs account details");
        let weak = accept(serde_json::json!({"token": token, "display_name": "New Person", "password": "weak"})).await.map(|r| r.status().as_u16()).unwrap_or(0);
        assert_eq!(weak, 422, "a refused password keeps the invitation");
        let ok = accept(serde_json::json!({"token": token, "display_name": "New Person", "password": PW})).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.status(), 200);
        let body: serde_json::Value = ok.json().await.unwrap_or_default();
        assert_eq!(body["role"], "editor");
        let again = accept(serde_json::json!({"token": token, "display_name": "New Person", "password": PW})).await.map(|r| r.status().as_u16()).unwrap_or(0);
        assert_eq!(again, 400, "an invitation works once");
        let new_client = app.login(&newcomer, PW).await;
        let mine: serde_json::Value = new_client.get("/v1/orgs/alpha-care").await.json().await.unwrap_or_default();
        assert_eq!(mine["role"], "editor");

        // An existing account joins with the token alone.
        let existing = format!("old-{}@example.com", uuid::Uuid::new_v4().simple());
        app.create_user(&existing, PW, false).await;
        admin.send(Method::POST, "/v1/orgs/alpha-care/invitations", Some(serde_json::json!({"email": existing, "role": "viewer"}))).await;
        let message = message_to(&existing, Duration::from_secs(15)).await.unwrap_or_else(|| panic!("no invitation for {existing}"));
        let joined = accept(serde_json::json!({"token": token_in(&message)})).await.map(|r| r.status().as_u16()).unwrap_or(0);
        assert_eq!(joined, 200);
        let viewer = app.login(&existing, PW).await;
        assert_eq!(viewer.get("/v1/orgs/alpha-care").await.status(), 200);
        let by_viewer = viewer.send(Method::POST, "/v1/orgs/alpha-care/invitations", Some(serde_json::json!({"email": "y@example.com", "role": "viewer"}))).await;
        assert_eq!(by_viewer.status(), 403);
        app.shutdown().await.ok();
    }

    // claim 001.13
    async fn a_reset_token_goes_to_the_stored_address_and_works_once(backend) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let app = app_with_mail(backend, &dir).await;
        let email = format!("jane-{}@example.com", uuid::Uuid::new_v4().simple());
        app.create_user(&email, PW, false).await;
        let old_session = app.login(&email, PW).await;

        let res = app.client.post(app.url("/v1/auth/password-reset")).json(&serde_json::json!({"email": email})).send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 202);
        let known_answer = res.text().await.unwrap_or_default();
        let message = message_to(&email, Duration::from_secs(15)).await.unwrap_or_else(|| panic!("no reset mail for {email}"));
        assert!(message.contains("From: vault@strongroom.test"), "{message}");
        let token = token_in(&message);
        assert_eq!(token.len(), 43, "{message}");

        let complete = |pw: &'static str| app.client.post(app.url("/v1/auth/password-reset/complete")).json(&serde_json::json!({"token": token, "new_password": pw})).send();
        assert_eq!(complete("weak").await.map(|r| r.status().as_u16()).unwrap_or(0), 422, "a refused password keeps the token");
        assert_eq!(complete("a new and better passphrase").await.map(|r| r.status().as_u16()).unwrap_or(0), 204);
        let reuse = complete("yet another passphrase here").await.unwrap_or_else(|e| panic!("{e}"));
        let body: serde_json::Value = reuse.json().await.unwrap_or_default();
        assert_eq!(body["type"], "urn:strongroom:problem:invalid-token");
        assert_eq!(old_session.get("/v1/me").await.status(), 401, "every session ends at a reset");
        let _ = app.login(&email, "a new and better passphrase").await;
        let old = app.client.post(app.url("/v1/auth/login")).json(&serde_json::json!({"email": email, "password": PW})).send().await;
        assert_eq!(old.map(|r| r.status().as_u16()).unwrap_or(0), 401);

        // An unknown address gets the same answer and no mail.
        let unknown = format!("nobody-{}@example.com", uuid::Uuid::new_v4().simple());
        let res = app.client.post(app.url("/v1/auth/password-reset")).json(&serde_json::json!({"email": unknown})).send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 202);
        assert_eq!(res.text().await.unwrap_or_default(), known_answer);
        assert!(message_to(&unknown, Duration::from_secs(2)).await.is_none());
        app.shutdown().await.ok();
    }

    // claim 001.13
    async fn expired_and_wrong_purpose_tokens_are_refused(backend) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let app = app_with_mail(backend, &dir).await;
        let user = app.create_user("jane@example.com", PW, false).await;
        let short = app.engine().issue_password_setup(user.id, store::SetupPurpose::Reset, Duration::from_secs(1)).await.unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let res = app.client.post(app.url("/v1/auth/password-reset/complete")).json(&serde_json::json!({"token": short.reveal(), "new_password": "a new and better passphrase"})).send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 400, "expired");
        let initial = app.engine().issue_password_setup(user.id, store::SetupPurpose::Initial, Duration::from_secs(600)).await.unwrap_or_else(|e| panic!("{e}"));
        let res = app.client.post(app.url("/v1/auth/password-reset/complete")).json(&serde_json::json!({"token": initial.reveal(), "new_password": "a new and better passphrase"})).send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 400, "an account-setup token is not a reset token");
        let _ = Method::GET;
        app.shutdown().await.ok();
    }
}
