//! Two-factor authentication end to end: required for owners, admins and
//! operators by default and for everyone where an organisation says so;
//! TOTP codes from independent generators (oathtool, pyotp) accepted; a
//! code never accepted twice; recovery codes single-use; the seed never
//! stored in clear; wrong codes throttled.

use domain::Role;
use reqwest::Method;
use testkit::{Backend, TestApp, backend_tests, spawn_app, unix_now};

const PW: &str = "correct horse battery staple";

async fn problem(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    (status, body["type"].as_str().unwrap_or("").trim_start_matches("urn:strongroom:problem:").to_owned())
}

async fn org_with(app: &TestApp, email: &str, role: Role) -> domain::Organisation {
    let org = app.create_org("alpha-care").await;
    let user = app.create_user(email, PW, false).await;
    app.add_member(org.id, user.id, role).await;
    org
}

/// Runs an external TOTP generator; its code for the secret, now.
fn external_code(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed (scripts/test installs it): {e}"));
    assert!(out.status.success(), "{program}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

backend_tests! {
    // claim 004.11 003.1
    async fn admins_and_operators_need_a_second_factor(backend) {
        let app = spawn_app(backend).await;
        org_with(&app, "admin@example.com", Role::Admin).await;
        let admin = app.login("admin@example.com", PW).await;
        assert_eq!(problem(admin.get("/v1/orgs/alpha-care/members").await).await, (403, "mfa-required".into()));
        app.create_user("ops@example.com", PW, true).await;
        let ops = app.login("ops@example.com", PW).await;
        let create = ops.send(Method::POST, "/v1/orgs", Some(serde_json::json!({"slug": "new-org", "name": "New"}))).await;
        assert_eq!(problem(create).await, (403, "mfa-required".into()));

        let (admin, _, _) = app.login_with_mfa("admin@example.com", PW).await;
        assert_eq!(admin.get("/v1/orgs/alpha-care/members").await.status(), 200);
        let (ops, _, _) = app.login_with_mfa("ops@example.com", PW).await;
        let create = ops.send(Method::POST, "/v1/orgs", Some(serde_json::json!({"slug": "new-org", "name": "New"}))).await;
        assert_eq!(create.status(), 201);
        app.shutdown().await.ok();
    }

    // claim 004.11
    async fn a_code_is_never_accepted_twice_and_recovery_codes_work_once(backend) {
        let app = spawn_app(backend).await;
        org_with(&app, "owner@example.com", Role::Owner).await;
        let (_, secret, recovery) = app.login_with_mfa("owner@example.com", PW).await;
        assert_eq!(recovery.len(), 10);

        // The next step's code (within the one step of skew) passes once...
        let next = secret.code_at(unix_now() + 30);
        let again = app.login("owner@example.com", PW).await;
        assert_eq!(again.send(Method::POST, "/v1/auth/mfa/verify", Some(serde_json::json!({"code": next}))).await.status(), 204);
        assert_eq!(again.get("/v1/orgs/alpha-care/members").await.status(), 200);
        // ...and never again, not even on another session.
        let replay = app.login("owner@example.com", PW).await;
        let res = replay.send(Method::POST, "/v1/auth/mfa/verify", Some(serde_json::json!({"code": next}))).await;
        assert_eq!(problem(res).await, (400, "invalid-code".into()), "replay refused");
        // An older step than the last accepted one is refused too.
        let older = secret.code_at(unix_now().saturating_sub(30));
        let res = replay.send(Method::POST, "/v1/auth/mfa/verify", Some(serde_json::json!({"code": older}))).await;
        assert_eq!(problem(res).await.0, 400);

        let third = app.login("owner@example.com", PW).await;
        let code = recovery[0].to_uppercase();
        assert_eq!(third.send(Method::POST, "/v1/auth/mfa/verify", Some(serde_json::json!({"code": code}))).await.status(), 204);
        let fourth = app.login("owner@example.com", PW).await;
        let res = fourth.send(Method::POST, "/v1/auth/mfa/verify", Some(serde_json::json!({"code": recovery[0]}))).await;
        assert_eq!(problem(res).await, (400, "invalid-code".into()), "a recovery code works once");
        let res = fourth.send(Method::POST, "/v1/auth/mfa/totp", None).await;
        assert_eq!(problem(res).await, (409, "conflict".into()), "enrolment cannot be replaced silently");
        app.shutdown().await.ok();
    }

    // claim 003.1 004.11
    async fn codes_from_oathtool_and_pyotp_are_accepted(backend) {
        let app = spawn_app(backend).await;
        for (email, tool) in [("oath@example.com", "oathtool"), ("py@example.com", "pyotp")] {
            app.create_user(email, PW, false).await;
            let client = app.login(email, PW).await;
            let enrol: serde_json::Value = client.send(Method::POST, "/v1/auth/mfa/totp", None).await.json().await.unwrap_or_default();
            let secret = enrol["secret"].as_str().unwrap_or("").to_owned();
            let uri = enrol["otpauth_uri"].as_str().unwrap_or("");
            assert!(uri.starts_with("otpauth://totp/Strongroom:") && uri.contains(&secret), "{uri}");
            assert!(enrol["qr_svg"].as_str().unwrap_or("").contains("<svg"));
            let code = if tool == "oathtool" {
                external_code("oathtool", &["--totp", "-b", &secret])
            } else {
                let python = std::env::var("STRONGROOM_TEST_PYOTP_PYTHON").unwrap_or_else(|_| panic!("STRONGROOM_TEST_PYOTP_PYTHON: run scripts/test"));
                external_code(&python, &["-c", &format!("import pyotp; print(pyotp.TOTP('{secret}').now())")])
            };
            assert_eq!(code.len(), 6, "{tool}: {code}");
            let res = client.send(Method::POST, "/v1/auth/mfa/totp/confirm", Some(serde_json::json!({"code": code}))).await;
            assert_eq!(res.status(), 200, "{tool}'s code accepted");
        }
        app.shutdown().await.ok();
    }

    async fn an_organisation_can_require_two_factor_of_everyone(backend) {
        let app = spawn_app(backend).await;
        let org = org_with(&app, "owner@example.com", Role::Owner).await;
        let viewer = app.create_user("viewer@example.com", PW, false).await;
        app.add_member(org.id, viewer.id, Role::Viewer).await;
        let v = app.login("viewer@example.com", PW).await;
        assert_eq!(v.get("/v1/orgs/alpha-care").await.status(), 200);
        let set = v.send(Method::PUT, "/v1/orgs/alpha-care/settings", Some(serde_json::json!({"require_mfa": true}))).await;
        assert_eq!(problem(set).await, (403, "forbidden".into()));
        let (owner, _, _) = app.login_with_mfa("owner@example.com", PW).await;
        let set = owner.send(Method::PUT, "/v1/orgs/alpha-care/settings", Some(serde_json::json!({"require_mfa": true}))).await;
        assert_eq!(set.status(), 200);
        assert_eq!(problem(v.get("/v1/orgs/alpha-care").await).await, (403, "mfa-required".into()));
        let (v2, _, _) = app.login_with_mfa("viewer@example.com", PW).await;
        assert_eq!(v2.get("/v1/orgs/alpha-care").await.status(), 200);
        app.shutdown().await.ok();
    }

    // claim 003.9
    async fn the_totp_seed_is_never_stored_in_clear(backend) {
        let app = spawn_app(backend).await;
        app.create_user("jane@example.com", PW, false).await;
        let (_, secret, recovery) = app.login_with_mfa("jane@example.com", PW).await;
        let seed = secret.expose_for_storage().to_vec();
        let base32 = secret.base32().to_string();
        let dump: Vec<u8> = match backend {
            Backend::Postgres => {
                let pg_dump = format!("{}/pg_dump", std::env::var("PG_TEST_BIN").unwrap_or_default());
                std::process::Command::new(pg_dump).arg(app.db.database_url.clone().unwrap_or_default()).output().map(|o| o.stdout).unwrap_or_default()
            }
            Backend::Sqlite => {
                use sqlx::Connection;
                let options = app.db.raw_sqlite_options().await.unwrap_or_else(|e| panic!("{e:#}"));
                let mut conn = sqlx::SqliteConnection::connect_with(&options).await.unwrap_or_else(|e| panic!("{e}"));
                let rows: Vec<Vec<u8>> = sqlx::query_scalar("SELECT seed FROM user_totp").fetch_all(&mut conn).await.unwrap_or_default();
                let codes: Vec<Vec<u8>> = sqlx::query_scalar("SELECT code_hash FROM recovery_codes").fetch_all(&mut conn).await.unwrap_or_default();
                rows.into_iter().chain(codes).flatten().collect()
            }
        };
        assert!(!dump.is_empty());
        let has = |needle: &[u8]| dump.windows(needle.len()).any(|w| w == needle);
        assert!(!has(&seed) && !has(hex::encode(&seed).as_bytes()) && !has(base32.as_bytes()), "seed in clear");
        for code in &recovery {
            assert!(!has(code.as_bytes()), "recovery code in clear");
        }
        app.shutdown().await.ok();
    }

    async fn wrong_codes_are_throttled(backend) {
        let app = spawn_app(backend).await;
        app.create_user("jane@example.com", PW, false).await;
        let (_, _, _) = app.login_with_mfa("jane@example.com", PW).await;
        let s = app.login("jane@example.com", PW).await;
        for _ in 0..5 {
            let res = s.send(Method::POST, "/v1/auth/mfa/verify", Some(serde_json::json!({"code": "000000"}))).await;
            assert_eq!(res.status(), 400);
        }
        let _ = s.send(Method::POST, "/v1/auth/mfa/verify", Some(serde_json::json!({"code": "000000"}))).await;
        let res = s.send(Method::POST, "/v1/auth/mfa/verify", Some(serde_json::json!({"code": "000000"}))).await;
        assert_eq!(res.status(), 429);
        assert!(res.headers().get("retry-after").is_some());
        app.shutdown().await.ok();
    }
}
