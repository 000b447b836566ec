//! Identity and access end to end: sign-in and the session cookie,
//! sign-out, session listing and revocation, throttling, the password
//! policy, single-use setup tokens, the route inventory (every route but a
//! named few needs a session), the role matrix and a cross-tenant probe.

use domain::Role;
use reqwest::Method;
use testkit::{Backend, TestApp, UserClient, backend_tests, spawn_app};

const PW: &str = "correct horse battery staple";

async fn problem_type(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    (status, body["type"].as_str().unwrap_or("").trim_start_matches("urn:strongroom:problem:").to_owned())
}

/// Every route of the API, from its OpenAPI document: the router is built
/// from the same annotations (the `openapi` tests show they agree), so a
/// new route is probed without anyone remembering to list it.
fn declared_routes() -> Vec<(Method, String)> {
    let doc = server::openapi::document_json();
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in [Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            if item.get(method.as_str().to_lowercase()).is_some() {
                routes.push((method, path.clone()));
            }
        }
    }
    routes
}

/// Fills `{param}` segments with a value.
fn fill(route: &str, org: &str) -> String {
    route
        .split('/')
        .map(|seg| match seg {
            "{org}" => org.to_owned(),
            s if s.starts_with('{') => uuid::Uuid::new_v4().to_string(),
            s => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// An organisation with one member of each role, plus an operator.
struct World {
    org_a: domain::Organisation,
    org_b: domain::Organisation,
    members_a: Vec<(Role, UserClient, String)>,
    owner_b_email: String,
    operator: UserClient,
}

async fn world(app: &TestApp) -> World {
    let org_a = app.create_org("alpha-care").await;
    let org_b = app.create_org("beta-learn").await;
    let mut members_a = Vec::new();
    for role in Role::ALL {
        let email = format!("{}@alpha.example.com", role.as_str());
        let user = app.create_user(&email, PW, false).await;
        app.add_member(org_a.id, user.id, role).await;
        let client = if matches!(role, Role::Owner | Role::Admin) {
            app.login_with_mfa(&email, PW).await.0
        } else {
            app.login(&email, PW).await
        };
        members_a.push((role, client, email));
    }
    let owner_b_email = "owner@beta.example.com".to_owned();
    let owner_b = app.create_user(&owner_b_email, PW, false).await;
    app.add_member(org_b.id, owner_b.id, Role::Owner).await;
    app.create_user("ops@strongroom.example.com", PW, true).await;
    let (operator, _, _) = app.login_with_mfa("ops@strongroom.example.com", PW).await;
    World { org_a, org_b, members_a, owner_b_email, operator }
}

backend_tests! {
    // claim 004.4
    async fn sign_in_sets_a_host_only_secure_cookie_and_sign_out_revokes_it(backend) {
        let app = spawn_app(backend).await;
        app.create_user("jane@example.com", PW, false).await;
        let res = app.client.post(app.url("/v1/auth/login")).json(&serde_json::json!({"email": "Jane@Example.com", "password": PW})).send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 200);
        let cookie = res.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        for attr in ["__Host-strongroom_session=", "; Path=/", "; Secure", "; HttpOnly", "; SameSite=Strict", "; Max-Age=43200"] {
            assert!(cookie.contains(attr), "{attr} in {cookie}");
        }
        let value = cookie.split(';').next().unwrap_or("").trim_start_matches("__Host-strongroom_session=");
        assert_eq!(value.len(), 43, "an opaque 256-bit secret, nothing else");
        let body = res.text().await.unwrap_or_default();
        assert!(!body.contains(PW) && !body.contains(value), "{body}");

        let jane = app.login("jane@example.com", PW).await;
        let me: serde_json::Value = jane.get("/v1/me").await.json().await.unwrap_or_default();
        assert_eq!(me["user"]["email"], "jane@example.com");
        let out = jane.send(Method::POST, "/v1/auth/logout", None).await;
        assert_eq!(out.status(), 204);
        assert!(out.headers().get("set-cookie").and_then(|v| v.to_str().ok()).is_some_and(|c| c.contains("Max-Age=0")));
        assert_eq!(problem_type(jane.get("/v1/me").await).await, (401, "unauthenticated".into()));
        app.shutdown().await.ok();
    }

    // claim 001.6 001.11
    async fn a_wrong_password_and_an_unknown_account_get_the_same_answer(backend) {
        let app = spawn_app(backend).await;
        app.create_user("jane@example.com", PW, false).await;
        let try_login = |email: &'static str, pw: &'static str| {
            let req = app.client.post(app.url("/v1/auth/login")).json(&serde_json::json!({"email": email, "password": pw}));
            async move { req.send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
        };
        let wrong = app.client.post(app.url("/v1/auth/login")).json(&serde_json::json!({"email": "jane@example.com", "password": "not the password"})).send().await.unwrap_or_else(|e| panic!("{e}"));
        let unknown = app.client.post(app.url("/v1/auth/login")).json(&serde_json::json!({"email": "nobody@example.com", "password": "not the password"})).send().await.unwrap_or_else(|e| panic!("{e}"));
        let (a, b) = (wrong.text().await.unwrap_or_default(), unknown.text().await.unwrap_or_default());
        assert_eq!(a, b);
        assert!(a.contains("invalid-credentials"), "{a}");
        assert_eq!(try_login("jane@example.com", PW).await, 200);
        app.shutdown().await.ok();
    }

    // claim 001.7
    async fn repeated_failures_are_throttled_with_retry_after(backend) {
        let app = spawn_app(backend).await;
        app.create_user("jane@example.com", PW, false).await;
        let attempt = || app.client.post(app.url("/v1/auth/login")).json(&serde_json::json!({"email": "jane@example.com", "password": "wrong wrong wrong"})).send();
        for _ in 0..5 {
            assert_eq!(attempt().await.map(|r| r.status().as_u16()).unwrap_or(0), 401);
        }
        let _ = attempt().await;
        let res = attempt().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 429);
        let retry = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        assert!(retry.is_some_and(|s| s >= 1), "{retry:?}");
        assert_eq!(problem_type(res).await.1, "too-many-attempts");
        // Even the right password waits out the back-off.
        let right = app.client.post(app.url("/v1/auth/login")).json(&serde_json::json!({"email": "jane@example.com", "password": PW})).send().await;
        assert_eq!(right.map(|r| r.status().as_u16()).unwrap_or(0), 429);
        let metrics = app.get("/metrics").await.text().await.unwrap_or_default();
        assert!(metrics.contains("strongroom_signin_throttled_total"), "throttling is reported in metrics");
        app.shutdown().await.ok();
    }

    // claim 004.4
    async fn users_list_and_revoke_their_own_sessions(backend) {
        let app = spawn_app(backend).await;
        app.create_user("jane@example.com", PW, false).await;
        let laptop = app.login("jane@example.com", PW).await;
        let phone = app.login("jane@example.com", PW).await;
        let list: serde_json::Value = laptop.get("/v1/auth/sessions").await.json().await.unwrap_or_default();
        let sessions = list["sessions"].as_array().cloned().unwrap_or_default();
        assert_eq!(sessions.len(), 2, "{list}");
        let other = sessions.iter().find(|s| s["current"] == false).and_then(|s| s["id"].as_str()).unwrap_or("").to_owned();
        assert_eq!(laptop.send(Method::DELETE, &format!("/v1/auth/sessions/{other}"), None).await.status(), 204);
        assert_eq!(phone.get("/v1/me").await.status(), 401, "the revoked session is gone at once");
        assert_eq!(laptop.get("/v1/me").await.status(), 200);
        // Another user's session id is simply not found.
        app.create_user("john@example.com", PW, false).await;
        let john = app.login("john@example.com", PW).await;
        let john_sessions: serde_json::Value = john.get("/v1/auth/sessions").await.json().await.unwrap_or_default();
        let john_id = john_sessions["sessions"][0]["id"].as_str().unwrap_or("").to_owned();
        assert_eq!(laptop.send(Method::DELETE, &format!("/v1/auth/sessions/{john_id}"), None).await.status(), 404);
        assert_eq!(john.get("/v1/me").await.status(), 200);
        app.shutdown().await.ok();
    }

    // claim 004.5 001.11
    async fn password_changes_follow_the_policy_and_end_other_sessions(backend) {
        let app = spawn_app(backend).await;
        app.create_user("jane.doe@example.com", PW, false).await;
        let jane = app.login("jane.doe@example.com", PW).await;
        let other = app.login("jane.doe@example.com", PW).await;
        for (new, rule) in [("short", "12 to 128 characters"), ("password12345", "too common"), ("jane.doe-forever-and-ever", "e-mail address or name")] {
            let res = jane.send(Method::POST, "/v1/auth/password", Some(serde_json::json!({"current_password": PW, "new_password": new}))).await;
            let status = res.status().as_u16();
            let body: serde_json::Value = res.json().await.unwrap_or_default();
            assert_eq!(status, 422, "{new}: {body}");
            assert_eq!(body["type"], "urn:strongroom:problem:password-policy");
            assert!(body["detail"].as_str().unwrap_or("").contains(rule), "{new}: {body}");
            assert!(!body.to_string().contains(new), "the password is not echoed");
        }
        let wrong = jane.send(Method::POST, "/v1/auth/password", Some(serde_json::json!({"current_password": "not it at all", "new_password": "a brand new passphrase here"}))).await;
        assert_eq!(wrong.status(), 401);
        let ok = jane.send(Method::POST, "/v1/auth/password", Some(serde_json::json!({"current_password": PW, "new_password": "a brand new passphrase here"}))).await;
        assert_eq!(ok.status(), 204);
        assert_eq!(other.get("/v1/me").await.status(), 401, "other sessions end");
        assert_eq!(jane.get("/v1/me").await.status(), 200, "this one stays");
        let _ = app.login("jane.doe@example.com", "a brand new passphrase here").await;
        app.shutdown().await.ok();
    }

    // claim 003.10
    async fn every_route_but_the_public_ones_needs_a_session(backend) {
        let app = spawn_app(backend).await;
        let routes = declared_routes();
        assert!(routes.len() >= 12, "found the route table: {routes:?}");
        let public: Vec<&str> = server::api::PUBLIC.to_vec();
        assert_eq!(public, [
                "/healthz",
                "/readyz",
                "/metrics",
                "/v1/openapi.json",
                "/v1/auth/login",
                "/v1/auth/setup-password",
                "/v1/auth/password-reset",
                "/v1/auth/password-reset/complete",
                "/v1/oauth/token",
                "/v1/oauth/revoke",
                "/.well-known/jwks.json",
                "/v1/invitations/accept",
            ], "the public list changes only on purpose");
        for (method, route) in &routes {
            if public.contains(&route.as_str()) {
                continue;
            }
            let url = app.url(&fill(route, "alpha-care"));
            let res = app.client.request(method.clone(), &url).json(&serde_json::json!({})).send().await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(res.status().as_u16(), 401, "{method} {route} without a session");
            let forged = app.client.request(method.clone(), &url).header("cookie", "__Host-strongroom_session=forged").json(&serde_json::json!({})).send().await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(forged.status().as_u16(), 401, "{method} {route} with a forged session");
        }
        app.shutdown().await.ok();
    }

    // claim 001.6 004.15
    async fn roles_decide_what_members_may_do(backend) {
        let app = spawn_app(backend).await;
        let w = world(&app).await;
        let client = |role: Role| w.members_a.iter().find(|(r, _, _)| *r == role).map(|(_, c, _)| c.clone()).unwrap_or_else(|| panic!("{role:?}"));
        for (role, may_list) in [(Role::Owner, true), (Role::Admin, true), (Role::Editor, false), (Role::Viewer, false), (Role::Auditor, true)] {
            let res = client(role).get("/v1/orgs/alpha-care/members").await;
            assert_eq!(res.status().as_u16(), if may_list { 200 } else { 403 }, "{role:?} lists members");
            assert_eq!(client(role).get("/v1/orgs/alpha-care").await.status(), 200, "{role:?} views the org");
        }
        app.create_user("new@alpha.example.com", PW, false).await;
        let add = |c: UserClient, role: &'static str| async move {
            c.send(Method::POST, "/v1/orgs/alpha-care/members", Some(serde_json::json!({"email": "new@alpha.example.com", "role": role}))).await.status().as_u16()
        };
        assert_eq!(add(client(Role::Editor), "viewer").await, 403);
        assert_eq!(add(client(Role::Auditor), "viewer").await, 403);
        assert_eq!(add(client(Role::Admin), "owner").await, 403, "only owners make owners");
        assert_eq!(add(client(Role::Admin), "viewer").await, 201);
        assert_eq!(add(client(Role::Owner), "owner").await, 201);
        let me: serde_json::Value = client(Role::Owner).get("/v1/me").await.json().await.unwrap_or_default();
        let my_id = me["user"]["id"].as_str().unwrap_or("").to_owned();
        let members: serde_json::Value = client(Role::Owner).get("/v1/orgs/alpha-care/members").await.json().await.unwrap_or_default();
        let owners: Vec<String> = members["members"].as_array().into_iter().flatten().filter(|m| m["role"] == "owner").filter_map(|m| m["user_id"].as_str().map(String::from)).collect();
        assert_eq!(owners.len(), 2);
        let other = owners.iter().find(|id| **id != my_id).cloned().unwrap_or_default();
        assert_eq!(client(Role::Owner).send(Method::DELETE, &format!("/v1/orgs/alpha-care/members/{other}"), None).await.status(), 204);
        let res = client(Role::Owner).send(Method::DELETE, &format!("/v1/orgs/alpha-care/members/{my_id}"), None).await;
        assert_eq!(problem_type(res).await, (409, "conflict".into()), "the last owner stays");
        let demote = client(Role::Owner).send(Method::PUT, &format!("/v1/orgs/alpha-care/members/{my_id}"), Some(serde_json::json!({"role": "viewer"}))).await;
        assert_eq!(problem_type(demote).await, (409, "conflict".into()), "nor is demoted");
        let _ = w.org_a;
        app.shutdown().await.ok();
    }

    // claim 000.3 004.3 004.15
    async fn no_role_and_no_operator_reaches_another_organisation(backend) {
        let app = spawn_app(backend).await;
        let w = world(&app).await;
        let routes: Vec<(Method, String)> = declared_routes().into_iter().filter(|(_, r)| r.contains("{org}")).collect();
        assert!(routes.len() >= 5, "{routes:?}");
        let mut callers: Vec<(String, UserClient)> = w.members_a.iter().map(|(r, c, _)| (format!("{r:?} of alpha"), c.clone())).collect();
        callers.push(("operator".into(), w.operator.clone()));
        // The organisation routes operators may use: renaming, suspending or
        // resuming it, which touches its metadata and never its data; and
        // asking it for a support session, which grants nothing by itself
        // (support::a_support_session_from_request_to_summary).
        let platform_routes = [(Method::PATCH, "/v1/orgs/{org}"), (Method::POST, "/v1/orgs/{org}/support-sessions")];
        for (who, client) in &callers {
            for (method, route) in &routes {
                if who == "operator" && platform_routes.iter().any(|(m, r)| m == method && r == route) {
                    continue;
                }
                for org in [w.org_b.slug.to_string(), w.org_b.id.to_string()] {
                    let path = fill(route, &org);
                    let body = serde_json::json!({"email": w.owner_b_email, "role": "owner"});
                    let res = client.send(method.clone(), &path, Some(body)).await;
                    let status = res.status().as_u16();
                    let text = res.text().await.unwrap_or_default();
                    assert!(status == 403 || status == 404, "{who}: {method} {path} gave {status}: {text}");
                    assert!(!text.contains(&w.owner_b_email) && !text.contains("beta-learn"), "{who}: {method} {path} revealed {text}");
                }
            }
        }
        // Operators see organisation names on the platform list, never members.
        let list: serde_json::Value = w.operator.get("/v1/orgs").await.json().await.unwrap_or_default();
        assert_eq!(list["orgs"].as_array().map(Vec::len), Some(2));
        // A member of alpha sees only alpha in their list.
        let (_, viewer, _) = &w.members_a[3];
        let mine: serde_json::Value = viewer.get("/v1/orgs").await.json().await.unwrap_or_default();
        assert_eq!(mine["orgs"].as_array().map(Vec::len), Some(1));
        assert_eq!(mine["orgs"][0]["slug"], "alpha-care");
        app.shutdown().await.ok();
    }

    // claim 001.11
    async fn no_password_is_stored_or_logged(backend) {
        let app = spawn_app(backend).await;
        app.create_user("jane@example.com", PW, false).await;
        let _ = app.login("jane@example.com", PW).await;
        let user = app.engine().user_by_email(&domain::Email::parse("jane@example.com").unwrap_or_else(|e| panic!("{e}"))).await.ok().flatten().unwrap_or_else(|| panic!("user"));
        let hash = user.password_hash.clone().unwrap_or_default();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(!hash.contains(PW));
        if backend == Backend::Postgres {
            let pg_dump = format!("{}/pg_dump", std::env::var("PG_TEST_BIN").unwrap_or_default());
            let out = std::process::Command::new(pg_dump).arg(app.db.database_url.clone().unwrap_or_default()).output().unwrap_or_else(|e| panic!("{e}"));
            let dump = String::from_utf8_lossy(&out.stdout);
            assert!(dump.contains("$argon2id$") && !dump.contains(PW), "the dump holds hashes only");
        }
        app.shutdown().await.ok();
    }

    async fn operators_rename_and_suspend_organisations(backend) {
        let app = spawn_app(backend).await;
        let w = world(&app).await;
        let (_, viewer, _) = &w.members_a[3];
        let (_, owner, _) = &w.members_a[0];
        let res = owner.send(Method::PATCH, "/v1/orgs/alpha-care", Some(serde_json::json!({"status": "suspended"}))).await;
        assert_eq!(problem_type(res).await, (403, "forbidden".into()), "members cannot suspend");
        let res = w.operator.send(Method::PATCH, "/v1/orgs/alpha-care", Some(serde_json::json!({"name": "Alpha Care Ltd", "status": "suspended"}))).await;
        assert_eq!(res.status(), 200);
        assert_eq!(problem_type(viewer.get("/v1/orgs/alpha-care").await).await, (403, "org-suspended".into()));
        assert_eq!(problem_type(owner.get("/v1/orgs/alpha-care/members").await).await, (403, "org-suspended".into()));
        let res = w.operator.send(Method::PATCH, "/v1/orgs/alpha-care", Some(serde_json::json!({"status": "active"}))).await;
        assert_eq!(res.status(), 200);
        let org: serde_json::Value = viewer.get("/v1/orgs/alpha-care").await.json().await.unwrap_or_default();
        assert_eq!(org["org"]["name"], "Alpha Care Ltd");
        app.shutdown().await.ok();
    }

    // claim 004.4
    async fn idle_sessions_end(backend) {
        let db = testkit::TestDb::new(backend).await.unwrap_or_else(|e| panic!("{e:#}"));
        let settings = engine::IdentitySettings {
            sessions: engine::SessionPolicy { idle: std::time::Duration::from_secs(1), absolute: std::time::Duration::from_secs(3600) },
            ..engine::IdentitySettings::default()
        };
        let engine = db.open_engine().await.unwrap_or_else(|e| panic!("{e:#}")).with_identity(settings);
        let new = engine::NewUser {
            email: domain::Email::parse("jane@example.com").unwrap_or_else(|e| panic!("{e}")),
            display_name: domain::DisplayName::parse("Jane").unwrap_or_else(|e| panic!("{e}")),
            is_operator: false,
        };
        engine.create_user(&new, Some(PW)).await.unwrap_or_else(|e| panic!("{e}"));
        let (token, _, _) = engine.login("jane@example.com", PW, None).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(engine.authenticate(token.reveal()).await.is_ok());
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        assert!(matches!(engine.authenticate(token.reveal()).await, Err(engine::AuthError::Unauthenticated)), "idle too long");
        engine.shutdown().await;
    }

    async fn init_creates_the_first_operator_with_a_single_use_setup_token(backend) {
        use std::os::unix::fs::PermissionsExt;
        let db = testkit::TestDb::new(backend).await.unwrap_or_else(|e| panic!("{e:#}"));
        let data_dir = db.data_dir();
        let key_file = db.dir.path().join("unseal.key");
        std::fs::write(&key_file, [9u8; 32]).unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap_or_else(|e| panic!("{e}"));
        let url = db.database_url.clone().unwrap_or_default();
        let mut env = vec![("STRONGROOM_UNSEAL_KEY_FILE", key_file.to_str().unwrap_or(""))];
        if backend == Backend::Postgres {
            env.push(("STRONGROOM_DATABASE_URL", url.as_str()));
        }
        let (code, out, err) = crate::strongroom(&["init", "--operator-email", "boss@example.com", "--data-dir", data_dir.to_str().unwrap_or("")], &env);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("Operator: boss@example.com"), "{out}");
        let token = out.split("\"token\":\"").nth(1).and_then(|t| t.split('"').next()).unwrap_or_else(|| panic!("no token in {out}")).to_owned();

        let mut overrides = db.overrides();
        overrides.dev = false;
        overrides.unseal_key_file = Some(key_file.clone());
        let config = server::config::Config::load(&overrides).unwrap_or_else(|e| panic!("{e}"));
        let engine = server::open_engine(&config, false).await.unwrap_or_else(|e| panic!("{e:#}"));
        let setup = engine.complete_password_setup(&token, store::SetupPurpose::Initial, PW).await;
        assert!(setup.is_ok(), "{setup:?}");
        assert!(engine.complete_password_setup(&token, store::SetupPurpose::Initial, PW).await.is_err(), "single use");
        let (_, _, user) = engine.login("boss@example.com", PW, None).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(user.is_operator);
        engine.shutdown().await;
        let (code, out, _) = crate::strongroom(&["user", "list", "--data-dir", data_dir.to_str().unwrap_or("")], &env);
        assert!(code == 0 && out.contains("boss@example.com\t") && out.contains("\toperator\t"), "{out}");
    }

    // claim 003.9
    async fn a_setup_token_works_once(backend) {
        let app = spawn_app(backend).await;
        let new = engine::NewUser {
            email: domain::Email::parse("newbie@example.com").unwrap_or_else(|e| panic!("{e}")),
            display_name: domain::DisplayName::parse("Newbie").unwrap_or_else(|e| panic!("{e}")),
            is_operator: false,
        };
        let user = app.engine().create_user(&new, None).await.unwrap_or_else(|e| panic!("{e}"));
        let token = app.engine().issue_password_setup(user.id, store::SetupPurpose::Initial, std::time::Duration::from_secs(60)).await.unwrap_or_else(|e| panic!("{e}"));
        let setup = |pw: &str| app.client.post(app.url("/v1/auth/setup-password")).json(&serde_json::json!({"token": token.reveal(), "new_password": pw})).send();
        let weak = setup("weak").await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(weak.status(), 422, "a refused password keeps the token");
        assert_eq!(setup(PW).await.map(|r| r.status().as_u16()).unwrap_or(0), 204);
        let again = setup("another good passphrase").await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(problem_type(again).await, (400, "invalid-token".into()));
        let _ = app.login("newbie@example.com", PW).await;
        let forged = app.client.post(app.url("/v1/auth/setup-password")).json(&serde_json::json!({"token": "forged", "new_password": PW})).send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(problem_type(forged).await.1, "invalid-token");
        app.shutdown().await.ok();
    }
}
